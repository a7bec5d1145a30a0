"""StoreWriter on SQLite, DuckDB and Postgres: seq guards, store clock, schema, values (RELIABILITY rows)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import ValidationError

from _store_support import (
    StoreClock,
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    skewed,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
    update,
)
from jobprogress.envelope import JobProgressEnvelope, ProgressUpdate
from jobprogress.errors import InvalidProgressError, StoreError
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store.schema import tables_for

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def only_row(target: StoreTarget) -> dict[str, Any]:
    rows = stored_rows(target)
    assert len(rows) == 1
    return rows[0]


def test_row07_duplicate_delivery_one_row_state_unchanged(
    writer: StoreWriter, store_target: StoreTarget, clock: StoreClock
) -> None:
    batch = [heartbeat(1), update(2, 40), heartbeat(3, progress=envelope(50))]
    writer.write(batch)
    first = only_row(store_target)
    clock.advance(5)
    writer.write(batch)  # the reply was lost and the reporter sent it again
    writer.write(batch[1:2])
    assert only_row(store_target) == first  # seen_at too: a duplicate is not a sign of life
    assert first["done"] == 50
    assert first["seq"] == 3


def test_row08_out_of_order_seq(writer: StoreWriter, store_target: StoreTarget) -> None:
    writer.write([heartbeat(5, progress=envelope(50, payload={"stage": "five"}))])
    writer.write([heartbeat(4, "failed", error="stale", progress=envelope(40, payload={"stage": "four"}))])
    writer.write([update(3, 30)])
    row = only_row(store_target)
    assert (row["status"], row["done"], row["seq"], row["error"]) == ("running", 50, 5, None)
    assert row["payload_json"] == '{"stage":"five"}'


@pytest.mark.parametrize("order", ["heartbeat-first", "progress-first"])
def test_row08_split_final_state_lands_in_either_order(
    writer: StoreWriter, store_target: StoreTarget, order: str
) -> None:
    writer.write([heartbeat(1, progress=envelope(10))])
    final = [heartbeat(7, "succeeded"), update(8, 100)]
    if order == "progress-first":
        final.reverse()
    for message in final:  # two deliveries, as two sinks batches would arrive
        writer.write([message])
    row = only_row(store_target)
    assert (row["status"], row["done"], row["total"], row["seq"]) == ("succeeded", 100, 100, 8)
    assert (row["status_seq"], row["progress_seq"]) == (7, 8)


def test_row26_heartbeat_without_progress_keeps_stored_progress(
    writer: StoreWriter, store_target: StoreTarget
) -> None:
    writer.write([update(1, 60, payload={"rows_ok": 59})])
    writer.write([heartbeat(2)])  # an old-style heartbeat: no envelope at all
    row = only_row(store_target)
    assert (row["done"], row["total"], row["unit"], row["payload_json"]) == (
        60,
        100,
        "files",
        '{"rows_ok":59}',
    )
    assert row["seq"] == 2


def test_row_first_created_by_progress_update_is_running(
    writer: StoreWriter, store_target: StoreTarget
) -> None:
    writer.write([update(1, 5)])
    row = only_row(store_target)
    assert (row["status"], row["done"], row["status_seq"]) == ("running", 5, -1)
    writer.write([heartbeat(2, "succeeded", kind="parse")])
    row = only_row(store_target)
    assert (row["status"], row["kind"], row["done"]) == ("succeeded", "parse", 5)


def test_store_clock_columns(writer: StoreWriter, store_target: StoreTarget, clock: StoreClock) -> None:
    start = clock.now
    writer.write([heartbeat(1, progress=envelope(10))])
    clock.advance(3)
    writer.write([heartbeat(2, progress=envelope(10))])  # alive, no progress
    row = only_row(store_target)
    assert (row["started_at"], row["progressed_at"], row["seen_at"]) == (start, start, start + 3)
    clock.advance(3)
    writer.write([update(3, 11)])
    assert only_row(store_target)["progressed_at"] == start + 6
    clock.advance(3)
    writer.write([heartbeat(4, "failed", error="boom")])  # a status change is progress too
    assert only_row(store_target)["progressed_at"] == start + 9
    clock.advance(3)
    writer.write([heartbeat(5, run="run-2", progress=envelope(11))])  # restarted: a new run
    row = only_row(store_target)
    assert (row["run_id"], row["started_at"], row["progressed_at"], row["status"], row["error"]) == (
        "run-2", start + 12, start + 12, "running", None
    )  # fmt: skip


def test_row30_worker_clock_skew_does_not_touch_store_clock(
    writer: StoreWriter, store_target: StoreTarget, clock: StoreClock
) -> None:
    writer.write([heartbeat(1, worker="ahead", at=skewed(+1), progress=envelope(1, at=skewed(+1)))])
    writer.write([heartbeat(1, worker="behind", at=skewed(-1), progress=envelope(1, at=skewed(-1)))])
    rows = {row["worker_id"]: row for row in stored_rows(store_target)}
    assert rows["ahead"]["seen_at"] == rows["behind"]["seen_at"] == clock.now
    assert rows["ahead"]["updated_at"] - rows["behind"]["updated_at"] == 7200  # kept as the worker said


def test_default_store_clock_is_the_databases(store_target: StoreTarget) -> None:
    import time

    before = time.time()
    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1, at=skewed(-24 * 365))])  # a worker clock a year behind
    row = only_row(store_target)
    assert before - 5 <= row["seen_at"] <= time.time() + 5
    assert row["seen_at"] == row["started_at"] == row["progressed_at"]


def test_row18_non_finite_values_stored_as_null(writer: StoreWriter, store_target: StoreTarget) -> None:
    # Messages built around the envelope's guard still never put NaN into the database.
    raw = JobProgressEnvelope.model_construct(
        items_done=1, items_total=0, unit="rows", throughput_per_sec=float("nan"), eta_seconds=None,
        updated_at=skewed(0), payload={"rate": float("inf")},
    )  # fmt: skip
    writer.write(
        [ProgressUpdate.model_construct(job_id="job-1", worker_id="w1", run_id="r", seq=1, progress=raw)]
    )
    row = only_row(store_target)
    assert (row["throughput"], row["payload_json"], row["total"]) == (None, None, 0)
    # Through validation a non-finite rate or ETA never gets that far: the strict envelope refuses it
    # (the tracker's own estimator reports None instead), so nothing more is stored.
    for field, value in (("throughput_per_sec", float("inf")), ("eta_seconds", float("nan"))):
        with pytest.raises(ValidationError, match=field):
            JobProgressEnvelope(items_done=0, items_total=0, updated_at=skewed(0), **{field: value})
    assert only_row(store_target)["seq"] == 1


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", "x" * 10_000])
def test_row19_nul_surrogate_long_string_rejected_before_the_store(
    writer: StoreWriter, store_target: StoreTarget, bad: str
) -> None:
    with pytest.raises(ValidationError):
        heartbeat(1, job=bad)
    with pytest.raises(ValidationError):
        heartbeat(1, progress=envelope(1, payload={"note": bad}))
    import jobprogress as jp

    with pytest.raises(InvalidProgressError):
        jp.track(bad)
    writer.write([heartbeat(1)])  # the store itself is untouched by the rejected values
    assert [row["job_id"] for row in stored_rows(store_target)] == ["job-1"]


def test_large_counts_fit_bigint(writer: StoreWriter, store_target: StoreTarget) -> None:
    top = 2**63 - 1
    writer.write([update(top, top, top, worker="w1"), update(1, top, top, worker="w2")])
    with ProgressStore(store_target.url) as store:
        job = store.job("job-1")
    assert job is not None
    assert (job.done, job.total) == (2 * top, 2 * top)  # summed in Python: no BIGINT overflow
    assert {worker.seq for worker in job.workers} == {top, 1}


def test_threads_writing_the_same_rows_newest_wins(store_target: StoreTarget) -> None:
    # The collector calls write() from several request threads at once.
    errors: list[BaseException] = []
    with StoreWriter(store_target.url) as writer:

        def deliver(offset: int) -> None:
            try:
                for seq in range(offset, 120, 6):
                    writer.write([heartbeat(seq, worker=f"w{seq % 2}", progress=envelope(seq))])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(offset,)) for offset in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if store_target.backend == "duckdb":
        # DuckDB serializes writers itself; conflicts surface as errors the reporter retries.
        errors = [error for error in errors if not isinstance(error, StoreError)]
    assert errors == []
    rows = {row["worker_id"]: row for row in stored_rows(store_target)}
    if store_target.backend != "duckdb":
        assert (rows["w0"]["seq"], rows["w0"]["done"]) == (118, 118)
        assert (rows["w1"]["seq"], rows["w1"]["done"]) == (119, 119)


def test_stored_done_for_resume(store_target: StoreTarget) -> None:
    with StoreWriter(store_target.url) as writer:
        assert writer.stored_done("job-1", "w1") is None  # no database yet, and none is created
        if store_target.path is not None:
            assert not store_target.path.exists()
        writer.write([heartbeat(1), update(9, 42)])
        writer.write([heartbeat(1, worker="w2")])
        assert writer.stored_done("job-1", "w1") == (42, 9)
        assert writer.stored_done("job-1", "w2") == (0, 1)  # a row without progress resumes at 0
        assert writer.stored_done("job-1", "other") is None


def test_history_keeps_accepted_messages_within_retention(
    store_target: StoreTarget, clock: StoreClock
) -> None:
    with StoreWriter(
        store_target.url, clock=clock, history=True, history_max_rows=3, history_max_age=100
    ) as writer:
        batch = [heartbeat(1), update(2, 10), heartbeat(3, progress=envelope(20))]
        writer.write(batch)
        writer.write(batch)  # redelivered: recorded once
        engine = store_target.engine()
        table = tables_for("cf_").history
        with engine.connect() as connection:
            rows = connection.execute(table.select().order_by(table.c.seq)).mappings().all()
        assert [(row["seq"], row["type"], row["status"], row["done"]) for row in rows] == [
            (1, "heartbeat", "running", None), (2, "progress", None, 10), (3, "heartbeat", "running", 20),
        ]  # fmt: skip
        for seq in range(4, 8):
            clock.advance(1)
            writer.write([update(seq, seq * 10)])
        writer.prune_history()
        with engine.connect() as connection:
            kept = [row.seq for row in connection.execute(table.select().order_by(table.c.seq))]
        assert kept == [5, 6, 7]  # the row bound
        clock.advance(150)
        writer.write([update(8, 80)])
        writer.prune_history()
        with engine.connect() as connection:
            kept = [row.seq for row in connection.execute(table.select().order_by(table.c.seq))]
        assert kept == [8]  # the age bound


def test_closed_writer_refuses(store_target: StoreTarget) -> None:
    writer = StoreWriter(store_target.url)
    writer.close()
    writer.close()
    with pytest.raises(StoreError, match="closed"):
        writer.write([heartbeat(1)])
