"""Per-sink latest-wins delivery with retries, backoff and jitter, on a thread of the sink's own.

Each sink gets a :class:`Mailbox` keyed by (job, worker): a newer state replaces an older one that was
not sent yet, so memory is bounded by the number of jobs, not by how long a sink is down, and the
newest state is what lands after an outage. A slow or failing sink delays only its own mailbox.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .errors import SinkError

if TYPE_CHECKING:
    import asyncio

    from .envelope import Heartbeat, ProgressUpdate
    from .sinks import AnySink

    Message = Heartbeat | ProgressUpdate

__all__ = ["Mailbox", "backoff_delay"]

logger = logging.getLogger("jobprogress")

Key = tuple[str, str]

BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 30.0
BACKOFF_JITTER: Final = 0.2
RETRY_AFTER_CAP: Final = 300.0
MAX_PENDING_KEYS: Final = 10_000
"""Most (job, worker) states one mailbox holds; beyond it the oldest is dropped and counted."""


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """1 s doubling per failed attempt, capped at 30 s, with ±20 % jitter so workers do not synchronise."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 16)) * rng.uniform(
        1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER
    )


class Mailbox:
    """Latest-wins pending states for one sink, and the sender that drains them.

    With ``threaded=False`` nothing runs in the background: :meth:`deliver` is called inline (tests).
    """

    def __init__(
        self,
        sink: AnySink,
        name: str,
        *,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
        threaded: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.sink = sink
        self.name = name
        self._max_batch = max_batch
        self._clock = clock
        self._threaded = threaded
        self._rng = rng or random.Random()
        self._pending: dict[Key, list[Message]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._inflight = 0
        self._attempt = 0
        self._retry_at = 0.0
        self._last_failed = False
        self._logged: set[tuple[str, bool]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._is_async = not callable(getattr(sink, "send", None)) and callable(getattr(sink, "asend", None))
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "batches", "failures", "retries", "dropped", "dropped_overflow", "replaced"), 0
        )

    # -- producer side (reporter thread) ---------------------------------------------------------

    def put(self, key: Key, messages: list[Message], *, keepalive: bool = False) -> None:
        """Queue the newest state of ``key``; a keepalive never displaces a pending state."""
        self.put_many([(key, messages, keepalive)])

    def put_many(self, due: Sequence[tuple[Key, list[Message], bool]]) -> None:
        """Queue what one reporter pass produced, under one lock and with one wake-up."""
        pending = self._pending
        with self._lock:
            for key, messages, keepalive in due:
                if key in pending:
                    if keepalive:
                        continue
                    self.stats["replaced"] += 1
                elif len(pending) >= MAX_PENDING_KEYS:
                    oldest = next(iter(pending))
                    self.stats["dropped_overflow"] += len(pending.pop(oldest))
                    self._log_once("overflow", True, "mailbox full; dropping the oldest undelivered state")
                pending[key] = messages
        if self._threaded:
            self._ensure_thread()
            self._wake.set()

    @property
    def pending(self) -> int:
        """Messages waiting or in flight."""
        with self._lock:
            return sum(map(len, self._pending.values())) + self._inflight

    @property
    def failing(self) -> bool:
        """The last send raised, or the sender is backing off: waits are never spent on it."""
        return self._last_failed or self._clock() < self._retry_at

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self) -> bool:
        """One attempt to send what is due. Returns False when it is backing off or nothing is pending."""
        if self._clock() < self._retry_at:
            return False
        with self._lock:
            if not self._pending:
                return False
            batch: dict[Key, list[Message]] = {}
            count = 0
            for key in list(self._pending):
                messages = self._pending.pop(key)
                batch[key] = messages
                count += len(messages)
                if count >= self._max_batch:
                    break
            self._inflight = count
        flat = [message for messages in batch.values() for message in messages]
        try:
            self._send(flat)
        except SinkError as exc:
            if exc.retryable:
                self._failed(batch, exc, exc.retry_after)
            else:
                self.stats["dropped"] += len(flat)
                self._log_once(
                    type(exc).__name__, False, f"rejected {len(flat)} message(s), not retried: {exc}"
                )
                self._settled()
        except (Exception, SystemExit) as exc:  # a sink calling sys.exit must not end the sender either
            self._failed(batch, exc, None)
        else:
            self.stats["sent"] += len(flat)
            self.stats["batches"] += 1
            if self._last_failed:
                logger.info("jobprogress: sink %s recovered", self.name)
            self._last_failed = False
            self._attempt = 0
            self._settled()
        return True

    def _send(self, messages: Sequence[Message]) -> None:
        if self._is_async:
            self._run_async(self.sink.asend(messages))  # type: ignore[union-attr]
        else:
            self.sink.send(messages)  # type: ignore[union-attr]

    def _run_async(self, coroutine: Any) -> Any:
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def _failed(self, batch: dict[Key, list[Message]], exc: BaseException, retry_after: float | None) -> None:
        self.stats["failures"] += 1
        if retry_after is not None and retry_after >= 0:
            delay = min(retry_after, RETRY_AFTER_CAP) * self._rng.uniform(1.0, 1.0 + BACKOFF_JITTER)
        else:
            delay = backoff_delay(self._attempt, self._rng)
        self._attempt += 1
        self._retry_at = self._clock() + delay
        self._last_failed = True
        self._log_once(
            type(exc).__name__, True, f"send failed ({type(exc).__name__}: {exc}); retrying in {delay:.1f}s"
        )
        with self._lock:
            for key, messages in batch.items():
                if key not in self._pending:  # a newer state queued meanwhile wins
                    self._pending[key] = messages
                    self.stats["retries"] += len(messages)
            self._inflight = 0
            self._idle.notify_all()

    def _settled(self) -> None:
        with self._lock:
            self._inflight = 0
            if not self._pending:
                self._idle.notify_all()

    def _log_once(self, kind: str, retryable: bool, text: str) -> None:
        if (kind, retryable) in self._logged:
            logger.debug("jobprogress: sink %s: %s", self.name, text)
            return
        self._logged.add((kind, retryable))
        logger.warning("jobprogress: sink %s: %s", self.name, text)

    # -- waiting ---------------------------------------------------------------------------------

    @property
    def backing_off(self) -> bool:
        return self._clock() < self._retry_at

    def wait_empty(self, deadline: float, *, skip_failed: bool = False) -> bool:
        """Wait until nothing is pending or in flight, or ``deadline``.

        Never waits while the sender is backing off; with ``skip_failed`` (at exit) not on a sink whose
        last send raised either, even when its retry is due.
        """
        if not self._threaded:
            while self.deliver():
                pass
            return not self._pending
        with self._lock:
            while self._pending or self._inflight:
                if self.backing_off or (skip_failed and self._last_failed and not self._inflight):
                    return False
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
            return True

    def sink_flush(self, timeout: float) -> bool:
        try:
            if self._is_async:
                return bool(self._run_async(self.sink.aflush(timeout)))  # type: ignore[union-attr]
            return bool(self.sink.flush(timeout))  # type: ignore[union-attr]
        except Exception as exc:
            self._log_once(type(exc).__name__ + ".flush", True, f"flush failed: {exc}")
            return False

    # -- thread ----------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopping:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name=f"jobprogress-sink-{self.name}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: deliver inline at flush instead
                self._threaded = False
                return
            self._thread = thread

    def _run(self) -> None:
        while True:
            wait = None
            if self._pending:
                wait = max(self._retry_at - self._clock(), 0.0)
            if wait is None or wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
            if self._stopping and (not self._pending or self.failing):
                break
            try:
                self.deliver()
            except Exception:  # a bug here must not kill delivery for good
                logger.exception("jobprogress: sink %s: unexpected error in sender", self.name)
                time.sleep(0.1)
        self._close_sink()

    def _close_sink(self) -> None:
        try:
            if self._is_async:
                self._run_async(self.sink.aclose(1.0))  # type: ignore[union-attr]
            else:
                self.sink.close(1.0)  # type: ignore[union-attr]
        except Exception as exc:
            logger.debug("jobprogress: sink %s: close failed: %s", self.name, exc)
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None

    def stop(self, timeout: float) -> None:
        """Stop the sender (after a last attempt if the sink is healthy) and close the sink."""
        self._stopping = True
        thread = self._thread
        if thread is None:  # never sent anything: close on a helper thread, so a hanging close is bounded
            closer = threading.Thread(
                target=self._close_sink, name=f"jobprogress-close-{self.name}", daemon=True
            )
            try:
                closer.start()
            except RuntimeError:  # interpreter shutting down: no threads any more, close inline
                self._close_sink()
                return
            closer.join(max(timeout, 0.0))
            return
        self._wake.set()
        thread.join(max(timeout, 0.0))
