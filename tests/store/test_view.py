"""The ``{prefix}jobs`` view: created with the tables, migrated onto a version-2 store, the CLI's answers."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest

from _store_support import (
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    update,
)
from jobprogress.envelope import JobProgressEnvelope
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store.schema import SCHEMA_VERSION, tables_for

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)

_FIELDS = (
    "state", "kind", "unit", "done", "total", "throughput", "eta_seconds", "eta_reason", "status", "stalled",
    "lost", "error", "payload", "attempt",
)  # fmt: skip


def _view_rows(target: StoreTarget, prefix: str = "cf_") -> dict[str, dict[str, Any]]:
    import json

    import sqlalchemy as sa

    with target.engine().connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(sa.text(f"SELECT * FROM {prefix}jobs"))]
    for row in rows:
        if isinstance(row["payload"], str):
            row["payload"] = json.loads(row["payload"])
        for flag in ("stalled", "lost"):
            row[flag] = bool(row[flag])
        for count in ("done", "total", "eta_seconds"):
            row[count] = None if row[count] is None else int(row[count])
    return {row["job_id"]: row for row in rows}


def _own_eta(seconds: int) -> JobProgressEnvelope:
    return envelope(10, 100, throughput=3.0).model_copy(update={"eta_seconds": seconds})


def _write_mix(writer: StoreWriter) -> None:
    writer.write(
        [
            heartbeat(1, job="mixed", worker="w1", progress=envelope(3, unit="files")),
            heartbeat(1, job="mixed", worker="w2", progress=envelope(4, unit="bytes")),
            heartbeat(1, job="sum", worker="w1", progress=envelope(3, 10, payload={"a": 1})),
            heartbeat(1, job="sum", worker="w2", progress=envelope(4, None, throughput=1.5)),
            heartbeat(1, job="eta", progress=envelope(10, 100, throughput=3.0)),
            # Shards: the slowest unfinished one's time (50 s; over the summed rate it would be 35 s),
            # a worker's own ETA, a finished shard, a shard with no rate yet.
            heartbeat(1, job="shards", worker="w1", progress=envelope(10, 100, throughput=3.0)),
            heartbeat(1, job="shards", worker="w2", progress=envelope(50, 100, throughput=1.0)),
            heartbeat(1, job="own-eta", worker="w1", progress=_own_eta(70)),
            heartbeat(1, job="own-eta", worker="w2", progress=envelope(100, 100, throughput=0.5)),
            heartbeat(1, job="no-rate", worker="w1", progress=envelope(10, 100, throughput=3.0)),
            heartbeat(1, job="no-rate", worker="w2", progress=envelope(5, 100, throughput=None)),
            heartbeat(1, "failed", job="broke", worker="w1", kind="etl", error="boom"),
            heartbeat(1, "succeeded", job="broke", worker="w2", kind="etl", progress=envelope(5, 5)),
            heartbeat(1, "cancelled", job="stopped", kind="a"),
            update(2, 7, job="stopped", payload={"b": "x"}),
        ]
    )


def test_the_view_shows_what_the_read_side_shows(store_target: StoreTarget) -> None:
    import time

    with StoreWriter(store_target.url) as writer:
        _write_mix(writer)
        writer.write([heartbeat(1, job="lost-shard", worker="w2", progress=envelope(5, 100))])
    with StoreWriter(store_target.url, clock=lambda: time.time() - 100) as old:  # silent for 100 s
        old.write([heartbeat(1, job="lost-shard", worker="w1", progress=envelope(5, 100))])
    with ProgressStore(store_target.url) as store:
        jobs = store.jobs()
    rows = _view_rows(store_target)
    assert set(rows) == {job.job_id for job in jobs}
    for job in jobs:
        expected = {name: getattr(job, name) for name in _FIELDS}
        assert {name: rows[job.job_id][name] for name in _FIELDS} == expected, job.job_id
        stamp = rows[job.job_id]["updated_at"]
        if store_target.backend == "sqlite":
            assert isinstance(stamp, str)
            stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert job.updated_at is not None
        assert abs((stamp - job.updated_at).total_seconds()) < 0.002
        assert rows[job.job_id]["workers"] == len(job.workers)
    # The sharded-job rule of store/_eta.py, in the view's SQL.
    assert [rows[job]["eta_seconds"] for job in ("shards", "own-eta", "no-rate", "lost-shard")] == [
        50,
        70,
        None,
        None,
    ]
    assert rows["lost-shard"]["eta_reason"] == "waiting on a lost worker"


def test_a_version_2_store_is_migrated_when_several_processes_start(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    with StoreWriter(store_target.url) as writer:
        _write_mix(writer)
    engine = store_target.engine()
    version = tables_for("cf_").version
    with engine.begin() as connection:  # what the release before wrote: no view, version 2
        connection.execute(sa.text("DROP VIEW cf_jobs"))
        connection.execute(sa.update(version).values(version=2))
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def start(index: int) -> None:
        try:
            with StoreWriter(store_target.url, busy_timeout=5 + index, lock_timeout=5 + index) as writer:
                barrier.wait()
                for attempt in range(20):
                    try:
                        writer.write([heartbeat(5, job="late", worker=f"w{index}")])
                        return
                    except Exception:
                        if store_target.backend != "duckdb" or attempt == 19:
                            raise
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(version.c.version)).scalar_one() == SCHEMA_VERSION == 4
    rows = _view_rows(store_target)
    assert rows["late"]["workers"] == 3
    assert rows["broke"]["state"] == "failed"
