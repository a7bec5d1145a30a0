"""The Jobs read side: per-job aggregates over ``{prefix}job_progress``, judged on the store's clock.

:meth:`ProgressStore.jobs` is one statement: a grouped query picks the page of jobs (state, liveness
and ordering are decided in SQL, so filters and ``limit`` agree), joined back to the rows of exactly
those jobs; the whole, unfiltered list needs no grouping and reads the rows directly. Either way only
the rows of each job's newest attempt take part (:meth:`ProgressStore.attempts` reads the others).
The store's clock is read once per call, so every row is judged against the same instant.
:mod:`._aggregate` then folds each job's rows into a :class:`~jobprogress.store.views.JobView` by the
rules of DESIGN §6.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from jobprogress._states import JOB_STATES, LOST, MAX_COUNT, MAX_ID_LENGTH, RUNNING, STALLED, STATUS_FILTERS
from jobprogress.errors import ConfigurationError, StoreError
from jobprogress.store._aggregate import ViewCache, fold, fold_attempts, fold_job, gc_paused, plain_rows
from jobprogress.store._engine import EngineLease, EngineSettings, connect, describe_error, now_sql
from jobprogress.store._pages import PageQueries, PageRequest
from jobprogress.store._sql import JobQueries
from jobprogress.store._url import StoreURL, check_sqlite_file, database_file
from jobprogress.store.schema import (
    ATTEMPTS_VERSION,
    SUMMARY_VERSION,
    check_version,
    read_schema_version,
    tables_for,
)
from jobprogress.store.views import JobView

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql import Select

    from jobprogress.store.writer import Clock

__all__ = ["STATUS_FILTERS", "ProgressStore"]

_CACHE_JOBS = 20_000
"""Jobs whose last folded rows and view a store keeps, so unchanged jobs are not folded again."""


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


def _check_window(active_within: float | None) -> None:
    if active_within is not None and (
        isinstance(active_within, bool)
        or not isinstance(active_within, (int, float))
        or not 0 <= active_within < math.inf  # NaN fails too
    ):
        raise ConfigurationError(
            f"active_within must be a finite number of seconds >= 0, got {active_within!r}"
        )


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
        self._target = StoreURL.parse(url, "reading the {backend} store")
        self._backend = self._target.backend
        self._url = self._target.url
        self._tables = tables_for(table_prefix)
        self._sql = JobQueries(self._tables)
        self._pages = PageQueries(self._tables, self._sql)
        self._stall_after = float(stall_after)
        self._clock = clock
        self._settings = EngineSettings(connect_timeout=connect_timeout, statement_timeout=statement_timeout)
        self._check_file()
        self._lease = EngineLease(self._target, self._settings, holder="progress store")
        self._version_checked = False
        self._has_attempts = False
        self._has_summary = False
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
        after: str | None = None,
        search: str | None = None,
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
            after: A keyset cursor: only the jobs after this job id in this order (the last job of
                the previous page), so a deep page costs what the first does. A job no longer in
                the store gives an empty page. Needs schema version 4 (any writer of this release
                migrates an older store).
            search: Keep jobs whose id holds this text, ignoring case (the database's lowering: ASCII
                letters only on SQLite). ``%``, ``_`` and ``\\`` are plain characters, not wildcards.

        Raises:
            ConfigurationError: an unknown status, a negative limit, offset or window, or a search
                that is not a string, holds NUL or is longer than a job id.
            StoreError: the store could not be read, or ``after`` was given for a store of schema
                version 3 or older.
        """
        if after is not None and not isinstance(after, str):
            raise ConfigurationError(f"after must be a job id (a string), not {type(after).__name__}")
        if search is not None and not isinstance(search, str):
            raise ConfigurationError(f"search must be a string, not {type(search).__name__}")
        if search is not None and ("\x00" in search or len(search) > MAX_ID_LENGTH):
            raise ConfigurationError(
                f"search must be at most {MAX_ID_LENGTH} characters without NUL (a job id's limits), "
                f"got {search[:40]!r}{'...' if len(search) > 40 else ''}"
            )
        statuses = _names("status", status, STATUS_FILTERS)
        kinds = _names("kind", kind, None)
        for name, count in (("limit", limit), ("offset", offset)):
            if count is not None and (type(count) is not int or not 0 <= count <= MAX_COUNT):
                raise ConfigurationError(f"{name} must be an integer from 0 to {MAX_COUNT}, got {count!r}")
        _check_window(active_within)
        if statuses == [] or kinds == [] or limit == 0:
            return []
        request = PageRequest(
            statuses=None if statuses is None else tuple(statuses),
            kinds=None if kinds is None else tuple(kinds),
            active_within=active_within,
            search=search,
            limit=limit,
            offset=offset,
            after=after,
        )
        return self._run(lambda attempts: self._statement(attempts, request))

    def iter_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        limit: int | None = None,
        batch: int = 500,
    ) -> Iterator[JobView]:
        """Jobs as they arrive from the database, in the CLI's display order, memory flat in their number.

        The order is that of ``jobprogress jobs``: failed, lost, stalled, running (by job id), then
        succeeded and cancelled; within each state but running, the most recently seen first. Rows
        come from a server-side cursor ``batch`` at a time and each job is folded as its last row
        arrives, so a list of 100,000 jobs holds one batch, not the list. The connection stays open
        until the iterator is exhausted or closed.

        Args:
            status: As :meth:`jobs`.
            kind: As :meth:`jobs`.
            limit: At most this many jobs (None: all).
            batch: Rows fetched per round trip.

        Raises:
            ConfigurationError: an unknown status, or a bad limit or batch.
            StoreError: the store could not be read.
        """
        statuses = _names("status", status, STATUS_FILTERS)
        kinds = _names("kind", kind, None)
        for name, count in (("limit", limit), ("batch", batch)):
            if count is not None and (type(count) is not int or not 0 <= count <= MAX_COUNT):
                raise ConfigurationError(f"{name} must be an integer from 0 to {MAX_COUNT}, got {count!r}")
        if statuses == [] or kinds == [] or limit == 0:
            return iter(())
        request = PageRequest(
            statuses=None if statuses is None else tuple(statuses),
            kinds=None if kinds is None else tuple(kinds),
            limit=limit,
            streamed=True,
        )
        return self._stream(lambda attempts: self._statement(attempts, request), max(batch, 1))

    def counts(
        self, *, kind: str | Iterable[str] | None = None, active_within: float | None = None
    ) -> dict[str, int]:
        """How many jobs are in each state, from one SQL aggregate (no job is read into Python).

        Args:
            kind: Count only jobs of these kinds.
            active_within: Count only jobs that sent a message within this many seconds (store clock).

        Returns:
            Every job state of :data:`~jobprogress._states.JOB_STATES`, in that order, with its count
            (0 included); the states are the words :attr:`JobView.state` shows.

        Raises:
            ConfigurationError: a kind is not a string, or the window is negative.
            StoreError: the store could not be read.
        """
        from sqlalchemy import func, select

        kinds = _names("kind", kind, None)
        _check_window(active_within)
        counts = dict.fromkeys(JOB_STATES, 0)
        if kinds == []:
            return counts

        def statement(attempts: bool) -> Select[Any]:
            if self._has_summary:
                return self._pages.counts(kinds=kinds, active_within=active_within)
            jobs, state, kind_matches = self._sql.judged(
                attempts, job_id=None, kinds=kinds, active_within=active_within
            )
            word = state.label("state")
            counted: Select[Any] = select(word, func.count().label("jobs"))  # type: ignore[assignment]
            return counted.select_from(jobs).where(*kind_matches).group_by(word)

        for row in self._rows(statement):
            if len(row) == 2:  # schema 3 and older: one row per state word
                counts[str(row[0])] += int(row[1])
                continue
            status, jobs, lost, not_live = row
            if status == RUNNING:  # lost <= not live <= jobs: running_live <= running_seen
                counts[LOST] += int(lost or 0)
                counts[STALLED] += int(not_live or 0) - int(lost or 0)
                counts[RUNNING] += int(jobs) - int(not_live or 0)
            else:
                counts[str(status)] += int(jobs)
        return counts

    def job(self, job_id: str) -> JobView | None:
        """One job, its newest attempt's aggregate and workers, or None when the store holds no row of it.

        Raises:
            StoreError: the store could not be read.
        """
        request = PageRequest(job_id=job_id)
        views = self._run(lambda attempts: self._statement(attempts, request))
        return views[0] if views else None

    def job_ids(self) -> list[str]:
        """Every job's id, in id order, without reading any job's rows into views (e.g. to suggest a
        close match for a mistyped id).

        Raises:
            StoreError: the store could not be read.
        """
        from sqlalchemy import select

        def statement(attempts: bool) -> Select[Any]:
            if self._has_summary:
                ids = self._tables.summary.c.job_id
                return select(ids).order_by(ids)
            ids = self._tables.progress.c.job_id
            return select(ids).distinct().order_by(ids)

        return [str(row[0]) for row in self._rows(statement)]

    def attempts(self, job_id: str) -> list[JobView]:
        """Every stored attempt of one job, newest first: one view each, aggregated over its workers.

        The first is what :meth:`job` returns. An attempt keeps only the rows no later run replaced: a
        worker that ran in attempts 1 and 2 under one worker id shows in attempt 2 alone (the history
        table, when enabled, keeps every message with its attempt).

        Returns:
            The views, empty when the store holds no row of the job.

        Raises:
            StoreError: the store could not be read.
        """
        from sqlalchemy import select

        def statement(attempts: bool) -> Select[Any]:
            return select(*self._sql.worker_columns(attempts)).where(self._tables.progress.c.job_id == job_id)

        return self._run(statement, by_attempt=True)

    def close(self) -> None:
        """Release this store's hold on the shared engine; idempotent."""
        self._lease.close()

    def __enter__(self) -> ProgressStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _statement(self, attempts: bool, request: PageRequest) -> Select[Any]:
        """The rows of a page: from the summary (schema 4), else by grouping the progress rows."""
        if self._has_summary:
            return self._pages.statement(request)
        if request.after is not None:
            raise StoreError(
                "jobs(after=...) needs the job summary of schema version 4; this store is older "
                "until a writer of this release writes to it (use offset= meanwhile)"
            )
        return self._sql.statement(attempts, request)

    def _engine(self) -> Engine:
        return self._lease.engine()

    def _check_file(self) -> None:
        if self._backend == "sqlite":
            check_sqlite_file(self._url, must_exist=True)
        elif self._backend == "duckdb":
            path = database_file(self._url)
            if path is not None and not os.path.exists(path):
                raise StoreError(f"DuckDB database {path!r} does not exist")

    def _run(
        self, statement_for: Callable[[bool], Select[Any]], *, by_attempt: bool = False
    ) -> list[JobView]:
        with gc_paused():
            # The rows are kept only as the next call's cache; unchanged jobs reuse their views.
            rows = self._rows(statement_for)
            if by_attempt:
                return fold_attempts(rows)
            views, fresh = fold(rows, self._views)
            # Keep the other queries' jobs too: a view polling a page and the actionable jobs
            # alternates two queries, and each would otherwise evict the other's views. Bounded: a
            # cache that would outgrow _CACHE_JOBS restarts from this call's jobs, and a call of more
            # jobs than that (a whole list, not what a view polls) leaves nothing cached.
            if len(self._views) + len(fresh) <= _CACHE_JOBS:
                self._views.update(fresh)
            else:
                self._views = fresh if len(fresh) <= _CACHE_JOBS else {}
            return views

    def _rows(self, statement_for: Callable[[bool], Select[Any]]) -> list[tuple[Any, ...]]:
        """The statement's rows as plain tuples (comparing them with the cache runs in C, unlike
        Row.__eq__); none when nothing was written yet."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        self._check_file()
        try:
            with connect(self._engine(), read=True) as connection:
                params = self._prepare(connection)
                if params is None:
                    return []
                statement = statement_for(self._has_attempts)
                return plain_rows(connection.execute(statement, params))
        except DBAPIError as exc:
            try:
                with connect(self._engine(), read=True) as connection:
                    missing = not inspect(connection).has_table(self._tables.progress.name)
            except SQLAlchemyError:
                missing = False
            if missing:
                return []
            raise StoreError(describe_error(exc, self._target)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._target)) from exc

    def _stream(self, statement_for: Callable[[bool], Select[Any]], batch: int) -> Iterator[JobView]:
        from sqlalchemy.exc import SQLAlchemyError

        self._check_file()
        try:
            with connect(self._engine(), read=True) as connection:
                params = self._prepare(connection)
                if params is None:
                    return
                statement = statement_for(self._has_attempts)
                result = connection.execution_options(stream_results=True, yield_per=batch).execute(
                    statement, params
                )
                group: list[tuple[Any, ...]] = []
                for row in result:
                    if group and row[0] != group[0][0]:
                        yield fold_job(group)
                        group = []
                    group.append(tuple(row))
                if group:
                    yield fold_job(group)
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._target)) from exc

    def _prepare(self, connection: Connection) -> dict[str, float] | None:
        """The query's clock parameters, after the version check; None when no tables exist yet."""
        from sqlalchemy import select

        if not self._version_checked:
            if not self._tables_exist(connection):
                return None  # nothing written yet: no jobs
            self._version_checked = True
        if not self._has_summary:
            # Tables of schema version 1 get the column from the first writer of this release;
            # until then every row is attempt 1. The summary comes with version 4: until a writer of
            # this release migrates the tables, pages group the progress rows.
            version = read_schema_version(connection, self._tables)
            check_version(version, self._tables.progress.name)
            self._has_attempts = version is None or version >= ATTEMPTS_VERSION
            self._has_summary = version is not None and version >= SUMMARY_VERSION
        if self._clock is not None:
            now = float(self._clock())
        else:
            now = float(connection.execute(select(now_sql(self._backend))).scalar_one())
        return {"store_now": now, "cutoff": now - self._stall_after}

    def _tables_exist(self, connection: Connection) -> bool:
        from sqlalchemy import inspect

        return bool(inspect(connection).has_table(self._tables.progress.name))
