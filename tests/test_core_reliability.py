"""The core SDK under faults: RELIABILITY.md rows 1-6, 20-23, 30 and 35 (in-process), one test per row.

Sinks are scripted test doubles registered through the plugin hook (``tests/_core_faults.py``): they
refuse, raise, sleep or hang on command. Threaded tests use real short intervals and poll with
deadlines; where timing is the point and a fake clock can drive it, the reporter or mailbox runs
synchronously on a :class:`~jobprogress.testing.FakeClock`. Row 15 and the subprocess rows (33, 34 and
the exit half of 35) live in ``test_core_processes.py``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import jobprogress as jp
from _core_faults import (
    ScriptedSink,
    fault_sinks,
    final_heartbeat,
    progress_of,
    release_all,
    scripted,
    wait_for,
)
from jobprogress import _log, _mailbox, _runtime
from jobprogress._counter import CounterBase, PyCounterBase
from jobprogress._mailbox import Mailbox
from jobprogress._reporter import Reporter
from jobprogress._validate import MAX_COUNT
from jobprogress.config import resolve_settings
from jobprogress.envelope import Heartbeat, ProgressUpdate, parse_message
from jobprogress.errors import (
    ConfigurationError,
    InvalidProgressError,
    PayloadTooLargeError,
    SinkError,
)
from jobprogress.testing import FakeClock, capture_progress


@pytest.fixture(autouse=True)
def _fault_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fault_sinks(monkeypatch):
        yield
        release_all()  # a hung sink must not hold shutdown (or a thread) past the test
        jp.shutdown(1.0)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff of 20 ms doubling to 100 ms instead of 1 s to 30 s: the shape is the same, tests stay short."""
    monkeypatch.setattr(_mailbox, "BACKOFF_BASE", 0.02)
    monkeypatch.setattr(_mailbox, "BACKOFF_CAP", 0.1)


def sink_stats(name: str) -> dict[str, int]:
    return jp.stats()["sinks"][f"scripted://{name}"]  # type: ignore[no-any-return]


# -- row 1: the sink refuses connections ------------------------------------------------------------


def test_row01_sink_refusing_keeps_latest_state_and_delivers_it_after_recovery(fast_backoff: None) -> None:
    jp.configure(sinks=["scripted://r1"], interval=0.01)
    sink = scripted("r1")
    sink.refuse.set()

    with jp.track("row1-a", unit="rows", total=200_000) as first, jp.track("row1-b", unit="rows") as second:
        for _ in range(100):  # spread over many reporter passes, all while the sink refuses
            for _ in range(1000):
                first.advance()
                second.advance(2)
            time.sleep(0.001)
        wait_for(lambda: sink_stats("r1")["failures"] >= 3, what="three refused attempts")
    assert first.done == 100_000
    assert second.done == 200_000

    def finals_attempted() -> bool:
        tried = {
            (m.job_id, m.status.value) for _, ms in sink.attempts for m in ms if isinstance(m, Heartbeat)
        }
        return {("row1-a", "succeeded"), ("row1-b", "succeeded")} <= tried

    wait_for(finals_attempted, what="the final states to be queued and refused")
    started = time.monotonic()
    assert jp.flush(0.5) is False  # retried until the deadline, then spooled to the outbox
    assert 0.4 < time.monotonic() - started < 1.5
    assert sink_stats("r1")["spooled"] == 2
    # Still down: only the newest state of each job waits (2 jobs -> at most 2 x 2 messages).
    stats = sink_stats("r1")
    assert sink.delivered == []
    assert 0 < stats["pending"] <= 4
    assert stats["replaced"] > 0

    sink.refuse.clear()  # the sink comes back
    wait_for(lambda: len({m.job_id for m in sink.delivered}) == 2, what="delivery after recovery")
    assert jp.flush(2.0)
    for job, done in (("row1-a", 100_000), ("row1-b", 200_000)):
        delivered = sink.delivered_for(job)
        # Only the final state lands: every older state was replaced while the sink was down.
        beats = [m for m in delivered if isinstance(m, Heartbeat)]
        assert [b.status.value for b in beats] == ["succeeded"]
        assert progress_of(delivered, job)[-1][1] == done
    assert sink_stats("r1")["failing"] is False


# -- row 2: the sink accepts and never replies -----------------------------------------------------


def test_row02_hung_sink_flush_and_shutdown_return_by_their_deadline() -> None:
    jp.configure(sinks=["scripted://r2"], interval=0.01)
    sink = scripted("r2")
    sink.hang = True
    with jp.track("row2-a") as tracker:
        tracker.advance(5)
    assert sink.sending.wait(5.0)
    with jp.track("row2-b") as tracker:  # queued behind the hung send
        tracker.advance(7)

    started = time.monotonic()
    delivered = jp.flush(0.3)
    elapsed = time.monotonic() - started
    assert delivered is False
    assert elapsed <= 0.3 + 0.1
    assert sink_stats("r2")["pending"] > 0

    started = time.monotonic()
    assert jp.shutdown(0.3) is False
    assert time.monotonic() - started <= 0.3 + 0.1


# -- row 3: a slow sink under 100 jobs and 1M advance() calls --------------------------------------


def _advance_million(trackers: list[jp.Tracker], rounds: int) -> None:
    per_round = 1_000_000 // rounds // len(trackers)
    for _ in range(rounds):
        for tracker in trackers:
            for _ in range(per_round):
                tracker.advance()
        time.sleep(0.005)  # let the reporter sample and the sender run between rounds


@pytest.mark.parametrize("sink_state", ["slow", "down"])
def test_row03_memory_flat_over_1m_advance_calls(sink_state: str) -> None:
    jp.configure(sinks=["scripted://r3"], interval=0.02, keepalive=0.05)
    sink = scripted("r3")
    sink.record = False
    if sink_state == "slow":
        sink.delay = 0.01
    else:
        sink.refuse.set()
    trackers = [jp.track(f"row3-{i}", unit="rows").start() for i in range(100)]
    _advance_million(trackers, rounds=4)  # warm up: slots, estimators, mailbox at their working size

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _advance_million(trackers, rounds=20)
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    for tracker in trackers:
        tracker.finish()
    assert sum(t.done for t in trackers) == 2_000_000
    assert growth < 1_000_000, f"memory grew by {growth} bytes over 1M advance() calls"
    assert sink_stats("r3")["pending"] <= 2 * len(trackers)  # latest-wins: one state per job


def test_row03_without_a_sink_memory_is_bounded_by_live_jobs() -> None:
    jp.configure(sinks=[])
    carried = jp.track("row3-carried", unit="rows").start()
    for i in range(2000):  # warm up
        with jp.track(f"row3-none-{i}") as tracker:
            tracker.advance()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            with jp.track(f"row3-none-{i}") as tracker:
                tracker.advance()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Keeping each finished tracker would cost over 200 bytes a job: 4 MB here.
    assert growth < 100_000, f"memory grew by {growth} bytes over 20,000 finished jobs"
    # The one job still running is handed to the sinks configured later.
    carried.advance(3)
    jp.configure(sinks=["scripted://r3late"])
    carried.finish()
    assert jp.flush(2.0)
    assert final_heartbeat(scripted("r3late").delivered, "row3-carried").status == "succeeded"
    assert progress_of(scripted("r3late").delivered, "row3-carried")[-1][1] == 3


def test_row03_slow_sink_gets_at_most_one_send_per_job_per_interval() -> None:
    interval = 0.05
    jp.configure(sinks=["scripted://r3s"], interval=interval)
    sink = scripted("r3s")
    sink.delay = 0.01
    trackers = [jp.track(f"row3s-{i}", unit="rows").start() for i in range(100)]
    started = time.monotonic()
    _advance_million(trackers, rounds=40)
    for tracker in trackers:
        tracker.finish()
    elapsed = time.monotonic() - started
    assert jp.flush(5.0)

    for tracker in trackers:
        delivered = sink.delivered_for(tracker.job_id or "")
        running = sorted(
            message.progress.updated_at
            for message in delivered
            if message.progress is not None
            and (isinstance(message, ProgressUpdate) or message.status == "running")
        )
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(running)]
        # At most one send per interval (the start included), plus the final one; never two in a
        # burst. The gaps get a generous allowance: the wall time a message is built at moves with
        # how long its pass waits for the GIL or the CPU, the throttle's monotonic clock does not.
        assert len(running) <= elapsed / interval + 1
        assert min(gaps, default=interval) >= interval / 4, gaps
        assert final_heartbeat(delivered, tracker.job_id or "").status == "succeeded"
        assert progress_of(delivered, tracker.job_id or "")[-1][1] == 10_000


# -- row 4: Retry-After ------------------------------------------------------------------------------


def test_row04_retry_after_nothing_sent_before_the_stated_time_threaded() -> None:
    retry_after = 0.3
    jp.configure(sinks=["scripted://r4"], interval=0.01)
    sink = scripted("r4")
    sink.errors = [SinkError("429 Too Many Requests", retry_after=retry_after)]
    with jp.track("row4") as tracker:
        assert sink.sending.wait(5.0)
        # New states keep arriving (and waking the sender) during the wait; none may go early.
        deadline = time.monotonic() + retry_after + 0.1
        while time.monotonic() < deadline:
            tracker.advance()
            time.sleep(0.002)
    wait_for(
        lambda: any(getattr(m, "status", None) == "succeeded" for m in sink.delivered_for("row4")),
        what="the final state after Retry-After",
    )
    first, second = sink.attempt_times()[:2]
    assert second - first >= retry_after


@pytest.mark.parametrize("retry_after", [0.0, 2.5, 45.0])
def test_row04_mailbox_waits_exactly_the_stated_time(retry_after: float) -> None:
    clock = FakeClock(0.0)
    sink = ScriptedSink("scripted://r4m")
    sink.errors = [SinkError("503", retry_after=retry_after)]
    mailbox = Mailbox(sink, "r4m", max_batch=10, clock=clock, threaded=False, rng=random.Random(4))
    mailbox.put(("job", "w"), [_heartbeat(seq=1)])
    assert mailbox.deliver()  # the refused attempt
    mailbox.put(("job", "w"), [_heartbeat(seq=2)])  # a newer state does not cut the wait short
    while clock.now < retry_after:
        assert not mailbox.deliver(), f"attempted at {clock.now}s, before Retry-After {retry_after}s"
        clock.advance(0.01)
    clock.advance(retry_after * 0.2 + 0.01)  # past the stated time plus its jitter
    assert mailbox.deliver()
    assert len(sink.attempts) == 2
    assert [m.seq for m in sink.delivered] == [2]


def test_row04_negative_retry_after_falls_back_to_backoff() -> None:
    clock = FakeClock(0.0)
    sink = ScriptedSink("scripted://r4n")
    sink.errors = [SinkError("garbage Retry-After", retry_after=-1.0)]
    mailbox = Mailbox(sink, "r4n", max_batch=10, clock=clock, threaded=False, rng=random.Random(4))
    mailbox.put(("job", "w"), [_heartbeat(seq=1)])
    assert mailbox.deliver()
    clock.advance(0.79)
    assert not mailbox.deliver()  # the first backoff step is 1 s minus at most 20 %
    clock.advance(0.42)
    assert mailbox.deliver()


def _heartbeat(seq: int, job_id: str = "job", worker_id: str = "w") -> Heartbeat:
    return Heartbeat(
        job_id=job_id,
        worker_id=worker_id,
        run_id="r",
        seq=seq,
        status="running",
        updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


# -- row 5: a 503 storm over 50 workers ------------------------------------------------------------


def test_row05_retries_of_50_workers_are_jittered_bounded_and_not_synchronised() -> None:
    clock = FakeClock(0.0)
    sinks = [ScriptedSink(f"scripted://w{i}") for i in range(50)]
    for sink in sinks:
        sink.always = lambda: SinkError("503 Service Unavailable")
        sink.clock = clock
    # One mailbox per worker process, each with its own (unseeded) random source, as in production.
    mailboxes = [
        Mailbox(sink, f"w{i}", max_batch=10, clock=clock, threaded=False) for i, sink in enumerate(sinks)
    ]
    for i, mailbox in enumerate(mailboxes):
        mailbox.put((f"job-{i}", f"w{i}"), [_heartbeat(seq=1, job_id=f"job-{i}")])
    step = 0.01
    while clock.now < 130.0:  # the first seven attempts: 0 s, then about 1, 2, 4, 8, 16 and 30 s later
        for mailbox in mailboxes:
            mailbox.deliver()
        clock.advance(step)

    delays_by_retry: list[list[float]] = []
    for sink in sinks:
        times = sink.attempt_times()
        assert len(times) >= 7
        delays = [b - a for a, b in itertools.pairwise(times)]
        for retry, delay in enumerate(delays[:6]):
            nominal = min(2.0**retry, 30.0)
            # 1 s doubling, capped at 30 s, within +-20 % (plus the fake clock's step).
            assert nominal * 0.8 - step <= delay <= nominal * 1.2 + step, (retry, delay)
        delays_by_retry.append(delays[:6])

    for retry in range(6):
        column = [delays[retry] for delays in delays_by_retry]
        nominal = min(2.0**retry, 30.0)
        # Uniform +-20 % jitter has a standard deviation of 11.5 % of the nominal delay.
        assert statistics.pstdev(column) > 0.05 * nominal, f"retry {retry + 1} is synchronised: {column}"
    first_retry_at = sorted(times[1] for times in (s.attempt_times() for s in sinks))
    # The 50 first retries spread over most of the 0.8-1.2 s window instead of landing together.
    assert first_retry_at[-1] - first_retry_at[0] > 0.2


# -- row 6: a client error that retrying cannot fix ------------------------------------------------


def test_row06_non_retryable_error_is_dropped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobprogress")
    jp.configure(sinks=["scripted://r6"], interval=0.01)
    sink = scripted("r6")
    sink.always = lambda: SinkError("HTTP 422: job_id is too long", retryable=False)
    for i in range(3):
        with jp.track(f"row6-{i}") as tracker:
            tracker.advance(i)
        wait_for(lambda i=i: any(m.job_id == f"row6-{i}" for _, ms in sink.attempts for m in ms))
    started = time.monotonic()
    jp.flush(2.0)
    assert time.monotonic() - started < 1.0  # nothing is left to wait for: rejected messages are gone

    attempted = [m for _, messages in sink.attempts for m in messages]
    keys = [(m.job_id, m.type, m.seq) for m in attempted]
    assert len(keys) == len(set(keys)), "a rejected message was sent again"
    stats = sink_stats("r6")
    assert stats["dropped"] == len(attempted)
    assert stats["retries"] == 0
    assert stats["pending"] == 0
    warnings = [r for r in caplog.records if r.name == "jobprogress" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "not retried" in warnings[0].getMessage()
    assert "422" in warnings[0].getMessage()


# -- row 20: oversized and nested payloads ---------------------------------------------------------

NESTED: dict[str, object] = {}
_level = NESTED
for _ in range(1000):
    _level["a"] = {}
    _level = _level["a"]  # type: ignore[assignment]

BAD_PAYLOADS = {
    "over-4kb": {f"k{i}": "x" * 200 for i in range(25)},
    "10k-keys": {f"k{i}": i for i in range(10_000)},
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_row20_oversized_payload_is_refused_at_the_call(payload: dict[str, object]) -> None:
    with pytest.raises(PayloadTooLargeError, match=r"over the limit of 1024 bytes"):
        jp.track("row20", payload=payload)
    tracker = jp.track("row20", payload={"ok": 1})
    with pytest.raises(PayloadTooLargeError):
        tracker.set_payload(**payload)
    assert tracker.payload == {"ok": 1}


def test_row20_deeply_nested_payload_is_refused_without_recursing() -> None:
    with pytest.raises(InvalidProgressError, match=r"payload field 'a' has a dict"):
        jp.track("row20", payload=NESTED)
    with pytest.raises(InvalidProgressError, match=r"flat metrics only"):
        jp.track("row20").set_payload(deep=NESTED)


def test_row20_payload_limit_has_a_hard_ceiling_of_4096() -> None:
    with pytest.raises(ConfigurationError, match="payload_limit"):
        jp.configure(payload_limit=4097)
    jp.configure(payload_limit=4096)
    with pytest.raises(PayloadTooLargeError, match="limit of 4096"):
        jp.track("row20", payload=BAD_PAYLOADS["over-4kb"])


def test_row20_drop_mode_drops_counts_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Warn-once and the drop count are per process: start this test afresh and leave them as they were.
    monkeypatch.setattr(_log, "_warned", set())
    monkeypatch.setattr(_runtime, "_payload_drops", 0)
    caplog.set_level(logging.WARNING, logger="jobprogress")
    jp.configure(on_oversize="drop")
    dropped_before = jp.stats()["payload_dropped"]
    with capture_progress() as capture:
        tracker = jp.track("row20-drop", payload=BAD_PAYLOADS["10k-keys"])
        assert tracker.payload is None
        with tracker:
            tracker.set_payload(ok=1)
            tracker.set_payload(**BAD_PAYLOADS["over-4kb"])
            tracker.set_payload(**BAD_PAYLOADS["10k-keys"])
            tracker.advance()
            assert tracker.payload == {"ok": 1}
            with pytest.raises(InvalidProgressError):  # invalid is not oversized: still refused
                tracker.set_payload(deep=NESTED)
    assert jp.stats()["payload_dropped"] - dropped_before == 3
    warnings = [r for r in caplog.records if r.name == "jobprogress" and "payload" in r.getMessage()]
    assert len(warnings) == 1
    final = capture.final("row20-drop")
    assert final.status == "succeeded"
    assert capture.last_progress("row20-drop").payload == {"ok": 1}
    assert len(json.dumps(capture.last_progress("row20-drop").payload)) <= 1024


# -- row 21: unserialisable payload values and hostile objects -------------------------------------


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")

    __str__ = __repr__


class HostileError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


UNSERIALISABLE = {
    "datetime": datetime(2026, 1, 1),
    "set": {1, 2},
    "bytes": b"raw",
    "list": [1, 2],
    "decimal": Decimal("1.5"),
    "hostile": Hostile(),
    "inf": math.inf,
}


@pytest.mark.parametrize("value", UNSERIALISABLE.values(), ids=UNSERIALISABLE.keys())
def test_row21_unserialisable_payload_is_a_clear_error_at_the_call(value: object) -> None:
    with capture_progress() as capture:
        with pytest.raises(InvalidProgressError, match=r"payload field 'metric'") as raised:
            jp.track("row21", payload={"metric": value})
        assert "exploded" not in str(raised.value)
        with jp.track("row21", payload={"ok": True}) as tracker:
            with pytest.raises(InvalidProgressError, match=r"payload field 'metric'"):
                tracker.set_payload(metric=value)
            tracker.advance()  # never affected by a refused payload
            tracker.advance(2)
    assert tracker.payload == {"ok": True}
    assert capture.final("row21").status == "succeeded"
    assert capture.last_progress("row21").items_done == 3
    assert capture.last_progress("row21").payload == {"ok": True}


def test_row21_hostile_exception_fails_the_job_with_a_summary() -> None:
    with capture_progress() as capture:
        with pytest.raises(HostileError), jp.track("row21-exc") as tracker:
            tracker.advance()
            raise HostileError
        jp.track("row21-fail").start().fail(HostileError())
    for job in ("row21-exc", "row21-fail"):
        final = capture.final(job)
        assert final.status == "failed"
        assert final.error is not None
        assert final.error.startswith("HostileError")


def test_row21_hostile_object_as_job_or_unit_is_refused_without_calling_repr() -> None:
    with pytest.raises(InvalidProgressError, match="job must be a string") as raised:
        jp.track(Hostile())  # type: ignore[arg-type]
    assert "exploded" not in str(raised.value)
    with pytest.raises(InvalidProgressError, match="unknown unit") as raised:
        jp.track("row21", unit=Hostile())  # type: ignore[arg-type]
    assert "unrepresentable Hostile" in str(raised.value)


# -- row 22: invalid counts, and counts at the edge ------------------------------------------------


class PyCounted(PyCounterBase):
    """The pure-Python counter with Tracker's validation: what runs where the C accelerator is not built."""

    __slots__ = ()
    _advance_slow = jp.Tracker._advance_slow


class CCounted(CounterBase):  # type: ignore[valid-type,misc]
    __slots__ = ()
    _advance_slow = jp.Tracker._advance_slow


C_BUILT = CounterBase is not PyCounterBase
COUNTERS = [
    pytest.param(PyCounted, id="python"),
    pytest.param(CCounted, id="c", marks=pytest.mark.skipif(not C_BUILT, reason="C accelerator not built")),
]

INVALID_ADVANCES = {
    "negative": (-1, "-1"),
    "nan": (math.nan, "nan"),
    "float": (1.0, "1.0"),
    "bool": (True, "True"),
    "2**70": (2**70, str(2**70)),
    "str": ("1", "'1'"),
    "none": (None, "None"),
}


@pytest.mark.parametrize("counter_class", COUNTERS)
@pytest.mark.parametrize(("value", "shown"), INVALID_ADVANCES.values(), ids=INVALID_ADVANCES.keys())
def test_row22_invalid_advance_raises_naming_the_value(
    counter_class: type, value: object, shown: str
) -> None:
    counter = counter_class()
    counter.advance(5)
    with pytest.raises(InvalidProgressError) as raised:
        counter.advance(value)
    assert shown in str(raised.value)
    assert "advance" in str(raised.value)
    assert counter._done == 5


@pytest.mark.parametrize(("value", "shown"), INVALID_ADVANCES.values(), ids=INVALID_ADVANCES.keys())
def test_row22_tracker_refuses_invalid_counts_everywhere(value: object, shown: str) -> None:
    tracker = jp.track("row22", total=10)
    with pytest.raises(InvalidProgressError, match="advance"):
        tracker.advance(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidProgressError, match="set_done"):
        tracker.set_done(value)  # type: ignore[arg-type]
    if value is not None:  # None clears the total
        with pytest.raises(InvalidProgressError, match="set_total"):
            tracker.set_total(value)  # type: ignore[arg-type]
        with pytest.raises(InvalidProgressError, match="total"):
            jp.track("row22", total=value)  # type: ignore[arg-type]
    assert tracker.done == 0
    assert tracker.total == 10


@pytest.mark.parametrize("counter_class", [*COUNTERS, pytest.param(jp.Tracker, id="tracker")])
def test_row22_counts_up_to_2_63_minus_1_fit_and_no_further(counter_class: type) -> None:
    counter = counter_class("row22-max") if counter_class is jp.Tracker else counter_class()
    counter.advance(MAX_COUNT - 1)
    counter.advance()
    assert counter._done == MAX_COUNT
    with pytest.raises(InvalidProgressError, match=r"2\*\*63-1"):
        counter.advance()
    with pytest.raises(InvalidProgressError, match=r"2\*\*63-1"):
        counter.advance(MAX_COUNT)
    assert counter._done == MAX_COUNT


def test_row22_done_over_total_is_reported_as_such_and_max_count_round_trips() -> None:
    with capture_progress() as capture:
        with jp.track("row22-over", unit="files", total=5) as over:
            over.advance(7)
        with jp.track("row22-max", unit="bytes", total=MAX_COUNT) as biggest:
            biggest.set_done(MAX_COUNT)
    assert over.snapshot().items_done == 7
    assert over.snapshot().items_total == 5
    final = capture.last_progress("row22-over")
    assert (final.items_done, final.items_total) == (7, 5)  # not clamped to the total
    delivered = [m for m in capture.for_job("row22-max") if m.progress is not None][-1]
    round_tripped = parse_message(delivered.model_dump_json())
    assert round_tripped.progress is not None
    assert round_tripped.progress.items_done == MAX_COUNT
    assert round_tripped.progress.items_total == MAX_COUNT


# -- row 23: many threads advancing one tracker ----------------------------------------------------


def _hammer(counter: object, threads: int = 16, calls: int = 100_000) -> None:
    barrier = threading.Barrier(threads)

    def work() -> None:
        advance = counter.advance  # type: ignore[attr-defined]
        barrier.wait()
        for _ in range(calls):
            advance()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads as often as CPython allows: lost updates would show
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.parametrize("counter_class", COUNTERS)
def test_row23_16_threads_x_100k_advance_give_the_exact_total(counter_class: type) -> None:
    counter = counter_class()
    _hammer(counter)
    assert counter._done == 1_600_000


def test_row23_tracker_shared_by_16_threads_delivers_the_exact_total() -> None:
    jp.configure(sinks=["scripted://r23"], interval=0.01)
    sink = scripted("r23")
    with jp.track("row23", unit="iterations", total=1_600_000) as tracker:
        _hammer(tracker)  # while the reporter samples it
    assert tracker.done == 1_600_000
    assert jp.flush(5.0)
    assert final_heartbeat(sink.delivered, "row23").status == "succeeded"
    assert progress_of(sink.delivered, "row23")[-1][1] == 1_600_000


# -- row 30: the worker's wall clock steps ---------------------------------------------------------


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["back-1h", "forward-1h"])
def test_row30_wall_clock_steps_change_neither_throttle_nor_seq_order(
    monkeypatch: pytest.MonkeyPatch, step: float
) -> None:
    monotonic = FakeClock(5000.0)
    offset = [0.0]
    epoch = time.time() - monotonic()

    def wall() -> float:
        return epoch + monotonic() + offset[0]

    monkeypatch.setattr(time, "time", wall)
    monkeypatch.setattr(time, "time_ns", lambda: int(wall() * 1e9))
    settings = resolve_settings({"interval": 1.0, "keepalive": 10.0})
    sink = ScriptedSink("scripted://r30")
    reporter = Reporter(settings, [("r30", sink)], clock=monotonic, wallclock=wall, threaded=False)

    def tick(seconds: float) -> None:
        monotonic.advance(seconds)
        reporter.run_pass()
        reporter.mailboxes[0].wait_empty(0.0)

    with _runtime.use_reporter(reporter), jp.track("row30", unit="rows") as tracker:
        for i in range(48):  # 6 s of progress in steps of 1/8 s (exact in binary); the step comes at 3 s
            if i == 24:
                offset[0] = step
            tracker.advance()
            tick(0.125)
        tick(10.0)  # idle: a keepalive every 10 s of monotonic time
        tick(10.0)
    messages = sink.delivered
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    beats = [m for m in messages if isinstance(m, Heartbeat)]
    progress_sends = [b for b in beats if b.status == "running" and b.progress is not None]
    # start, then one progress send per second of monotonic time for 6 s: the step changes nothing.
    assert len(progress_sends) == 1 + 6
    keepalives = [b for b in beats if b.status == "running" and b.progress is None]
    assert len(keepalives) == 2
    assert beats[-1].status == "succeeded"
    assert beats[-1].progress is not None
    assert beats[-1].progress.items_done == 48
    # updated_at is the worker's own clock and shows the step honestly; order is carried by seq.
    jump = (progress_sends[-1].updated_at - progress_sends[0].updated_at).total_seconds()
    assert jump == pytest.approx(6.0 + step, abs=0.2)


# -- row 35: a custom sink that raises; Thread.start failing at shutdown ---------------------------


def test_row35_raising_sink_is_caught_without_traceback_and_the_sender_survives(
    fast_backoff: None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobprogress")
    jp.configure(sinks=["scripted://r35"], interval=0.01)
    sink = scripted("r35")
    sink.errors = [RuntimeError("custom sink bug")] * 3
    with jp.track("row35-a") as tracker:
        tracker.advance(3)
    wait_for(lambda: sink.delivered_for("row35-a"), what="delivery after three raises")
    with jp.track("row35-b") as tracker:  # the same sender thread carries on
        tracker.advance(4)
    assert jp.flush(2.0)
    assert final_heartbeat(sink.delivered, "row35-a").status == "succeeded"
    assert final_heartbeat(sink.delivered, "row35-b").status == "succeeded"
    assert sink_stats("r35")["failures"] == 3
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_row35_thread_start_failing_at_shutdown_delivers_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    jp.configure(sinks=["scripted://r35t"], interval=0.01)
    sink = scripted("r35t")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with jp.track("row35-late", unit="rows") as tracker:
        tracker.advance(2)
    # Delivered inline by the time the block is left: there is no thread to do it later.
    final = final_heartbeat(sink.delivered, "row35-late")
    assert final.status == "succeeded"
    assert progress_of(sink.delivered, "row35-late")[-1][1] == 2
    assert jp.shutdown(1.0) is True
    assert sink.closed


# -- leaving a with-block is never held up by a broken sink ---------------------------------------


@pytest.mark.parametrize("behaviour", ["sleeps-5s", "hangs", "raises"])
def test_leaving_with_blocks_is_never_held_up_by_a_broken_sink(behaviour: str) -> None:
    jp.configure(sinks=["scripted://slowpoke"], interval=0.01)
    sink = scripted("slowpoke")
    if behaviour == "sleeps-5s":
        sink.delay = 5.0
    elif behaviour == "hangs":
        sink.hang = True
    else:
        sink.always = lambda: OSError("disk on fire")
    started = time.monotonic()
    for i in range(1000):
        with jp.track(f"short-{i}") as tracker:
            for _ in range(10):
                tracker.advance()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"1,000 short jobs took {elapsed:.2f}s with a sink that {behaviour}"
    assert sink.sending.wait(5.0)  # the sink really was in use
