"""``memory://``: keeps every message it receives in a list, in delivery order (tests, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._forklock import ForkSafeLock
from ..hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from ..envelope import Heartbeat, ProgressUpdate

__all__ = ["MemorySink", "jobprogress_register_sinks"]


class MemorySink:
    """A sink that appends to :attr:`messages`. ``memory://NAME`` sinks with one name share one list."""

    use_outbox = False
    """Process-local: nothing to spool for another process."""

    _shared: dict[str, list[Heartbeat | ProgressUpdate]] = {}
    _shared_lock = ForkSafeLock()

    def __init__(self, url: str = "memory://") -> None:
        name = url.split("://", 1)[1] if "://" in url else ""
        with self._shared_lock:
            self.messages = self._shared.setdefault(name, []) if name else []
        self.url = url
        self.closed = False

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        self.messages.extend(messages)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        self.closed = True

    @classmethod
    def named(cls, name: str) -> list[Heartbeat | ProgressUpdate]:
        """The shared message list of ``memory://name``."""
        with cls._shared_lock:
            return cls._shared.setdefault(name, [])


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    register("memory", MemorySink)
