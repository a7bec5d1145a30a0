"""A drop-in ``tqdm`` that keeps the bar and also tracks the job with jobprogress.

Change one import, and an existing loop gets durable progress::

    from jobprogress.contrib.tqdm import tqdm      # was: from tqdm import tqdm

    for path in tqdm(paths, job="scan-42", unit="files", kind="scan"):
        scan(path)

The bar's count is copied to the tracker whenever tqdm redraws the bar (at most every ``mininterval``,
0.1 s by default) and when it closes, so the bridge adds no work per item to tqdm's own loop. A bar
that tqdm disables (``disable=True``, or ``disable=None`` on a non-terminal) draws nothing but still
tracks: its iterable is counted by the tracker, without Python code per item.

How the job ends:

- exhausting the loop, or calling ``close()``, marks it ``succeeded``;
- an exception leaving ``with tqdm(...) as bar:`` marks it ``failed`` (``KeyboardInterrupt``:
  ``cancelled``), by the same rules as ``with jp.track(...)``; inside a ``with`` block it is the block
  that decides, so a loop broken off early still succeeds when the block ends normally;
- a loop left early outside a ``with`` block (``break``, or an exception) marks it ``cancelled``, as
  ``Tracker.iter()`` does: from the bar alone the two cannot be told apart, and neither is a success.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .._tracker import Tracker, track
from .._validate import MAX_COUNT
from ..errors import InvalidProgressError, MissingExtraError

try:
    import tqdm as _tqdm
except ImportError as exc:  # pragma: no cover - exercised by a test that hides tqdm
    raise MissingExtraError("jobprogress.contrib.tqdm", "tqdm", "tqdm") from exc

__all__ = ["tqdm"]

_RUNNING = "running"
_PENDING = "pending"


def _count(value: object) -> int | None:
    """A tqdm count or total (int or float, maybe inf or NaN) as a jobprogress count; None if unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return min(value, MAX_COUNT) if value >= 0 else None


class tqdm(_tqdm.tqdm):  # type: ignore[misc]  # tqdm ships no type information
    """A ``tqdm.tqdm`` progress bar that also tracks ``job`` with :func:`jobprogress.track`.

    Args:
        iterable: What to iterate over, as with tqdm; None for a bar driven by :meth:`update`.
        job: The job id to track (required).
        unit: The unit of the bar and of the tracker: one of files, rows, bytes, records, chunks,
            iterations, unknown.
        kind: The job's kind (``scan``, ``parse``, ``backtest``, ``schema_eval`` or free text).
        **tqdm_kwargs: Passed to ``tqdm.tqdm`` (``total``, ``desc``, ``file``, ``disable``, ...). The
            tracker's total is the bar's total.

    Raises:
        InvalidProgressError: ``job``, ``unit`` or ``kind`` is invalid; raised before the bar is drawn.
    """

    # Class-level defaults: tqdm calls refresh() and close() on half-built instances too.
    _jp_tracker: Tracker | None = None
    _jp_bar_counts = False
    _jp_entered = False

    def __init__(
        self,
        iterable: Any = None,
        *,
        job: str,
        unit: str = "unknown",
        kind: str | None = None,
        **tqdm_kwargs: Any,
    ) -> None:
        if not isinstance(job, str):
            raise InvalidProgressError(f"tqdm(job=...) must be a job id string, got {job!r}")
        tracker = track(job, unit=unit, kind=kind)  # validates job, unit and kind before anything is drawn
        super().__init__(iterable, unit=unit, **tqdm_kwargs)
        tracker.set_total(_count(self.total))
        tracker.set_done(_count(self.n) or 0)
        self._jp_tracker = tracker
        # A disabled bar neither counts nor closes itself; the tracker then counts on its own.
        self._jp_bar_counts = not self.disable
        if self._jp_bar_counts or iterable is None:
            tracker.start()
        # else: __iter__ hands the iterable to tracker.iter(), which starts the tracker, finishes it when
        # the loop is exhausted and cancels it when the loop is abandoned.

    @property
    def tracker(self) -> Tracker:
        """The jobprogress tracker of this bar (for ``set_payload()`` and the like)."""
        assert self._jp_tracker is not None
        return self._jp_tracker

    def _jp_sync(self) -> None:
        tracker = self._jp_tracker
        if tracker is None or tracker.status != _RUNNING:
            return
        total = _count(self.total)
        if total != tracker.total:
            tracker.set_total(total)
        if self._jp_bar_counts:
            tracker.set_done(_count(self.n) or 0)

    def __iter__(self) -> Iterator[Any]:
        tracker = self._jp_tracker
        if not self._jp_bar_counts and tracker is not None and tracker.status in (_PENDING, _RUNNING):
            return tracker.iter(self.iterable)
        return super().__iter__()  # type: ignore[no-any-return]

    def update(self, n: float = 1) -> bool | None:
        """Advance the bar by ``n``, as tqdm does; the tracker follows when the bar redraws."""
        displayed: bool | None = super().update(n)
        if not self._jp_bar_counts:
            tracker = self._jp_tracker
            if tracker is not None and tracker.status == _RUNNING:
                self.n += n  # tqdm leaves a disabled bar's count alone; keep it for the tracker
                tracker.set_done(_count(self.n) or 0)
        return displayed

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        """Redraw the bar, and copy its count and total to the tracker."""
        self._jp_sync()
        return super().refresh(nolock=nolock, lock_args=lock_args)

    def reset(self, total: float | None = None) -> None:
        """Restart the bar's count from zero (optionally with a new total); the tracker follows."""
        super().reset(total=total)
        tracker = self._jp_tracker
        if tracker is not None and tracker.status == _RUNNING:
            tracker.set_total(_count(self.total))
            tracker.set_done(0)

    def close(self) -> None:
        """Close the bar and, outside a ``with`` block, end the job (see the module docstring)."""
        tracker = self._jp_tracker
        if tracker is not None and tracker.status == _PENDING and not self._jp_entered:
            # A disabled bar closed without being iterated: the job still ran (with nothing counted).
            tracker.start()
        if tracker is None or tracker.status != _RUNNING:
            super().close()
            return
        # tqdm's __iter__ closes the bar in its finally clause: under GeneratorExit when the loop was
        # abandoned (break, or an exception propagating through it), with no exception when exhausted.
        abandoned = sys.exc_info()[0] is GeneratorExit
        self._jp_sync()
        try:
            super().close()
        finally:
            if not self._jp_entered:
                if abandoned:
                    tracker.cancel()
                else:
                    tracker.finish()

    def __enter__(self) -> tqdm:
        tracker = self._jp_tracker
        if tracker is not None:
            tracker.__enter__()  # starts a disabled bar's tracker, and makes it jp.current()
            self._jp_entered = True
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        tracker = self._jp_tracker
        if tracker is not None and self._jp_entered:
            self._jp_entered = False
            self._jp_sync()
            # The tracker's own rules: succeeded, failed with a bounded summary, or cancelled.
            tracker.__exit__(exc_type, exc_value, traceback)
        super().__exit__(exc_type, exc_value, traceback)
