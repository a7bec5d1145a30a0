"""``{prefix}job_summary``, the per-job row the read side pages, filters and counts on (schema 4).

The writer refreshes the summary rows of the jobs a batch touched in the batch's own transaction, with
one set-based statement (:class:`SummaryRefresh`): the newest attempt of each job, its job status by
:func:`jobprogress._states.job_status`, its greatest kind, its last message, and two liveness inputs
over its running workers, so readers judge lost and stalled on their own clock with plain comparisons:

- ``running_seen``: the greatest ``seen_at`` of a running worker (a missing one counts as the far
  future, as a NULL comparison never flags a worker). The job is **lost** when it is below the
  reader's cutoff (now minus ``stall_after``): every running worker is lost.
- ``running_live``: the greatest, over running workers, of the time from which the worker stops being
  progressing: ``min(seen_at, progressed_at)`` (a missing ``progressed_at`` never stalls a worker, a
  missing ``seen_at`` never flags one). Not lost and below the cutoff: no running worker
  progresses, so the job is **stalled**; otherwise it is **running**.

These are the rules :mod:`._aggregate` applies to the flags :mod:`._sql` computes per row, folded once
per write instead of once per read. A read groups no progress rows: it walks an index of the summary
(order, status, kind or liveness) with its LIMIT, then reads the rows of only the jobs it picked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import JOB_STATUS_PRECEDENCE, MAX_ID_LENGTH, MAX_KIND_LENGTH, RUNNING

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql import Insert, Select
    from sqlalchemy.sql.elements import ColumnElement

    from ._url import Backend
    from .schema import StoreTables

__all__ = ["FOREVER", "SummaryRefresh", "backfill", "summary_table"]

FOREVER: Final = 1e300
"""Stands for a missing store time in the liveness columns: later than any cutoff, so never flagged."""

_CHUNK: Final = 500
"""Job ids per refresh statement on SQLite and DuckDB (an IN list of bound parameters)."""

_RANK: Final = {status: rank for rank, status in enumerate(reversed(JOB_STATUS_PRECEDENCE))}


def summary_table(prefix: str, metadata: MetaData, not_duckdb: Callable[..., bool]) -> Table:
    """``{prefix}job_summary``: per job, what the read side filters, orders and counts on (:mod:`._summary`).

    One row per job, for its newest attempt, refreshed by the writer in the transaction that changes
    the job's rows. The liveness columns are store-clock times compared with the reader's cutoff (now
    minus ``stall_after``): a running job is lost when ``running_seen`` < cutoff, stalled when not
    lost and ``running_live`` < cutoff, else running.
    """
    from sqlalchemy import Column, Float, Index, Integer, String, Table

    summary = Table(
        f"{prefix}job_summary",
        metadata,
        Column("job_id", String(MAX_ID_LENGTH), primary_key=True),
        Column("attempt", Integer, nullable=False, comment="the job's newest attempt"),
        Column("status", String(16), nullable=False, comment="job status of the newest attempt's workers"),
        Column("kind", String(MAX_KIND_LENGTH), nullable=True, comment="greatest kind of the newest attempt"),
        Column(
            "last_seen",
            Float(precision=53),
            nullable=False,
            comment="store clock: newest attempt's last message",
        ),
        Column(
            "active_seen",
            Float(precision=53),
            nullable=True,
            comment="store clock: any attempt's last message",
        ),
        Column(
            "running_seen",
            Float(precision=53),
            nullable=True,
            comment="store clock: max seen_at of running workers",
        ),
        Column(
            "running_live",
            Float(precision=53),
            nullable=True,
            comment="store clock: max over running workers of min(seen_at, progressed_at)",
        ),
        Column("workers", Integer, nullable=False, comment="workers of the newest attempt"),
        sqlite_with_rowid=False,
    )
    # The default order; a status filter in that order; a kind filter in that order; the per-state
    # counts (covering: status and both liveness columns, so counting never reads a row).
    Index(f"ix_{prefix}job_summary_order", summary.c.last_seen.desc(), summary.c.job_id).ddl_if(
        callable_=not_duckdb
    )
    Index(
        f"ix_{prefix}job_summary_status", summary.c.status, summary.c.last_seen.desc(), summary.c.job_id
    ).ddl_if(callable_=not_duckdb)
    Index(
        f"ix_{prefix}job_summary_kind", summary.c.kind, summary.c.last_seen.desc(), summary.c.job_id
    ).ddl_if(callable_=not_duckdb)
    Index(
        f"ix_{prefix}job_summary_liveness", summary.c.status, summary.c.running_seen, summary.c.running_live
    ).ddl_if(callable_=not_duckdb)
    return summary


def _summary_select(tables: StoreTables, among: ColumnElement[bool] | None) -> Select[Any]:
    """Per job (of ``among``, or every job): the summary row of its newest attempt."""
    from sqlalchemy import Float, and_, case, func, literal, select, true

    progress = tables.progress
    newest_query = select(
        progress.c.job_id,
        func.max(progress.c.attempt).label("attempt"),
        func.max(progress.c.seen_at).label("active_seen"),
    )
    if among is not None:
        newest_query = newest_query.where(among)
    newest = newest_query.group_by(progress.c.job_id).subquery("newest")
    row = progress.alias("row")
    forever = literal(FOREVER, Float())
    running = row.c.status == RUNNING
    seen_key = func.coalesce(row.c.seen_at, forever)
    live_key = case(
        (row.c.seen_at.is_(None), forever),
        (row.c.progressed_at.is_(None), row.c.seen_at),
        (row.c.progressed_at < row.c.seen_at, row.c.progressed_at),
        else_=row.c.seen_at,
    )
    *higher, lowest = JOB_STATUS_PRECEDENCE
    rank = func.max(
        case(*((row.c.status == status, _RANK[status]) for status in higher), else_=_RANK[lowest])
    )
    status = case(*((rank == _RANK[name], name) for name in higher), else_=lowest)
    return (
        select(
            row.c.job_id,
            newest.c.attempt,
            status.label("status"),
            func.max(row.c.kind).label("kind"),
            func.max(func.coalesce(row.c.seen_at, literal(0.0, Float()))).label("last_seen"),
            func.max(newest.c.active_seen).label("active_seen"),
            func.max(case((running, seen_key))).label("running_seen"),
            func.max(case((running, live_key))).label("running_live"),
            func.count().label("workers"),
        )
        .join_from(newest, row, and_(row.c.job_id == newest.c.job_id, row.c.attempt == newest.c.attempt))
        # SQLite parses "INSERT … SELECT … JOIN … ON CONFLICT" ambiguously without a WHERE clause.
        .where(true())
        .group_by(row.c.job_id, newest.c.attempt)
        .order_by(row.c.job_id)  # rows upserted, and locked, in key order
    )


def _upsert(tables: StoreTables, backend: Backend, source: Select[Any]) -> Insert:
    summary = tables.summary
    names = [column.name for column in summary.columns]
    if backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]  # DuckDB too
    statement = insert(summary).from_select(names, source)
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[summary.c.job_id],
        set_={name: statement.excluded[name] for name in names if name != "job_id"},
    )
    return upsert


class SummaryRefresh:
    """The writer's refresh of the summary rows of a batch's jobs, built once per writer.

    Args:
        tables: The writer's tables.
        backend: ``sqlite``, ``postgresql`` or ``duckdb``.
    """

    def __init__(self, tables: StoreTables, backend: Backend) -> None:
        from sqlalchemy import String, any_, bindparam

        self._backend = backend
        job_id = tables.progress.c.job_id
        if backend == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            # One array parameter: one statement text and plan whatever the batch, probing the key.
            among = job_id == any_(bindparam("jobs", type_=ARRAY(String())))
        else:
            among = job_id.in_(bindparam("jobs", expanding=True))
        self.statement = _upsert(tables, backend, _summary_select(tables, among))

    def prepare(self, dialect: Any) -> None:
        """Compile the statement for ``dialect`` ahead of the first write."""
        self.statement.compile(dialect=dialect)

    def lock(self, connection: Connection, job_ids: Sequence[str]) -> None:
        """Postgres: take the batch's per-job advisory locks, in job order, before writing any row.

        Without them two transactions writing different workers of one job could each refresh its
        summary from a snapshot missing the other's rows (READ COMMITTED), and the later would leave
        a stale row. Holding the job's lock until commit serializes writers per job, so each refresh
        sees every committed row; sorted, so two batches never deadlock. The keys are those of
        :mod:`._attempts` (the same transaction takes them again at no cost). SQLite writers hold the
        database's write lock; DuckDB writers of one file are serialized by the writer.
        """
        if self._backend != "postgresql":
            return
        from sqlalchemy import text

        from ._attempts import LOCK_SPACE

        # The same round trip makes this transaction's plans key lookups: the writer's statements
        # (this refresh, the attempt lookup) read a few jobs' rows by primary key, but on a table
        # whose statistics are stale (created empty and filled faster than autovacuum analyzes it)
        # Postgres plans them as whole-table scans and hash joins, 30x slower per batch at 30,000
        # jobs. SET LOCAL: the settings end with the transaction.
        connection.execute(
            text(
                "SELECT set_config('enable_seqscan', 'off', true), "
                "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
                f"(SELECT count(pg_advisory_xact_lock({LOCK_SPACE}, hashtext(job))) "
                "FROM unnest(CAST(:jobs AS text[])) AS job)"
            ),
            {"jobs": sorted(set(job_ids))},
        )

    def run(self, connection: Connection, job_ids: Sequence[str]) -> None:
        """Refresh the summary rows of ``job_ids`` (inside the caller's write transaction)."""
        jobs = sorted(set(job_ids))
        if self._backend == "postgresql":
            connection.execute(self.statement, {"jobs": jobs})
            return
        for start in range(0, len(jobs), _CHUNK):
            connection.execute(self.statement, {"jobs": jobs[start : start + _CHUNK]})


def backfill(connection: Connection, tables: StoreTables) -> None:
    """Fill the summary from every progress row (the migration from schema version 3, or a repair)."""
    from sqlalchemy import delete

    backend: Backend = (
        "sqlite"
        if connection.dialect.name == "sqlite"
        else "postgresql"
        if connection.dialect.name == "postgresql"
        else "duckdb"
    )
    connection.execute(delete(tables.summary))
    connection.execute(_upsert(tables, backend, _summary_select(tables, None)))
