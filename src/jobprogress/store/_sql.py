"""The SQL of the Jobs read side: one grouped pass that judges each job's newest attempt, in SQL.

Built once per :class:`~jobprogress.store.query.ProgressStore` from its tables; the store binds the
parameters (``store_now``, ``cutoff``) and runs the statements. The job status and state rules are
those of :mod:`jobprogress._states`, written as ranked aggregates so one ``GROUP BY`` decides them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import FAILED, JOB_STATUS_PRECEDENCE, LOST, RUNNING, STALLED
from jobprogress.store._aggregate import WORKER_COLUMNS
from jobprogress.store._pages import id_contains

if TYPE_CHECKING:
    from sqlalchemy.sql import Select, Subquery
    from sqlalchemy.sql.elements import ColumnElement

    from jobprogress.store._pages import PageRequest
    from jobprogress.store.schema import StoreTables

__all__ = ["JobQueries"]

# Ranks of a row within its attempt (see JobQueries.statement); _RANKS is one more than the highest.
_STATUS_RANK: Final = {status: rank for rank, status in enumerate(reversed(JOB_STATUS_PRECEDENCE))}
"""A status's rank: the job's status is its workers' highest (the first in the precedence)."""
_NOT_RUNNING, _LOST, _STALLED, _PROGRESSING = 0, 1, 2, 3
_RANKS: Final = max(len(_STATUS_RANK), _PROGRESSING + 1)

_DISPLAY: Final = (FAILED, LOST, STALLED, RUNNING)
"""Job states in the order the CLI lists them; the ready ones (succeeded, cancelled) share the next rank."""
_READY_RANK: Final = len(_DISPLAY)

_ATTEMPT_PREFIX: Final = 1_000_000_000
"""Added to an attempt number to spell it in a fixed width of digits, ahead of a kind (attempts < 9e9)."""


class JobQueries:
    """The statements of the read side over one table prefix."""

    def __init__(self, tables: StoreTables) -> None:
        self._tables = tables

    def now(self) -> ColumnElement[float]:
        from sqlalchemy import Float, bindparam

        # One reading of the store's clock per query, bound as a constant: every row of the result
        # is judged against the same instant, and the database need not evaluate a clock per row.
        return bindparam("store_now", type_=Float())

    def attempt(self, attempts: bool) -> ColumnElement[int]:
        """The ``attempt`` column, or 1 on tables of schema version 1 that no writer migrated yet."""
        from sqlalchemy import Integer, literal

        return self._tables.progress.c.attempt if attempts else literal(1, Integer())

    def liveness(self) -> tuple[ColumnElement[bool], ColumnElement[bool], ColumnElement[bool]]:
        """Per row, on the store's clock: whether it runs, and whether it is lost or stalled.

        A running worker is lost without a message since the ``cutoff`` parameter (now minus
        ``stall_after``), and stalled when it sent messages since but no progress.
        """
        from sqlalchemy import Float, and_, bindparam

        table = self._tables.progress
        cutoff = bindparam("cutoff", type_=Float())
        running = table.c.status == RUNNING
        worker_lost = and_(running, table.c.seen_at < cutoff)
        worker_stalled = and_(running, table.c.seen_at >= cutoff, table.c.progressed_at < cutoff)
        return running, worker_lost, worker_stalled

    def worker_columns(self, attempts: bool) -> tuple[ColumnElement[Any], ...]:
        from sqlalchemy import case

        table = self._tables.progress
        _, worker_lost, worker_stalled = self.liveness()
        return (
            *(table.c[name] for name in WORKER_COLUMNS[:-1]),
            self.attempt(attempts).label("attempt"),
            case((worker_lost, 1), else_=0).label("worker_lost"),
            case((worker_stalled, 1), else_=0).label("worker_stalled"),
        )

    def judged(
        self,
        attempts: bool,
        *,
        job_id: str | None,
        kinds: list[str] | None,
        active_within: float | None,
        search: str | None = None,
    ) -> tuple[Subquery, ColumnElement[str], list[ColumnElement[bool]]]:
        """One row per job of its newest attempt (``job_id``, ``attempt``, ``last_seen``), its state
        word in SQL, and the conditions that keep the jobs of ``kinds``; only jobs whose id holds
        ``search`` when given."""
        from sqlalchemy import String, case, cast, func, literal, select

        table = self._tables.progress
        running, worker_lost, worker_stalled = self.liveness()
        attempt = self.attempt(attempts)
        # One grouped pass over every attempt's rows; only the newest attempt counts. Each row gets a
        # rank, and MAX(attempt * 4 + rank) is reached by a row of the newest attempt (attempt
        # outweighs any rank), so its remainder is the highest rank among the newest attempt's rows.
        # Status ranks follow the job status precedence; liveness ranks order running workers from
        # lost to progressing, so the job is lost when the best is lost, stalled when it is stalled.
        *higher, lowest = JOB_STATUS_PRECEDENCE
        status_rank = case(
            *((table.c.status == status, _STATUS_RANK[status]) for status in higher),
            else_=_STATUS_RANK[lowest],
        )
        live_rank = case(
            (worker_lost, _LOST),
            (worker_stalled, _STALLED),
            (running, _PROGRESSING),
            else_=_NOT_RUNNING,
        )
        columns: list[ColumnElement[Any]] = [
            table.c.job_id,
            func.max(attempt).label("attempt"),
            func.max(attempt * _RANKS + status_rank).label("status_rank"),
            func.max(attempt * _RANKS + live_rank).label("live_rank"),
            func.max(table.c.seen_at).label("last_seen"),
        ]
        if kinds is not None:
            # The job's kind is the greatest of its newest attempt's kinds: rank kinds by attempt
            # first (a fixed-width prefix), keep the greatest, and check that it is of the newest.
            ranked = cast(attempt + _ATTEMPT_PREFIX, String()) + table.c.kind
            columns.append(func.max(ranked).label("ranked_kind"))
        grouped = select(*columns).group_by(table.c.job_id)
        if job_id is not None:
            grouped = grouped.where(table.c.job_id == job_id)
        if search is not None:
            grouped = grouped.where(id_contains(table.c.job_id, search))
        if active_within is not None:
            recent = table.alias("recent")
            grouped = grouped.where(
                table.c.job_id.in_(
                    select(recent.c.job_id).where(recent.c.seen_at >= self.now() - literal(active_within))
                )
            )
        jobs = grouped.subquery("jobs")
        newest = jobs.c.attempt
        best_status = jobs.c.status_rank % _RANKS
        best_live = jobs.c.live_rank % _RANKS
        # The rules of jobprogress._states.job_status and job_state, in SQL.
        status = case(*((best_status == _STATUS_RANK[name], name) for name in higher), else_=lowest)
        state = case(
            (best_status != _STATUS_RANK[RUNNING], status),
            (best_live == _LOST, LOST),  # every running worker is lost
            (best_live == _STALLED, STALLED),  # one is stalled, the others stalled or lost
            else_=RUNNING,
        )
        kind_matches: list[ColumnElement[bool]] = []
        if kinds is not None:
            prefix = cast(newest + _ATTEMPT_PREFIX, String())
            width = len(str(_ATTEMPT_PREFIX))
            kind_matches = [
                func.substr(jobs.c.ranked_kind, 1, width) == prefix,
                func.substr(jobs.c.ranked_kind, width + 1).in_(kinds),
            ]
        return jobs, state, kind_matches

    def statement(self, attempts: bool, request: PageRequest) -> Select[Any]:
        """The progress rows of the page's jobs' newest attempts, grouped and judged here (no summary).

        ``request.after`` is not served here (the caller refuses it): a keyset needs the summary.
        """
        from sqlalchemy import and_, case, func, select

        table = self._tables.progress
        worker_columns = self.worker_columns(attempts)
        attempt = self.attempt(attempts)
        streamed, limit, offset = request.streamed, request.limit, request.offset
        if request.whole:
            # The whole list needs no grouping in SQL: every row of a newest attempt is returned, and
            # _fold derives each job's status and order from its rows by the rules the page query
            # applies. The rows of a job are adjacent in the primary key: one ordered pass finds its
            # newest attempt.
            newest_attempts = (
                select(table.c.job_id, func.max(attempt).label("attempt")).group_by(table.c.job_id).subquery()
            )
            return select(*worker_columns).join_from(
                newest_attempts,
                table,
                and_(table.c.job_id == newest_attempts.c.job_id, attempt == newest_attempts.c.attempt),
            )

        jobs, state, kind_matches = self.judged(
            attempts,
            job_id=request.job_id,
            kinds=None if request.kinds is None else list(request.kinds),
            active_within=request.active_within,
            search=request.search,
        )
        if streamed:
            # The display order of the CLI (cli._format.sort_jobs): failed, lost, stalled, running, ready;
            # running jobs by id, the others most recently seen first.
            rank = case(
                *((state == word, position) for position, word in enumerate(_DISPLAY)), else_=_READY_RANK
            )
            seen = case((rank == _DISPLAY.index(RUNNING), 0.0), else_=func.coalesce(jobs.c.last_seen, 0.0))
            keys: tuple[ColumnElement[Any], ...] = (rank.label("display_rank"), seen.label("display_seen"))
        else:
            keys = (jobs.c.last_seen,)
        page = select(jobs.c.job_id, jobs.c.attempt, *keys).where(*kind_matches)
        if request.statuses is not None:
            page = page.where(state.in_(request.statuses))
        if streamed:
            page = page.order_by(rank, seen.desc(), jobs.c.job_id)
        else:
            page = page.order_by(jobs.c.last_seen.desc(), jobs.c.job_id)
        if limit is not None:
            page = page.limit(limit)
        if offset:
            page = page.offset(offset)
        chosen = page.subquery("page")
        joined = select(*worker_columns).join_from(
            chosen, table, and_(table.c.job_id == chosen.c.job_id, attempt == chosen.c.attempt)
        )
        if streamed:
            # Streamed rows arrive job by job, in display order, so each job is folded as it arrives.
            return joined.order_by(
                chosen.c.display_rank, chosen.c.display_seen.desc(), chosen.c.job_id, table.c.worker_id
            )
        # No ORDER BY here: sorting the wide joined rows costs more than the query itself. _fold
        # orders the jobs (by the same key) and each job's workers in Python.
        return joined
