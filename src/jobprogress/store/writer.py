"""Idempotent, seq-guarded upserts of Heartbeat and ProgressUpdate messages into ``{prefix}job_progress``.

Each (job, worker) row keeps two last-applied sequence numbers. A message's status part (a heartbeat's
status, kind and error) is applied only when its ``seq`` beats ``status_seq``; its progress part (the
envelope) only when it beats ``progress_seq``. So duplicates and stale deliveries change nothing, a
heartbeat without an envelope never nulls stored progress, and a final state split into a heartbeat
and a progress update lands in either order. The store's clock stamps ``seen_at`` on every accepted
message and ``progressed_at`` when done, total, status or the run change: liveness never depends on
a worker's clock. A row that takes a new run also takes that run's ``attempt``, decided in the same
transaction by :mod:`._attempts`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from jobprogress._validate import payload_json
from jobprogress.envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
from jobprogress.errors import StoreError

from ._attempts import AttemptPlanner, RunCache
from ._engine import (
    WAL_CAP_BYTES,
    EngineKey,
    EngineSettings,
    acquire_engine,
    backend_of,
    check_sqlite_file,
    connect,
    database_file,
    describe_error,
    now_sql,
    parse_url,
    release_engine,
    require_driver,
    sqlite_path,
)
from .schema import StoreTables, create_schema, tables_for

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.sql import Delete, Insert
    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["StoreWriter"]

logger = logging.getLogger("jobprogress.store")

_PRUNE_INTERVAL: Final = 60.0
"""Seconds between history retention passes of one writer."""

_WAL_CHECK_INTERVAL: Final = 10.0
"""Seconds between forced checkpoints while the WAL stays over its cap (a long reader pins it)."""

Clock = Callable[[], float]


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
            status="running",
            status_seq=-1,
            kind=None,
            error=None,
            updated_at=message.progress.updated_at.timestamp(),
            resume=False,
        )
        envelope = message.progress
    if envelope is None:
        row.update(
            unit=None, done=None, total=None, throughput=None, eta_seconds=None, payload_json=None,
            progress_seq=-1,
        )  # fmt: skip
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


def _rounds(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split rows sorted by (key, seq) into lists of distinct keys: each key's n-th message in round n."""
    rounds: list[list[dict[str, Any]]] = []
    previous_key: tuple[str, str] | None = None
    depth = 0
    for row in rows:
        key = (row["job_id"], row["worker_id"])
        depth = depth + 1 if key == previous_key else 0
        previous_key = key
        if depth == len(rounds):
            rounds.append([])
        rounds[depth].append(row)
    return rounds


class StoreWriter:
    """Writes messages into a store: one transaction per batch, idempotent, thread- and process-safe.

    The connection is opened lazily, on the first write, and tables are created then if missing.
    After a ``fork`` the child builds its own engine; it never touches its parent's connections.

    Args:
        url: ``sqlite:///PATH``, ``duckdb:///PATH``, ``postgresql://…`` or ``postgresql+psycopg://…``.
        table_prefix: Prefix of the table names (``{prefix}job_progress``).
        history: Also append every accepted message to ``{prefix}job_progress_history``.
        history_max_age: Seconds of history to keep (None: no age bound).
        history_max_rows: Rows of history to keep (None: no row bound).
        busy_timeout: SQLite: seconds a write waits for another writer's lock.
        connect_timeout: Postgres: seconds to connect.
        statement_timeout: Postgres: seconds a statement may run.
        lock_timeout: Postgres: seconds a statement may wait for a lock.
        clock: The store's clock as POSIX seconds. None (the default) uses the database server's
            clock; tests pass a fake one.
        wal_cap_bytes: SQLite: checkpoint and truncate the WAL once it grows past this size.

    Raises:
        ConfigurationError: the URL or prefix is not valid.
        MissingExtraError: the backend's optional dependencies are not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str = "cf_",
        history: bool = False,
        history_max_age: float | None = 7 * 24 * 3600.0,
        history_max_rows: int | None = 1_000_000,
        busy_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        lock_timeout: float = 5.0,
        clock: Clock | None = None,
        wal_cap_bytes: int = WAL_CAP_BYTES,
    ) -> None:
        self._backend = backend_of(url)
        require_driver(self._backend, f"the {self._backend} store")
        self._url = parse_url(url)
        self._tables: StoreTables = tables_for(table_prefix)
        self._history = history
        self._history_max_age = history_max_age
        self._history_max_rows = history_max_rows
        self._settings = EngineSettings(
            busy_timeout=busy_timeout,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
        )
        self._clock = clock
        self._wal_cap = wal_cap_bytes
        self._lock = threading.Lock()
        self._lease: tuple[EngineKey, Engine] | None = None
        self._schema_ready = threading.Event()
        self._closed = False
        self._upsert = self._build_upsert()
        self._attempts = AttemptPlanner(self._tables, self._backend)
        self._runs = RunCache()
        self._history_insert = self._build_history_insert() if history else None
        self._next_prune = 0.0
        self._next_wal_check = 0.0

    def prepare(self, dialect_class: Any) -> None:
        """Compile this writer's statements for ``dialect_class`` once, loading what compiling needs.

        Sinks call it at configure time so a sender thread's first write imports nothing.
        """
        dialect = dialect_class()
        self._upsert.compile(dialect=dialect)
        self._attempts.prepare(dialect)
        if self._history_insert is not None:
            self._history_insert.compile(dialect=dialect)

    @property
    def url(self) -> str:
        """The store URL with any password hidden."""
        return self._url.render_as_string(hide_password=True)

    # -- statements, built once -------------------------------------------------------------------

    def _now(self) -> ColumnElement[float]:
        from sqlalchemy import Float, bindparam

        if self._clock is not None:
            return bindparam("store_now", type_=Float())
        return now_sql(self._backend)

    def _insert(self) -> Any:
        if self._backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert  # DuckDB speaks the same ON CONFLICT dialect

    def _build_upsert(self) -> Insert:
        from sqlalchemy import bindparam

        table = self._tables.progress
        now = self._now()
        values: dict[str, Any] = {
            column.name: bindparam(column.name, type_=column.type)
            for column in table.columns
            if column.name not in ("started_at", "progressed_at", "seen_at")
        }
        values.update(started_at=now, progressed_at=now, seen_at=now)
        return self._on_conflict(self._insert()(table).values(values))

    def _multi_row_upsert(self, rows: list[dict[str, Any]]) -> Insert:
        """One statement for many rows of distinct keys (DuckDB: an executemany costs ms per row)."""
        table = self._tables.progress
        now = self._now()
        names = [
            column.name
            for column in table.columns
            if column.name not in ("started_at", "progressed_at", "seen_at")
        ]
        values = [
            {**{name: row[name] for name in names}, "started_at": now, "progressed_at": now, "seen_at": now}
            for row in rows
        ]
        return self._on_conflict(self._insert()(table).values(values))

    def _on_conflict(self, statement: Any) -> Insert:
        from sqlalchemy import and_, case, or_

        table = self._tables.progress
        now = self._now()
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
            **{
                name: when(progress_applies, name)
                for name in ("unit", "done", "total", "throughput", "eta_seconds", "payload_json")
            },
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

    def _build_history_insert(self) -> Insert:
        from sqlalchemy import bindparam

        table = self._tables.history
        values: dict[str, Any] = {
            column.name: bindparam(column.name, type_=column.type)
            for column in table.columns
            if column.name != "seen_at"
        }
        values["seen_at"] = self._now()
        # Keyed by (job, worker, seq): a redelivered message is not recorded twice.
        statement: Insert = self._insert()(table).values(values).on_conflict_do_nothing()
        return statement

    def _multi_row_history(self, rows: list[dict[str, Any]]) -> Insert:
        table = self._tables.history
        now = self._now()
        names = [column.name for column in table.columns if column.name != "seen_at"]
        values = [{**{name: row[name] for name in names}, "seen_at": now} for row in rows]
        statement: Insert = self._insert()(table).values(values).on_conflict_do_nothing()
        return statement

    # -- engine -----------------------------------------------------------------------------------

    def _engine(self) -> Engine:
        if self._closed:
            raise StoreError(f"the store writer for {self.url} is closed")
        lease = self._lease
        if lease is not None and lease[0][3] == os.getpid():
            return lease[1]
        with self._lock:
            lease = self._lease
            if lease is not None and lease[0][3] != os.getpid():
                # Forked: the parent's engine (and its connections) stay the parent's.
                self._lease = lease = None
            if lease is None:
                if self._backend == "sqlite":
                    check_sqlite_file(self._url, must_exist=False)
                lease = acquire_engine(self._url, self._settings)
                self._lease = lease
            return lease[1]

    def _ensure_schema(self, engine: Engine) -> None:
        if self._schema_ready.is_set():
            return
        from sqlalchemy.exc import SQLAlchemyError

        with self._lock:
            if self._schema_ready.is_set():
                return
            try:
                create_schema(engine, self._backend, self._tables, history=self._history)
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"cannot create the progress tables: {describe_error(exc, self._url)}"
                ) from exc
            self._schema_ready.set()

    # -- public API -------------------------------------------------------------------------------

    def write(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Store ``messages`` in one transaction; stale and duplicate messages change nothing.

        Raises:
            StoreError: the store could not be reached or written (the caller retries later).
        """
        if not messages:
            return
        from sqlalchemy.exc import SQLAlchemyError

        # A fixed lock order (by key) keeps two concurrent batches from deadlocking on Postgres.
        rows = sorted(
            (message_row(message) for message in messages),
            key=lambda row: (row["job_id"], row["worker_id"], row["seq"]),
        )
        engine = self._engine()
        self._ensure_schema(engine)
        params: dict[str, Any] = {}
        if self._clock is not None:
            params["store_now"] = now = self._clock()
            for row in rows:
                row["store_now"] = now
        try:
            with connect(engine, read=False) as connection:
                learned = self._attempts.assign(connection, rows, self._runs)
                if self._backend == "duckdb":
                    # DuckDB refuses to update one row twice in a statement: one statement per round
                    # of distinct keys, rounds in seq order (rows are sorted by key, then seq).
                    for round_rows in _rounds(rows):
                        connection.execute(self._multi_row_upsert(round_rows), params)
                else:
                    connection.execute(self._upsert, rows)
                if self._history_insert is not None:
                    history = [row if row["type"] == "heartbeat" else {**row, "status": None} for row in rows]
                    if self._backend == "duckdb":
                        for round_rows in _rounds(history):
                            connection.execute(self._multi_row_history(round_rows), params)
                    else:
                        connection.execute(self._history_insert, history)
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._url)) from exc
        self._runs.remember(learned)
        if self._history:
            self._maybe_prune(engine)
        if self._backend == "sqlite":
            self._maybe_checkpoint(engine)

    def stored_done(self, job_id: str, worker_id: str) -> tuple[int, int] | None:
        """The stored ``done`` and ``seq`` of (job, worker), for ``track(..., resume=True)``.

        Returns:
            ``(done, seq)``, with done 0 when the row holds no progress; None when there is no row
            (or no table, or no database file yet: reading never creates one).

        Raises:
            StoreError: the store could not be read.
        """
        from sqlalchemy import inspect, select
        from sqlalchemy.exc import SQLAlchemyError

        path = database_file(self._url)
        if path is not None and not os.path.exists(path):
            return None
        table = self._tables.progress
        engine = self._engine()
        try:
            with connect(engine, read=True) as connection:
                if not self._schema_ready.is_set() and not inspect(connection).has_table(table.name):
                    return None
                row = connection.execute(
                    select(table.c.done, table.c.seq).where(
                        table.c.job_id == job_id, table.c.worker_id == worker_id
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._url)) from exc
        if row is None:
            return None
        return int(row.done or 0), int(row.seq)

    def close(self) -> None:
        """Release this writer's hold on the shared engine; idempotent."""
        with self._lock:
            self._closed = True
            lease, self._lease = self._lease, None
        if lease is not None and lease[0][3] == os.getpid():  # a parent's engine stays the parent's
            release_engine(lease[0])

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- upkeep -----------------------------------------------------------------------------------

    def _maybe_prune(self, engine: Engine) -> None:
        if self._history_max_age is None and self._history_max_rows is None:
            return
        moment = time.monotonic()
        if moment < self._next_prune:
            return
        self._next_prune = moment + _PRUNE_INTERVAL
        try:
            self.prune_history(engine)
        except StoreError as exc:  # upkeep must never fail a write that already committed
            logger.warning(
                "pruning the progress history failed (retried in %.0f s): %s", _PRUNE_INTERVAL, exc
            )

    def prune_history(self, engine: Engine | None = None) -> None:
        """Apply the history retention bounds now (a writer also does it once a minute).

        Raises:
            StoreError: the delete failed.
        """
        from sqlalchemy import delete, literal, select
        from sqlalchemy.exc import SQLAlchemyError

        engine = engine or self._engine()
        self._ensure_schema(engine)
        history = self._tables.history
        statements: list[Delete] = []
        if self._history_max_age is not None:
            statements.append(
                delete(history).where(history.c.seen_at < self._now() - literal(self._history_max_age))
            )
        if self._history_max_rows is not None:
            # Rows after the newest max_rows go (ties on seen_at may keep a few more).
            oldest_kept = (
                select(history.c.seen_at)
                .order_by(history.c.seen_at.desc())
                .limit(1)
                .offset(self._history_max_rows - 1)
                .scalar_subquery()
            )
            statements.append(delete(history).where(history.c.seen_at < oldest_kept))
        params = {"store_now": self._clock()} if self._clock is not None else {}
        try:
            with connect(engine, read=False) as connection:
                for statement in statements:
                    connection.execute(statement, params)
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._url)) from exc

    def _maybe_checkpoint(self, engine: Engine) -> None:
        path = sqlite_path(self._url)
        if path is None:
            return
        try:
            size = os.stat(path + "-wal").st_size
        except OSError:
            return
        moment = time.monotonic()
        if size <= self._wal_cap or moment < self._next_wal_check:
            return
        self._next_wal_check = moment + _WAL_CHECK_INTERVAL
        # A long reader pins the WAL; autocheckpoints then cannot reset it and it grows. Once over the
        # cap, try a truncating checkpoint without waiting for readers (busy_timeout 0 for this call).
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("PRAGMA busy_timeout = 0")
                busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                cursor.execute(f"PRAGMA busy_timeout = {int(self._settings.busy_timeout * 1000)}")
            finally:
                cursor.close()
        except Exception as exc:  # upkeep must never fail a write that already committed
            logger.debug("WAL checkpoint of %s failed: %s", path, exc)
            return
        finally:
            raw.close()
        if busy:
            logger.debug("WAL of %s is %d bytes; a reader still holds it, retrying later", path, size)
