"""Per-sink latest-wins delivery with retries, backoff and jitter, on a thread of the sink's own.

Each sink gets a :class:`Mailbox` keyed by (job, worker): a newer state replaces an older one that was
not sent yet, so memory is bounded by the number of jobs, not by how long a sink is down, and the
newest state is what lands after an outage. A slow or failing sink delays only its own mailbox.

What a mailbox could not deliver by a deadline goes to the sink's :class:`~jobprogress._outbox.Outbox`
on disk (:meth:`Mailbox.spool`), and a mailbox whose sink has an outbox with states of earlier processes
delivers them first, on its own thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._log import redact_url, warn_once
from ._threads import start_daemon
from .errors import SinkError

if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

    from ._outbox import Outbox
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
FLUSH_RETRY_BASE: Final = 0.1
FLUSH_RETRY_CAP: Final = 1.0
"""While a flush waits, a failed send is retried after 0.1 s doubling up to 1 s, whatever the backoff."""
REPLAY_BUSY_DELAY: Final = 1.0
"""Seconds before looking again at an outbox another process is replaying."""


def backoff_delay(attempt: int, rng: random.Random, *, flushing: bool = False) -> float:
    """1 s doubling per failed attempt, capped at 30 s, with ±20 % jitter so workers do not synchronise.

    While a flush waits: 0.1 s doubling, capped at 1 s.
    """
    base, cap = (FLUSH_RETRY_BASE, FLUSH_RETRY_CAP) if flushing else (BACKOFF_BASE, BACKOFF_CAP)
    return min(cap, base * 2.0 ** min(attempt, 16)) * rng.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)


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
        outbox: Outbox | None = None,
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
        self._inflight_batch: dict[Key, list[Message]] = {}
        self._attempt = 0
        self._retry_at = 0.0
        self._server_delay = False
        self._flush_deadline = float("-inf")
        self._last_failed = False
        self.broken: str | None = None
        """Why the sink cannot work (``SinkError(broken=True)``); nothing is sent to it any more."""
        self.outbox = outbox
        self._spooled: list[Path] = []
        self._replay_at = 0.0 if outbox is not None and outbox.files() else float("inf")
        self._logged: set[object] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._is_async = not callable(getattr(sink, "send", None)) and callable(getattr(sink, "asend", None))
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "batches", "failures", "retries", "dropped", "dropped_overflow", "replaced"), 0
        )
        if self._threaded and self._replay_at == 0.0:
            self._ensure_thread()

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
        return self._last_failed or self._clock() < self._retry_at or self.broken is not None

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self) -> bool:
        """One attempt to send what is due. Returns False when it is backing off or nothing is pending."""
        if self.broken is not None or self._clock() < self._retry_at:
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
            self._inflight_batch = batch
        flat = [message for messages in batch.values() for message in messages]
        try:
            self._send(flat)
        except SinkError as exc:
            if exc.broken:
                self._broke(batch, exc)
            elif exc.retryable:
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
                logger.info("jobprogress: sink %s recovered", redact_url(self.name))
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
        now = self._clock()
        self._server_delay = retry_after is not None and retry_after >= 0
        if retry_after is not None and retry_after >= 0:
            delay = min(retry_after, RETRY_AFTER_CAP) * self._rng.uniform(1.0, 1.0 + BACKOFF_JITTER)
        elif now < self._flush_deadline:  # a flush is waiting: keep trying through a short outage
            delay = backoff_delay(self._attempt, self._rng, flushing=True)
        else:
            delay = backoff_delay(self._attempt, self._rng)
        self._attempt += 1
        self._retry_at = now + delay
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
            self._inflight_batch = {}
            self._idle.notify_all()

    def _broke(self, batch: dict[Key, list[Message]], exc: SinkError) -> None:
        """Stop sending for good; keep the newest states (for the outbox) and say why, once."""
        self.stats["failures"] += 1
        self.broken = str(exc)
        self._last_failed = True
        warn_once(
            ("broken",),
            "jobprogress: sink %s cannot work, nothing more is sent to it: %s",
            redact_url(self.name),
            exc,
            seen=self._logged,
            level=logging.ERROR,
        )
        with self._lock:
            for key, messages in batch.items():
                self._pending.setdefault(key, messages)
            self._inflight = 0
            self._inflight_batch = {}
            self._idle.notify_all()

    def _is_broken(self) -> bool:
        # A method, not the attribute: the sender thread may set it while a wait loop checks.
        return self.broken is not None

    def _settled(self) -> None:
        with self._lock:
            self._inflight = 0
            self._inflight_batch = {}
            if self._pending:
                return
            self._idle.notify_all()
            spooled, self._spooled = self._spooled, []
        if spooled and self.outbox is not None:
            # Everything queued when those files were written has been delivered (or superseded by
            # a newer state that was): their copies on disk are no longer needed.
            self.outbox.discard(spooled)

    def _log_once(self, kind: str, retryable: bool, text: str) -> None:
        warn_once(
            (kind, retryable), "jobprogress: sink %s: %s", redact_url(self.name), text, seen=self._logged
        )

    # -- waiting ---------------------------------------------------------------------------------

    @property
    def backing_off(self) -> bool:
        return self._clock() < self._retry_at

    def wait_empty(self, deadline: float, *, skip_failed: bool = False) -> bool:
        """Wait until nothing is pending or in flight, or ``deadline``.

        Until the deadline a failed send is retried soon (0.1 s doubling up to 1 s), whatever the
        backoff was: a flush waits through a short outage. It gives up early only when the sink asked
        (``Retry-After``) for a wait past the deadline, and with ``skip_failed`` (at exit) on a sink
        whose last send raised: that one is not waited for at all.
        """
        if not self._threaded:
            if self._clock() >= max(self._replay_at, self._retry_at):
                self._replay()
            while self.deliver():
                pass
            return not self._pending
        with self._lock:
            if self.broken is not None:
                return not self._pending and not self._inflight  # nothing will be sent: do not wait
            if not skip_failed:
                if self._clock() >= self._flush_deadline:  # a new flush: a new, short series of retries
                    self._attempt = 0
                self._flush_deadline = max(self._flush_deadline, deadline)
                if not self._server_delay and self._retry_at > self._clock():
                    self._retry_at = self._clock()  # retry now rather than after the backoff
            # At exit, earlier processes' states are not waited for: they stay in the outbox anyway.
            while self._pending or self._inflight or (not skip_failed and self.replay_due):
                if self._is_broken() and not self._inflight:
                    return False  # it broke while we waited
                if skip_failed and self._last_failed and not self._inflight:
                    return False
                if self._server_delay and self._retry_at > deadline:
                    return False  # the sink asked for a wait past the deadline
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
            return True

    # -- outbox ----------------------------------------------------------------------------------

    def undelivered(self) -> dict[Key, list[Message]]:
        """The newest state of every key that is queued or in flight."""
        with self._lock:
            states = dict(self._inflight_batch)
            states.update(self._pending)
            return states

    def spool(self, *, keep: bool) -> bool:
        """Write what is not delivered yet to the outbox; False if something could not be written.

        With ``keep`` (a flush that timed out) the states stay queued and the sender keeps trying; the
        file is removed once they are delivered. Without it (shutdown) the mailbox is done.
        """
        states = self.undelivered()
        if not states:
            return True
        if self.outbox is None:
            return False
        path = self.outbox.spool(states)
        with self._lock:
            if keep and path is not None:
                self._spooled.append(path)
            elif not keep:  # handed over for good: a second shutdown must not spool them again
                for key, messages in states.items():
                    if self._pending.get(key) is messages:
                        del self._pending[key]
                self._inflight_batch = {}
        return path is not None

    @property
    def replay_due(self) -> bool:
        """States of earlier processes wait in this sink's outbox."""
        return self._replay_at != float("inf")

    def replay_now(self, deadline: float, sleep: Callable[[float], object] = time.sleep) -> bool:
        """Deliver this sink's outbox on the calling thread, retrying soon until ``deadline``.

        For ``jobprogress outbox deliver`` and the collector's start-up. Returns True when nothing of
        earlier processes is left for this sink.
        """
        self._flush_deadline = deadline
        self._attempt = 0
        if self.outbox is not None and self.outbox.files():
            self._replay_at = min(self._replay_at, self._clock())
        while self.replay_due:
            now = self._clock()
            due = max(self._replay_at, self._retry_at)
            if due > deadline:
                return False
            if due > now:
                sleep(due - now)
                continue
            self._replay()
        return True

    def _replay(self) -> None:
        """Deliver what earlier processes left in this sink's outbox (on the sender thread)."""
        outbox = self.outbox
        if outbox is None or not outbox.files():
            self._replayed()
            return
        try:
            replayed = outbox.replay(self._send_replayed, self._max_batch)
        except SinkError as exc:
            self._failed({}, exc, exc.retry_after)
        except (Exception, SystemExit) as exc:
            self._failed({}, exc, None)
        else:
            if replayed is None:  # another process holds the outbox: it is delivering these
                self._replay_at = self._clock() + REPLAY_BUSY_DELAY * self._rng.uniform(1.0, 1.5)
                return
            self._replayed()
            if replayed:
                logger.info(
                    "jobprogress: sink %s: delivered %d state(s) from the outbox",
                    redact_url(self.name),
                    replayed,
                )
            if self._last_failed:
                logger.info("jobprogress: sink %s recovered", redact_url(self.name))
            self._last_failed = False
            self._attempt = 0

    def _replayed(self) -> None:
        with self._lock:
            self._replay_at = float("inf")
            self._idle.notify_all()

    def _send_replayed(self, messages: list[Message]) -> None:
        try:
            self._send(messages)
        except SinkError as exc:
            if exc.retryable:
                raise
            self.stats["dropped"] += len(messages)
            self._log_once(type(exc).__name__, False, f"rejected {len(messages)} replayed message(s): {exc}")
        else:
            self.stats["sent"] += len(messages)
            self.stats["batches"] += 1

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
            thread = start_daemon(self._run, f"jobprogress-sink-{redact_url(self.name)}")
            if thread is None:  # interpreter shutting down: deliver inline at flush instead
                self._threaded = False
                return
            self._thread = thread

    def _run(self) -> None:
        while True:
            now = self._clock()
            wait = None
            if self._pending:
                wait = max(self._retry_at - now, 0.0)
            if self._replay_at != float("inf"):
                replay_wait = max(self._replay_at - now, self._retry_at - now, 0.0)
                wait = replay_wait if wait is None else min(wait, replay_wait)
            if self.broken is not None:
                wait = None  # nothing is sent any more: sleep until told to stop
            if wait is None or wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
            if self._stopping and (not self._pending or self.failing):
                break
            try:
                now = self._clock()
                if self.broken is None and now >= self._replay_at and now >= self._retry_at:
                    self._replay()
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
            closer = start_daemon(self._close_sink, f"jobprogress-close-{redact_url(self.name)}")
            if closer is None:  # interpreter shutting down: no threads any more, close inline
                self._close_sink()
                return
            closer.join(max(timeout, 0.0))
            return
        self._wake.set()
        thread.join(max(timeout, 0.0))
