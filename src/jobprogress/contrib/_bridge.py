"""What the tqdm and rich bridges share: job ids and units from a bar's text, a tracker that reads a bar.

A bar already keeps its own count (tqdm's ``n``, rich's ``Task.completed``). A :class:`BarTracker` reads
that count when the reporter samples it, instead of being told on every update, so a bridged bar's
``update()`` runs exactly the library's own code.
"""

from __future__ import annotations

import math
import numbers
import os
import weakref
from collections.abc import Callable
from typing import Any

from .. import _validate as v
from .._tracker import Tracker

__all__ = ["BarTracker", "count_of", "job_id_for", "nearest_unit"]

# Bar units by the envelope unit that means the same thing; matched case-insensitively except "B".
_UNIT_SPELLINGS = {
    "files": ("file", "files"),
    "rows": ("row", "rows"),
    "bytes": ("byte", "bytes"),
    "records": ("record", "records", "rec"),
    "chunks": ("chunk", "chunks"),
    "iterations": ("it", "iteration", "iterations", "iter", "iters"),
}
_UNIT_BY_SPELLING = {spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings}


def nearest_unit(text: object) -> tuple[str, str | None]:
    """The envelope unit nearest to a bar's unit text, and the text itself when that unit is ``unknown``.

    ``"B"`` (tqdm's bytes, as in ``unit="B", unit_scale=True``) is bytes; ``"it"`` is iterations; the
    envelope's own names and their singulars are themselves; any other text is ``unknown``, and is
    returned to be kept in the payload (when it is storable text).
    """
    if not isinstance(text, str):
        return "unknown", None
    unit = "bytes" if text == "B" else _UNIT_BY_SPELLING.get(text.strip().lower(), "unknown")
    if unit != "unknown" or text == unit or not _storable(text):
        return unit, None
    return unit, text


def _storable(text: str) -> bool:
    try:
        v.check_text("text", text, v.MAX_STRING_LENGTH)
    except ValueError:
        return False
    return not v.has_control(text)


def job_id_for(job: object, text: object, prefix: str) -> str:
    """The job id of a bar: ``job`` when given (checked), else the bar's text, else a generated id.

    The text (tqdm's ``desc``, rich's task description without markup) is used when it makes a valid id
    once trimmed; control characters become spaces and it is cut to the id limit. The generated id is
    ``<prefix>-<8 hex digits>``, fixed for the bar's lifetime.

    Raises:
        InvalidProgressError: ``job`` was given and is not a valid job id.
    """
    if job is not None:
        return v.check_id("job id", job)
    if isinstance(text, str):
        cleaned = "".join(" " if v.has_control(char) else char for char in text).strip()
        cleaned = cleaned[: v.MAX_ID_LENGTH].strip()
        if cleaned and _storable(cleaned):
            return cleaned
    return f"{prefix}-{os.urandom(4).hex()}"


def count_of(value: object) -> int | None:
    """A bar's count or total (int or float, maybe inf or NaN) as a jobprogress count; None if unknown."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        count = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            return None
        count = int(number)
    return min(count, v.MAX_COUNT) if count >= 0 else None


class BarTracker(Tracker):
    """A tracker whose count is read from a bar while the bar lives (see :meth:`follow`).

    Its ``advance()`` also takes what a bar's ``update()`` takes: fractions add up, negative steps count
    down (not below zero), and values that are not numbers are ignored, as a disabled tqdm bar ignores
    them. Plain non-negative ints still take the C fast path.
    """

    __slots__ = ("_fraction", "_read")

    def __init__(
        self,
        job: str,
        *,
        unit: str,
        kind: str | None,
        payload: dict[str, Any] | None,
    ) -> None:
        super().__init__(job, unit=unit, kind=kind, payload=payload)
        self._read: Callable[[], object] | None = None
        self._fraction = 0.0

    def follow(self, bar: object, attribute: str) -> None:
        """Read ``done`` from ``bar.<attribute>`` from now on; the bar is held weakly, never kept alive."""
        ref = weakref.ref(bar)

        def read() -> object:
            target = ref()
            return None if target is None else getattr(target, attribute, None)

        self._read = read

    def settle(self) -> None:
        """Stop following the bar, keeping the count it reached (call before the job ends)."""
        if self._read is not None:
            done = self.done
            self._read = None
            self.set_done(done)

    @property
    def done(self) -> int:
        """Items done: the followed bar's count, or what this tracker counted itself."""
        read = self._read
        if read is not None:
            count = count_of(read())
            if count is not None:
                return count
        return super().done

    def _advance_slow(self, n: object) -> None:
        if isinstance(n, numbers.Integral):
            whole, fraction = self._done + int(n), self._fraction
        elif isinstance(n, numbers.Real) and math.isfinite(float(n)):
            exact = self._done + self._fraction + float(n)
            whole = math.floor(exact)
            fraction = exact - whole
        else:
            return
        if whole < 0:
            whole, fraction = 0, 0.0
        self._done = min(whole, v.MAX_COUNT)
        self._fraction = fraction
