"""The hot-path counter (C and pure Python): RELIABILITY.md row 23, many threads, one tracker."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

import jobprogress as jp
from _core_faults import (
    COUNTERS,
    fault_sinks,
    final_heartbeat,
    progress_of,
    release_all,
    scripted,
)
from jobprogress import _mailbox


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
