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

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from jobprogress.envelope import Heartbeat, ProgressUpdate
from jobprogress.errors import StoreError, StoreSchemaError

from ._attempts import AttemptPlanner, RunCache
from ._engine import WAL_CAP_BYTES, EngineLease, EngineSettings, connect, describe_error
from ._summary import SummaryRefresh
from ._upsert import Upserts, message_row, rounds
from ._url import StoreURL, check_sqlite_file, database_file, sqlite_path
from .schema import StoreTables, create_schema, tables_for

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.sql import Delete

__all__ = ["StoreWriter"]

logger = logging.getLogger("jobprogress.store")

_PRUNE_INTERVAL: Final = 60.0
"""Seconds between history retention passes of one writer."""

_WAL_CHECK_INTERVAL: Final = 10.0
"""Seconds between forced checkpoints while the WAL stays over its cap (a long reader pins it)."""

Clock = Callable[[], float]


_duckdb_locks: dict[str, threading.Lock] = {}
_duckdb_locks_guard = threading.Lock()


@contextlib.contextmanager
def _duckdb_lock(url: URL) -> Iterator[None]:
    """DuckDB: one write transaction at a time per database file in this process (DuckDB admits one
    process per file). Two writers refreshing one job's summary row would otherwise conflict
    ("Conflict on update") and fail; DuckDB commits writes one at a time anyway."""
    if not url.drivername.startswith("duckdb"):
        yield
        return
    path = os.path.abspath(database_file(url) or ":memory:")
    with _duckdb_locks_guard:
        lock = _duckdb_locks.setdefault(path, threading.Lock())
    with lock:
        yield


class StoreWriter:
    """Writes messages into a store: one transaction per batch, idempotent, thread- and process-safe.

    The connection is opened lazily, on the first write, and tables are created then if missing.
    After a ``fork`` the child builds its own engine; it never touches its parent's connections.

    Args:
        url: ``sqlite:///PATH``, ``duckdb:///PATH``, ``postgresql://…`` or ``postgresql+psycopg://…``;
            or a :class:`~jobprogress.store._url.StoreURL` a sink already parsed and checked.
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
        url: str | StoreURL,
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
        self._target = url if isinstance(url, StoreURL) else StoreURL.parse(url, "the {backend} store")
        self._backend = self._target.backend
        self._url = self._target.url
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
        self._lease = EngineLease(
            self._target, self._settings, holder="store writer", on_acquire=self._check_file
        )
        self._schema_ready = threading.Event()
        self._upserts = Upserts(self._tables, self._backend, bound_clock=clock is not None, history=history)
        self._attempts = AttemptPlanner(self._tables, self._backend)
        self._summary = SummaryRefresh(self._tables, self._backend)
        self._runs = RunCache()
        self._next_prune = 0.0
        self._next_wal_check = 0.0

    def prepare(self, dialect_class: Any) -> None:
        """Compile this writer's statements for ``dialect_class`` once, loading what compiling needs.

        Sinks call it at configure time so a sender thread's first write imports nothing.
        """
        dialect = dialect_class()
        self._upserts.prepare(dialect)
        self._attempts.prepare(dialect)
        self._summary.prepare(dialect)

    @property
    def url(self) -> str:
        """The store URL with any password hidden."""
        return self._target.shown

    # -- engine -----------------------------------------------------------------------------------

    def _engine(self) -> Engine:
        return self._lease.engine()

    def _check_file(self) -> None:
        if self._backend == "sqlite":
            check_sqlite_file(self._url, must_exist=False)

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
                raise StoreSchemaError(
                    f"cannot create the progress tables: {describe_error(exc, self._target)}"
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
        upserts = self._upserts
        try:
            with _duckdb_lock(self._url), connect(engine, read=False) as connection:
                self._summary.lock(connection, [row["job_id"] for row in rows])
                learned = self._attempts.assign(connection, rows, self._runs)
                if self._backend == "duckdb":
                    # DuckDB refuses to update one row twice in a statement: one statement per round
                    # of distinct keys, rounds in seq order (rows are sorted by key, then seq).
                    for round_rows in rounds(rows):
                        connection.execute(upserts.multi_row_upsert(round_rows), params)
                else:
                    connection.execute(upserts.upsert, rows)
                # The summary rows of the batch's jobs, from their rows as this transaction left them.
                self._summary.run(connection, [row["job_id"] for row in rows])
                if upserts.history_insert is not None:
                    history = [row if row["type"] == "heartbeat" else {**row, "status": None} for row in rows]
                    if self._backend == "duckdb":
                        for round_rows in rounds(history):
                            connection.execute(upserts.multi_row_history(round_rows), params)
                    else:
                        connection.execute(upserts.history_insert, history)
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._target)) from exc
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
            raise StoreError(describe_error(exc, self._target)) from exc
        if row is None:
            return None
        return int(row.done or 0), int(row.seq)

    def close(self) -> None:
        """Release this writer's hold on the shared engine; idempotent."""
        self._lease.close()

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
                delete(history).where(
                    history.c.seen_at < self._upserts.now() - literal(self._history_max_age)
                )
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
            raise StoreError(describe_error(exc, self._target)) from exc

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
