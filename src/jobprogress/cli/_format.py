"""Plain-text wording of the Jobs view: order, summary lines, list rows.

Pure functions over :class:`~jobprogress.store.JobView` and :class:`~jobprogress.store.WorkerView`,
shared by ``jobs``, ``show``, ``watch`` and the demo; the words of one job (progress lines per kind,
sizes, rates, durations, state words) come from :mod:`jobprogress._wording`, shared with the browser
view, and are re-exported here. Every string taken from a view is passed through
:func:`~jobprogress.cli._safe.scrub`, so what these functions return is safe plain text (not markup).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Final

from jobprogress._states import (
    ACTIONABLE,
    JOB_STATES,
    READY,
    RUNNING,
    expand_states,
)
from jobprogress._wording import (
    ago,
    amount,
    eta_text,
    human_bytes,
    human_count,
    human_duration,
    last_seen,
    pass_rate,
    progress_line,
    rate,
    state_of,
    workers_cell,
)
from jobprogress.store.views import JobView

from ._safe import scrub

__all__ = [
    "ago",
    "amount",
    "comma_separated",
    "counts_line",
    "eta_text",
    "human_bytes",
    "human_count",
    "human_duration",
    "job_row",
    "last_seen",
    "parse_states",
    "pass_rate",
    "progress_line",
    "rate",
    "sort_jobs",
    "state_of",
    "summary_counts",
    "summary_line",
    "workers_cell",
]

# Sort rank of each state (the ready ones share theirs); a newer writer's status sorts with running.
_RANK: Final = {
    **{state: rank for rank, state in enumerate((*ACTIONABLE, RUNNING))},
    **dict.fromkeys(READY, len(ACTIONABLE) + 1),
}
_RUNNING_RANK: Final = _RANK[RUNNING]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_states(values: Iterable[str]) -> frozenset[str]:
    """Turn ``--status`` values (repeatable, comma-separated) into a set of state words.

    ``actionable`` stands for failed, lost and stalled; ``ready`` for succeeded and cancelled.

    Raises:
        ValueError: a value is not a state word, naming the valid ones.
    """
    return frozenset(expand_states(word.lower() for word in comma_separated(values)))


def comma_separated(values: Iterable[str]) -> list[str]:
    """The non-empty parts of repeatable, comma-separated option values, stripped: ``a, b`` → a, b."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def sort_jobs(views: Iterable[JobView]) -> list[JobView]:
    """Actionable first (failed, lost, stalled), then running, then ready (succeeded, cancelled).

    Running jobs keep a stable order (by job id) so a live view does not reshuffle every second; the
    others show the most recently updated first, where the newest failure matters most.
    """

    def key(view: JobView) -> tuple[int, float, str]:
        rank = _RANK.get(state_of(view), _RUNNING_RANK)
        if rank == _RUNNING_RANK:
            return (rank, 0.0, view.job_id)
        seen = last_seen(view)
        return (rank, -(seen - _EPOCH).total_seconds() if seen else 0.0, view.job_id)

    return sorted(views, key=key)


def summary_counts(views: Iterable[JobView]) -> dict[str, int]:
    """How many jobs show each state word, every word present (``ready`` = succeeded + cancelled)."""
    counts = dict.fromkeys(JOB_STATES, 0)
    for view in views:
        state = state_of(view)
        counts[state if state in counts else RUNNING] += 1
    return counts


def summary_line(views: Sequence[JobView]) -> str:
    """One line such as ``7 jobs: 1 failed, 1 lost, 0 stalled, 3 running, 2 ready``."""
    return counts_line(summary_counts(views))


def counts_line(counts: Mapping[str, int]) -> str:
    """The summary line from per-state counts (``ProgressStore.counts()``, one SQL aggregate)."""
    jobs = sum(counts.values())
    ready = sum(counts.get(state, 0) for state in READY)
    noun = "job" if jobs == 1 else "jobs"
    parts = [f"{counts.get(state, 0)} {state}" for state in (*ACTIONABLE, RUNNING)]
    return f"{jobs} {noun}: {', '.join(parts)}, {ready} ready"


def job_row(view: JobView, now: datetime) -> tuple[str, str, str, str, str, str]:
    """The cells of one Jobs-list row: job, kind, state, progress, workers, updated."""
    return (
        scrub(view.job_id),
        scrub(view.kind) if view.kind else "-",
        state_of(view),
        progress_line(view),
        workers_cell(view),
        ago(last_seen(view), now),
    )
