"""jobprogress.contrib.celery on a real prefork worker (concurrency 2, a task per child): Redis, RabbitMQ.

Each broker gets one worker process for the module; a broker that does not answer skips its tests with
the reason. Results: Redis's own backend; beside RabbitMQ, Celery's database backend on SQLite (what
celery-progress front ends read from another process: ``rpc://`` hands states to the caller only).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery", reason="the celery extra is not installed (pip install '.[celery]')")

from celery import Celery, group

from jobprogress.store import JobView, ProgressStore

HERE = Path(__file__).resolve().parent
BROKERS = {
    # name: (host, port, broker URL, result backend)
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/11", "redis://127.0.0.1:6379/11"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672//", "db+sqlite:///{tmp}/results.db"),
}
WAIT = 30.0  # longest wait for anything asynchronous; a passing run waits well under a second per step


@dataclass
class Worker:
    app: Celery
    db: str
    tmp: Path

    def job(self, job_id: str, until: Callable[[JobView], bool]) -> JobView:
        """The job as stored, once ``until`` holds (its final states land just after the results)."""
        deadline = time.monotonic() + WAIT
        view = None
        while True:
            if Path(self.db.removeprefix("sqlite:///")).exists():  # created by the first delivery
                with ProgressStore(self.db) as store:
                    view = store.job(job_id)
                if view is not None and until(view):
                    return view
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id!r} never got there; last seen: {view!r}")
            time.sleep(0.05)

    def gate(self) -> Path:
        """A gate for ``jp.gated_shard``; the fixture opens every gate before it stops the worker."""
        return self.tmp / "gates" / uuid.uuid4().hex


def _reachable(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return str(exc)


@pytest.fixture(scope="module", params=sorted(BROKERS))
def worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    name = request.param
    host, port, broker, backend = BROKERS[name]
    problem = _reachable(host, port)
    if problem is not None:
        pytest.skip(f"{name} is not reachable on {host}:{port} ({problem}); start it to run these tests")
    from celery_worker_app import make_app

    tmp = tmp_path_factory.mktemp(f"celery-{name}")
    backend = backend.format(tmp=tmp)
    queue = f"jp-test-{uuid.uuid4().hex[:12]}"
    node = f"{queue}@{socket.gethostname()}"
    db = f"sqlite:///{tmp / 'progress.db'}"
    env = {
        **os.environ,
        "JP_TEST_BROKER": broker,
        "JP_TEST_BACKEND": backend,
        "JP_TEST_QUEUE": queue,
        "JOBPROGRESS_SINKS": db,
        "JOBPROGRESS_INTERVAL": "0.05",
        "JOBPROGRESS_OUTBOX": str(tmp / "outbox"),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "celery_worker_app", "worker",
        "--pool=prefork", "--concurrency=2", "--max-tasks-per-child=1",
        "-Q", queue, "-n", node, "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel=WARNING",
    ]  # fmt: skip
    app = make_app(broker, backend, queue)
    with open(tmp / "worker.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + WAIT
        while not app.control.ping(destination=[node], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the celery worker did not start:\n{(tmp / 'worker.log').read_text()}")
        yield Worker(app, db, tmp)
    finally:
        (tmp / "gates").mkdir(exist_ok=True)
        (tmp / "gates" / "release").touch()  # every gated task still waiting goes on
        process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
        app.close()


def _task(worker: Worker, name: str) -> Any:
    return worker.app.tasks[name]


def test_a_group_of_eight_tasks_is_one_job_with_a_row_per_task(worker: Worker) -> None:
    scan = _task(worker, "jp.scan_shard")
    result = group(scan.s(shard) for shard in range(8)).apply_async()
    assert result.get(timeout=WAIT) == [100] * 8

    job = worker.job(result.id, lambda view: view.status == "succeeded" and len(view.workers) == 8)
    assert (job.done, job.total, job.unit, job.kind) == (800, 800, "files", "scan")
    task_ids = {child.id for child in result.results}
    assert {row.worker_id.rsplit(":", 1)[1] for row in job.workers} == task_ids
    assert all(row.status == "succeeded" and row.done == 100 for row in job.workers)
    assert all(row.worker_id.startswith(f"{worker.app.conf.task_default_queue}@") for row in job.workers)


def test_a_failing_task_fails_the_job_with_its_error(worker: Worker) -> None:
    scan, failing = _task(worker, "jp.scan_shard"), _task(worker, "jp.failing_shard")
    result = group([scan.s(0), failing.s(1), scan.s(2)]).apply_async()
    outcomes = result.get(timeout=WAIT, propagate=False)
    assert outcomes[0] == outcomes[2] == 100
    assert isinstance(outcomes[1], ValueError)

    job = worker.job(result.id, lambda view: len(view.workers) == 3 and view.status == "failed")
    assert job.error == "ValueError: shard 1 is corrupt"
    assert job.done == 210
    assert sorted(row.status for row in job.workers) == ["failed", "succeeded", "succeeded"]


def test_a_revoked_terminated_task_ends_cancelled(worker: Worker) -> None:
    gated = _task(worker, "jp.gated_shard")
    result = gated.delay(0, str(worker.gate()))  # a gate never opened
    worker.job(result.id, lambda view: view.status == "running" and view.done == 50)

    result.revoke(terminate=True)  # SIGTERM to the pool process running it
    job = worker.job(result.id, lambda view: view.status != "running")
    assert job.status == "cancelled", job
    [row] = job.workers
    assert (row.status, row.done, row.error) == ("cancelled", 50, "terminated by SIGTERM")


def test_result_meta_is_celery_progress_meta_readable_through_async_result(worker: Worker) -> None:
    gated = _task(worker, "jp.gated_shard")
    gate = worker.gate()
    result = gated.delay(7, str(gate))

    deadline = time.monotonic() + WAIT
    while result.state != "PROGRESS" or result.info.get("current") != 50:
        assert time.monotonic() < deadline, f"no PROGRESS meta; state {result.state}, info {result.info!r}"
        time.sleep(0.05)
    assert result.info == {
        "pending": False,
        "current": 50,
        "total": 100,
        "percent": 50.0,
        "description": "shard 7",
    }

    gate.parent.mkdir(exist_ok=True)
    gate.touch()
    assert result.get(timeout=WAIT) == 100
    assert (result.state, result.info) == ("SUCCESS", 100)  # the result, not a late progress write


def test_a_retried_task_reports_on_its_row_and_its_open_tracker_finishes_with_it(worker: Worker) -> None:
    retried = _task(worker, "jp.retried_shard")
    result = retried.delay(0)
    assert result.get(timeout=WAIT) == 100

    job = worker.job(result.id, lambda view: view.status == "succeeded")
    [row] = job.workers
    assert (row.done, row.total) == (100, 100)
