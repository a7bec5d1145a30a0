"""How ``Tracker.iter()`` counts items without running Python code per item.

An exact-length iterator (list, tuple, range, str, bytes, dict views, set) is read through its own
``__length_hint__``. Any other is wrapped in ``itertools.compress`` over an ``itertools.repeat(True)``
that gives one selector per item: the items handed out are what the repeat has left to give. Both
are C-level and public. The chain ends with an :class:`IterEnd` that settles the count and finishes
the run when the loop is exhausted.
"""

from __future__ import annotations

import itertools
import operator
import sys

TYPE_CHECKING = False  # not typing's: keeps `import jobprogress` light
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, Final, TypeVar

    from ._tracker import Tracker

    T = TypeVar("T")

__all__ = ["IterEnd", "Probe", "counted"]

# Iterators whose remaining length is exact: iter() counts them with no per-item work at all.
EXACT_LENGTH_SAMPLES: tuple[object, ...] = (
    [],
    (),
    range(0),
    "",
    b"",
    bytearray(),
    {},
    {}.values(),
    {}.items(),
    set(),
)
EXACT_LENGTH_ITERATORS: Final = frozenset(type(iter(sample)) for sample in EXACT_LENGTH_SAMPLES)  # type: ignore[call-overload]


class Probe:
    """Counts the items an ``iter()`` has handed out, read by the reporter instead of a per-item add."""

    __slots__ = ("_iterator", "_length")

    def __init__(self, iterator: Any, length: int) -> None:
        self._iterator = iterator
        self._length = length

    def handed_out(self) -> int:
        return max(self._length - operator.length_hint(self._iterator), 0)


def counted(iterable: Iterable[T]) -> tuple[Iterator[T], Probe]:
    """``iterable``'s items, and the probe that tells how many were handed out."""
    iterator = iter(iterable)
    if type(iterator) in EXACT_LENGTH_ITERATORS:
        return iterator, Probe(iterator, operator.length_hint(iterator))
    selectors = itertools.repeat(True, sys.maxsize)
    return itertools.compress(iterator, selectors), Probe(selectors, sys.maxsize)  # one True per item


class IterEnd:
    """Last element of the chain ``iter()`` returns: finishes the tracker when the loop is exhausted.

    If the loop is abandoned (``break``, an exception) the chain is dropped and ``__del__`` settles the
    count; a tracker that ``iter()`` itself started is then marked cancelled.
    """

    __slots__ = ("_ended", "_owns", "_probe", "_tracker")

    def __init__(self, tracker: Tracker, probe: Probe, owns: bool) -> None:
        self._tracker = tracker
        self._probe = probe
        self._owns = owns
        self._ended = False

    def __iter__(self) -> IterEnd:
        return self

    def __next__(self) -> Any:
        self._ended = True
        self._tracker._iter_ended(self._probe, self._owns, exhausted=True)
        raise StopIteration

    def __del__(self) -> None:
        if not self._ended:
            self._ended = True
            try:
                self._tracker._iter_ended(self._probe, self._owns, exhausted=False)
            except Exception:  # never raise from a finalizer
                pass
