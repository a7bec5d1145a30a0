"""The sink contract, and the built-in sinks (each a plugin like any third-party one).

A sink receives batches of :class:`~jobprogress.envelope.Heartbeat` and
:class:`~jobprogress.envelope.ProgressUpdate` messages from the background reporter, on a thread of
its own, one call at a time. It signals failure by raising; :class:`~jobprogress.errors.SinkError`
says whether and when to retry, any other exception is a retryable failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..envelope import Heartbeat, ProgressUpdate

__all__ = ["AnySink", "AsyncSink", "ResumableSink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """A synchronous sink."""

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Deliver ``messages`` (oldest first) or raise."""

    def flush(self, timeout: float) -> bool:
        """Push out anything the sink buffers itself; True when nothing is left, within ``timeout``."""

    def close(self, timeout: float) -> None:
        """Release connections and threads; called once, at shutdown."""


@runtime_checkable
class AsyncSink(Protocol):
    """A sink that is asynchronous by nature; the reporter runs it on an event loop of its own."""

    async def asend(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Deliver ``messages`` (oldest first) or raise."""

    async def aflush(self, timeout: float) -> bool:
        """Async counterpart of :meth:`Sink.flush`."""

    async def aclose(self, timeout: float) -> None:
        """Async counterpart of :meth:`Sink.close`."""


@runtime_checkable
class ResumableSink(Protocol):
    """A sink that can read back what it stored: ``track(..., resume=True)`` starts from it.

    The first configured sink that has this method is asked; if it raises, resume warns once and
    starts at 0.
    """

    def stored_done(self, job_id: str, worker_id: str) -> tuple[int, int] | None:
        """``(done, seq)`` of the stored row of (job, worker), or None when there is none."""


AnySink = Sink | AsyncSink
