"""ProgressStore: per-job aggregation, liveness on the store's clock, filters and paging, on every backend."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from _store_support import (
    StoreClock,
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    skewed,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    update,
)
from jobprogress.errors import ConfigurationError, StoreError
from jobprogress.store import JobView, ProgressStore, StoreWriter

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)

STALL = 30.0


@pytest.fixture
def clock() -> StoreClock:
    return StoreClock()


@pytest.fixture
def writer(store_target: StoreTarget, clock: StoreClock) -> Iterator[StoreWriter]:
    with StoreWriter(store_target.url, clock=clock) as writer:
        yield writer


@pytest.fixture
def store(store_target: StoreTarget, clock: StoreClock, writer: StoreWriter) -> Iterator[ProgressStore]:
    writer.write([heartbeat(1, job="bootstrap")])  # the file and tables exist before the store opens
    with ProgressStore(store_target.url, stall_after=STALL, clock=clock) as store:
        yield store


def jobs_by_id(store: ProgressStore) -> dict[str, JobView]:
    return {job.job_id: job for job in store.jobs() if job.job_id != "bootstrap"}


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
    assert job.eta_seconds == 32  # ceil(160 remaining / 5 per second)
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


def test_row31_lost_and_stalled_on_the_store_clock(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write(
        [heartbeat(1, worker="w1", progress=envelope(1)), heartbeat(1, worker="w2", progress=envelope(1))]
    )
    clock.advance(STALL - 1)
    writer.write([heartbeat(2, worker="w1", progress=envelope(1))])  # alive, no progress
    clock.advance(2)  # w1: seen 2 s ago, no progress for 31 s; w2: silent for 31 s
    job = store.job("job-1")
    assert job is not None
    flags = {worker.worker_id: (worker.stalled, worker.lost) for worker in job.workers}
    assert flags == {"w1": (True, False), "w2": (False, True)}
    assert (job.status, job.stalled, job.lost, job.state) == ("running", True, False, "stalled")
    clock.advance(STALL)
    job = store.job("job-1")
    assert job is not None
    assert (job.lost, job.state) == (True, "lost")
    assert job.throughput is None  # no live worker
    writer.write([heartbeat(3, worker="w2", progress=envelope(2))])  # back on its next message
    job = store.job("job-1")
    assert job is not None
    assert job.state == "running"
    assert {worker.worker_id: worker.lost for worker in job.workers} == {"w1": True, "w2": False}


def test_row30_skewed_worker_clocks_change_neither_liveness_nor_order(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([heartbeat(1, job="ahead", at=skewed(+1), progress=envelope(1, at=skewed(+1)))])
    clock.advance(5)
    writer.write([heartbeat(1, job="behind", at=skewed(-1), progress=envelope(1, at=skewed(-1)))])
    jobs = [job for job in store.jobs() if job.job_id != "bootstrap"]
    assert [job.job_id for job in jobs] == ["behind", "ahead"]  # most recently seen first, store clock
    assert [job.state for job in jobs] == ["running", "running"]
    assert jobs[1].updated_at == skewed(+1)  # the worker's own stamp, kept as sent


def test_only_running_workers_are_judged(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([heartbeat(1, "succeeded", worker="w1"), heartbeat(1, "failed", worker="w2", error="x")])
    clock.advance(STALL * 10)
    job = store.job("job-1")
    assert job is not None
    assert not job.lost
    assert not job.stalled
    assert not any(worker.lost or worker.stalled for worker in job.workers)


def test_filters_ordering_and_paging(store: ProgressStore, writer: StoreWriter, clock: StoreClock) -> None:
    writer.write(
        [heartbeat(1, job="old-done", kind="parse"), heartbeat(2, "succeeded", job="old-done", kind="parse")]
    )
    clock.advance(100)
    writer.write([heartbeat(1, job="silent", kind="scan")])
    clock.advance(STALL + 1)
    writer.write([heartbeat(1, "failed", job="broken", kind="backtest", error="boom")])
    clock.advance(1)
    writer.write([heartbeat(1, job="busy", kind="scan", progress=envelope(5))])
    ordered = [job.job_id for job in store.jobs()]
    assert ordered == ["busy", "broken", "silent", "bootstrap", "old-done"]  # ties: by job id
    assert [job.job_id for job in store.jobs(status="lost")] == ["silent", "bootstrap"]
    assert [job.job_id for job in store.jobs(status="running")] == ["busy"]
    assert [job.job_id for job in store.jobs(status=["failed", "succeeded"])] == ["broken", "old-done"]
    assert [job.job_id for job in store.jobs(kind="scan")] == ["busy", "silent", "bootstrap"]
    assert [job.job_id for job in store.jobs(kind=("scan",), status="lost")] == ["silent", "bootstrap"]
    assert [job.job_id for job in store.jobs(active_within=STALL)] == ["busy", "broken"]
    assert [job.job_id for job in store.jobs(limit=2, offset=1)] == ["broken", "silent"]
    assert store.jobs(limit=0) == []
    assert store.jobs(status=[]) == []
    assert store.jobs(status="stalled") == []


def test_bad_filters_are_configuration_errors(store: ProgressStore) -> None:
    with pytest.raises(ConfigurationError, match="unknown status 'sleeping'"):
        store.jobs(status="sleeping")
    for bad in ({"limit": -1}, {"offset": 2**70}, {"active_within": float("nan")}, {"limit": True}):
        with pytest.raises(ConfigurationError):
            store.jobs(**bad)  # type: ignore[arg-type]


def test_job_unknown_is_none_and_payload_round_trips(store: ProgressStore, writer: StoreWriter) -> None:
    assert store.job("nope") is None
    payload = {"ok": True, "rate": 0.25, "note": "ünïcode ✓", "none": None, "big": 2**62}
    writer.write([update(1, 3, payload=payload)])
    job = store.job("job-1")
    assert job is not None
    assert job.payload == payload
    assert json.loads(json.dumps(job.model_dump(mode="json")))["payload"] == payload


def test_reading_never_creates_a_database(store_target: StoreTarget) -> None:
    if store_target.path is None:
        pytest.skip("a server database always exists")
    with pytest.raises(StoreError, match="does not exist"):
        ProgressStore(store_target.url)
    assert not store_target.path.exists()


def test_a_database_without_tables_has_no_jobs(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    engine = store_target.engine()
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE unrelated (x INTEGER)"))
    engine.dispose()
    with ProgressStore(store_target.url) as store:
        assert store.jobs() == []
        assert store.job("job-1") is None


def test_stores_for_one_url_share_one_engine(store: ProgressStore, store_target: StoreTarget) -> None:
    with ProgressStore(store_target.url) as other:
        other.jobs()
        store.jobs()
        assert other._engine() is store._engine()
    store.jobs()  # closing one store leaves the other working


def test_stall_after_is_validated(store_target: StoreTarget) -> None:
    for bad in (0, -1, float("nan"), "30"):
        with pytest.raises(ConfigurationError, match="stall_after"):
            ProgressStore(store_target.url, stall_after=bad)  # type: ignore[arg-type]


def test_closed_store_refuses(store: ProgressStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.jobs()


def test_concurrent_reads_from_threads(store_target: StoreTarget, writer: StoreWriter) -> None:
    # The collector serves reads from several threads through one store.
    import threading

    from jobprogress.store import _engine

    writer.write([heartbeat(1, job=f"job-{index}") for index in range(20)])
    results: list[int] = []
    with ProgressStore(store_target.url) as store:
        barrier = threading.Barrier(8)

        def read() -> None:
            barrier.wait()
            for _ in range(5):
                results.append(len(store.jobs()))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        key = store._lease.key
        assert key is not None
        assert _engine._users[key] == 2  # this store once, the writer once: no lease leaked by a race
    assert results == [20] * 40


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


def test_extreme_rates_never_break_the_jobs_list(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([
        heartbeat(1, job="huge", worker="a", progress=envelope(1, 10, throughput=1e308)),
        heartbeat(1, job="huge", worker="b", progress=envelope(1, 10, throughput=1e308)),
        heartbeat(1, job="tiny", worker="a", progress=envelope(1, 10, throughput=5e-324)),
    ])  # fmt: skip
    jobs = jobs_by_id(store)
    assert jobs["huge"].throughput is None  # the sum overflows: unknown, never inf
    assert jobs["huge"].eta_seconds is None
    assert jobs["tiny"].throughput == 5e-324
    assert jobs["tiny"].eta_seconds is None  # 9 / 5e-324 seconds is no ETA
    json.dumps([job.model_dump(mode="json") for job in jobs.values()], allow_nan=False)
