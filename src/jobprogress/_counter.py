"""The counter base class of Tracker: the C accelerator when it was built, else the same in Python."""

from __future__ import annotations

from ._validate import MAX_COUNT

__all__ = ["CounterBase", "PyCounterBase"]


class PyCounterBase:
    """Pure-Python twin of ``_speedups.CounterBase``.

    ``self._done += n`` holds no lock: in CPython with the GIL the attribute load, add and store run
    without an eval-breaker check between them, so concurrent advances are not lost (the 16-thread test
    checks it). The C version is atomic by construction.
    """

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = 0

    def advance(self, n: int = 1) -> None:
        """Add ``n`` finished items. Hot path: counters only."""
        if n.__class__ is int and 0 <= n <= MAX_COUNT - self._done:
            self._done += n
        else:
            self._advance_slow(n)

    def _advance_slow(self, n: object) -> None:
        raise NotImplementedError  # Tracker validates and raises the library's errors


try:
    from ._speedups import CounterBase
except ImportError:  # built without a C compiler
    CounterBase = PyCounterBase  # type: ignore[misc,assignment]
