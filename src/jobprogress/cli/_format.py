"""Plain-text wording of the Jobs view: order, summary lines, list rows, and the printed table.

Pure functions over :class:`~jobprogress.store.JobView` and :class:`~jobprogress.store.WorkerView`,
shared by ``jobs``, ``show``, ``watch`` and the demo; the words of one job (progress lines per kind,
sizes, rates, durations, state words) come from :mod:`jobprogress._wording`, shared with the browser
view, and are re-exported here. Every string taken from a view is passed through
:func:`~jobprogress.cli._safe.scrub`, so what these functions return is safe plain text (not markup).

:func:`plain_jobs_table` lays out the Jobs table as rich prints it to a pipe or a file, without
importing rich (``jobs`` starts faster; ``tests/cli/test_cli_plain.py`` holds the two to the byte).
Importing this module imports neither rich nor the store's models (pydantic).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Final

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

from ._safe import scrub

if TYPE_CHECKING:
    from jobprogress.store.views import JobView

__all__ = [
    "JOB_COLUMNS",
    "PIPE_WIDTH",
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
    "plain_jobs_table",
    "plain_line",
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

JOB_COLUMNS: Final = ("Job", "Kind", "Status", "Progress", "Workers", "Updated")
"""The Jobs table's columns (the cells of :func:`job_row`, in order)."""


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


# The printed Jobs table, as ``cli._render`` lays it out off a terminal (box SIMPLE_HEAD, no edge
# padding, collapsed padding, nothing wrapped or cropped): each column as wide as its widest value
# plus one space (the last column: no space), Progress at least 16 + 1, Workers and Updated
# right-justified; a line of spaces above and below, a rule under the header, the caption as it is.
_RIGHT_JUSTIFIED: Final = frozenset({"Workers", "Updated"})
_MIN_WIDTHS: Final = {"Progress": 16}
# Characters rich measures as one terminal cell each: printable ASCII, Latin-1 and Latin Extended
# letters, IPA, spacing modifiers, and the ellipsis the progress lines use. A value with any other
# character (wide, combining, ...) is laid out by rich itself.
_ONE_CELL: Final = re.compile("[\x20-\x7e\xa0-\xac\xae-\u02ff\u2026]*")
_PLAIN_MAX_WIDTH: Final = 10_000
"""Wider tables are left to rich (its measuring is bounded; no real row comes near this)."""
PIPE_WIDTH: Final = 160
"""Width of printed output that goes to a pipe or a file, unless ``COLUMNS`` says otherwise (panels
and lines wrap at it; the Jobs table may exceed it)."""


def plain_line(text: str, width: int) -> str | None:
    """``text`` as rich prints it (no markup) on a console ``width`` cells wide off a terminal.

    Returns:
        The line and its newline; None when it would wrap or holds a character whose width only rich
        knows: the caller prints it with rich then.
    """
    if len(text) > width or not _ONE_CELL.fullmatch(text):
        return None
    return text + "\n"


def plain_jobs_table(rows: Sequence[Sequence[str]], caption: str) -> str | None:
    """The Jobs table as rich prints it to a pipe or a file, laid out without rich.

    Args:
        rows: The cells of each row (:func:`job_row`), in display order.
        caption: The line under the table.

    Returns:
        The printed text, every line ending in a newline; None when a value holds a character whose
        width only rich knows, or the table is very wide: the caller prints it with rich then.
    """
    if not all(_ONE_CELL.fullmatch(text) for text in (caption, *(cell for row in rows for cell in row))):
        return None
    columns = list(zip(JOB_COLUMNS, *rows, strict=True)) if rows else [(name,) for name in JOB_COLUMNS]
    last = len(columns) - 1
    widths = [
        max(max(map(len, cells)), _MIN_WIDTHS.get(cells[0], 0)) + (index != last)
        for index, cells in enumerate(columns)
    ]
    inner = sum(widths) + len(widths) - 1
    if inner > _PLAIN_MAX_WIDTH:
        return None

    def line(cells: Sequence[str]) -> str:
        parts = []
        for index, (name, cell, width) in enumerate(zip(JOB_COLUMNS, cells, widths, strict=True)):
            space = int(index != last)  # the right padding; the last column has none
            room = width - space
            fitted = cell.rstrip().rjust(room) if name in _RIGHT_JUSTIFIED else cell.ljust(room)
            parts.append(fitted + " " * space)
        return " " + " ".join(parts) + " \n"

    blank = " " * (inner + 2) + "\n"
    body = "".join(line(row) for row in rows)
    below = f"{caption}\n" if caption else ""  # rich prints no empty caption
    return f"{blank}{line(JOB_COLUMNS)} {'─' * inner} \n{body}{blank}{below}"
