"""Real worker processes writing a store through ``jp.track``: rows 10, 31 and 32, and resume after SIGKILL.

Workers are separate interpreters (``subprocess``, as spawn would start them) running the script
below; liveness is judged by ``ProgressStore`` on the database's own clock, with a short
``stall_after`` so that each test takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _store_support import (
    StoreTarget,
    backend_params,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
)
from jobprogress.store import JobView, ProgressStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")

WORKER = r"""
import json, sys, threading, time

config = json.loads(sys.argv[1])
if config.get("skew"):  # a worker whose wall clock is off, patched before jobprogress reads it
    _real_time = time.time
    time.time = lambda: _real_time() + config["skew"]
import jobprogress as jp

jp.configure(sinks=[config["url"]], worker_id=config["worker"], interval=config["interval"],
             keepalive=config.get("keepalive", 10.0))
mode = config["mode"]
if mode == "many":
    errors = []

    def run(index):
        try:
            job = f"{config['worker']}-job-{index}"
            with jp.track(job, unit="rows", total=config["items"], kind="parse") as tracker:
                for _ in range(config["items"]):
                    tracker.advance()
                    time.sleep(config["pause"])
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(config["jobs"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flushed = jp.flush(timeout=20.0)
    failures = sum(sink["failures"] for sink in jp.stats()["sinks"].values())
    print(json.dumps({"errors": errors, "flushed": flushed, "failures": failures}), flush=True)
elif mode == "write":  # a collector process: StoreWriter.write with interleaved seqs
    from jobprogress.envelope import Heartbeat, JobProgressEnvelope
    from jobprogress.envelope import utcnow_from
    from jobprogress.store import StoreWriter

    with StoreWriter(config["url"]) as writer:
        for seq in range(config["first"], config["last"], 2):
            now = utcnow_from(time.time())
            envelope = JobProgressEnvelope(items_done=seq, items_total=1000, updated_at=now)
            writer.write([
                Heartbeat(job_id=f"shared-{seq % 3}", worker_id="w", run_id="r", seq=seq, status="running",
                          progress=envelope, updated_at=now)
            ])
    print(json.dumps({"done": True}), flush=True)
elif mode == "endless":
    with jp.track(config["job"], unit="files", total=config["total"], worker_id=config["worker"],
                  resume=config.get("resume", False)) as tracker:
        print(json.dumps({"started_at": tracker.done}), flush=True)
        while tracker.done < config["total"]:
            tracker.advance()
            time.sleep(config["pause"])
    jp.flush(timeout=10.0)
    print(json.dumps({"finished": tracker.done}), flush=True)
"""


def start_worker(**config: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return stdout, stderr


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:  # never leave a worker behind, even when an assertion failed
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def wait_for(condition: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def store_now(store: ProgressStore) -> float:
    """The database's clock, as the store judges liveness with it."""
    import sqlalchemy as sa

    from jobprogress.store._engine import now_sql

    engine = store._engine()
    with engine.connect() as connection:
        return float(connection.execute(sa.select(now_sql(store._backend))).scalar_one())


@pytest.mark.slow
@pytest.mark.parametrize("store_target", backend_params("sqlite"), indirect=True)
def test_row10_eight_processes_into_sqlite_wal(
    store_target: StoreTarget, processes: list[subprocess.Popen[str]]
) -> None:
    workers, jobs, items = 8, 4, 60
    for index in range(workers):
        processes.append(
            start_worker(
                url=store_target.url,
                worker=f"proc-{index}",
                interval=0.02,
                mode="many",
                jobs=jobs,
                items=items,
                pause=0.005,
            )
        )
    for process in processes:
        stdout, stderr = finish(process, timeout=90)
        assert process.returncode == 0, stderr
        report = json.loads(stdout.strip().splitlines()[-1])
        assert report == {"errors": [], "flushed": True, "failures": 0}, stderr
    rows = stored_rows(store_target)
    assert len(rows) == workers * jobs  # every final state is present
    assert {(row["status"], row["done"]) for row in rows} == {("succeeded", items)}


@pytest.mark.slow
@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_row31_sigstop_shows_lost_then_running_again(
    store_target: StoreTarget, processes: list[subprocess.Popen[str]]
) -> None:
    stall_after = 1.0
    worker = start_worker(
        url=store_target.url, worker="stoppable", interval=0.05, keepalive=0.2, mode="endless",
        job="long-scan", total=10**9, pause=0.01,
    )  # fmt: skip
    processes.append(worker)
    assert worker.stdout is not None
    worker.stdout.readline()
    wait_for(lambda: store_target.path is None or store_target.path.exists(), 30)
    with ProgressStore(store_target.url, stall_after=stall_after) as store:

        def state() -> str | None:
            job = store.job("long-scan")
            return None if job is None else job.state

        wait_for(lambda: state() == "running", 30)
        os.kill(worker.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        wait_for(lambda: state() == "lost", stall_after + 5)
        assert time.monotonic() - stopped <= stall_after + 1.0
        os.kill(worker.pid, signal.SIGCONT)
        wait_for(lambda: state() == "running", 5)  # back on its next message


@pytest.mark.slow
@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_row32_sigkill_then_restart_takes_the_row_over(
    store_target: StoreTarget, processes: list[subprocess.Popen[str]]
) -> None:
    stall_after, interval, total = 1.0, 0.1, 400
    common = {"url": store_target.url, "worker": "w-kill", "interval": interval, "mode": "endless"}
    first = start_worker(**common, job="killed-job", total=total, pause=0.01)
    processes.append(first)
    assert first.stdout is not None
    first.stdout.readline()
    wait_for(lambda: store_target.path is None or store_target.path.exists(), 30)
    with ProgressStore(store_target.url, stall_after=stall_after) as store:

        def job() -> JobView | None:
            try:
                return store.job("killed-job")
            except Exception:
                return None  # the SQLite file may not exist yet

        wait_for(lambda: (view := job()) is not None and (view.done or 0) >= 50, 30)
        killed_at = store_now(store)  # the store's clock at the kill
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.wait(timeout=30)
        view = job()
        assert view is not None
        assert view.status == "running"
        seen_at = view.workers[0].seen_at
        assert seen_at is not None
        assert killed_at - seen_at.timestamp() <= interval + 0.5  # the stored state is about an interval old
        stored_done = view.done
        assert stored_done is not None
        assert 50 <= stored_done < total
        old_run, old_seq = view.workers[0].run_id, view.workers[0].seq
        wait_for(lambda: (view := job()) is not None and view.lost, stall_after + 5)
        assert time.monotonic() - killed <= stall_after + 1.0

        second = start_worker(**common, job="killed-job", total=total, pause=0.001, resume=True)
        processes.append(second)
        stdout, stderr = finish(second)
        assert second.returncode == 0, stderr
        lines = [json.loads(line) for line in stdout.splitlines()]
        assert lines[0] == {"started_at": stored_done}  # resumed from the stored row
        assert lines[-1] == {"finished": total}
        final = store.job("killed-job")
    assert final is not None
    assert (final.status, final.done, final.total, final.lost) == ("succeeded", total, total, False)
    assert len(final.workers) == 1  # the same row, taken over: nothing counted twice
    assert final.workers[0].run_id != old_run
    assert final.workers[0].seq is not None
    assert old_seq is not None
    assert final.workers[0].seq > old_seq


@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_row09_two_writer_processes_on_one_row_newest_seq_wins(
    store_target: StoreTarget, processes: list[subprocess.Popen[str]]
) -> None:
    # What two collectors on one database do: interleaved seqs for the same rows, at the same time.
    for first in (1, 2):
        processes.append(
            start_worker(url=store_target.url, worker="x", interval=1.0, mode="write", first=first, last=301)
        )
    for process in processes:
        _, stderr = finish(process)
        assert process.returncode == 0, stderr
    rows = {row["job_id"]: row for row in stored_rows(store_target)}
    assert {job: (row["seq"], row["done"]) for job, row in rows.items()} == {
        "shared-0": (300, 300), "shared-1": (298, 298), "shared-2": (299, 299),
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_row30_worker_clock_an_hour_behind_is_judged_on_the_store_clock(
    store_target: StoreTarget, processes: list[subprocess.Popen[str]]
) -> None:
    stall_after = 1.0
    worker = start_worker(
        url=store_target.url, worker="behind", interval=0.05, keepalive=0.2, mode="endless",
        job="skewed-scan", total=10**9, pause=0.01, skew=-3600.0,
    )  # fmt: skip
    processes.append(worker)
    assert worker.stdout is not None
    worker.stdout.readline()
    wait_for(lambda: store_target.path is None or store_target.path.exists(), 30)
    with ProgressStore(store_target.url, stall_after=stall_after) as store:
        wait_for(lambda: (job := store.job("skewed-scan")) is not None and (job.done or 0) > 0, 30)
        for _ in range(5):  # judged by the worker's clock it would be an hour silent: lost at once
            job = store.job("skewed-scan")
            assert job is not None
            assert job.state == "running"
            assert job.updated_at is not None
            assert store_now(store) - job.updated_at.timestamp() > 3000  # the worker's stamp, kept
            time.sleep(stall_after / 2)
        worker.kill()
        killed = time.monotonic()
        worker.wait(timeout=30)
        wait_for(lambda: (job := store.job("skewed-scan")) is not None and job.lost, stall_after + 5)
        assert time.monotonic() - killed <= stall_after + 1.0


FORKING_PARENT = r"""
import multiprocessing as mp, sys
import jobprogress as jp

def work(i):
    with jp.track(f"child-{i}", unit="rows", total=10) as t:
        for _ in range(10):
            t.advance()

if __name__ == "__main__":
    jp.configure(sinks=[sys.argv[1]], interval=0.05, keepalive=0.1)
    with jp.track("parent", unit="rows") as t:
        ctx = mp.get_context("fork")
        children = []
        for i in range(20):  # forks while the parent's sender is writing
            t.advance()
            child = ctx.Process(target=work, args=(i,))
            child.start()
            children.append(child)
        for child in children:
            child.join(30)
        print([child.exitcode for child in children])
    jp.flush(10)
"""


def test_fork_children_started_while_the_parent_writes_sqlite_deliver_every_final_state(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    result = subprocess.run(
        [sys.executable, "-c", FORKING_PARENT, url], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([0] * 20)
    with ProgressStore(url) as store:
        jobs = {job.job_id: (job.status, job.done) for job in store.jobs()}
    assert jobs.pop("parent") == ("succeeded", 20)
    assert jobs == {f"child-{i}": ("succeeded", 10) for i in range(20)}
