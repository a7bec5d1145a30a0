"""Engines for the store: per-backend connection setup, and one shared engine per URL, settings and process.

Backends differ in how they must be driven, and this module is the only place that knows it:

* SQLite: WAL, ``busy_timeout``, ``BEGIN IMMEDIATE`` for every write transaction (a deferred
  transaction that reads and then writes fails at once with "database is locked", whatever the
  timeout), plain ``BEGIN`` for reads so a Jobs view never takes the write lock.
* Postgres (psycopg 3): pooled with pre-ping, bounded connect, statement and lock timeouts;
  query parameters such as ``options`` pass through untouched.
* DuckDB: one writing process per file. Connections are not pooled, so the file lock is held only
  while a batch is written; a conflict names the process that holds the lock.

Engines are cached per (URL, settings, process): writers and stores for one URL hold an
:class:`EngineLease` on one engine, and a forked child never reuses a connection its parent opened.
URLs themselves are parsed and checked in :mod:`._url`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from jobprogress._forklock import ForkGate
from jobprogress.errors import StoreError

from ._url import Backend, StoreURL, sqlite_path

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "EngineLease",
    "EngineSettings",
    "acquire_engine",
    "connect",
    "describe_error",
    "now_sql",
    "release_engine",
]

WAL_CAP_BYTES: Final = 64 * 1024 * 1024
"""Checkpoint (and truncate) the SQLite WAL once it passes this size."""

_READ_OPTION: Final = "jobprogress_read"


@dataclass(frozen=True)
class EngineSettings:
    """Connection settings that shape an engine; engines are shared only between equal settings.

    Attributes:
        busy_timeout: SQLite: seconds a write waits for the lock before "database is locked".
        connect_timeout: Postgres: seconds to establish a connection.
        statement_timeout: Postgres: seconds a statement may run.
        lock_timeout: Postgres: seconds a statement may wait for a row or table lock.
    """

    busy_timeout: float = 5.0
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    lock_timeout: float = 5.0


EngineKey = tuple[str, str, EngineSettings, int]

_engines: dict[EngineKey, Engine] = {}
_users: dict[EngineKey, int] = {}
_engines_lock = threading.Lock()


def acquire_engine(target: StoreURL, settings: EngineSettings) -> tuple[EngineKey, Engine]:
    """The shared engine of this process for ``target``; give it back with :func:`release_engine`.

    Stores and writers for one URL share one engine (and so one pool). DuckDB readers open the file
    read-write too: DuckDB refuses a second, differently configured handle on a file within one
    process, and a read-only handle would not let another process write meanwhile anyway.
    """
    url = target.url
    key: EngineKey = (url.render_as_string(hide_password=False), target.backend, settings, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(url, target.backend, settings)
            _engines[key] = engine
        _users[key] = _users.get(key, 0) + 1
    return key, engine


def release_engine(key: EngineKey) -> None:
    """Give back an engine from :func:`acquire_engine`; the last user closes its connections."""
    with _engines_lock:
        users = _users.get(key, 0) - 1
        if users > 0:
            _users[key] = users
            return
        _users.pop(key, None)
        engine = _engines.pop(key, None)
    if engine is not None:
        # A key from before a fork belongs to the parent; never close the parent's connections.
        engine.dispose(close=key[3] == os.getpid())


def _after_fork_in_child() -> None:
    # The parent's pooled connections must never be used or closed by the child: drop them unclosed,
    # and forget the engines so the child builds its own.
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in list(_engines.values()):
        engine.dispose(close=False)
    _engines.clear()
    _users.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class EngineLease:
    """One holder's share of the shared engine for a URL: taken on first use, again after a fork.

    A writer or a store holds one lease. The first :meth:`engine` call acquires the engine of this
    process; a forked child acquires its own and leaves its parent's engine and connections alone;
    :meth:`close` gives the engine back once, after which :meth:`engine` raises.

    Args:
        target: The parsed store URL.
        settings: The connection settings; engines are shared only between equal settings.
        holder: What holds the lease, for the "is closed" message ("the store writer").
        on_acquire: Called before each acquisition (a writer checks its SQLite file there).
    """

    __slots__ = ("_closed", "_held", "_holder", "_lock", "_on_acquire", "_settings", "_target")

    def __init__(
        self,
        target: StoreURL,
        settings: EngineSettings,
        *,
        holder: str,
        on_acquire: Callable[[], None] | None = None,
    ) -> None:
        self._target = target
        self._settings = settings
        self._holder = holder
        self._on_acquire = on_acquire
        self._lock = threading.Lock()  # the collector reads from several threads: acquire once
        self._held: tuple[EngineKey, Engine] | None = None
        self._closed = False

    @property
    def key(self) -> EngineKey | None:
        """The key of the engine held now, or None before the first use and after closing."""
        held = self._held
        return None if held is None else held[0]

    def engine(self) -> Engine:
        """The engine of this process, acquired on first use.

        Raises:
            StoreError: the lease was closed.
        """
        if self._closed:
            raise StoreError(f"the {self._holder} for {self._target.shown} is closed")
        held = self._held
        if held is not None and held[0][3] == os.getpid():
            return held[1]
        with self._lock:
            held = self._held
            if held is None or held[0][3] != os.getpid():
                # Forked (or first use): the parent's engine and its connections stay the parent's.
                self._held = None
                if self._on_acquire is not None:
                    self._on_acquire()
                held = self._held = acquire_engine(self._target, self._settings)
            return held[1]

    def close(self) -> None:
        """Give the engine back; idempotent."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, None
        if held is not None and held[0][3] == os.getpid():  # a parent's engine stays the parent's
            release_engine(held[0])


def _create_engine(url: URL, backend: Backend, settings: EngineSettings) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool, StaticPool

    if backend == "sqlite":
        memory = sqlite_path(url) is None
        engine = create_engine(
            url,
            connect_args={"timeout": settings.busy_timeout, "check_same_thread": False},
            # An in-memory database lives in its one connection; share it between threads.
            **({"poolclass": StaticPool} if memory else {"pool_size": 4, "max_overflow": 8}),
        )
        busy_ms = int(settings.busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the driver: we emit BEGIN ourselves (see _sqlite_begin).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if not memory:
                    _enable_wal(cursor, settings.busy_timeout)
                    cursor.execute("PRAGMA synchronous = NORMAL")
                    cursor.execute(f"PRAGMA journal_size_limit = {WAL_CAP_BYTES}")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # Writes take the lock up front, so they wait (busy_timeout) instead of failing when a
            # deferred read has to be upgraded; reads stay deferred so they never block writers.
            if connection.get_execution_options().get(_READ_OPTION):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, round(settings.connect_timeout))
        if "application_name" not in url.query:
            connect_args["application_name"] = "jobprogress"  # visible in pg_stat_activity
        user_options = str(url.query.get("options", ""))
        timeouts = {
            "statement_timeout": int(settings.statement_timeout * 1000),
            "lock_timeout": int(settings.lock_timeout * 1000),
        }
        # Our timeouts are set per connection, except those the URL's own options already set.
        wanted = {name: value for name, value in timeouts.items() if name not in user_options}
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=8,
            pool_timeout=settings.connect_timeout,
            pool_recycle=1800,
        )

        @event.listens_for(engine, "connect")
        def _postgres_connect(dbapi_connection: Any, _record: Any) -> None:
            if not wanted:
                return
            cursor = dbapi_connection.cursor()
            try:
                for name, value in wanted.items():
                    cursor.execute("SELECT set_config(%s, %s, false)", (name, f"{value}ms"))
            finally:
                cursor.close()
            dbapi_connection.commit()

        return engine

    # DuckDB: no pool, so the process-wide file lock is held only while a connection is open.
    return create_engine(url, poolclass=NullPool)


def _enable_wal(cursor: Any, timeout: float) -> None:
    """Switch a database to WAL (persistent, so usually a no-op read).

    Changing the journal mode needs an exclusive lock and, on a fresh file that several processes
    open at once, answers "database is locked" without consulting the busy handler: retry it here,
    for up to ``timeout`` seconds, as busy_timeout would.
    """
    import sqlite3
    import time

    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# SQLite records the locks a process holds in process-wide memory. A child forked while a connection of
# its parent held the write lock inherits that record without the lock, and every connection the child
# opens then finds the database "locked" for ever. So a fork waits until no SQLite transaction is open in
# this process (they last milliseconds), and the child starts with a fresh gate.
_sqlite_write_gate = ForkGate()


@contextmanager
def connect(engine: Engine, *, read: bool) -> Iterator[Connection]:
    """A transaction on ``engine``: ``BEGIN IMMEDIATE`` on SQLite unless ``read``."""
    if engine.dialect.name == "sqlite":  # reads too: opening a connection may switch the journal to WAL
        with _sqlite_write_gate, _transaction(engine, read=read) as connection:
            yield connection
    else:
        with _transaction(engine, read=read) as connection:
            yield connection


@contextmanager
def _transaction(engine: Engine, *, read: bool) -> Iterator[Connection]:
    with engine.connect() as connection:
        if read:
            connection = connection.execution_options(**{_READ_OPTION: True})
        with connection.begin():
            yield connection


def now_sql(backend: Backend) -> ColumnElement[float]:
    """The store's clock in SQL, as POSIX seconds: the database server's clock, never a worker's."""
    from sqlalchemy import Float, literal_column

    if backend == "sqlite":
        # julianday('now') is the OS clock seen by SQLite itself (not Python's time.time).
        expression = "((julianday('now') - 2440587.5) * 86400.0)"
    elif backend == "postgresql":
        expression = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)"
    else:
        expression = "(CAST(epoch_us(now()) AS DOUBLE) / 1000000.0)"
    return literal_column(expression, Float())


_DUCKDB_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def describe_error(exc: BaseException, target: StoreURL) -> str:
    """A one-line, secret-free explanation of a database error, naming what to do where we know."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    where = target.shown
    holder = _DUCKDB_HOLDER.search(str(exc))
    if holder:
        return (
            f"DuckDB file {target.url.database!r} is locked by another process "
            f"(PID {holder['pid']}, {holder['program']}); DuckDB allows one writing process per file, "
            "so use SQLite or Postgres (or the HTTP collector) when several processes write"
        )
    lowered = first.lower()
    if "database is locked" in lowered:
        return f"{where}: database is locked (another writer held the lock past busy_timeout)"
    if "database or disk is full" in lowered:
        return f"{where}: database or disk is full"
    if "file is not a database" in lowered:
        return f"{where}: the file is not a SQLite database"
    return f"{where}: {type(getattr(exc, 'orig', None) or exc).__name__}: {first}"
