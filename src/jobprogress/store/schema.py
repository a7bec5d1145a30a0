"""The store's tables: ``{prefix}job_progress``, its optional history, and the schema version.

``{prefix}job_progress`` (spec Option B) holds one row per (job, worker). Besides the envelope it keeps
two last-applied sequence numbers, one for the status fields and one for the progress fields, so a
final state split into a heartbeat and a progress update lands whichever arrives first.

Times are stored as POSIX seconds (double precision) so that liveness arithmetic is the same SQL on
SQLite, DuckDB and Postgres: ``updated_at`` is the worker's clock as the message stamped it;
``started_at``, ``progressed_at`` and ``seen_at`` are the store's clock.

Tables are created on first write, safely when many processes race to create them, and the version
row lets a later release migrate them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from jobprogress._forklock import ForkSafeLock
from jobprogress._states import MAX_ID_LENGTH, MAX_KIND_LENGTH, MAX_UNIT_LENGTH
from jobprogress.errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from sqlalchemy import Column, MetaData, Table
    from sqlalchemy.engine import Connection, Dialect, Engine
    from sqlalchemy.schema import SchemaItem
    from sqlalchemy.sql.compiler import DDLCompiler
    from sqlalchemy.sql.ddl import BaseDDLElement

    from ._url import Backend

__all__ = ["SCHEMA_VERSION", "StoreTables", "create_schema", "read_schema_version", "tables_for"]

SCHEMA_VERSION: Final = 4
"""Version of the tables this release writes; a store written by a newer release is refused.

Version 2 added the ``attempt`` column to the progress and history tables; version 3 the
``{prefix}jobs`` view (:mod:`._view`); version 4 the writer-maintained ``{prefix}job_summary``
table (:mod:`._summary`), one row per job that the read side pages, filters and counts on."""

ATTEMPTS_VERSION: Final = 2
"""The first schema version whose tables have the ``attempt`` column."""

SUMMARY_VERSION: Final = 4
"""The first schema version whose writers maintain ``{prefix}job_summary``."""

SCHEMA_COMPONENT: Final = "job_progress"

_PREFIX: Final = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]{0,31})?")

ID_LENGTH: Final = MAX_ID_LENGTH


@dataclass(frozen=True)
class StoreTables:
    """The tables of one table prefix."""

    prefix: str
    metadata: MetaData
    progress: Table
    history: Table
    version: Table
    summary: Table


_cache: dict[str, StoreTables] = {}
_cache_lock = ForkSafeLock()  # a fork while another thread built tables must not leave it held


def check_prefix(prefix: str) -> str:
    """A table prefix: up to 32 ASCII letters, digits and underscores, not starting with a digit.

    Raises:
        ConfigurationError: the prefix could not be spliced into a table name safely.
    """
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"table_prefix {prefix!r} must be at most 32 ASCII letters, digits and underscores, "
            "not starting with a digit"
        )
    return prefix


def tables_for(prefix: str) -> StoreTables:
    """The (cached) table definitions for ``prefix``."""
    tables = _cache.get(prefix)
    if tables is not None:
        return tables
    with _cache_lock:
        tables = _cache.get(prefix)
        if tables is None:
            tables = _define(check_prefix(prefix))
            _cache[prefix] = tables
    return tables


def _not_duckdb(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: Dialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    return dialect.name != "duckdb"


def _attempt_column() -> Column[int]:
    from sqlalchemy import Column, Integer, text

    return Column(
        "attempt",
        Integer,
        nullable=False,
        server_default=text("1"),
        comment="attempt of the job this row's run belongs to (1, 2, …)",
    )


def _message_columns() -> list[Column[Any]]:
    """The envelope's columns and the error, alike in the progress and the history table."""
    from sqlalchemy import BigInteger, Column, Float, String, Text

    return [
        Column("unit", String(MAX_UNIT_LENGTH), nullable=True),
        Column("done", BigInteger, nullable=True),
        Column("total", BigInteger, nullable=True),
        Column("throughput", Float(precision=53), nullable=True),
        Column("eta_seconds", BigInteger, nullable=True),
        Column("payload_json", Text, nullable=True),
        Column("error", Text, nullable=True),
    ]


def _define(prefix: str) -> StoreTables:
    from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

    metadata = MetaData()

    def timestamp(name: str, comment: str) -> Column[float]:
        return Column(name, Float(precision=53), nullable=True, comment=comment)

    progress = Table(
        f"{prefix}job_progress",
        metadata,
        Column("job_id", String(ID_LENGTH), primary_key=True),
        Column("worker_id", String(ID_LENGTH), primary_key=True),
        Column("kind", String(MAX_KIND_LENGTH), nullable=True),
        Column("status", String(16), nullable=False),
        *_message_columns(),
        Column("run_id", String(ID_LENGTH), nullable=False),
        _attempt_column(),
        Column("seq", BigInteger, nullable=False, comment="highest seq applied"),
        Column("status_seq", BigInteger, nullable=False, comment="seq of the applied status; -1 if none"),
        Column("progress_seq", BigInteger, nullable=False, comment="seq of the applied envelope; -1 if none"),
        timestamp("started_at", "store clock: current run_id first seen"),
        timestamp("updated_at", "worker clock: as the last applied message stamped it"),
        timestamp("progressed_at", "store clock: last change of done, total, status or run"),
        timestamp("seen_at", "store clock: last accepted message"),
        # Without a rowid SQLite clusters rows on (job_id, worker_id), so the Jobs list groups them
        # in key order with no temporary sort.
        sqlite_with_rowid=False,
    )
    # Serve the Jobs list: "active within", and liveness scans of recent rows. DuckDB scans columns
    # fast without them, and its ART indexes only slow updates down.
    Index(f"ix_{prefix}job_progress_seen_at", progress.c.seen_at, progress.c.job_id).ddl_if(
        callable_=_not_duckdb
    )
    Index(f"ix_{prefix}job_progress_status", progress.c.status, progress.c.job_id).ddl_if(
        callable_=_not_duckdb
    )

    history = Table(
        f"{prefix}job_progress_history",
        metadata,
        Column("job_id", String(ID_LENGTH), primary_key=True),
        Column("worker_id", String(ID_LENGTH), primary_key=True),
        Column("seq", BigInteger, primary_key=True),
        Column("type", String(16), nullable=False),
        Column("run_id", String(ID_LENGTH), nullable=False),
        _attempt_column(),
        Column("kind", String(MAX_KIND_LENGTH), nullable=True),
        Column("status", String(16), nullable=True),
        *_message_columns(),
        timestamp("updated_at", "worker clock"),
        timestamp("seen_at", "store clock: when the message was stored"),
    )
    Index(f"ix_{prefix}job_progress_history_seen_at", history.c.seen_at).ddl_if(callable_=_not_duckdb)

    version = Table(
        f"{prefix}job_progress_schema",
        metadata,
        Column("component", String(64), primary_key=True),
        Column("version", Integer, nullable=False),
    )
    from ._summary import summary_table

    summary = summary_table(prefix, metadata, _not_duckdb)
    return StoreTables(
        prefix=prefix, metadata=metadata, progress=progress, history=history, version=version, summary=summary
    )


def read_schema_version(connection: Connection, tables: StoreTables) -> int | None:
    """The stored schema version, or None when the version table or its row does not exist."""
    from sqlalchemy import inspect, select

    if not inspect(connection).has_table(tables.version.name):
        return None
    row = connection.execute(
        select(tables.version.c.version).where(tables.version.c.component == SCHEMA_COMPONENT)
    ).first()
    return None if row is None else int(row[0])


def check_version(version: int | None, url_text: str) -> None:
    """Refuse a store written by a newer release, whose tables this one may misread."""
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"{url_text} holds jobprogress tables of schema version {version}; this release knows "
            f"version {SCHEMA_VERSION}: upgrade jobprogress"
        )


Migration = Callable[["Connection", StoreTables], None]


def _add_attempt(connection: Connection, tables: StoreTables) -> None:
    """Version 1 to 2: the ``attempt`` column, 1 for every row stored before attempts were counted.

    Runs inside the creating transaction, under the lock that serializes creators, so only one of
    several racing processes adds the column; a column that is already there (added by hand, say) is
    left alone.
    """
    from sqlalchemy import inspect, text

    inspector = inspect(connection)
    dialect = connection.dialect.name
    for table in (tables.progress, tables.history):
        if not inspector.has_table(table.name):
            continue  # whoever creates it later creates it with the column
        if dialect == "sqlite":
            present = any(column["name"] == "attempt" for column in inspector.get_columns(table.name))
        elif dialect == "duckdb":  # duckdb-engine's get_columns needs Postgres catalogs DuckDB lacks
            present = bool(
                connection.execute(
                    text(
                        "SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = :table AND column_name = 'attempt'"
                    ),
                    {"table": table.name},
                ).scalar_one()
            )
        else:
            present = False  # Postgres skips an existing column itself (IF NOT EXISTS)
        if present:
            continue
        name = connection.dialect.identifier_preparer.quote(table.name)
        if_missing = "IF NOT EXISTS " if dialect == "postgresql" else ""
        # DuckDB before 2.0 cannot add a column with a constraint; its default fills every row anyway.
        not_null = "" if dialect == "duckdb" else "NOT NULL "
        connection.execute(
            text(f"ALTER TABLE {name} ADD COLUMN {if_missing}attempt INTEGER {not_null}DEFAULT 1")
        )


def _create_view(connection: Connection, tables: StoreTables) -> None:
    """Version 2 to 3: the ``{prefix}jobs`` view, (re)created under the lock that serializes creators."""
    from ._view import create_jobs_view

    if _has_table(connection, tables.progress.name):
        create_jobs_view(connection, tables)


def _create_summary(connection: Connection, tables: StoreTables) -> None:
    """Version 3 to 4: ``{prefix}job_summary``, filled from the progress rows in the same transaction,
    and the ``{prefix}jobs`` view again (its ETA follows :mod:`._eta` and it shows ``eta_reason``).

    Runs under the lock that serializes creators, so racing processes backfill it once.
    """
    from ._summary import backfill

    tables.metadata.create_all(connection, tables=[tables.summary], checkfirst=True)
    if _has_table(connection, tables.progress.name):
        backfill(connection, tables)
        _create_view(connection, tables)  # version 4's view: the sharded-job ETA and its reason


def drop_schema(engine: Engine, prefix: str = "cf_") -> None:
    """Drop the ``{prefix}jobs`` view and every table of ``prefix`` (tests, benchmarks, clean-ups).

    The view depends on the progress table, so it goes first.
    """
    from sqlalchemy import text

    from ._view import view_name

    tables = tables_for(prefix)
    with engine.begin() as connection:
        name = connection.dialect.identifier_preparer.quote(view_name(tables))
        connection.execute(text(f"DROP VIEW IF EXISTS {name}"))
    tables.metadata.drop_all(engine)


def _has_table(connection: Connection, name: str) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(connection).has_table(name))


# Migrations from version N to N+1, run in order inside the creating transaction.
MIGRATIONS: dict[int, Migration] = {1: _add_attempt, 2: _create_view, 3: _create_summary}


def migrate(connection: Connection, tables: StoreTables, version: int) -> None:
    """Bring tables of ``version`` up to :data:`SCHEMA_VERSION` and record it.

    Raises:
        StoreError: no migration is known from some version on the way.
    """
    from sqlalchemy import update

    for step in range(version, SCHEMA_VERSION):
        migration = MIGRATIONS.get(step)
        if migration is None:
            raise StoreError(f"no migration of the progress tables from schema version {step} to {step + 1}")
        migration(connection, tables)
    connection.execute(
        update(tables.version)
        .where(tables.version.c.component == SCHEMA_COMPONENT)
        .values(version=SCHEMA_VERSION)
    )


def _is_already_exists(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        "already exists" in text
        or "duplicate key" in text
        or "unique constraint" in text
        or "duplicate column" in text  # SQLite, when another process added ``attempt`` first
        or "write-write conflict" in text  # DuckDB, when another thread of the process migrated first
        or "pg_type_typname_nsp_index" in text
    )


def _schema_current(engine: Engine, tables: StoreTables, wanted: list[Any]) -> bool:
    """Whether every wanted table exists at the current version, checked in a read transaction."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from ._engine import connect

    try:
        with connect(engine, read=True) as connection:
            inspector = inspect(connection)
            if not all(inspector.has_table(table.name) for table in wanted):
                return False
            version = read_schema_version(connection, tables)
    except SQLAlchemyError:
        return False  # let the writing path find out, and report, what is wrong
    check_version(version, tables.prefix + "job_progress")
    return version == SCHEMA_VERSION


_CREATE_ATTEMPTS: Final = 10
"""Tries of the creating transaction: on DuckDB each racer that loses a catalog write (the ALTER of
version 2, the view of version 3, the summary table of version 4) tries again, and with four racers
one may lose several times in a row."""


def create_schema(engine: Engine, backend: Backend, tables: StoreTables, *, history: bool) -> None:
    """Create the tables if missing and record the version; safe when several processes race.

    Postgres serializes creators with a transaction-level advisory lock; SQLite with the write lock
    that ``BEGIN IMMEDIATE`` takes; a creator that still loses a race ("already exists") checks again.

    Raises:
        StoreError: the store was written by a newer release.
    """
    from sqlalchemy import insert, text
    from sqlalchemy.exc import DBAPIError

    from ._engine import connect

    wanted = [tables.progress, tables.version, tables.summary] + ([tables.history] if history else [])
    if _schema_current(engine, tables, wanted):
        return  # the usual case: no write lock, so many processes starting at once do not queue for it
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with connect(engine, read=False) as connection:
                if backend == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                        {"name": f"jobprogress:{tables.prefix}"},
                    )
                version = read_schema_version(connection, tables)
                check_version(version, tables.prefix + "job_progress")
                tables.metadata.create_all(connection, tables=wanted, checkfirst=True)
                if version is None:
                    _create_view(connection, tables)
                    _create_summary(connection, tables)  # empty, unless rows predate the version table
                    connection.execute(
                        insert(tables.version).values(component=SCHEMA_COMPONENT, version=SCHEMA_VERSION)
                    )
                elif version < SCHEMA_VERSION:
                    migrate(connection, tables, version)
            return
        except DBAPIError as exc:
            if attempt == _CREATE_ATTEMPTS - 1 or not _is_already_exists(exc):
                raise
