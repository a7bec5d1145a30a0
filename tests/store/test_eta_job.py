"""A job's ETA from its workers' rows (issue 19): the last shard's end, and why there is none.

Through a real store on a fake store clock (lost and stalled are judged on it), then the rule itself
(:func:`jobprogress.store._eta.job_eta`) on views built in memory, with properties drawn by Hypothesis.
"""

from __future__ import annotations

import io
import math
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _store_support import (
    STALL,
    WORKER_TIME,
    StoreClock,
    backend_params,
    envelope,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
)
from jobprogress.envelope import JobProgressEnvelope
from jobprogress.store import JobView, ProgressStore, StoreWriter
from jobprogress.store._eta import LOST_REASON, STALLED_REASON, job_eta
from jobprogress.store.views import WorkerView

_stores = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def _job(store: ProgressStore) -> JobView:
    job = store.job("job-1")
    assert job is not None
    return job


def _sum_of_rates(job: JobView) -> int | None:
    """The rule before issue 19: the job's remaining work over its summed live rate."""
    if job.total is None or job.done is None or not job.throughput:
        return None
    return math.ceil(max(job.total - job.done, 0) / job.throughput)


def _with_eta(done: int, total: int, *, throughput: float | None, eta: int | None) -> JobProgressEnvelope:
    return JobProgressEnvelope(
        items_done=done,
        items_total=total,
        unit="files",
        throughput_per_sec=throughput,
        eta_seconds=eta,
        updated_at=WORKER_TIME,
    )


@_stores
def test_a_stalled_shard_leaves_the_job_without_an_eta_and_says_why(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([
        heartbeat(1, worker="fast", progress=envelope(10, 100, throughput=10.0)),
        heartbeat(1, worker="slow", progress=envelope(10, 100, throughput=2.0)),
    ])  # fmt: skip
    assert (_job(store).eta_seconds, _job(store).eta_reason) == (45, None)  # slow: 90 left at 2/s
    for seconds in range(5, int(STALL) + 5 + 1, 5):
        clock.advance(5)
        done = 10 + 10 * seconds
        writer.write([
            heartbeat(1 + seconds, worker="fast", progress=envelope(min(done, 99), 100, throughput=10.0)),
            heartbeat(1 + seconds, worker="slow", progress=envelope(10, 100, throughput=2.0)),  # no progress
        ])  # fmt: skip
    job = _job(store)
    flags = {worker.worker_id: (worker.stalled, worker.lost) for worker in job.workers}
    assert flags == {"fast": (False, False), "slow": (True, False)}
    assert job.state == "running"  # one live worker: the job is not judged stalled, yet it waits
    assert (job.eta_seconds, job.eta_reason) == (None, STALLED_REASON)
    assert _sum_of_rates(job) == 10  # the old rule: 91 files left, the stalled shard's at the fast one's rate
    assert job.model_dump(mode="json")["eta_reason"] == "waiting on a stalled worker"

    from jobprogress.cli._format import progress_line
    from jobprogress.cli._render import job_detail, plain_console

    assert progress_line(job) == "109/200 files · 10.0 files/s · waiting on a stalled worker"
    out = io.StringIO()
    plain_console(file=out).print(job_detail(job, datetime.fromtimestamp(clock.now, timezone.utc)))
    shown = out.getvalue()
    assert re.search(r"\beta +waiting on a stalled worker", shown), shown

    writer.write([heartbeat(99, worker="slow", progress=envelope(12, 100, throughput=2.0))])  # moves again
    assert (_job(store).eta_seconds, _job(store).eta_reason) == (44, None)


@_stores
def test_a_lost_shard_leaves_the_job_without_an_eta_and_says_why(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([
        heartbeat(1, worker="a", progress=envelope(10, 100, throughput=5.0)),
        heartbeat(1, worker="b", progress=envelope(10, 100, throughput=5.0)),
        heartbeat(1, worker="c", progress=envelope(10, 100, throughput=5.0)),
    ])  # fmt: skip
    clock.advance(STALL - 1)
    writer.write([
        heartbeat(2, worker="a", progress=envelope(50, 100, throughput=5.0)),
        heartbeat(2, worker="b", progress=envelope(10, 100, throughput=5.0)),  # alive, no progress
    ])  # fmt: skip
    clock.advance(2)  # c: silent for 31 s (lost); b: no progress for 31 s (stalled)
    job = _job(store)
    assert {worker.worker_id: (worker.stalled, worker.lost) for worker in job.workers} == {
        "a": (False, False),
        "b": (True, False),
        "c": (False, True),
    }
    assert (job.eta_seconds, job.eta_reason) == (None, LOST_REASON)  # lost comes before stalled
    writer.write([heartbeat(3, "failed", worker="c", error="killed")])  # no longer a shard in progress
    job = _job(store)
    assert (job.status, job.eta_seconds, job.eta_reason) == ("failed", None, STALLED_REASON)
    writer.write([heartbeat(4, worker="b", progress=envelope(100, 100, throughput=5.0))])  # b finished
    job = _job(store)
    assert (job.eta_seconds, job.eta_reason) == (10, None)  # a: 50 left at 5/s


@_stores
def test_a_finished_fast_shard_never_makes_the_eta_jump_earlier(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([
        heartbeat(1, worker="fast", progress=envelope(0, 100, throughput=None)),
        heartbeat(1, worker="slow", progress=envelope(0, 100, throughput=None)),
    ])  # fmt: skip
    assert (_job(store).eta_seconds, _job(store).eta_reason) == (None, None)  # no shard has a rate yet
    new: list[int | None] = []
    old: list[int | None] = []

    def sample() -> None:
        job = _job(store)
        new.append(job.eta_seconds)
        old.append(_sum_of_rates(job))

    clock.advance(5)
    writer.write([
        heartbeat(2, worker="fast", progress=envelope(50, 100, throughput=10.0)),
        heartbeat(2, worker="slow", progress=envelope(10, 100, throughput=2.0)),
    ])  # fmt: skip
    sample()
    clock.advance(5)  # the fast shard's last item is done; its worker still runs, its rate still counts
    writer.write([
        heartbeat(3, worker="fast", progress=envelope(100, 100, throughput=10.0)),
        heartbeat(3, worker="slow", progress=envelope(20, 100, throughput=2.0)),
    ])  # fmt: skip
    sample()
    writer.write([heartbeat(4, "succeeded", worker="fast", progress=envelope(100, 100, throughput=10.0))])
    sample()
    clock.advance(10)
    writer.write([heartbeat(4, worker="slow", progress=envelope(40, 100, throughput=2.0))])
    sample()
    # The slow shard ends at 5 + 90 / 2 = 50 s: 45, 40, 40 and 30 s left at the samples.
    assert new == [45, 40, 40, 30]
    assert old == [12, 7, 40, 30]  # the old rule: far too early, then earlier still, then a jump
    assert _job(store).throughput == 2.0  # the job's throughput stays the sum of live workers' rates


@_stores
def test_a_shards_own_eta_is_used_when_it_sent_one(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, worker="a", progress=_with_eta(10, 100, throughput=3.0, eta=70)),  # 30 s by its rate
        heartbeat(1, worker="b", progress=_with_eta(50, 100, throughput=5.0, eta=None)),  # 10 s by its rate
    ])  # fmt: skip
    assert (_job(store).eta_seconds, _job(store).eta_reason) == (70, None)


@_stores
def test_shared_queue_jobs_keep_remaining_over_summed_rate(store: ProgressStore, writer: StoreWriter) -> None:
    # Workers pulling from one queue report no total of their own, so the job has no total (DESIGN §6)
    # and, as before, no ETA: nothing is waited on, so there is no reason either.
    writer.write([
        heartbeat(1, worker="w1", progress=envelope(30, None, throughput=2.0)),
        heartbeat(1, worker="w2", progress=envelope(20, None, throughput=3.0)),
    ])  # fmt: skip
    job = _job(store)
    assert (job.done, job.total, job.throughput, job.eta_seconds, job.eta_reason) == (
        50,
        None,
        5.0,
        None,
        None,
    )


@_stores
def test_ended_jobs_keep_their_eta(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, "succeeded", worker="w1", progress=envelope(100, 100)),
        heartbeat(1, "succeeded", worker="w2", progress=envelope(50, 50)),
        heartbeat(1, "failed", job="broke", worker="w1", progress=envelope(10, 100), error="boom"),
        heartbeat(1, "succeeded", job="broke", worker="w2", progress=envelope(100, 100)),
    ])  # fmt: skip
    assert (_job(store).eta_seconds, _job(store).eta_reason) == (0, None)
    broke = store.job("broke")
    assert broke is not None
    assert (broke.eta_seconds, broke.eta_reason) == (None, None)  # 90 left that no running worker will do


# -- the rule on views built in memory ---------------------------------------------------------------


def _worker(index: int, **fields: Any) -> WorkerView:
    values: dict[str, Any] = {
        "worker_id": f"w{index}",
        "kind": "scan",
        "unit": "files",
        "done": 0,
        "total": 100,
        "throughput": 1.0,
        "eta_seconds": None,
        "status": "running",
        "stalled": False,
        "lost": False,
        "updated_at": None,
        "error": None,
        "payload": None,
        "run_id": f"run-{index}",
        "seq": 1,
        "started_at": None,
        "progressed_at": None,
        "seen_at": None,
    }
    values.update(fields)
    return WorkerView(**values)


def _remaining(workers: list[WorkerView]) -> int | None:
    if any(worker.total is None for worker in workers):
        return None
    return max(sum(w.total or 0 for w in workers) - sum(w.done or 0 for w in workers), 0)


def _rate(workers: list[WorkerView]) -> float | None:
    live = [w.throughput for w in workers if w.status == "running" and not (w.lost or w.stalled)]
    rates = [rate for rate in live if rate is not None]
    return sum(rates) if rates else None


def test_the_shared_queue_rule_applies_when_a_running_worker_has_no_total() -> None:
    # A caller that knows the job's total (the SQL read side may) gets remaining over summed rate.
    workers = [_worker(1, total=None, done=30, throughput=2.0), _worker(2, done=20, throughput=3.0)]
    assert job_eta(workers, 50, 5.0) == (10, None)
    assert job_eta(workers, 0, 5.0) == (0, None)
    assert job_eta(workers, 50, None) == (None, None)
    assert job_eta(workers, 50, 5e-324) == (None, None)  # too far away to count
    stalled = [_worker(1, total=None, stalled=True), _worker(2, total=None, lost=True)]
    assert job_eta(stalled, 50, None) == (None, None)  # the shared-queue rule never gives a reason


def test_a_shard_without_a_rate_or_too_far_away_gives_no_eta() -> None:
    assert job_eta([_worker(1, throughput=0.0), _worker(2)], 200, 1.0) == (None, None)
    assert job_eta([_worker(1, throughput=None), _worker(2)], 200, 1.0) == (None, None)
    assert job_eta([_worker(1, throughput=5e-324)], 100, 5e-324) == (None, None)
    assert job_eta([_worker(1, done=None, throughput=4.0)], None, 4.0) == (25, None)  # no done yet: 0


_shard = st.builds(
    dict,
    done=st.integers(0, 10**6),
    total=st.integers(0, 10**6),
    throughput=st.one_of(st.none(), st.just(0.0), st.floats(1e-3, 1e6)),
    eta_seconds=st.one_of(st.none(), st.integers(0, 10**7)),
    status=st.sampled_from(["running", "running", "running", "succeeded", "failed", "cancelled"]),
    stalled=st.booleans(),
    lost=st.booleans(),
)

_property = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _views(shards: list[dict[str, Any]]) -> list[WorkerView]:
    return [_worker(index, **shard) for index, shard in enumerate(shards)]


@_property
@given(st.lists(_shard, max_size=6))
def test_the_rule_as_documented(shards: list[dict[str, Any]]) -> None:
    workers = _views(shards)
    remaining = _remaining(workers)
    eta, reason = job_eta(workers, remaining, _rate(workers))
    open_shards = [w for w in workers if w.status == "running" and (w.total or 0) > (w.done or 0)]
    if not open_shards:
        assert (eta, reason) == ((0 if remaining == 0 else None), None)
    elif any(w.lost for w in open_shards):
        assert (eta, reason) == (None, LOST_REASON)
    elif any(w.stalled for w in open_shards):
        assert (eta, reason) == (None, STALLED_REASON)
    else:
        times = [
            float(w.eta_seconds)
            if w.eta_seconds is not None
            else ((w.total or 0) - (w.done or 0)) / w.throughput
            for w in open_shards
            if w.eta_seconds is not None or w.throughput
        ]
        expected = math.ceil(max(times)) if len(times) == len(open_shards) else None
        assert (eta, reason) == (expected, None)


@_property
@given(st.lists(_shard, min_size=1, max_size=6), st.data())
def test_finished_shards_and_order_change_nothing(shards: list[dict[str, Any]], data: st.DataObject) -> None:
    workers = _views(shards)
    rate = _rate(workers)
    baseline = job_eta(workers, _remaining(workers), rate)
    finished = data.draw(st.integers(0, 10**6))
    done_shard = _worker(99, done=finished, total=finished, throughput=data.draw(st.floats(0.0, 1e9)))
    more = [*workers, done_shard]  # its rate joins the job's throughput while its worker still runs
    assert job_eta(more, _remaining(more), _rate(more)) == baseline
    shuffled = data.draw(st.permutations(workers))
    assert job_eta(shuffled, _remaining(shuffled), rate) == baseline


@_property
@given(st.lists(st.tuples(st.integers(1, 10**6), st.floats(1e-3, 1e6)), min_size=1, max_size=8))
def test_the_last_shard_is_never_earlier_than_the_sum_of_rates(shards: list[tuple[int, float]]) -> None:
    workers = [
        _worker(index, done=0, total=left, throughput=rate) for index, (left, rate) in enumerate(shards)
    ]
    remaining = sum(left for left, _ in shards)
    rate = sum(rate for _, rate in shards)
    eta, _ = job_eta(workers, remaining, rate)
    assert eta is not None
    assert eta >= remaining / rate * (1 - 1e-12)  # the mediant: max(left/rate) >= sum(left)/sum(rate)


def test_every_serialized_job_view_carries_eta_reason() -> None:
    # JobView.eta_reason has a default, yet every serialized view carries it (the JSON schema says so).
    from jobprogress.store.views import JobView as View

    schema = View.model_json_schema(mode="serialization")
    assert "eta_reason" in schema["required"]
    view = View(
        job_id="j", kind=None, unit=None, done=None, total=None, throughput=None, eta_seconds=None,
        status="running", stalled=False, lost=False, updated_at=None, error=None, payload=None, workers=[],
    )  # fmt: skip
    assert view.model_dump(mode="json")["eta_reason"] is None
