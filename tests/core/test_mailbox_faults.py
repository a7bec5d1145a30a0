"""Delivery under sink faults, per sink mailbox: RELIABILITY.md rows 1, 2, 4-6 and 35 (in-process).

Sinks are scripted test doubles (``tests/_core_faults.py``) that refuse, raise, sleep or hang on command;
where timing is the point, the mailbox or reporter runs on a :class:`~jobprogress.testing.FakeClock`.
"""

from __future__ import annotations

import itertools
import logging
import random
import statistics
import threading
import time
from datetime import datetime, timezone

import pytest

import jobprogress as jp
from _core_faults import (  # noqa: F401  (fixtures)
    ScriptedSink,
    fast_backoff,
    fault_sink_plugins,
    fault_sinks,
    final_heartbeat,
    progress_of,
    release_all,
    scripted,
    sink_stats,
    wait_for,
)
from jobprogress._mailbox import Mailbox
from jobprogress.envelope import Heartbeat
from jobprogress.errors import (
    SinkError,
)
from jobprogress.testing import FakeClock

pytestmark = pytest.mark.usefixtures("fault_sink_plugins")


# -- row 1: the sink refuses connections ------------------------------------------------------------


@pytest.mark.usefixtures("fast_backoff")
def test_row01_sink_refusing_keeps_latest_state_and_delivers_it_after_recovery() -> None:
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


# -- row 35: a custom sink that raises; Thread.start failing at shutdown ---------------------------


@pytest.mark.usefixtures("fast_backoff")
def test_row35_raising_sink_is_caught_without_traceback_and_the_sender_survives(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
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
