"""A drop-in ``tqdm`` that draws tqdm's bar and also tracks the job with jobprogress.

Change one import, and an existing loop gets durable progress::

    from jobprogress.contrib.tqdm import tqdm, trange   # was: from tqdm import tqdm, trange

    for path in tqdm(paths, desc="scan-42"):            # job "scan-42", unit iterations
        scan(path)

Every tqdm argument works, positionally too, with tqdm's defaults, and the bar shows exactly what tqdm
shows. Three arguments of jobprogress's own are optional: ``job`` (the job id; default: ``desc``, else
a generated id such as ``tqdm-3f9a0c1d``, fixed for the bar's lifetime), ``kind``, and tqdm's ``unit``,
which the tracker maps to the nearest envelope unit (``"B"`` is bytes, ``"it"`` is iterations, other
text is unknown) while the payload keeps the text as ``unit_text``. :mod:`jobprogress.contrib.tqdm.auto`
and :mod:`jobprogress.contrib.tqdm.asyncio` are the twins of ``tqdm.auto`` and ``tqdm.asyncio``.

The tracker reads the bar's own count (``bar.n``) when the reporter samples it, so ``update()`` is
tqdm's own method, untouched. A bar that tqdm disables (``disable=True``, or ``disable=None`` on a
non-terminal) behaves as tqdm's does — it draws nothing and its ``n`` never moves — and still tracks:
its ``update`` is the tracker's C-level ``advance``, and its iterable is counted by the tracker with
no Python code per item.

How the job ends:

- exhausting the loop, or calling ``close()``, marks it ``succeeded``;
- an exception leaving ``with tqdm(...) as bar:`` marks it ``failed`` (``KeyboardInterrupt``:
  ``cancelled``), by the same rules as ``with jp.track(...)``; inside a ``with`` block it is the block
  that decides, so a loop broken off early still succeeds when the block ends normally;
- a loop left early outside a ``with`` block (``break``, or an exception) marks it ``cancelled``, as
  ``Tracker.iter()`` does: from the bar alone the two cannot be told apart, and neither is a success.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from ...errors import MissingExtraError
from .._bridge import BarTracker, count_of, job_id_for, nearest_unit

try:
    import tqdm.std as _std
except ImportError as exc:  # pragma: no cover - exercised by a test that hides tqdm
    raise MissingExtraError("jobprogress.contrib.tqdm", "tqdm", "tqdm") from exc

__all__ = ["tqdm", "trange"]

_PENDING = "pending"
_RUNNING = "running"

# Where tqdm's __init__ takes desc and unit positionally, read from its signature once.
_TQDM_PARAMETERS = tuple(inspect.signature(_std.tqdm.__init__).parameters)[1:]
_DESC_AT = _TQDM_PARAMETERS.index("desc")
_UNIT_AT = _TQDM_PARAMETERS.index("unit")

_ADDED_DOC = """
jobprogress adds three optional keyword arguments and tracks the bar as a job:
``job`` is the job id (by default the bar's ``desc``, else a generated id such as
``tqdm-3f9a0c1d``), ``kind`` is the job's kind, and the bar's ``unit`` also sets the
tracker's unit (``B`` is bytes, ``it`` is iterations, other text is unknown).
Closing or exhausting the bar finishes the job; an exception leaving
``with tqdm(...)`` fails it. ``bar.tracker`` is the job's tracker.
"""


def _with_added_doc(doc: str | None) -> str:
    """tqdm's docstring unchanged, with jobprogress's paragraph indented as the docstring is."""
    doc = doc or ""
    lines = [line for line in doc.splitlines()[1:] if line.strip()]
    margin = min((len(line) - len(line.lstrip()) for line in lines), default=0)
    added = "".join(
        " " * margin + line if line.strip() else line for line in _ADDED_DOC.splitlines(keepends=True)
    )
    return doc.rstrip() + "\n" + added


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, position: int, default: Any) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


class tqdm(_std.tqdm):  # type: ignore[misc]  # tqdm ships no type information
    __doc__ = _with_added_doc(_std.tqdm.__doc__)

    # Class-level defaults: tqdm calls close() on half-built instances too (from __del__).
    _jp_tracker: BarTracker | None = None
    _jp_counts_itself = False
    _jp_entered = False

    def __init__(self, *args: Any, job: str | None = None, kind: str | None = None, **kwargs: Any) -> None:
        """See tqdm.tqdm for arguments; ``job`` and ``kind`` are jobprogress's own."""
        unit, unit_text = nearest_unit(_argument(args, kwargs, "unit", _UNIT_AT, "it"))
        tracker = BarTracker(
            job_id_for(job, _argument(args, kwargs, "desc", _DESC_AT, None), "tqdm"),
            unit=unit,
            kind=kind,
            payload=None if unit_text is None else {"unit_text": unit_text},
        )  # raises on a bad job or kind before anything is drawn
        super().__init__(*args, **kwargs)
        tracker.set_total(count_of(self.total))
        self._jp_tracker = tracker
        if self.disable:
            # tqdm never counts a disabled bar, so the tracker counts for it, in C.
            self._jp_counts_itself = True
            tracker.set_done(count_of(self.n) or 0)
            self.update = tracker.advance
            if self.iterable is None:
                tracker.start()
            # else: __iter__ hands the iterable to tracker.iter(), which starts the tracker, finishes it
            # when the loop is exhausted and cancels it when the loop is abandoned.
        else:
            tracker.follow(self, "n")
            tracker.start()

    @property
    def tracker(self) -> BarTracker:
        """The jobprogress tracker of this bar (for ``set_payload()`` and the like)."""
        assert self._jp_tracker is not None
        return self._jp_tracker

    def _jp_sync_total(self) -> None:
        tracker = self._jp_tracker
        if tracker is not None:
            total = count_of(self.total)
            if total != tracker.total:
                tracker.set_total(total)

    def __iter__(self) -> Iterator[Any]:
        tracker = self._jp_tracker
        if self._jp_counts_itself and tracker is not None and tracker.status in (_PENDING, _RUNNING):
            return tracker.iter(self.iterable)
        return super().__iter__()  # type: ignore[no-any-return]

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        """Redraw the bar (tqdm's), and hand a changed total to the tracker."""
        self._jp_sync_total()
        return super().refresh(nolock=nolock, lock_args=lock_args)

    def reset(self, total: float | None = None) -> None:
        """Restart the bar's count from zero (optionally with a new total); the tracker follows."""
        super().reset(total=total)
        self._jp_sync_total()
        tracker = self._jp_tracker
        if tracker is not None and self._jp_counts_itself:
            tracker.set_done(0)

    def close(self) -> None:
        """Close the bar and, outside a ``with`` block, end the job (see the module docstring)."""
        try:
            super().close()
        finally:
            tracker = self._jp_tracker
            if tracker is not None:
                self._jp_sync_total()
                tracker.settle()
                if not self._jp_entered:
                    if tracker.status == _PENDING:
                        tracker.start()  # a disabled bar closed unused: the job still ran
                    # tqdm's __iter__ closes the bar in its finally clause: under GeneratorExit when the
                    # loop was abandoned (break, or an exception propagating through it), with no
                    # exception when exhausted. tqdm.asyncio closes it in its except clauses.
                    error = sys.exc_info()[1]
                    if isinstance(error, (StopIteration, StopAsyncIteration)):
                        error = None
                    tracker._exit(error)

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
            self._jp_sync_total()
            tracker.settle()
            # The tracker's own rules: succeeded, failed with a bounded summary, or cancelled.
            tracker.__exit__(exc_type, exc_value, traceback)
        super().__exit__(exc_type, exc_value, traceback)


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """Shortcut for ``tqdm(range(*args), **kwargs)``, as tqdm's ``trange``."""
    return tqdm(range(*args), **kwargs)
