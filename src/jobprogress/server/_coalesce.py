"""Write coalescing: requests that arrive while the store is busy are written together, in one transaction.

SQLite lets one writer in at a time, so concurrent request threads would only queue on its lock
(sleeping in ``busy_timeout`` steps); Postgres pays a round trip and a commit per transaction. One
writer task that takes everything pending at once turns a burst of N requests into one transaction,
so the batch grows with the load and throughput with it. Merging is safe because writes are
idempotent and seq-guarded: the order of messages across requests does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from jobprogress.envelope import Heartbeat, ProgressUpdate

__all__ = ["WriteCoalescer"]

MAX_MERGED_MESSAGES: Final = 5000
"""Most messages in one merged transaction; a longer queue is written in several."""


class _Waiter:
    __slots__ = ("done", "error", "messages")

    def __init__(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        self.messages = messages
        self.done = anyio.Event()
        self.error: BaseException | None = None


class WriteCoalescer:
    """Funnels every request's messages through one writer task (see the module docstring).

    Args:
        write: The blocking store write; runs on a worker thread, one call at a time.
        max_messages: Most messages merged into one call.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Heartbeat | ProgressUpdate]], None],
        *,
        max_messages: int = MAX_MERGED_MESSAGES,
    ) -> None:
        self._write = write
        self._max_messages = max_messages
        self._pending: list[_Waiter] = []
        self._wakeup = anyio.Event()
        self._running = False
        self.transactions = 0

    @property
    def pending(self) -> int:
        """Requests waiting for the writer task."""
        return len(self._pending)

    async def write(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Write ``messages``, merged with whatever else is pending.

        Raises:
            Exception: whatever the store raised for the merged write.
        """
        if not self._running:
            # Served without lifespan (so no writer task): write directly.
            await anyio.to_thread.run_sync(self._write, messages)
            return
        waiter = _Waiter(messages)
        self._pending.append(waiter)
        self._wakeup.set()
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer task: runs until cancelled, then fails whatever is still pending."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                while self._pending:
                    await self._write_some()
        finally:
            self._running = False
            for waiter in self._pending:
                waiter.error = RuntimeError("the collector is shutting down")
                waiter.done.set()
            self._pending.clear()

    async def _write_some(self) -> None:
        taken: list[_Waiter] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0].messages) <= self._max_messages):
            waiter = self._pending.pop(0)
            taken.append(waiter)
            count += len(waiter.messages)
        merged = [message for waiter in taken for message in waiter.messages]
        error: BaseException | None = None
        # Shielded: a transaction that started is seen through and its waiters told, even at shutdown.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self._write, merged)
            except Exception as exc:
                error = exc
            self.transactions += 1
            for waiter in taken:
                waiter.error = error
                waiter.done.set()
