"""jobprogress.contrib.dask on a real ``distributed.LocalCluster(n_workers=2, processes=True)``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed (pip install '.[dask]')")

from dask_shard_tasks import scan_shard, scan_shard_dying_once
from distributed import Client, LocalCluster

from jobprogress.contrib.dask import JobprogressPlugin
from jobprogress.store import JobView, ProgressStore

WAIT = 30.0


@dataclass
class Cluster:
    client: Client
    db: str
    tmp: Path

    def job(self, job_id: str, until: Callable[[JobView], bool], stall_after: float = 30.0) -> JobView:
        deadline = time.monotonic() + WAIT
        view = None
        while True:
            if Path(self.db.removeprefix("sqlite:///")).exists():
                with ProgressStore(self.db, stall_after=stall_after) as store:
                    view = store.job(job_id)
                if view is not None and until(view):
                    return view
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id!r} never got there; last seen: {view!r}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("dask")
    db = f"sqlite:///{tmp / 'progress.db'}"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local,
        Client(local) as client,
    ):
        client.register_plugin(JobprogressPlugin(sinks=[db], interval=0.05, outbox=str(tmp / "outbox")))
        yield Cluster(client, db, tmp)


def test_client_map_over_six_shards_is_one_job_with_a_row_per_task(cluster: Cluster) -> None:
    job_id = f"scan-{uuid.uuid4().hex[:8]}"
    futures = cluster.client.map(scan_shard, [job_id] * 6, range(6))
    assert cluster.client.gather(futures) == [100] * 6

    job = cluster.job(job_id, lambda view: view.status == "succeeded" and len(view.workers) == 6)
    assert (job.done, job.total, job.unit, job.kind) == (600, 600, "files", "scan")
    assert all(row.status == "succeeded" and (row.done, row.total) == (100, 100) for row in job.workers)
    keys = {future.key for future in futures}
    assert {row.worker_id.split(":", 2)[2] for row in job.workers} == keys
    assert {row.worker_id.split(":", 1)[0] for row in job.workers} <= {"0", "1"}


def test_a_worker_killed_mid_task_leaves_its_row_lost_and_the_retry_succeeds(cluster: Cluster) -> None:
    job_id = f"scan-{uuid.uuid4().hex[:8]}"
    marker = str(cluster.tmp / f"died-{job_id}")
    futures = cluster.client.map(scan_shard_dying_once, [job_id] * 6, range(6), [marker] * 6)
    assert cluster.client.gather(futures) == [100] * 6
    keys = [future.key for future in futures]

    def settled(view: JobView) -> bool:
        succeeded = {row.worker_id.split(":", 2)[2] for row in view.workers if row.status == "succeeded"}
        return succeeded == set(keys) and any(row.lost for row in view.workers)

    # The killed run sends nothing more: it is lost once a second passes on the store's clock.
    job = cluster.job(job_id, settled, stall_after=1.0)
    killed = [row for row in job.workers if row.worker_id.endswith(f":{keys[2]}")]
    assert sorted((row.status, row.lost, row.done) for row in killed) == [
        ("running", True, 50),
        ("succeeded", False, 100),
    ]
    assert len({row.worker_id.split(":", 2)[1] for row in killed}) == 2  # another process ran the retry
    # Dask also recomputes results that were held only by the dead worker: each run is a row of its own.
    others = [row for row in job.workers if row not in killed]
    assert all(row.status == "succeeded" and row.done == 100 for row in others)
    assert {row.attempt for row in job.workers} == {1}
    assert job.lost  # its only running worker is lost
