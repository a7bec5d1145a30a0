"""A drop-in ``rich.progress``: the same ``Progress`` and ``track()``, each task also tracked as a job.

Change one import::

    from jobprogress.contrib.rich import Progress, track   # was: from rich.progress import ...

    with Progress() as progress:
        task = progress.add_task("Downloading", total=size, job="fetch-7", unit="bytes")
        ...
        progress.update(task, advance=len(chunk))

    for row in track(rows, description="parse-7"):
        ...

Rendering is rich's own, unchanged. A task's job id is its ``job`` field, else its description (markup
removed), else a generated ``rich-<8 hex digits>``; its unit is the ``unit`` field mapped as in
:mod:`jobprogress.contrib.tqdm` (default ``unknown``), and a ``kind`` field sets the job's kind. The
tracker reads ``task.completed`` and ``task.total`` when the reporter samples it, so ``advance()`` and
``update()`` run rich's code only.

How a task's job ends: ``remove_task()`` marks it ``succeeded`` when the task finished, else
``cancelled``; stopping the progress (leaving its ``with`` block, or ``stop()``) marks every other task
``succeeded``, unless an exception leaves the block: then unfinished tasks are ``failed`` (``cancelled``
for ``KeyboardInterrupt``), by the rules of ``with jp.track(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from ..errors import MissingExtraError
from ._bridge import BarTracker, count_of, job_id_for, nearest_unit

try:
    import rich.progress as _progress
    from rich.console import Console
    from rich.style import StyleType
    from rich.text import Text
except ImportError as exc:  # pragma: no cover - exercised by a test that hides rich
    raise MissingExtraError("jobprogress.contrib.rich", "rich", "rich") from exc

__all__ = ["Progress", "track"]

ProgressType = TypeVar("ProgressType")


def _plain(description: str) -> str:
    try:
        return Text.from_markup(description).plain
    except Exception:  # rich draws markup it cannot parse as text; so does the job id
        return description


class Progress(_progress.Progress):
    """``rich.progress.Progress``, whose tasks are also jobprogress jobs (see the module docstring)."""

    def __init__(self, *columns: str | _progress.ProgressColumn, **options: Any) -> None:
        super().__init__(*columns, **options)
        self._jp_trackers: dict[_progress.TaskID, BarTracker] = {}
        self._jp_track_fields: dict[str, Any] = {}  # job, unit and kind of the task track() adds

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> _progress.TaskID:
        """Add a task as rich does, and start its job.

        Raises:
            InvalidProgressError: the ``job`` or ``kind`` field is invalid (before the task is added).
        """
        named = {**self._jp_track_fields, **fields}
        unit, unit_text = nearest_unit(named.get("unit", "unknown"))
        tracker = BarTracker(
            job_id_for(named.get("job"), _plain(description), "rich"),
            unit=unit,
            kind=named.get("kind"),
            payload=None if unit_text is None else {"unit_text": unit_text},
        )
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        with self._lock:
            task = self._tasks[task_id]
            tracker.set_total(count_of(task.total))
            tracker.follow(task, "completed")
            self._jp_trackers[task_id] = tracker
        tracker.start()
        return task_id

    def tracker(self, task_id: _progress.TaskID) -> BarTracker:
        """The jobprogress tracker of a task (for ``set_payload()`` and the like)."""
        return self._jp_trackers[task_id]

    def _jp_sync_total(self, task_id: _progress.TaskID) -> None:
        tracker = self._jp_trackers.get(task_id)
        task = self._tasks.get(task_id)
        if tracker is not None and task is not None:
            total = count_of(task.total)
            if total != tracker.total:
                tracker.set_total(total)

    def update(self, task_id: _progress.TaskID, **changes: Any) -> None:
        """Update a task as rich does; a new total reaches its tracker."""
        super().update(task_id, **changes)
        if changes.get("total") is not None:
            self._jp_sync_total(task_id)

    def reset(self, task_id: _progress.TaskID, **changes: Any) -> None:
        """Reset a task as rich does; its tracker follows."""
        super().reset(task_id, **changes)
        self._jp_sync_total(task_id)

    def remove_task(self, task_id: _progress.TaskID) -> None:
        """Remove a task as rich does, ending its job: ``succeeded`` if it finished, else ``cancelled``."""
        with self._lock:
            task = self._tasks.get(task_id)
            tracker = self._jp_trackers.pop(task_id, None)
            finished = task is not None and task.finished
        super().remove_task(task_id)
        if tracker is not None:
            tracker.settle()
            if finished:
                tracker.finish()
            else:
                tracker.cancel()

    def _jp_end_all(self, error: BaseException | None) -> None:
        with self._lock:
            trackers = self._jp_trackers
            ending = [(tracker, self._tasks[task_id].finished) for task_id, tracker in trackers.items()]
            trackers.clear()
        for tracker, finished in ending:
            tracker.settle()
            if finished or error is None:
                tracker.finish()
            else:
                tracker._exit(error)

    def stop(self) -> None:
        """Stop the display as rich does, and end every task's job as ``succeeded``."""
        try:
            super().stop()
        finally:
            self._jp_end_all(None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._jp_end_all(exc_val)  # before stop(): an exception fails the unfinished tasks
        super().__exit__(exc_type, exc_val, exc_tb)


def track(
    sequence: Iterable[ProgressType],
    description: str = "Working...",
    total: float | None = None,
    completed: int = 0,
    auto_refresh: bool = True,
    console: Console | None = None,
    transient: bool = False,
    get_time: Callable[[], float] | None = None,
    refresh_per_second: float = 10,
    style: StyleType = "bar.back",
    complete_style: StyleType = "bar.complete",
    finished_style: StyleType = "bar.finished",
    pulse_style: StyleType = "bar.pulse",
    update_period: float = 0.1,
    disable: bool = False,
    show_speed: bool = True,
    *,
    job: str | None = None,
    unit: str | None = None,
    kind: str | None = None,
) -> Iterable[ProgressType]:
    """``rich.progress.track()``, tracking the loop as a job.

    Takes rich's arguments with rich's defaults and draws what rich draws; ``job`` (default: the
    description), ``unit`` and ``kind`` are jobprogress's. Exhausting the loop marks the job
    ``succeeded``; leaving it early marks it ``cancelled``.
    """
    columns: list[_progress.ProgressColumn] = (
        [_progress.TextColumn("[progress.description]{task.description}")] if description else []
    )
    columns.extend(
        (
            _progress.BarColumn(
                style=style,
                complete_style=complete_style,
                finished_style=finished_style,
                pulse_style=pulse_style,
            ),
            _progress.TaskProgressColumn(show_speed=show_speed),
            _progress.TimeRemainingColumn(elapsed_when_finished=True),
        )
    )
    progress = Progress(
        *columns,
        auto_refresh=auto_refresh,
        console=console,
        transient=transient,
        get_time=get_time,
        refresh_per_second=refresh_per_second or 10,
        disable=disable,
    )
    named = {"job": job, "unit": unit, "kind": kind}
    progress._jp_track_fields = {name: value for name, value in named.items() if value is not None}
    with progress:
        yield from progress.track(
            sequence,
            total=total,
            completed=completed,
            description=description,
            update_period=update_period,
        )
