"""ProgressStore: per-job aggregation, liveness on the store's clock, filters and paging, on every backend."""

from __future__ import annotations

import json

import pytest

from _store_support import (
    STALL,
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
from jobprogress.store import ProgressStore, StoreWriter

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


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


def test_stall_after_is_validated(store_target: StoreTarget) -> None:
    for bad in (0, -1, float("nan"), "30"):
        with pytest.raises(ConfigurationError, match="stall_after"):
            ProgressStore(store_target.url, stall_after=bad)  # type: ignore[arg-type]


def test_closed_store_refuses(store: ProgressStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.jobs()


def test_counts_come_from_one_aggregate_and_agree_with_the_jobs(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    from collections import Counter

    from jobprogress._states import JOB_STATES

    writer.write(
        [
            heartbeat(1, job="quiet", progress=envelope(1)),
            heartbeat(1, job="stuck", progress=envelope(1)),
            heartbeat(1, job="broke", worker="w1", kind="etl"),
            heartbeat(1, job="broke", worker="w2", kind="etl"),
        ]
    )
    clock.advance(STALL + 1)
    writer.write(
        [
            heartbeat(2, job="stuck", progress=envelope(1)),  # alive, no progress: stalled
            heartbeat(2, "failed", job="broke", worker="w1", kind="etl", error="boom"),
            heartbeat(1, "succeeded", job="done", kind="etl"),
            heartbeat(1, "cancelled", job="stopped"),
            heartbeat(1, job="busy", progress=envelope(5)),
            heartbeat(3, job="bootstrap"),  # alive, no progress: stalled too
        ]
    )
    counts = store.counts()
    assert list(counts) == list(JOB_STATES)
    assert counts == {**dict.fromkeys(JOB_STATES, 0), **Counter(job.state for job in store.jobs())}
    assert (counts["lost"], counts["stalled"], counts["failed"], counts["running"]) == (1, 2, 1, 1)
    assert store.counts(kind="etl") == {**dict.fromkeys(JOB_STATES, 0), "failed": 1, "succeeded": 1}
    assert store.counts(kind=[]) == dict.fromkeys(JOB_STATES, 0)
    clock.advance(10)
    assert sum(store.counts(active_within=5).values()) == 0
    with pytest.raises(ConfigurationError, match="active_within"):
        store.counts(active_within=-1)


def test_counts_of_a_store_without_tables_are_zero(store_target: StoreTarget) -> None:
    if store_target.path is not None:
        with StoreWriter(store_target.url, table_prefix="other_") as writer:
            writer.write([heartbeat(1)])  # the file exists, the default prefix's tables do not
    with ProgressStore(store_target.url) as store:
        assert set(store.counts().values()) == {0}


def test_iter_jobs_streams_the_cli_order_and_the_same_views(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([heartbeat(1, job="old-lost", progress=envelope(1))])
    clock.advance(STALL + 1)
    messages = []
    for index in range(12):
        worker = f"w{index % 3}"
        status = ("running", "failed", "succeeded", "cancelled")[index % 4]
        messages.append(heartbeat(2, status, job=f"job-{index:02d}", worker=worker, progress=envelope(index)))
        messages.append(heartbeat(2, job=f"job-{index:02d}", worker="wx", progress=envelope(1, None)))
        clock.advance(1)
        writer.write(messages)
        messages = []
    from jobprogress.cli._format import sort_jobs

    expected = sort_jobs(store.jobs())
    streamed = list(store.iter_jobs(batch=3))
    assert [job.job_id for job in streamed] == [job.job_id for job in expected]
    assert streamed == expected
    assert [job.job_id for job in store.iter_jobs(status="failed", limit=2)] == [
        job.job_id for job in expected if job.state == "failed"
    ][:2]
    assert list(store.iter_jobs(kind=[])) == []
    with pytest.raises(ConfigurationError, match="batch"):
        store.iter_jobs(batch=-1)


def test_lost_jobs_on_both_sides_of_the_cutoff_keep_the_list_order(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    # The lost walk reads jobs last seen before the cutoff and those seen since apart (a finished
    # worker of a lost job may have spoken recently); the pages must still be one order.
    writer.write([heartbeat(1, job=f"old-{index}", progress=envelope(index)) for index in range(3)])
    writer.write([heartbeat(1, job="mixed", worker="w1"), heartbeat(1, job="mixed", worker="w2")])
    clock.advance(STALL + 5)
    writer.write([heartbeat(2, "succeeded", job="mixed", worker="w2")])  # w1 silent: lost, seen now
    writer.write([heartbeat(1, job="quiet", progress=envelope(1))])
    clock.advance(STALL - 1)
    writer.write([heartbeat(2, job="quiet", progress=envelope(1))])  # alive, no progress: stalled
    writer.write([heartbeat(1, "failed", job="broken", error="boom")])
    clock.advance(2)
    lost = [job.job_id for job in store.jobs(status="lost")]
    assert lost == ["mixed", "bootstrap", "old-0", "old-1", "old-2"]
    for limit in range(1, 6):
        assert [job.job_id for job in store.jobs(status="lost", limit=limit)] == lost[:limit]
        assert [job.job_id for job in store.jobs(status="lost", limit=limit, offset=1)] == lost[1:][:limit]
        streamed = [job.job_id for job in store.iter_jobs(status="lost", limit=limit)]
        assert streamed == lost[:limit]
    actionable = [job.job_id for job in store.jobs(status=["failed", "lost", "stalled"])]
    assert actionable[:3] == ["broken", "quiet", "mixed"]
    for limit in (1, 3, 4, 7):
        chosen = store.jobs(status=["failed", "lost", "stalled"], limit=limit)
        assert [job.job_id for job in chosen] == actionable[:limit]
    assert [job.state for job in store.jobs(status="stalled", limit=5)] == ["stalled"]


def test_search_matches_a_substring_of_the_job_id_ignoring_case(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    ids = ["Scan-42", "scan-420", "parse-7", "100%_done", "a_b", "axb", "back\\slash", "50%", "wow!%"]
    for job_id in ids:
        writer.write([heartbeat(1, job=job_id, kind="parse" if job_id.startswith("parse") else "scan")])
        clock.advance(1)
    writer.write([heartbeat(2, "failed", job="scan-420", error="boom")])

    def found(**filters: object) -> list[str]:
        return sorted(job.job_id for job in store.jobs(**filters))  # type: ignore[arg-type]

    assert found(search="SCAN-42") == ["Scan-42", "scan-420"]
    assert found(search="an-4") == ["Scan-42", "scan-420"]
    assert found(search="%") == ["100%_done", "50%", "wow!%"]  # literal, not a wildcard
    assert found(search="_") == ["100%_done", "a_b"]
    assert found(search="a_b") == ["a_b"]  # "_" is not any character: axb stays out
    assert found(search="\\") == ["back\\slash"]
    assert found(search="!%") == ["wow!%"]  # the escape character is literal too
    assert found(search="nothing") == []
    assert found(search="") == sorted([*ids, "bootstrap"])
    assert found(search="scan", status="failed") == ["scan-420"]
    assert found(search="scan", status=["running", "lost"], limit=1) == ["Scan-42"]
    assert found(search="A", kind="parse") == ["parse-7"]
    for bad, message in ((42, "search must be a string"), ("a\x00b", "NUL"), ("x" * 257, "at most 256")):
        with pytest.raises(ConfigurationError, match=message):
            store.jobs(search=bad)  # type: ignore[arg-type]
