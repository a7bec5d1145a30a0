"""The hot-path counter (C and pure Python): RELIABILITY.md row 23, many threads, one tracker."""

from __future__ import annotations

import sys
import threading

import pytest

import jobprogress as jp
from _core_faults import (
    COUNTERS,
    fault_sink_plugins,  # noqa: F401  (fixtures)
    final_heartbeat,
    progress_of,
    scripted,
)

pytestmark = pytest.mark.usefixtures("fault_sink_plugins")


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
