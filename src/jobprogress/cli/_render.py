"""Rich renderables of the Jobs view: the Jobs table and the detail panel of one job.

Every cell is a :class:`rich.text.Text` built from scrubbed text (:func:`safe_text`), never a markup
string, so worker data such as ``[/]`` or ``:warning:`` shows literally and cannot raise
``MarkupError``. The same renderables serve ``jobprogress jobs``/``show`` and the Textual ``watch`` app.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Final, TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobprogress._states import CANCELLED, FAILED, LOST, RUNNING, STALLED, SUCCEEDED
from jobprogress.store.views import JobView, WorkerView

from ._format import (
    JOB_COLUMNS,
    PIPE_WIDTH,
    ago,
    human_duration,
    job_row,
    last_seen,
    progress_line,
    rate,
    state_of,
    summary_line,
)
from ._safe import scrub

__all__ = [
    "STATE_STYLES",
    "job_detail",
    "jobs_table",
    "plain_console",
    "progress_style",
    "safe_text",
    "state_text",
]

STATE_STYLES: Final = {
    FAILED: "bold red",
    LOST: "bold magenta",
    STALLED: "bold yellow",
    RUNNING: "cyan",
    SUCCEEDED: "green",
    CANCELLED: "dim",
}
"""Colour of each state word; the word itself always carries the meaning (colour is never alone)."""


def safe_text(value: object, style: str = "") -> Text:
    """Worker data as a literal :class:`~rich.text.Text`: scrubbed, no markup, no emoji codes."""
    return Text(scrub(value), style=style, end="")


def state_text(state: str) -> Text:
    """A state word in its colour."""
    return Text(state, style=STATE_STYLES.get(state, ""), end="")


def progress_style(state: str) -> str:
    """The style of a job's progress cell: red when the job failed (the cell ends with its error)."""
    return "red" if state == FAILED else ""


def _format_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


_NARROW: Final = 100
"""Below this many columns the Jobs table leaves out Kind, which the progress line implies anyway."""
_UNBOUNDED: Final = 100_000
_OTHER_COLUMNS: Final = 54
"""What a fitted table leaves beside the Job column: Status, a 16-column Progress, Workers, Updated."""


class _JobsTable:
    """The Jobs table, laid out for where it is rendered.

    On a terminal it fits the width: long values end in an ellipsis (a cell never breaks a value
    mid-word, so what is shown can be read and copied). Anywhere else (a pipe, a file) nothing wraps
    a line, so the table takes the width its values need and every value is printed whole (as
    ``_format.plain_jobs_table`` prints it without rich: change both together).
    """

    def __init__(self, rows: Sequence[Sequence[str]], title: str | None, caption: str) -> None:
        self._rows = rows
        self._summary = caption
        self._title = title

    def _table(self, width: int | None) -> Table:
        """The table fitted to ``width`` columns (ellipsizing), or with whole values when None."""
        whole = width is None
        narrow = width is not None and width < _NARROW
        table = Table(
            title=Text(self._title) if self._title is not None else None,
            caption=Text(self._summary, style="dim"),
            box=box.SIMPLE_HEAD,
            expand=False,
            pad_edge=False,
            collapse_padding=True,
        )
        # Job ids are what `show` takes: on one line, whole where the terminal allows, else ellipsized.
        longest_id = max((len(row[0]) for row in self._rows), default=3)
        table.add_column(
            JOB_COLUMNS[0],
            overflow="ellipsis",
            no_wrap=True,
            min_width=min(longest_id, 16),
            max_width=None if width is None else max(16, width - _OTHER_COLUMNS),
        )
        if not narrow:
            table.add_column(
                JOB_COLUMNS[1], overflow="ellipsis", no_wrap=True, max_width=None if whole else 14
            )
        table.add_column(JOB_COLUMNS[2], no_wrap=True)
        table.add_column(JOB_COLUMNS[3], overflow="ellipsis", no_wrap=whole, min_width=16)
        table.add_column(JOB_COLUMNS[4], justify="right", overflow="ellipsis", no_wrap=True)
        table.add_column(JOB_COLUMNS[5], justify="right", no_wrap=True)
        for job, kind, state, progress, workers, updated in self._rows:
            cells = [
                Text(job, style="bold", end=""),
                Text(kind, end=""),
                state_text(state),
                Text(progress, style=progress_style(state), end=""),
                Text(workers, end=""),
                Text(updated, style="dim", end=""),
            ]
            if narrow:
                del cells[1]
            table.add_row(*cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if console.is_terminal:
            yield self._table(options.max_width)
            return
        table = self._table(None)
        width = max(
            options.max_width, console.measure(table, options=options.update(width=_UNBOUNDED)).maximum
        )
        yield from console.render(table, options.update(width=width, max_width=width))


def plain_console(file: TextIO | None = None) -> Console:
    """A console for printed (not live) output: markup, emoji and highlighting off.

    Every renderable printed on it is Text built from scrubbed data. On a pipe or in a file nothing
    wraps, so the console is wide there (``COLUMNS`` still wins) and tables print whole values.
    """
    console = Console(file=file, markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=file, markup=False, emoji=False, highlight=False, width=PIPE_WIDTH)
    return console


def jobs_table(
    views: Sequence[JobView], now: datetime, *, title: str | None = None, caption: str | None = None
) -> RenderableType:
    """The Jobs table for views already in display order (see ``_format.sort_jobs``).

    On a terminal narrower than 100 columns the Kind column is left out so every other column fits
    80, and long values are ellipsized; on a pipe or in a file every value is printed whole. The
    caption defaults to the summary line of ``views``.
    """
    rows = [job_row(view, now) for view in views]
    return _JobsTable(rows, title, summary_line(views) if caption is None else caption)


def _payload_value(value: Any) -> str:
    # Strings are shown as they are; numbers, booleans and null in their JSON spelling.
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _field_grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _worker_table(workers: Sequence[WorkerView], now: datetime) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    table.add_column("Worker", overflow="fold", max_width=40)
    table.add_column("Status", no_wrap=True)
    table.add_column("Progress", overflow="fold")
    table.add_column("Seen", justify="right", no_wrap=True)
    table.add_column("Progressed", justify="right", no_wrap=True)
    table.add_column("Run · seq", overflow="fold", style="dim")
    for worker in workers:
        run = f"{scrub(worker.run_id or '-')} · {worker.seq if worker.seq is not None else '-'}"
        table.add_row(
            safe_text(worker.worker_id, "bold"),
            state_text(state_of(worker)),
            Text(progress_line(worker), end=""),
            Text(ago(worker.seen_at or worker.updated_at, now), end=""),
            Text(ago(worker.progressed_at, now), end=""),
            Text(run, end=""),
        )
    return table


def job_detail(view: JobView, now: datetime, *, newest: int | None = None) -> RenderableType:
    """The detail panel of one attempt of a job: envelope, payload, failure detail and one row per worker.

    Args:
        view: The attempt to show (``ProgressStore.job`` gives the newest).
        now: The moment ages are shown against.
        newest: The job's newest attempt, when the caller shows every attempt (the title then names
            each); None names the attempt only when it is not the first.
    """
    state = state_of(view)
    envelope = _field_grid()
    if newest is not None:
        note = "the newest" if view.attempt == newest else f"attempt {newest} is the newest"
        envelope.add_row("attempt", Text(f"{view.attempt} ({note})", end=""))
    elif view.attempt > 1:
        envelope.add_row("attempt", Text(f"{view.attempt} (show --attempts for the earlier ones)", end=""))
    envelope.add_row("status", state_text(state))
    envelope.add_row("kind", safe_text(view.kind or "-"))
    envelope.add_row("progress", Text(progress_line(view), end=""))
    envelope.add_row("unit", safe_text(view.unit or "mixed"))
    envelope.add_row("done", Text("-" if view.done is None else f"{view.done:,}", end=""))
    envelope.add_row("total", Text("-" if view.total is None else f"{view.total:,}", end=""))
    speed = rate(view.throughput, view.unit)
    envelope.add_row("throughput", Text(speed or "-", end=""))
    if view.eta_seconds is not None:
        envelope.add_row("eta", Text(human_duration(view.eta_seconds), end=""))
    elif view.eta_reason is not None:  # waiting on a lost or stalled worker: say so where the ETA would be
        envelope.add_row("eta", safe_text(view.eta_reason, STATE_STYLES[STALLED]))
    else:
        envelope.add_row("eta", Text("-", end=""))
    envelope.add_row("updated", Text(f"{_format_time(view.updated_at)} (worker clock)", end=""))
    envelope.add_row("last seen", Text(ago(last_seen(view), now), end=""))
    if state in (LOST, STALLED):
        why = (
            "every running worker went silent (no message within --stall-after)"
            if state == LOST
            else "workers are alive but made no progress within --stall-after"
        )
        envelope.add_row("attention", Text(why, style=STATE_STYLES[state], end=""))

    parts: list[RenderableType] = [envelope]
    if view.payload:
        payload = _field_grid()
        for key in sorted(view.payload):
            payload.add_row(safe_text(key), safe_text(_payload_value(view.payload[key])))
        parts.append(Panel(payload, title=Text("payload"), title_align="left", box=box.ROUNDED))

    failures = [worker for worker in view.workers if worker.error]
    if view.error or failures:
        detail = _field_grid()
        # The job's error is its most recently failed worker's: list per worker when they are known.
        for worker in failures:
            detail.add_row(safe_text(worker.worker_id), safe_text(worker.error, "red"))
        if not failures:
            detail.add_row("error", safe_text(view.error, "red"))
        parts.append(Panel(detail, title=Text("failure", style="red"), title_align="left", box=box.ROUNDED))

    parts.append(
        Panel(
            _worker_table(view.workers, now),
            title=Text(f"workers ({len(view.workers)})"),
            title_align="left",
            box=box.ROUNDED,
        )
    )
    title = safe_text(view.job_id, "bold")
    if newest is not None:
        title.append(f" · attempt {view.attempt}")
    return Panel(
        Group(*parts),
        title=title,
        title_align="left",
        subtitle=state_text(state),
        subtitle_align="right",
    )
