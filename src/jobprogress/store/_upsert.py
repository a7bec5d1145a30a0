"""The writer's rows and statements: a message as column values, and the seq-guarded upserts.

:func:`message_row` turns a message into the values of its (job, worker) row. :class:`Upserts` builds,
once per writer, the ``INSERT … ON CONFLICT DO UPDATE`` that applies a message's status part only when
its ``seq`` beats ``status_seq`` and its progress part only when it beats ``progress_seq`` (see
:mod:`.writer`), and the history insert that records each message once.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import RUNNING
from jobprogress._validate import payload_json
from jobprogress.envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate

from ._engine import now_sql

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.sql import Insert
    from sqlalchemy.sql.elements import ColumnElement

    from ._url import Backend
    from .schema import StoreTables

__all__ = ["Upserts", "message_row", "rounds"]

logger = logging.getLogger("jobprogress.store")

_STORE_CLOCK_COLUMNS: Final = ("started_at", "progressed_at", "seen_at")
"""Columns of the progress table that the store's clock stamps, never a message."""

_PROGRESS_PART: Final = ("unit", "done", "total", "throughput", "eta_seconds", "payload_json")
"""Columns of a message's progress part (its envelope), applied together when it is newer."""


def _payload_json(envelope: JobProgressEnvelope) -> str | None:
    if envelope.payload is None:
        return None
    try:
        # allow_nan=False: Postgres and strict JSON readers reject NaN; the envelope guard refuses it,
        # so this only fires for a message built around the guard.
        return payload_json(envelope.payload)
    except (TypeError, ValueError):
        logger.warning("dropping a payload that is not strict JSON")
        return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def message_row(message: Heartbeat | ProgressUpdate) -> dict[str, Any]:
    """The column values of one message; parts it does not carry get seq -1 so they never apply."""
    row: dict[str, Any] = {
        "job_id": message.job_id,
        "worker_id": message.worker_id,
        "run_id": message.run_id,
        "seq": message.seq,
        "type": message.type,
    }
    if isinstance(message, Heartbeat):
        row.update(
            status=message.status.value,
            status_seq=message.seq,
            kind=message.kind,
            error=message.error,
            updated_at=message.updated_at.timestamp(),
            resume=message.resume,
        )
        envelope = message.progress
    else:
        # A row first created by a progress update is running; the status part never applies.
        row.update(
            status=RUNNING,
            status_seq=-1,
            kind=None,
            error=None,
            updated_at=message.progress.updated_at.timestamp(),
            resume=False,
        )
        envelope = message.progress
    if envelope is None:
        row.update(dict.fromkeys(_PROGRESS_PART), progress_seq=-1)
    else:
        row.update(
            unit=str(envelope.unit),
            done=envelope.items_done,
            total=envelope.items_total,
            throughput=_finite(envelope.throughput_per_sec),
            eta_seconds=envelope.eta_seconds,
            payload_json=_payload_json(envelope),
            progress_seq=message.seq,
        )
    return row


def rounds(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split rows sorted by (key, seq) into lists of distinct keys: each key's n-th message in round n."""
    result: list[list[dict[str, Any]]] = []
    previous_key: tuple[str, str] | None = None
    depth = 0
    for row in rows:
        key = (row["job_id"], row["worker_id"])
        depth = depth + 1 if key == previous_key else 0
        previous_key = key
        if depth == len(result):
            result.append([])
        result[depth].append(row)
    return result


class Upserts:
    """A writer's statements, built once: the progress upsert and the history insert.

    Args:
        tables: The writer's tables.
        backend: ``sqlite``, ``postgresql`` or ``duckdb``.
        bound_clock: The store's clock is a ``store_now`` parameter (a clock passed in) instead of
            the database server's.
        history: Also build the history insert.
    """

    def __init__(self, tables: StoreTables, backend: Backend, *, bound_clock: bool, history: bool) -> None:
        self._tables = tables
        self._backend = backend
        self._bound_clock = bound_clock
        self.upsert: Insert = self._on_conflict(
            self._insert(tables.progress).values(self._values(tables.progress, _bound(tables.progress)))
        )
        self.history_insert: Insert | None = None
        if history:
            # Keyed by (job, worker, seq): a redelivered message is not recorded twice.
            self.history_insert = (
                self._insert(tables.history)
                .values(self._values(tables.history, _bound(tables.history)))
                .on_conflict_do_nothing()
            )

    def prepare(self, dialect: Any) -> None:
        """Compile the statements for ``dialect`` ahead of the first write."""
        self.upsert.compile(dialect=dialect)
        if self.history_insert is not None:
            self.history_insert.compile(dialect=dialect)

    def now(self) -> ColumnElement[float]:
        """The store's clock in SQL: the ``store_now`` parameter, or the database server's clock."""
        from sqlalchemy import Float, bindparam

        if self._bound_clock:
            return bindparam("store_now", type_=Float())
        return now_sql(self._backend)

    def multi_row_upsert(self, rows: list[dict[str, Any]]) -> Insert:
        """One statement for many rows of distinct keys (DuckDB: an executemany costs ms per row)."""
        table = self._tables.progress
        return self._on_conflict(self._insert(table).values([self._values(table, row) for row in rows]))

    def multi_row_history(self, rows: list[dict[str, Any]]) -> Insert:
        """One history insert for many rows of distinct keys."""
        table = self._tables.history
        statement: Insert = (
            self._insert(table).values([self._values(table, row) for row in rows]).on_conflict_do_nothing()
        )
        return statement

    def _insert(self, table: Table) -> Any:
        if self._backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)  # DuckDB speaks the same ON CONFLICT dialect

    def _values(self, table: Table, row: dict[str, Any]) -> dict[str, Any]:
        """A row's values for ``table``, its store-clock columns stamped with :meth:`now`."""
        now = self.now()
        values = {
            column.name: row[column.name]
            for column in table.columns
            if column.name not in _STORE_CLOCK_COLUMNS
        }
        values.update((name, now) for name in _STORE_CLOCK_COLUMNS if name in table.c)
        return values

    def _on_conflict(self, statement: Any) -> Insert:
        from sqlalchemy import and_, case, or_

        table = self._tables.progress
        now = self.now()
        new, old = statement.excluded, table.c
        status_applies = new.status_seq > old.status_seq
        progress_applies = new.progress_seq > old.progress_seq
        newest = new.seq > old.seq
        new_run = and_(newest, new.run_id != old.run_id)

        def when(condition: ColumnElement[bool], name: str) -> ColumnElement[Any]:
            return case((condition, new[name]), else_=old[name])

        progress_changed = or_(
            new_run,
            and_(status_applies, new.status != old.status),
            and_(
                progress_applies,
                or_(new.done.is_distinct_from(old.done), new.total.is_distinct_from(old.total)),
            ),
        )
        updates: dict[str, Any] = {
            "kind": case((and_(status_applies, new.kind.is_not(None)), new.kind), else_=old.kind),
            "status": when(status_applies, "status"),
            "error": when(status_applies, "error"),
            "status_seq": when(status_applies, "status_seq"),
            **{name: when(progress_applies, name) for name in _PROGRESS_PART},
            "progress_seq": when(progress_applies, "progress_seq"),
            "run_id": when(newest, "run_id"),
            "attempt": case((new_run, new.attempt), else_=old.attempt),
            "seq": when(newest, "seq"),
            "updated_at": when(newest, "updated_at"),
            "started_at": case((new_run, now), else_=old.started_at),
            "progressed_at": case((progress_changed, now), else_=old.progressed_at),
            "seen_at": now,
        }
        upsert: Insert = statement.on_conflict_do_update(
            index_elements=[old.job_id, old.worker_id],
            set_=updates,
            where=or_(status_applies, progress_applies),
        )
        return upsert


def _bound(table: Table) -> dict[str, Any]:
    """A bind parameter per column, named as the column: the values of an executemany."""
    from sqlalchemy import bindparam

    return {column.name: bindparam(column.name, type_=column.type) for column in table.columns}
