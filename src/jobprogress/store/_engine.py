"""Engines for the store: URL rules, per-backend connection setup, one shared engine per URL and process.

Backends differ in how they must be driven, and this module is the only place that knows it:

* SQLite: WAL, ``busy_timeout``, ``BEGIN IMMEDIATE`` for every write transaction (a deferred
  transaction that reads and then writes fails at once with "database is locked", whatever the
  timeout), plain ``BEGIN`` for reads so a Jobs view never takes the write lock.
* Postgres (psycopg 3): pooled with pre-ping, bounded connect, statement and lock timeouts;
  ``postgresql://`` means psycopg 3, and query parameters such as ``options`` pass through untouched.
* DuckDB: one writing process per file. Connections are not pooled, so the file lock is held only
  while a batch is written; a conflict names the process that holds the lock.

Engines are cached per (URL, settings, process): stores for one URL share one engine, and a forked
child never reuses a connection its parent opened.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from jobprogress._forklock import ForkGate
from jobprogress.errors import ConfigurationError, MissingExtraError, StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "Backend",
    "EngineSettings",
    "acquire_engine",
    "backend_of",
    "connect",
    "describe_error",
    "now_sql",
    "parse_url",
    "release_engine",
    "safe_url",
]

Backend = Literal["sqlite", "postgresql", "duckdb"]

SQLITE_HEADER: Final = b"SQLite format 3\x00"
WAL_CAP_BYTES: Final = 64 * 1024 * 1024
"""Checkpoint (and truncate) the SQLite WAL once it passes this size."""

_READ_OPTION: Final = "jobprogress_read"

_DRIVERS: Final[dict[Backend, tuple[str, tuple[str, ...]]]] = {
    "sqlite": ("sql", ("sqlite3",)),
    "postgresql": ("postgres", ("psycopg",)),
    "duckdb": ("duckdb", ("duckdb", "duckdb_engine")),
}
"""Per backend: the extra that installs it, and the modules it needs besides SQLAlchemy."""


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


def _import_sqlalchemy(feature: str) -> None:
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(feature, "sql", exc.name or "sqlalchemy") from None


def backend_of(url: str) -> Backend:
    """The backend of a store URL, from its scheme.

    Raises:
        ConfigurationError: the scheme is not one of sqlite, duckdb, postgresql(+psycopg).
    """
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme == "duckdb":
        return "duckdb"
    if scheme in ("postgresql", "postgresql+psycopg"):
        return "postgresql"
    raise ConfigurationError(
        f"store URL {safe_text(str(url))!r} is not supported; use sqlite:///PATH, duckdb:///PATH, "
        "postgresql://... or postgresql+psycopg://..."
    )


def require_driver(backend: Backend, feature: str) -> None:
    """Raise :class:`MissingExtraError` when the backend's optional dependencies are missing."""
    import importlib.util

    extra, modules = _DRIVERS[backend]
    _import_sqlalchemy(feature)
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(feature, extra, module)


def parse_url(url: str) -> URL:
    """Parse and normalise a store URL: ``postgresql://`` becomes ``postgresql+psycopg://``.

    Raises:
        ConfigurationError: the URL cannot be parsed or names another driver.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    backend = backend_of(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"store URL {safe_text(url)!r} cannot be parsed: {exc}") from None
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_text(url: str) -> str:
    """A URL string with any password masked, for messages and logs."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def safe_url(url: URL) -> str:
    """Render a parsed URL with its password hidden."""
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        return database[5:].split("?", 1)[0]
    return database


def database_file(url: URL) -> str | None:
    """The file of a SQLite or DuckDB URL; None for in-memory databases and servers."""
    if url.drivername.startswith("sqlite"):
        return sqlite_path(url)
    if url.drivername.startswith("duckdb") and url.database and url.database != ":memory:":
        return url.database
    return None


def check_sqlite_file(url: URL, *, must_exist: bool) -> None:
    """Check a SQLite file without opening it: the directory exists, the file is a SQLite database.

    Raises:
        StoreError: the file is missing (when ``must_exist``), its directory is not a directory, or
            the file holds something other than a SQLite database.
    """
    path = sqlite_path(url)
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"cannot use SQLite database {path!r}: {directory!r} is not a directory")
    if not os.path.exists(path):
        if must_exist:
            raise StoreError(f"SQLite database {path!r} does not exist")
        return
    if os.path.isdir(path):
        raise StoreError(f"cannot use SQLite database {path!r}: it is a directory")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read SQLite database {path!r}: {exc.strerror or exc}") from None
    if header and header != SQLITE_HEADER:
        raise StoreError(f"{path!r} is not a SQLite database (its first bytes are not a SQLite header)")


EngineKey = tuple[str, str, EngineSettings, int]

_engines: dict[EngineKey, Engine] = {}
_users: dict[EngineKey, int] = {}
_engines_lock = threading.Lock()


def acquire_engine(url: URL, settings: EngineSettings) -> tuple[EngineKey, Engine]:
    """The shared engine of this process for ``url``; give it back with :func:`release_engine`.

    Stores and writers for one URL share one engine (and so one pool). DuckDB readers open the file
    read-write too: DuckDB refuses a second, differently configured handle on a file within one
    process, and a read-only handle would not let another process write meanwhile anyway.
    """
    backend = backend_of(url.drivername + "://")
    key: EngineKey = (url.render_as_string(hide_password=False), backend, settings, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(url, backend, settings)
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


def describe_error(exc: BaseException, url: URL) -> str:
    """A one-line, secret-free explanation of a database error, naming what to do where we know."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    where = safe_url(url)
    holder = _DUCKDB_HOLDER.search(str(exc))
    if holder:
        return (
            f"DuckDB file {url.database!r} is locked by another process "
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
