"""A job's view from its workers' rows (DESIGN §6): sums, units, status precedence, error, payload, reuse."""

from __future__ import annotations

import json

import pytest

from _store_support import (
    STALL,
    StoreClock,
    backend_params,
    envelope,
    heartbeat,
    jobs_by_id,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
)
from jobprogress.store import ProgressStore, StoreWriter

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def test_aggregates_sum_workers_and_keep_per_worker_rows(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([
        heartbeat(1, worker="w1", progress=envelope(10, 100, throughput=2.0, payload={"n": 1})),
        heartbeat(1, worker="w2", progress=envelope(30, 100, throughput=3.0)),
        heartbeat(1, worker="w3", progress=envelope(100, 100, throughput=9.0, payload={"n": 3})),
    ])  # fmt: skip
    clock.advance(1)
    writer.write([heartbeat(2, "succeeded", worker="w3")])
    job = store.job("job-1")
    assert job is not None
    assert (job.kind, job.unit, job.done, job.total, job.status) == ("scan", "files", 140, 300, "running")
    assert job.throughput == 5.0  # live workers only: the finished one no longer counts
    assert job.eta_seconds == 45  # sharded: the slowest unfinished shard, w1's 90 left at 2 per second
    assert job.payload == {"n": 3}
    assert [worker.worker_id for worker in job.workers] == ["w1", "w2", "w3"]
    assert job.workers[2].status == "succeeded"
    assert job.model_dump(mode="json")["workers"][0]["payload"] == {"n": 1}


def test_different_units_are_never_summed(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, worker="w1", progress=envelope(10, 100, unit="rows")),
        heartbeat(1, worker="w2", progress=envelope(30, 100, unit="bytes")),
    ])  # fmt: skip
    job = store.job("job-1")
    assert job is not None
    assert (job.unit, job.done, job.total, job.throughput, job.eta_seconds) == (None, None, None, None, None)
    assert [worker.done for worker in job.workers] == [10, 30]


def test_total_only_when_every_worker_reports_one(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, worker="w1", progress=envelope(10, 100)),
        heartbeat(1, worker="w2", progress=envelope(30, None)),
    ])  # fmt: skip
    job = store.job("job-1")
    assert job is not None
    assert (job.done, job.total, job.eta_seconds) == (40, None, None)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["succeeded", "failed", "running"], "failed"),
        (["succeeded", "running", "cancelled"], "running"),
        (["succeeded", "cancelled"], "cancelled"),
        (["succeeded", "succeeded"], "succeeded"),
    ],
)
def test_job_status_precedence(
    store: ProgressStore, writer: StoreWriter, statuses: list[str], expected: str
) -> None:
    writer.write([heartbeat(1, status, worker=f"w{index}") for index, status in enumerate(statuses)])
    job = store.job("job-1")
    assert job is not None
    assert job.status == expected


def test_error_is_the_most_recently_failed_workers(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([heartbeat(1, "failed", worker="w2", error="first failure")])
    clock.advance(1)
    writer.write([heartbeat(1, "failed", worker="w1", error="second failure")])
    job = store.job("job-1")
    assert job is not None
    assert (job.status, job.error) == ("failed", "second failure")


def test_extreme_rates_never_break_the_jobs_list(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, job="huge", worker="a", progress=envelope(1, 10, throughput=1e308)),
        heartbeat(1, job="huge", worker="b", progress=envelope(1, 10, throughput=1e308)),
        heartbeat(1, job="tiny", worker="a", progress=envelope(1, 10, throughput=5e-324)),
    ])  # fmt: skip
    jobs = jobs_by_id(store)
    assert jobs["huge"].throughput is None  # the sum overflows: unknown, never inf
    assert jobs["huge"].eta_seconds == 1  # each shard's 9 left at 1e308 per second: ceil of a tiny time
    assert jobs["tiny"].throughput == 5e-324
    assert jobs["tiny"].eta_seconds is None  # 9 / 5e-324 seconds is no ETA
    json.dumps([job.model_dump(mode="json") for job in jobs.values()], allow_nan=False)


def test_repeated_polls_reuse_views_of_unchanged_jobs_only(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write(
        [
            heartbeat(1, job="steady", progress=envelope(5, 10)),
            heartbeat(1, job="moving", progress=envelope(1, 10)),
        ]
    )
    first = jobs_by_id(store)
    writer.write([heartbeat(2, job="moving", progress=envelope(2, 10))])
    second = jobs_by_id(store)
    assert second["steady"] is first["steady"]  # same rows: the previous view, not a rebuilt one
    assert second["moving"] is not first["moving"]
    assert second["moving"].done == 2
    clock.advance(STALL + 1)  # liveness is part of the rows: a job turning lost is folded again
    third = jobs_by_id(store)
    assert third["steady"] is not second["steady"]
    assert third["steady"].lost


def test_a_call_of_more_jobs_than_the_cache_holds_caches_none(
    store: ProgressStore, writer: StoreWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view cache is for pollers of a page; a whole list larger than it must not stay in memory."""
    from jobprogress.store import query

    monkeypatch.setattr(query, "_CACHE_JOBS", 2)
    writer.write([heartbeat(1, job=name, progress=envelope(1, 10)) for name in ("a", "b", "c")])
    whole = jobs_by_id(store)
    assert jobs_by_id(store)["a"] is not whole["a"]  # nothing was kept: folded again
    page = store.jobs(limit=2)
    assert store.jobs(limit=2)[0] is page[0]  # a page within the bound is cached as before
