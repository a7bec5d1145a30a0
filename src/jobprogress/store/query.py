"""The Jobs read side: per-job aggregates over ``{prefix}job_progress``, judged on the store's clock.

:meth:`ProgressStore.jobs` is one statement: a grouped query picks the page of jobs (state, liveness
and ordering are decided in SQL, so filters and ``limit`` agree), joined back to the rows of exactly
those jobs; the whole, unfiltered list needs no grouping and reads the rows directly. The store's clock
is read once per call, so every row is judged against the same instant. :mod:`._aggregate` then folds
each job's rows into a :class:`~jobprogress.store.views.JobView` by the rules of DESIGN §6.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from jobprogress._validate import MAX_COUNT
from jobprogress.errors import ConfigurationError, StoreError
from jobprogress.store._aggregate import WORKER_COLUMNS, ViewCache, fold, gc_paused
from jobprogress.store._engine import (
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
)
from jobprogress.store.schema import check_version, read_schema_version, tables_for
from jobprogress.store.views import JOB_STATUSES, JobView

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.elements import ColumnElement

    from jobprogress.store.writer import Clock

__all__ = ["STATUS_FILTERS", "ProgressStore"]

STATUS_FILTERS: Final = (*JOB_STATUSES, "stalled", "lost")
"""What ``jobs(status=...)`` accepts: a job's state, the word a Jobs view shows for it."""


def _names(what: str, value: str | Iterable[str] | None, allowed: tuple[str, ...] | None) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"{what} filter values must be strings, not {type(name).__name__}")
        if allowed is not None and name not in allowed:
            raise ConfigurationError(f"unknown {what} {name!r}; expected one of {', '.join(allowed)}")
    return names


class ProgressStore:
    """Reads jobs from a store; never creates a database or a table.

    Usable as a context manager. Stores for one URL share one engine, so polling never leaks
    connections.

    Args:
        url: ``sqlite:///PATH``, ``duckdb:///PATH``, ``postgresql://…`` or ``postgresql+psycopg://…``.
        stall_after: Seconds (on the store's clock) after which a running worker with no message is
            ``lost``, and one with messages but no progress is ``stalled``.
        table_prefix: Prefix of the table names, as the writers use it.
        clock: The store's clock as POSIX seconds. None (the default) uses the database server's
            clock; tests pass a fake one.
        connect_timeout: Postgres: seconds to connect.
        statement_timeout: Postgres: seconds a query may run.

    Raises:
        ConfigurationError: the URL, prefix or ``stall_after`` is not valid.
        MissingExtraError: the backend's optional dependencies are not installed.
        StoreError: the SQLite or DuckDB file does not exist or is not a database.
    """

    def __init__(
        self,
        url: str,
        *,
        stall_after: float = 30.0,
        table_prefix: str = "cf_",
        clock: Clock | None = None,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
    ) -> None:
        if isinstance(stall_after, bool) or not isinstance(stall_after, (int, float)):
            raise ConfigurationError(f"stall_after must be a number of seconds, not {stall_after!r}")
        if not math.isfinite(stall_after) or stall_after <= 0:
            raise ConfigurationError(f"stall_after must be a positive number of seconds, got {stall_after!r}")
        self._backend = backend_of(url)
        require_driver(self._backend, f"reading the {self._backend} store")
        self._url = parse_url(url)
        self._tables = tables_for(table_prefix)
        self._stall_after = float(stall_after)
        self._clock = clock
        self._settings = EngineSettings(connect_timeout=connect_timeout, statement_timeout=statement_timeout)
        self._check_file()
        self._lease: tuple[EngineKey, Engine] | None = None
        self._lock = threading.Lock()
        self._version_checked = False
        self._closed = False
        self._views: ViewCache = {}

    @property
    def stall_after(self) -> float:
        """Seconds without a message (lost) or without progress (stalled) before a worker is flagged."""
        return self._stall_after

    # -- public API -------------------------------------------------------------------------------

    def jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        active_within: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobView]:
        """Jobs, most recently active first (store clock: last message received), then by job id.

        Args:
            status: Keep jobs in these states: ``running`` (and neither stalled nor lost),
                ``stalled``, ``lost``, ``succeeded``, ``failed`` or ``cancelled`` — the word
                :attr:`JobView.state` shows, so each job matches exactly one.
            kind: Keep jobs of these kinds.
            active_within: Keep jobs that sent a message within this many seconds (store clock).
            limit: At most this many jobs (None: all).
            offset: Skip this many jobs first (paging).

        Raises:
            ConfigurationError: an unknown status, or a negative limit, offset or window.
            StoreError: the store could not be read.
        """
        statuses = _names("status", status, STATUS_FILTERS)
        kinds = _names("kind", kind, None)
        for name, count in (("limit", limit), ("offset", offset)):
            if count is not None and (type(count) is not int or not 0 <= count <= MAX_COUNT):
                raise ConfigurationError(f"{name} must be an integer from 0 to {MAX_COUNT}, got {count!r}")
        if active_within is not None and (
            isinstance(active_within, bool)
            or not isinstance(active_within, (int, float))
            or not 0 <= active_within < math.inf  # NaN fails too
        ):
            raise ConfigurationError(
                f"active_within must be a finite number of seconds >= 0, got {active_within!r}"
            )
        if statuses == [] or kinds == [] or limit == 0:
            return []
        statement = self._statement(
            job_id=None,
            statuses=statuses,
            kinds=kinds,
            active_within=active_within,
            limit=limit,
            offset=offset,
        )
        return self._run(statement)

    def job(self, job_id: str) -> JobView | None:
        """One job with its per-worker rows, or None when the store holds no row of it.

        Raises:
            StoreError: the store could not be read.
        """
        statement = self._statement(
            job_id=job_id, statuses=None, kinds=None, active_within=None, limit=None, offset=0
        )
        views = self._run(statement)
        return views[0] if views else None

    def close(self) -> None:
        """Release this store's hold on the shared engine; idempotent."""
        with self._lock:
            self._closed = True
            lease, self._lease = self._lease, None
        if lease is not None and lease[0][3] == os.getpid():
            release_engine(lease[0])

    def __enter__(self) -> ProgressStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the query --------------------------------------------------------------------------------

    def _now(self) -> ColumnElement[float]:
        from sqlalchemy import Float, bindparam

        # One reading of the store's clock per query, bound as a constant: every row of the result
        # is judged against the same instant, and the database need not evaluate a clock per row.
        return bindparam("store_now", type_=Float())

    def _statement(
        self,
        *,
        job_id: str | None,
        statuses: list[str] | None,
        kinds: list[str] | None,
        active_within: float | None,
        limit: int | None,
        offset: int,
    ) -> Select[Any]:
        from sqlalchemy import Float, and_, bindparam, case, func, literal, select

        table = self._tables.progress
        cutoff = bindparam("cutoff", type_=Float())
        running = table.c.status == "running"
        worker_lost = and_(running, table.c.seen_at < cutoff)
        worker_stalled = and_(running, table.c.seen_at >= cutoff, table.c.progressed_at < cutoff)

        worker_columns = (
            *(table.c[name] for name in WORKER_COLUMNS),
            case((worker_lost, 1), else_=0).label("worker_lost"),
            case((worker_stalled, 1), else_=0).label("worker_stalled"),
        )
        if (job_id, statuses, kinds, active_within, limit, offset) == (None, None, None, None, None, 0):
            # The whole list needs no grouping in SQL: every row is returned, and _fold derives each
            # job's status and order from its rows by the rules the page query applies.
            return select(*worker_columns)

        def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
            return func.sum(case((condition, 1), else_=0))

        grouped = select(
            table.c.job_id,
            count(table.c.status == "failed").label("n_failed"),
            count(running).label("n_running"),
            count(table.c.status == "cancelled").label("n_cancelled"),
            count(worker_lost).label("n_lost"),
            count(worker_stalled).label("n_stalled"),
            func.max(table.c.kind).label("kind"),
            func.max(table.c.seen_at).label("last_seen"),
        ).group_by(table.c.job_id)
        if job_id is not None:
            grouped = grouped.where(table.c.job_id == job_id)
        if active_within is not None:
            recent = table.alias("recent")
            grouped = grouped.where(
                table.c.job_id.in_(
                    select(recent.c.job_id).where(recent.c.seen_at >= self._now() - literal(active_within))
                )
            )
        jobs = grouped.subquery("jobs")
        status = case(
            (jobs.c.n_failed > 0, "failed"),
            (jobs.c.n_running > 0, "running"),
            (jobs.c.n_cancelled > 0, "cancelled"),
            else_="succeeded",
        )
        job_lost = and_(jobs.c.n_running > 0, jobs.c.n_lost == jobs.c.n_running)
        job_stalled = and_(
            jobs.c.n_running > 0,
            jobs.c.n_stalled > 0,
            jobs.c.n_lost + jobs.c.n_stalled == jobs.c.n_running,
        )
        state = case(
            (jobs.c.n_failed > 0, "failed"),
            (job_lost, "lost"),
            (job_stalled, "stalled"),
            else_=status,
        )
        page = select(jobs.c.job_id)
        if statuses is not None:
            page = page.where(state.in_(statuses))
        if kinds is not None:
            page = page.where(jobs.c.kind.in_(kinds))
        page = page.order_by(jobs.c.last_seen.desc(), jobs.c.job_id)
        if limit is not None:
            page = page.limit(limit)
        if offset:
            page = page.offset(offset)
        chosen = page.subquery("page")
        # No ORDER BY here: sorting the wide joined rows costs more than the query itself. _fold
        # orders the jobs (by the same key) and each job's workers in Python.
        return select(*worker_columns).join_from(chosen, table, table.c.job_id == chosen.c.job_id)

    def _engine(self) -> Engine:
        if self._closed:
            raise StoreError(
                f"the progress store for {self._url.render_as_string(hide_password=True)} is closed"
            )
        lease = self._lease
        if lease is not None and lease[0][3] == os.getpid():
            return lease[1]
        with self._lock:  # the collector reads from several threads: acquire the engine once
            lease = self._lease
            if lease is None or lease[0][3] != os.getpid():
                lease = acquire_engine(self._url, self._settings)
                self._lease = lease
            return lease[1]

    def _check_file(self) -> None:
        if self._backend == "sqlite":
            check_sqlite_file(self._url, must_exist=True)
        elif self._backend == "duckdb":
            path = database_file(self._url)
            if path is not None and not os.path.exists(path):
                raise StoreError(f"DuckDB database {path!r} does not exist")

    def _run(self, statement: Select[Any]) -> list[JobView]:
        from sqlalchemy import inspect, select
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        self._check_file()
        try:
            with connect(self._engine(), read=True) as connection:
                if not self._version_checked:
                    if not self._tables_exist(connection):
                        return []  # nothing written yet: no jobs
                    check_version(read_schema_version(connection, self._tables), self._tables.progress.name)
                    self._version_checked = True
                if self._clock is not None:
                    now = float(self._clock())
                else:
                    now = float(connection.execute(select(now_sql(self._backend))).scalar_one())
                params = {"store_now": now, "cutoff": now - self._stall_after}
                with gc_paused():
                    # The rows are kept only as the next call's cache; unchanged jobs reuse their views.
                    # Plain tuples: comparing them with the cache runs in C, unlike Row.__eq__.
                    rows = list(map(tuple, connection.execute(statement, params)))
                    views, self._views = fold(rows, self._views)
                    return views
        except DBAPIError as exc:
            try:
                with connect(self._engine(), read=True) as connection:
                    missing = not inspect(connection).has_table(self._tables.progress.name)
            except SQLAlchemyError:
                missing = False
            if missing:
                return []
            raise StoreError(describe_error(exc, self._url)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._url)) from exc

    def _tables_exist(self, connection: Connection) -> bool:
        from sqlalchemy import inspect

        return bool(inspect(connection).has_table(self._tables.progress.name))
