"""The background reporter: sampling, throttle, keepalive, message building, flush and shutdown.

One reporter per process samples the live trackers off the hot path, feeds each tracker's throughput
estimator, and hands the newest state of every job that is due to each sink's :class:`Mailbox`:
immediately on start, status change and finish; at most once per ``interval`` for progress; a
heartbeat without progress after ``keepalive`` seconds without a change. Its cost grows with the
number of live jobs, never with items. Throttling runs on the monotonic clock, so a stepped wall clock
changes nothing; message order is carried by ``seq``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from ._mailbox import Mailbox
from ._messages import MessageBuilder, build_envelope
from ._outbox import Outbox, outbox_root
from ._states import FINAL_STATUSES, RUNNING
from ._threads import start_daemon
from .estimator import ThroughputEstimator

if TYPE_CHECKING:
    from ._tracker import Tracker, TrackerState
    from .config import Settings
    from .envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
    from .sinks import AnySink

    Message = Heartbeat | ProgressUpdate
    Due = tuple[tuple[str, str], list[Message], bool]
    """(key, messages, is_keepalive) queued by one pass."""

__all__ = ["Reporter", "Slot"]

logger = logging.getLogger("jobprogress")

MAX_SAMPLE_PERIOD: Final = 1.0
CPU_BUDGET: Final = 0.035
"""Share of one core the reporter's sampling passes may use (the senders need a little more); beyond
it, sampling slows down."""
LINGER: Final = 0.005
"""Seconds the reporter waits after a wake-up before its pass, to gather a burst of events."""


class Slot:
    """The reporter's bookkeeping for one tracker run: estimator, what was sent and when."""

    __slots__ = (
        "builder",
        "estimator",
        "key",
        "run_id",
        "sent_at",
        "sent_done",
        "sent_version",
        "tracker",
        "urgent",
    )

    def __init__(self, tracker: Tracker, state: TrackerState, heartbeat_limit: int) -> None:
        self.tracker = tracker
        self.estimator = ThroughputEstimator()
        self.builder = MessageBuilder(state, heartbeat_limit)
        self.key = (state.job_id, state.worker_id)
        self.run_id = state.run_id
        self.sent_done = -1
        self.sent_version = -1
        self.sent_at = float("-inf")
        self.urgent = True


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class Reporter:
    """Samples trackers and feeds the sinks' mailboxes.

    Args:
        settings: The resolved configuration.
        sinks: ``(name, sink)`` pairs; with none, trackers still work and nothing is sent.
        clock: Monotonic seconds (throttle, keepalive, estimator, retry timing).
        wallclock: POSIX seconds for ``updated_at``.
        threaded: False runs every pass and every delivery inline, in the calling thread (tests).
    """

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[tuple[str, AnySink]],
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        threaded: bool = True,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wallclock = wallclock
        self._threaded = threaded
        root = outbox_root(settings.outbox)
        self.mailboxes = [
            Mailbox(
                sink,
                name,
                max_batch=settings.max_batch,
                clock=clock,
                threaded=threaded,
                outbox=Outbox(root, name) if root is not None and getattr(sink, "use_outbox", True) else None,
            )
            for name, sink in sinks
        ]
        self._base_period = min(settings.interval, MAX_SAMPLE_PERIOD)
        self._sample_period = self._base_period
        self._pass_cost = 0.0
        self._interval = settings.interval
        self._keepalive = settings.keepalive
        self._slots: dict[int, Slot] = {}
        """The live runs, sampled each pass."""
        self._runs: weakref.WeakKeyDictionary[Tracker, Slot] = weakref.WeakKeyDictionary()
        """The newest run of every tracker seen, live or ended (kept for ``snapshot()``, no longer)."""
        self._incoming: deque[tuple[Tracker, int]] = deque()
        self._sinkless: dict[int, Tracker] = {}
        self._pass_lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stopped = False
        self._next_sample = float("-inf")
        self._forced_cond = threading.Condition()
        self._forced_requested = 0
        self._forced_done = 0

    # -- tracker side (any thread) ---------------------------------------------------------------

    def register(self, tracker: Tracker, seq_floor: int = 0) -> None:
        """A tracker started: report it at once."""
        if not self.mailboxes:
            # Nothing samples or sends without a sink, so queueing every start would grow forever:
            # remember only the running trackers, for configure() to hand to new sinks.
            self._sinkless[id(tracker)] = tracker
            return
        self._incoming.append((tracker, seq_floor))
        self._kick()

    def notify(self, tracker: Tracker) -> None:
        """A tracker changed status: report it at once."""
        if not self.mailboxes:
            self._sinkless.pop(id(tracker), None)
            return
        self._incoming.append((tracker, 0))
        self._kick()

    def _kick(self) -> None:
        if not self.mailboxes:
            return
        if self._threaded:
            self._ensure_thread()
            self._wake.set()
        else:
            self.run_pass()
            for mailbox in self.mailboxes:
                mailbox.wait_empty(0.0)

    # -- the pass --------------------------------------------------------------------------------

    def run_pass(self, *, force: bool = False) -> bool:
        """Handle started/finished trackers, and on sample ticks (or ``force``) sample every tracker.

        Returns:
            Whether every tracker was sampled.
        """
        with self._pass_lock:
            now = self._clock()
            stamp = _utc(self._wallclock())  # one updated_at for every message of the pass
            due: list[Due] = []
            sample_tick = force or now >= self._next_sample
            while self._incoming:
                tracker, seq_floor = self._incoming.popleft()
                state = tracker.state()
                slot = self._runs.get(tracker)
                if slot is None or slot.run_id != state.run_id or slot.key != (state.job_id, state.worker_id):
                    slot = self._runs[tracker] = Slot(tracker, state, self.settings.heartbeat_limit)
                slot.builder.seq_floor = max(slot.builder.seq_floor, seq_floor)
                slot.urgent = True
                self._slots[id(tracker)] = slot
                if not sample_tick:
                    self._visit(slot, now, stamp, due, sample=False, force=False)
            if sample_tick:
                self._next_sample = now + self._sample_period
                for slot in list(self._slots.values()):
                    self._visit(slot, now, stamp, due, sample=True, force=force)
            if due:
                for mailbox in self.mailboxes:
                    mailbox.put_many(due)
            return sample_tick

    def _visit(
        self, slot: Slot, now: float, stamp: datetime, due: list[Due], *, sample: bool, force: bool
    ) -> None:
        state = slot.tracker.state()
        status = state.status
        done = state.done
        if sample and status == RUNNING:
            slot.estimator.observe(now, done)
        changed = done != slot.sent_done or state.version != slot.sent_version
        if slot.urgent or (changed and (force or now - slot.sent_at >= self._interval)):
            due.append((slot.key, slot.builder.messages(state, slot.estimator, stamp), False))
            slot.urgent = False
            slot.sent_done = done
            slot.sent_version = state.version
            slot.sent_at = now
        elif status == RUNNING and now - slot.sent_at >= self._keepalive:
            due.append((slot.key, [slot.builder.heartbeat(state, None, stamp)], True))
            slot.sent_at = now
        if status in FINAL_STATUSES and not slot.urgent:
            self._slots.pop(id(slot.tracker), None)

    def envelope_of(self, tracker: Tracker) -> JobProgressEnvelope:
        """The envelope of ``tracker`` now, with rate and ETA when this reporter has sampled it."""
        slot = self._runs.get(tracker)
        return build_envelope(tracker.state(), slot.estimator if slot is not None else None, None)

    # -- thread ----------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopped:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is not None:
                return
            thread = start_daemon(self._run, "jobprogress-reporter")
            if thread is None:  # interpreter shutting down: run inline from now on
                self._threaded = False
                for mailbox in self.mailboxes:
                    mailbox._threaded = False
                return
            self._thread = thread

    def _run(self) -> None:
        while not self._stopped:
            if self._wake.wait(max(self._next_sample - self._clock(), 0.0)):
                # Linger a moment so a burst of starts and finishes (thousands of short jobs) costs one
                # pass, not one pass and one GIL hand-off per event.
                time.sleep(LINGER)
            self._wake.clear()
            with self._forced_cond:
                forced = self._forced_requested
            started = time.thread_time()
            try:
                sampled = self.run_pass(force=forced > self._forced_done)
            except Exception:
                sampled = False
                logger.exception("jobprogress: unexpected error in the reporter")
            if sampled:
                self._budget(time.thread_time() - started)
            if forced > self._forced_done:
                with self._forced_cond:
                    self._forced_done = forced
                    self._forced_cond.notify_all()

    def _budget(self, cost: float) -> None:
        """Keep the reporter within ``CPU_BUDGET`` of a core: stretch the sampling period if passes cost more.

        A sampling pass costs a few microseconds per live tracker. Up to a few thousand live trackers it
        fits the budget at the configured interval; beyond that each job is sampled and sent less often
        (still at most once per ``interval``) instead of the reporter taking more of the worker's CPU.
        Starts and finishes are still sent at once.
        """
        # Up at once when a pass costs more, down gently when passes get cheaper: never over budget for long.
        self._pass_cost = max(cost, 0.7 * self._pass_cost + 0.3 * cost)
        self._sample_period = max(self._base_period, self._pass_cost / CPU_BUDGET)

    def _forced_pass(self, deadline: float) -> bool:
        """Have every tracker sampled and its newest state queued; False if that missed the deadline."""
        if not self._threaded or self._thread is None or not self._thread.is_alive():
            self.run_pass(force=True)
            return True
        with self._forced_cond:
            self._forced_requested += 1
            wanted = self._forced_requested
            self._wake.set()
            while self._forced_done < wanted:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._forced_cond.wait(remaining)
        return True

    # -- flush and shutdown ----------------------------------------------------------------------

    def flush(self, timeout: float, *, at_exit: bool = False, spool: bool = True) -> bool:
        """Send the newest state of every tracker; True when every mailbox is empty by the deadline.

        Until the deadline failed sends are retried soon, whatever the backoff (``at_exit``, a sink whose
        last send raised is not waited for). With ``spool``, what is still undelivered at the deadline is
        also written to the outbox (and stays queued here); False then means "spooled".
        """
        if not self.mailboxes:
            return True
        deadline = self._clock() + max(timeout, 0.0)
        # Empty mailboxes prove nothing if the newest states never reached them.
        empty = self._forced_pass(deadline)
        for mailbox in self.mailboxes:
            if mailbox.wait_empty(deadline, skip_failed=at_exit):
                mailbox.sink_flush(max(deadline - self._clock(), 0.0))
            else:
                empty = False
                if spool:
                    mailbox.spool(keep=True)
        return empty

    def shutdown(self, timeout: float, *, at_exit: bool = False) -> bool:
        """Flush (bounded by ``timeout``), stop the threads, close the sinks and spool what is left.

        Idempotent. Returns whether everything was delivered; when not, the rest is in the outbox.
        """
        deadline = self._clock() + max(timeout, 0.0)
        if self._stopped:
            # Shut down already, or being shut down by a call this one interrupted (a SIGTERM handler
            # during the exit flush): make sure its work is done before the process goes.
            waits = [mailbox.wait_empty(deadline, skip_failed=True) for mailbox in self.mailboxes]
            delivered = all(waits)  # every mailbox waited for, not only up to the first that failed
        else:
            delivered = self.flush(timeout, at_exit=at_exit, spool=False)
            self._stopped = True
            self._wake.set()
            for mailbox in self.mailboxes:
                mailbox.stop(max(deadline - self._clock(), 0.0))
        if not delivered:
            for mailbox in self.mailboxes:
                mailbox.spool(keep=False)
        return delivered

    def live_trackers(self) -> list[Tracker]:
        """Running trackers, including those whose start is still queued for the next pass."""
        trackers = [slot.tracker for slot in list(self._slots.values())] + list(self._sinkless.values())
        trackers += [tracker for tracker, _ in list(self._incoming)]
        trackers = list({id(tracker): tracker for tracker in trackers}.values())
        return [tracker for tracker in trackers if tracker.status == RUNNING]

    def stats(self) -> dict[str, Any]:
        return {
            "live_trackers": len(self._slots),
            "sample_period": self._sample_period,
            "sinks": {
                mailbox.name: {
                    **mailbox.stats,
                    **(mailbox.outbox.stats if mailbox.outbox is not None else {}),
                    "pending": mailbox.pending,
                    "failing": mailbox.failing,
                    "broken": mailbox.broken,
                }
                for mailbox in self.mailboxes
            },
        }
