"""Where the views read jobs from: a :class:`~jobprogress.store.ProgressStore`, with errors made short.

A bad ``--db`` (unknown scheme, missing SQLite file, unreachable server, missing driver) becomes one
:class:`SourceError` whose message is a single line naming the database (password hidden) and the
problem, so the commands can print it without a traceback.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Final

from jobprogress._log import redact_url
from jobprogress._states import ACTIONABLE, READY, RUNNING
from jobprogress._wording import state_of
from jobprogress.errors import JobProgressError

from ._format import sort_jobs
from ._safe import scrub

if TYPE_CHECKING:
    from jobprogress.store.query import ProgressStore
    from jobprogress.store.views import JobView

__all__ = ["DEFAULT_DB", "JobSource", "SourceError", "redact_url"]

DEFAULT_DB: Final = "sqlite:///jobprogress.db"
"""What every command reads, and the demo writes, without ``--db`` or ``$JOBPROGRESS_DB``."""

_ACTIONABLE_CAP: Final = 1000
_DISPLAY_RANK: Final = {
    **{state: rank for rank, state in enumerate((*ACTIONABLE, RUNNING))},
    **dict.fromkeys(READY, len(ACTIONABLE) + 1),
}
"""sort_jobs's rank of each state word (the ready ones share theirs; another word sorts as running)."""
_LEADING_URL: Final = re.compile(r"^[a-z][a-z0-9+.-]*://\S*: ", re.IGNORECASE)
_SINK_ONLY_SCHEMES = ("http", "https", "stdout", "stderr", "memory")


def _display_order(views: list[JobView]) -> list[JobView]:
    """``views``, given in the store's order, in :func:`~jobprogress.cli._format.sort_jobs`'s order.

    sort_jobs orders by state (actionable, running, ready), then most recently seen first and by job
    id, except running jobs, by id alone. Within a state the store's order already is that (its
    ``last_seen`` is the newest ``seen_at`` of the job's workers, what sort_jobs reads from them), so a
    stable sort on the state's rank, and the id for running jobs, is enough.
    """
    running = _DISPLAY_RANK[RUNNING]

    def key(view: JobView) -> tuple[int, str]:
        rank = _DISPLAY_RANK.get(state_of(view), running)
        return (rank, view.job_id) if rank == running else (rank, "")

    return sorted(views, key=key)


class SourceError(JobProgressError):
    """The jobs could not be read; the message is one line meant for the user."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # SQLAlchemy appends "(Background on this error at: …)" and SQL on later lines: keep the first.
    return scrub(text.splitlines()[0]).strip()


def _read_errors() -> tuple[type[BaseException], ...]:
    # What a bad URL, a missing file or an unreachable server raises on the way through SQLAlchemy and
    # its drivers; anything else is a bug and keeps its traceback.
    from sqlalchemy.exc import SQLAlchemyError

    return (JobProgressError, SQLAlchemyError, OSError, ValueError, ImportError)


class JobSource:
    """Reads, filters and orders jobs from one store for the views.

    Args:
        url: A database URL (``sqlite:///jobprogress.db``, ``postgresql+psycopg://…``, ``duckdb:///…``).
        stall_after: Seconds without a message (lost) or without progress (stalled) before a running
            worker is judged so.

    Raises:
        SourceError: the store cannot be opened; the message names the URL and the problem.
    """

    def __init__(self, url: str, *, stall_after: float = 30.0) -> None:
        self.url = url
        self.display_url = scrub(redact_url(url))
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if not scheme:
            raise SourceError(
                f"{self.display_url!r} is not a database URL; use e.g. sqlite:///jobprogress.db, "
                "duckdb:///progress.duckdb or postgresql+psycopg://user@host/db"
            )
        if scheme in _SINK_ONLY_SCHEMES:
            raise SourceError(
                f"cannot read jobs from {self.display_url}: {scheme}:// is a sink, not a database; "
                "point --db at the database the collector writes to"
            )
        with self._reading():
            from jobprogress.store.query import ProgressStore

            self._store: ProgressStore = ProgressStore(url, stall_after=stall_after)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn what a bad URL, file or server raises inside the block into one :class:`SourceError`."""
        errors = _read_errors()  # before the block: a missing SQLAlchemy must not fail the except clause
        try:
            yield
        except errors as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> SourceError:
        # The store's own messages may already start with the database's URL, as given or normalised
        # (postgresql:// becomes postgresql+psycopg://): say it once.
        message = _LEADING_URL.sub("", _one_line(exc), count=1)
        return SourceError(f"cannot read {self.display_url}: {message}")

    def jobs(
        self, *, states: Collection[str] = (), kinds: Collection[str] = (), limit: int | None = None
    ) -> list[JobView]:
        """Every job in display order (actionable, running, ready), filtered by state word and kind.

        Args:
            states: State words to keep (``failed``, ``lost``, ``stalled``, ``running``, ``succeeded``,
                ``cancelled``); empty keeps all.
            kinds: Kinds to keep; empty keeps all.
            limit: Keep at most this many, after ordering.

        Raises:
            SourceError: the query failed.
        """
        with self._reading():
            # The store filters by the same state words the views show; the order is ours.
            views = self._store.jobs(status=sorted(states) or None, kind=sorted(kinds) or None)
        ordered = sort_jobs(views)
        return ordered if limit is None else ordered[:limit]

    def iter_jobs(
        self, *, states: Collection[str] = (), kinds: Collection[str] = (), limit: int | None = None
    ) -> Iterator[JobView]:
        """Jobs in display order as the store streams them (memory flat in their number).

        Raises:
            SourceError: the query failed, before or while streaming.
        """
        with self._reading():
            stream = self._store.iter_jobs(
                status=sorted(states) or None, kind=sorted(kinds) or None, limit=limit
            )
            yield from stream

    def counts(self, *, states: Collection[str] = (), kinds: Collection[str] = ()) -> dict[str, int]:
        """How many jobs show each state word (one SQL aggregate); states not in ``states`` count 0.

        Raises:
            SourceError: the query failed.
        """
        with self._reading():
            counts = self._store.counts(kind=sorted(kinds) or None)
        return {state: count if not states or state in states else 0 for state, count in counts.items()}

    def page(
        self, *, size: int, states: Collection[str] = (), kinds: Collection[str] = ()
    ) -> tuple[list[JobView], bool]:
        """Every actionable job plus the ``size`` most recently active ones, in display order.

        What a live view shows: two bounded queries instead of the whole list, so a refresh costs the
        same over 10,000 jobs as over 500, and a failed or lost job never drops out of sight however
        old it is (up to ``max(size, 1000)`` of them).

        Args:
            size: Most recently active jobs to show (and the most actionable ones).
            states: State words to keep; empty keeps all.
            kinds: Kinds to keep; empty keeps all.

        Returns:
            The jobs in display order, and whether older jobs were left out.

        Raises:
            SourceError: a query failed.
        """
        kind = sorted(kinds) or None
        wanted_actionable = [state for state in ACTIONABLE if not states or state in states]
        with self._reading():
            recent = self._store.jobs(status=sorted(states) or None, kind=kind, limit=size)
            actionable = (
                self._store.jobs(status=wanted_actionable, kind=kind, limit=max(size, _ACTIONABLE_CAP))
                if wanted_actionable
                else []
            )
        # Both lists come in the store's order (most recently seen first, then by id), and ``recent``
        # is that order's first ``size`` jobs: an actionable job not among them comes after all of
        # them. So their union in the store's order is ``recent`` then the others, and the display
        # order only moves each job to its state's place (running jobs by id): no job's workers are
        # read again to find when it was last seen, as sort_jobs does (a third of a refresh at
        # 1,000 actionable jobs).
        shown = {view.job_id for view in recent}
        ordered = [*recent, *(view for view in actionable if view.job_id not in shown)]
        return _display_order(ordered), len(recent) == size

    def job(self, job_id: str) -> JobView | None:
        """One job with its workers, or None when the store has no such job.

        Raises:
            SourceError: the query failed.
        """
        with self._reading():
            return self._store.job(job_id)

    def job_ids(self) -> list[str]:
        """Every job's id (no job is read into a view).

        Raises:
            SourceError: the query failed.
        """
        with self._reading():
            return self._store.job_ids()

    def attempts(self, job_id: str) -> list[JobView]:
        """Every stored attempt of one job, newest first; empty when the store has no such job.

        Raises:
            SourceError: the query failed.
        """
        with self._reading():
            return self._store.attempts(job_id)

    def close(self) -> None:
        """Release the store (its shared engine stays with the other stores of the URL)."""
        self._store.close()

    def __enter__(self) -> JobSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
