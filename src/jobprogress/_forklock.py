"""Locks that stay sound across ``os.fork()``.

A forked child gets a copy of every lock, in whatever state the parent's threads left it, but none of
those threads. Two kinds of lock here keep a child from hanging on such a copy:

- :class:`ForkSafeLock` guards our own state and is simply renewed in the child.
- :class:`ForkGate` guards work whose *side effects* a child must not inherit half-done (a SQLite
  transaction, a pydantic-core serialization, a write into ``sys.stdout``'s buffer): a fork waits for
  the work in progress to end, and the child starts with a fresh gate.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["ForkGate", "ForkSafeLock"]


class ForkSafeLock:
    """A lock (``threading.Lock`` or ``RLock``) that a forked child gets afresh, unheld."""

    def __init__(self, factory: Callable[[], Any] = threading.Lock) -> None:
        self._factory = factory
        self._lock = factory()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = self._factory()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()


class ForkGate(ForkSafeLock):
    """A :class:`ForkSafeLock` that a fork also waits for: no thread is inside it when the child is made.

    Hold it only around short work, and never fork from inside it (the fork would wait for itself).
    """

    def __init__(self) -> None:
        super().__init__()
        os.register_at_fork(before=self._hold, after_in_parent=self._release)

    def _hold(self) -> None:
        self._lock.acquire()

    def _release(self) -> None:
        self._lock.release()
