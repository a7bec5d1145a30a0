"""The read side over ``{prefix}job_summary`` (schema 4): pages, filters and counts at flat cost.

A page picks its jobs from the summary alone, walking one of its indexes in the page's order with the
page's LIMIT, then joins the progress rows of exactly those jobs' newest attempts (primary-key
lookups). Several states are one index walk each, every walk limited, merged in SQL. Counts are one
aggregate over the summary's covering liveness index. Stores not migrated to schema 4 yet are read by
:mod:`._sql`, which groups the progress rows (see ``docs/user-guide.md``, "Read side at scale").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import CANCELLED, FAILED, LOST, RUNNING, STALLED, SUCCEEDED

if TYPE_CHECKING:
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.elements import ColumnElement

    from ._sql import JobQueries
    from .schema import StoreTables

__all__ = ["DISPLAY_RANK", "PageQueries"]

DISPLAY_RANK: Final = {FAILED: 0, LOST: 1, STALLED: 2, RUNNING: 3, SUCCEEDED: 4, CANCELLED: 4}
"""The CLI's display order (cli._format.sort_jobs): actionable, running (by id), ready (newest first)."""


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

    def _filters(self, kinds: list[str] | None, active_within: float | None) -> list[ColumnElement[bool]]:
        from sqlalchemy import literal

        summary = self._tables.summary.c
        conditions: list[ColumnElement[bool]] = []
        if kinds is not None:
            conditions.append(summary.kind.in_(kinds))
        if active_within is not None:
            conditions.append(summary.active_seen >= self._rows.now() - literal(active_within))
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

    def pick(
        self,
        *,
        job_id: str | None,
        statuses: list[str] | None,
        kinds: list[str] | None,
        active_within: float | None,
        limit: int | None,
        offset: int,
        streamed: bool,
        after: str | None = None,
    ) -> Select[Any]:
        """The page's jobs (``job_id``, ``attempt`` and its order keys), from the summary alone."""
        from sqlalchemy import Float, Integer, literal, or_, select, union_all

        summary = self._tables.summary
        filters = self._filters(kinds, active_within)
        if job_id is not None:
            filters.append(summary.c.job_id == job_id)
        if after is not None:
            filters.extend(self._after(after))
        if streamed:
            # One walk per state, in the display order's keys: running jobs by id, the others newest first.
            states = [state for state in DISPLAY_RANK if statuses is None or state in statuses]
            parts = []
            for state in states:
                rank = literal(DISPLAY_RANK[state], Integer()).label("display_rank")
                if state == RUNNING:
                    seen = literal(0.0, Float()).label("display_seen")
                    order: tuple[Any, ...] = (summary.c.job_id,)
                else:
                    seen = summary.c.last_seen.label("display_seen")
                    order = (summary.c.last_seen.desc(), summary.c.job_id)
                part = select(summary.c.job_id, summary.c.attempt, rank, seen).where(
                    self.state_condition(state), *filters
                )
                if limit is not None:
                    part = part.order_by(*order).limit(limit)
                parts.append(select(part.subquery()))
            merged = union_all(*parts).subquery("walks")
            page = select(merged).order_by(
                merged.c.display_rank, merged.c.display_seen.desc(), merged.c.job_id
            )
            return page if limit is None else page.limit(limit)
        conditions = [self.state_condition(state) for state in statuses or ()]
        if len(conditions) > 1 and limit is not None:
            # Each state walks its own index with the page's limit; the merge sorts at most
            # states x (limit + offset) rows.
            parts = [
                select(
                    select(summary.c.job_id, summary.c.attempt, summary.c.last_seen)
                    .where(condition, *filters)
                    .order_by(summary.c.last_seen.desc(), summary.c.job_id)
                    .limit(limit + offset)
                    .subquery()
                )
                for condition in conditions
            ]
            merged = union_all(*parts).subquery("walks")
            page = select(merged).order_by(merged.c.last_seen.desc(), merged.c.job_id)
        else:
            if conditions:
                filters.append(or_(*conditions))
            page = (
                select(summary.c.job_id, summary.c.attempt, summary.c.last_seen)
                .where(*filters)
                .order_by(summary.c.last_seen.desc(), summary.c.job_id)
            )
        if limit is not None:
            page = page.limit(limit)
        if offset:
            page = page.offset(offset)
        return page

    def statement(
        self,
        *,
        job_id: str | None,
        statuses: list[str] | None,
        kinds: list[str] | None,
        active_within: float | None,
        limit: int | None,
        offset: int,
        streamed: bool = False,
        after: str | None = None,
    ) -> Select[Any]:
        """The progress rows of the page's jobs' newest attempts (streamed: in display order)."""
        from sqlalchemy import and_, select

        table = self._tables.progress
        chosen = self.pick(
            job_id=job_id,
            statuses=statuses,
            kinds=kinds,
            active_within=active_within,
            limit=limit,
            offset=offset,
            streamed=streamed,
            after=after,
        ).subquery("page")
        joined = select(*self._rows.worker_columns(True)).join_from(
            chosen, table, and_(table.c.job_id == chosen.c.job_id, table.c.attempt == chosen.c.attempt)
        )
        if streamed:
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
        return (
            select(
                summary.status,
                func.count().label("jobs"),
                func.sum(case((summary.running_seen < cutoff, 1), else_=0)).label("lost"),
                func.sum(case((summary.running_live < cutoff, 1), else_=0)).label("not_live"),
            )
            .where(*self._filters(kinds, active_within))
            .group_by(summary.status)
        )
