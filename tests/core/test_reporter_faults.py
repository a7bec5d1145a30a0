"""The reporter under load and clock steps: RELIABILITY.md rows 3 and 30, and block exits never held up.

Sinks are scripted test doubles (``tests/_core_faults.py``) that refuse, raise, sleep or hang on command;
where timing is the point, the mailbox or reporter runs on a :class:`~jobprogress.testing.FakeClock`.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest

import jobprogress as jp
from _core_faults import (  # noqa: F401  (fixtures)
    ScriptedSink,
    fault_sink_plugins,
    fault_sinks,
    final_heartbeat,
    progress_of,
    release_all,
    scripted,
    sink_stats,
)
from jobprogress import _runtime
from jobprogress._reporter import Reporter
from jobprogress.config import resolve_settings
from jobprogress.envelope import Heartbeat, ProgressUpdate
from jobprogress.testing import FakeClock

pytestmark = pytest.mark.usefixtures("fault_sink_plugins")


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
