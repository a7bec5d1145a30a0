"""The read side over ``{prefix}job_summary`` (schema 4): pages, filters and counts at flat cost.

A page picks its jobs from the summary alone, walking one of its indexes in the page's order with the
page's LIMIT, then joins the progress rows of exactly those jobs' newest attempts (primary-key
lookups). Several states are an index walk each (lost: two), every walk limited, merged in SQL. A
search keeps the ids holding a text (``LIKE``, escaped), read from the summary alone. Counts are one
aggregate over the summary's covering liveness index. Stores not migrated to schema 4 yet are read by
:mod:`._sql`, which groups the progress rows (see ``docs/user-guide.md``, "Read side at scale").

Lost and stalled are judged on the reader's clock (``cutoff``: now minus ``stall_after``), so no index
holds them; their walks run down the status index in the page's order and keep the rows the liveness
columns flag. A lost job's last message (``last_seen``) is older than the cutoff unless a finished
worker of it spoke since, so the lost walk is two ranges of that index: the jobs seen before the cutoff
(every running one there is lost, read in order until the page is full) and those seen since (the
recently active running jobs, whatever the number of lost ones). Neither sorts the lost jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import CANCELLED, FAILED, LOST, MAX_COUNT, RUNNING, STALLED, SUCCEEDED

if TYPE_CHECKING:
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.elements import ColumnElement

    from ._sql import JobQueries
    from .schema import StoreTables

__all__ = ["DISPLAY_RANK", "PageQueries", "PageRequest", "id_contains"]

DISPLAY_RANK: Final = {FAILED: 0, LOST: 1, STALLED: 2, RUNNING: 3, SUCCEEDED: 4, CANCELLED: 4}
"""The CLI's display order (cli._format.sort_jobs): actionable, running (by id), ready (newest first)."""

LIKE_ESCAPE: Final = "!"
"""The escape character of the search's LIKE pattern: not a backslash, which some dialects (Postgres's,
and DuckDB's built on it) double in the ``ESCAPE '…'`` literal they render, and DuckDB then refuses."""


@dataclass(frozen=True)
class PageRequest:
    """One read of the Jobs list, checked by :class:`~jobprogress.store.ProgressStore` and passed through.

    Attributes:
        job_id: Only this job (``ProgressStore.job``).
        statuses: Keep jobs in these states (the words of ``JobView.state``); None keeps all.
        kinds: Keep jobs of these kinds; None keeps all.
        active_within: Keep jobs with a message within this many seconds (store clock).
        search: Keep jobs whose id holds this text, case-insensitive (:func:`id_contains`).
        limit: At most this many jobs; None: all.
        offset: Skip this many jobs first.
        after: A keyset cursor: the jobs after this one in the list's order (summary only).
        streamed: In the CLI's display order (``iter_jobs``), else most recently seen first.
    """

    job_id: str | None = None
    statuses: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    active_within: float | None = None
    search: str | None = None
    limit: int | None = None
    offset: int = 0
    after: str | None = None
    streamed: bool = False

    @property
    def whole(self) -> bool:
        """The whole list, unfiltered and in no particular order: no job needs judging in SQL."""
        return self == _WHOLE


_WHOLE: Final = PageRequest()


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its ``%``, ``_`` and escape character taken literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
    return "%" + escaped.replace("_", LIKE_ESCAPE + "_") + "%"


def id_contains(job_id: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """Whether ``job_id`` holds ``text``, ignoring case (as the database lowers it: ASCII on SQLite)."""
    from sqlalchemy import String, func, literal

    pattern = func.lower(literal(like_pattern(text), String()))
    return func.lower(job_id).like(pattern, escape=LIKE_ESCAPE)


class PageQueries:
    """The statements of the read side over one prefix's summary table.

    Args:
        tables: The store's tables.
        rows: The statements over the progress rows (worker columns and their liveness flags).
    """

    def __init__(self, tables: StoreTables, rows: JobQueries) -> None:
        self._tables = tables
        self._rows = rows

    def _cutoff(self) -> ColumnElement[float]:
        from sqlalchemy import Float, bindparam

        return bindparam("cutoff", type_=Float())

    def state_condition(self, state: str) -> ColumnElement[bool]:
        """Summary rows of jobs in ``state`` (a word of :data:`~jobprogress._states.STATUS_FILTERS`)."""
        from sqlalchemy import and_

        summary = self._tables.summary.c
        cutoff = self._cutoff()
        if state not in (RUNNING, LOST, STALLED):
            return summary.status == state
        running = summary.status == RUNNING
        if state == LOST:
            return and_(running, summary.running_seen < cutoff)
        if state == STALLED:
            return and_(running, summary.running_seen >= cutoff, summary.running_live < cutoff)
        return and_(running, summary.running_live >= cutoff)  # running_live <= running_seen

    def _walks(self, state: str) -> list[ColumnElement[bool]]:
        """The conditions of ``state``'s walks down the status index, each a range of it in page order.

        ``last_seen`` (the newest message of any worker) is never below ``running_seen`` when every
        running worker has a ``seen_at``, which a stalled or lost job's have. So a stalled job was seen
        since the cutoff, and the lost jobs split into those seen before it and those seen since: each
        a range of ``(status, last_seen)``, so a walk reads its range in order and stops when the page
        is full, instead of reading every lost job from the liveness index and sorting them.
        """
        from sqlalchemy import and_

        condition = self.state_condition(state)
        last_seen = self._tables.summary.c.last_seen
        cutoff = self._cutoff()
        if state == LOST:
            return [and_(condition, last_seen < cutoff), and_(condition, last_seen >= cutoff)]
        if state == STALLED:
            return [and_(condition, last_seen >= cutoff)]
        return [condition]

    def _filters(self, request: PageRequest) -> list[ColumnElement[bool]]:
        from sqlalchemy import literal

        summary = self._tables.summary.c
        conditions: list[ColumnElement[bool]] = []
        if request.job_id is not None:
            conditions.append(summary.job_id == request.job_id)
        if request.kinds is not None:
            conditions.append(summary.kind.in_(request.kinds))
        if request.active_within is not None:
            conditions.append(summary.active_seen >= self._rows.now() - literal(request.active_within))
        if request.search is not None:
            conditions.append(id_contains(summary.job_id, request.search))
        if request.after is not None:
            conditions.extend(self._after(request.after))
        return conditions

    def _after(self, job_id: str) -> list[ColumnElement[bool]]:
        """Jobs after ``job_id`` in the list's order (``last_seen DESC, job_id``): a keyset cursor.

        The first condition is a range of the order indexes' leading column, so the walk starts at
        the cursor instead of skipping the jobs before it; the second settles ties on ``last_seen``.
        None (no row) when the job is not in the store: the page is empty.
        """
        from sqlalchemy import or_, select

        summary = self._tables.summary
        anchor = summary.alias("anchor")
        seen = select(anchor.c.last_seen).where(anchor.c.job_id == job_id).scalar_subquery()
        return [
            summary.c.last_seen <= seen,
            or_(summary.c.last_seen < seen, summary.c.job_id > job_id),
        ]

    def pick(self, request: PageRequest) -> Select[Any]:
        """The page's jobs (``job_id``, ``attempt`` and its order keys), from the summary alone."""
        from sqlalchemy import Float, Integer, literal, or_, select, union_all

        summary = self._tables.summary
        filters = self._filters(request)
        limit, offset = request.limit, request.offset
        newest_first = (summary.c.last_seen.desc(), summary.c.job_id)
        if request.streamed:
            # Walks per state, in the display order's keys: running jobs by id, the others newest first.
            parts = []
            for state in DISPLAY_RANK:
                if request.statuses is not None and state not in request.statuses:
                    continue
                rank = literal(DISPLAY_RANK[state], Integer()).label("display_rank")
                if state == RUNNING:
                    seen = literal(0.0, Float()).label("display_seen")
                    order: tuple[Any, ...] = (summary.c.job_id,)
                else:
                    seen = summary.c.last_seen.label("display_seen")
                    order = newest_first
                for condition in self._walks(state):
                    part = select(summary.c.job_id, summary.c.attempt, rank, seen).where(condition, *filters)
                    if limit is not None:
                        part = part.order_by(*order).limit(limit)
                    parts.append(select(part.subquery()))
            merged = union_all(*parts).subquery("walks")
            page = select(merged).order_by(
                merged.c.display_rank, merged.c.display_seen.desc(), merged.c.job_id
            )
            return page if limit is None else page.limit(limit)
        walks = [condition for state in request.statuses or () for condition in self._walks(state)]
        if len(walks) > 1 and limit is not None:
            # Each walk reads its own index range in the page's order with the page's limit; the
            # merge sorts at most walks x (limit + offset) rows.
            parts = [
                select(
                    select(summary.c.job_id, summary.c.attempt, summary.c.last_seen)
                    .where(condition, *filters)
                    .order_by(*newest_first)
                    .limit(limit + offset)
                    .subquery()
                )
                for condition in walks
            ]
            merged = union_all(*parts).subquery("walks")
            page = select(merged).order_by(merged.c.last_seen.desc(), merged.c.job_id)
        else:
            if walks:
                filters.append(or_(*walks))
            page = select(summary.c.job_id, summary.c.attempt, summary.c.last_seen).where(*filters)
            page = page.order_by(*newest_first)
        if limit is not None:
            page = page.limit(limit)
        elif request.search is not None:
            # Unlimited, SQLite flattens the pick into the join and, not knowing how few ids match,
            # reads every progress row to find them; a LIMIT no list reaches keeps the pick a subquery
            # that reads the summary alone, then the matching jobs' rows.
            page = page.limit(MAX_COUNT)
        if offset:
            page = page.offset(offset)
        return page

    def statement(self, request: PageRequest) -> Select[Any]:
        """The progress rows of the page's jobs' newest attempts (streamed: in display order)."""
        from sqlalchemy import and_, select

        table = self._tables.progress
        chosen = self.pick(request).subquery("page")
        joined = select(*self._rows.worker_columns(True)).join_from(
            chosen, table, and_(table.c.job_id == chosen.c.job_id, table.c.attempt == chosen.c.attempt)
        )
        if request.streamed:
            # Rows arrive job by job, in display order, so each job is folded as its last row arrives.
            return joined.order_by(
                chosen.c.display_rank, chosen.c.display_seen.desc(), chosen.c.job_id, table.c.worker_id
            )
        # No ORDER BY: _fold orders the page's jobs (by the same key) and each job's workers in Python.
        return joined

    def counts(self, *, kinds: list[str] | None, active_within: float | None) -> Select[Any]:
        """Per job status: its jobs, and among running ones how many are lost and how many not live.

        One pass over the covering ``(status, running_seen, running_live)`` index: no job row is read.
        """
        from sqlalchemy import case, func, select

        summary = self._tables.summary.c
        cutoff = self._cutoff()
        request = PageRequest(kinds=None if kinds is None else tuple(kinds), active_within=active_within)
        return (
            select(
                summary.status,
                func.count().label("jobs"),
                func.sum(case((summary.running_seen < cutoff, 1), else_=0)).label("lost"),
                func.sum(case((summary.running_live < cutoff, 1), else_=0)).label("not_live"),
            )
            .where(*self._filters(request))
            .group_by(summary.status)
        )
