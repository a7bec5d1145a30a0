"""Final states survive sink outages, SIGTERM and pool teardown (issue 11; RELIABILITY.md rows 36-38).

Every case uses the real thing: a SQLite write lock held by another process, a Postgres
``LOCK TABLE``, the real collector stopped and restarted, a socket that never answers, real
``multiprocessing.Pool`` teardown and real signals. The final state must reach the store, delivered
either by the same process's ``flush`` or, from the outbox, by the next process that configures the sink.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobprogress as jp
from _http_support import TOKEN, SilentServer, collector_process, free_port
from _store_support import (
    StoreTarget,
    backend_params,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
)
from jobprogress._outbox import Outbox

pytestmark = pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")

CHILD_TIMEOUT = 60.0


def child_env(outbox: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    env["JOBPROGRESS_LOAD_PLUGINS"] = ""
    env["JOBPROGRESS_OUTBOX"] = str(outbox)
    env["JOBPROGRESS_HTTP_TOKEN"] = TOKEN
    env.update({f"JOBPROGRESS_{name.upper()}": value for name, value in settings.items()})
    return env


def run_python(
    source: str, outbox: Path, *args: str, timeout: float = CHILD_TIMEOUT, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        env=child_env(outbox, **settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def row_of(target: StoreTarget, job: str) -> dict[str, object] | None:
    rows = [row for row in stored_rows(target) if row["job_id"] == job]
    assert len(rows) <= 1
    return rows[0] if rows else None


@contextlib.contextmanager
def write_lock(target: StoreTarget) -> Iterator[None]:
    """Hold the store's write lock from this process (another process than the worker's)."""
    if target.backend == "sqlite":
        assert target.path is not None
        holder = sqlite3.connect(target.path, timeout=5, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    import sqlalchemy as sa

    engine = target.engine()
    with engine.connect() as blocker:
        blocker.execute(sa.text("LOCK TABLE cf_job_progress IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            blocker.rollback()
    engine.dispose()


store_backends = pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)


# -- row 36: a sink unavailable when the job ends -----------------------------------------------


@store_backends
def test_row36_flush_waits_through_a_store_lock_longer_than_its_timeouts(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    # The lock outlasts busy_timeout / lock_timeout (5 s): the first write fails, flush keeps retrying.
    jp.configure(sinks=[store_target.url], outbox=str(tmp_path / "outbox"))
    with jp.track("locked-end", unit="files", total=10) as tracker:
        tracker.advance(4)
        assert jp.flush(10)
        with write_lock(store_target):
            tracker.advance(6)
            tracker.finish()
            release = threading.Timer(6.0, lambda: None)
            release.start()
            release.join()  # the lock is released when the block ends, 6 s after the job ended
            started = time.monotonic()
        assert jp.flush(30)
        assert time.monotonic() - started < 10
    row = row_of(store_target, "locked-end")
    assert row is not None
    assert (row["status"], row["done"]) == ("succeeded", 10)
    assert jp.stats()["sinks"][store_target.url]["failures"] >= 1


LOCKED_EXIT_WORKER = """
import sys, time
from pathlib import Path
import jobprogress as jp

jp.configure(sinks=[sys.argv[1]], exit_timeout=0.5)
with jp.track("exit-during-outage", unit="files", total=10) as tracker:
    tracker.advance(4)
    assert jp.flush(10)
    print("started", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
    tracker.advance(6)
print("ended", time.monotonic(), flush=True)
"""

NEXT_PROCESS = """
import sys
import jobprogress as jp

jp.configure(sinks=[sys.argv[1]])
print("flushed", jp.flush(20), flush=True)
"""


@store_backends
def test_row36_exit_during_a_store_lock_spools_and_the_next_process_delivers(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    outbox, go = tmp_path / "outbox", tmp_path / "go"
    worker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(LOCKED_EXIT_WORKER), store_target.url, str(go)],
        env=child_env(outbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "started"
        with write_lock(store_target):
            go.touch()
            out, err = worker.communicate(timeout=CHILD_TIMEOUT)
            ended = float(out.split()[-1])
            assert worker.returncode == 0, err
            assert time.monotonic() - ended < 0.5 + 2.0  # exit_timeout, then the outbox took it
        assert "Traceback" not in err
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    row = row_of(store_target, "exit-during-outage")
    assert row is not None
    assert (row["status"], row["done"]) == ("running", 4)  # the worker is gone
    assert Outbox(outbox, store_target.url).files()
    result = run_python(NEXT_PROCESS, outbox, store_target.url)
    assert "flushed True" in result.stdout, result.stderr
    row = row_of(store_target, "exit-during-outage")
    assert row is not None
    assert (row["status"], row["done"]) == ("succeeded", 10)
    assert Outbox(outbox, store_target.url).files() == []


def _collector_env_token(tmp_path: Path) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    return token_file


def test_row36_flush_waits_through_a_collector_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file, port = _collector_env_token(tmp_path), free_port()
    db_url, log = f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "collector.log"
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    url = f"http://127.0.0.1:{port}"
    jp.configure(sinks=[url + "?timeout=2"], outbox=str(tmp_path / "outbox"))
    with collector_process(db_url, token_file, log, port=port) as (_, first):
        tracker = jp.track("collector-down", unit="files", total=10).start()
        tracker.advance(4)
        assert jp.flush(10)
        first.kill()
        first.wait(10)
    tracker.advance(6)
    tracker.finish()
    back: list[bool] = []

    def restart() -> None:
        time.sleep(2.0)
        with collector_process(db_url, token_file, log, port=port):
            back.append(True)
            while len(back) < 2:
                time.sleep(0.05)

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        assert jp.flush(30)
    finally:
        back.append(True)
        thread.join(30)
    target = StoreTarget("sqlite", db_url, tmp_path / "p.db")
    row = row_of(target, "collector-down")
    assert row is not None
    assert (row["status"], row["done"]) == ("succeeded", 10)


HTTP_EXIT_WORKER = """
import sys, time
import jobprogress as jp

jp.configure(sinks=[sys.argv[1]], exit_timeout=1.0)
with jp.track(sys.argv[2], unit="files", total=10) as tracker:
    tracker.advance(10)
print("ended", time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("outage", ["stopped", "silent"])
def test_row36_row37_exit_while_the_collector_is_down_or_silent_then_delivered_once(
    outage: str, tmp_path: Path
) -> None:
    token_file, port = _collector_env_token(tmp_path), free_port()
    db_url, log, outbox = f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "collector.log", tmp_path / "outbox"
    sink_url = f"http://127.0.0.1:{port}?timeout=5"
    job = f"collector-{outage}"
    with contextlib.ExitStack() as stack:
        if outage == "silent":  # accepts the connection and never answers (row 37)
            silent = stack.enter_context(SilentServer())
            sink_url = silent.url + "?timeout=5"
            port = int(silent.url.rsplit(":", 1)[1])
        result = run_python(HTTP_EXIT_WORKER, outbox, sink_url, job)
        exited = time.monotonic()
        assert result.returncode == 0, result.stderr
        assert exited - float(result.stdout.split()[-1]) < 1.0 + 2.0  # exit_timeout bounds the wait
        assert "Traceback" not in result.stderr
    assert len(Outbox(outbox, sink_url).files()) == 1  # the in-flight state counted as undelivered
    with collector_process(db_url, token_file, log, port=port):
        delivered = run_python(NEXT_PROCESS, outbox, sink_url)
        again = run_python(NEXT_PROCESS, outbox, sink_url)  # nothing left: delivered once
    assert "flushed True" in delivered.stdout, delivered.stderr
    assert "flushed True" in again.stdout, again.stderr
    assert Outbox(outbox, sink_url).files() == []
    assert Outbox(outbox, sink_url).stats["replayed"] == 0
    row = row_of(StoreTarget("sqlite", db_url, tmp_path / "p.db"), job)
    assert row is not None
    assert (row["status"], row["done"]) == ("succeeded", 10)


# -- row 38: Pool teardown and SIGTERM ---------------------------------------------------------


POOL_RUNS = """
import multiprocessing, sys
import jobprogress as jp
from jobprogress.store import ProgressStore

@jp.track(unit="files", kind="scan", job="scan-{run}-{shard}")
def scan(run, shard):
    tracker = jp.current()
    tracker.set_total(shard + 1)
    for _ in range(shard + 1):
        tracker.advance()
    return shard

def scan_args(args):
    return scan(*args)

if __name__ == "__main__":
    url, runs = sys.argv[1], int(sys.argv[2])
    jp.configure(sinks=[url], interval=60.0, keepalive=60.0)
    context = multiprocessing.get_context("fork")
    good = 0
    for run in range(runs):
        with context.Pool(4) as pool:
            pool.map(scan_args, [(run, shard) for shard in range(8)])
        with ProgressStore(url) as store:
            views = {view.job_id: view for view in store.jobs()}
        ok = all(
            (views.get(f"scan-{run}-{shard}") is not None
             and views[f"scan-{run}-{shard}"].status == "succeeded"
             and views[f"scan-{run}-{shard}"].done == shard + 1)
            for shard in range(8)
        )
        good += ok
        print("run", run, "ok" if ok else "MISSING", flush=True)
    print("good", good, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(540)
def test_row38_pool_context_manager_stores_every_final_state_20_of_20(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    # 20 pools take 10-20 s; the bound is for a machine loaded by other work, not a hang allowance.
    result = run_python(POOL_RUNS, tmp_path / "outbox", url, "20", timeout=8 * CHILD_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "good 20" in result.stdout.splitlines(), result.stdout


SIGTERMED = """
import os, sys, time
import jobprogress as jp

jp.configure(sinks=[sys.argv[1]], interval=60.0, keepalive=60.0)
with jp.track("terminated", unit="rows", total=1000) as tracker:
    assert jp.flush(5)  # the start has landed
    tracker.advance(7)
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("handle", [True, False], ids=["handled", "opted-out"])
def test_row38_sigterm_delivers_then_still_dies_by_sigterm(handle: bool, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGTERMED), url],
        env=child_env(tmp_path / "outbox", handle_sigterm=str(handle).lower()),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=CHILD_TIMEOUT)
    assert process.returncode == -signal.SIGTERM  # the exit status a default SIGTERM gives
    row = row_of(StoreTarget("sqlite", url, tmp_path / "p.db"), "terminated")
    assert row is not None
    if handle:
        assert (row["status"], row["done"], row["error"]) == ("cancelled", 7, "terminated by SIGTERM")
    else:
        assert (row["status"], row["done"]) == ("running", 0)  # only the start had landed


def test_row38_an_application_sigterm_handler_is_never_replaced(tmp_path: Path) -> None:
    source = """
    import signal
    import jobprogress as jp

    def mine(signum, frame):
        pass

    signal.signal(signal.SIGTERM, mine)
    jp.configure(sinks=["memory://"])
    with jp.track("x"):
        pass
    print(signal.getsignal(signal.SIGTERM) is mine)
    """
    result = run_python(source, tmp_path / "outbox")
    assert result.stdout.split() == ["True"], result.stderr


def test_shutdown_with_an_unwritable_outbox_warns_and_tracking_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    source = """
    import jobprogress as jp
    from jobprogress.testing import registered_sink

    class Refusing:
        def __init__(self, url): pass
        def send(self, messages): raise ConnectionRefusedError(111, "refused")
        def flush(self, timeout): return True
        def close(self, timeout): pass

    with registered_sink("refusing", Refusing):
        jp.configure(sinks=["refusing://"], exit_timeout=0.2)
    for index in range(3):
        with jp.track(f"job-{index}") as tracker:
            tracker.advance()
    print("flushed", jp.flush(0.5), flush=True)
    print("tracked", tracker.done, flush=True)
    """
    result = run_python(source, blocker / "outbox")
    assert result.returncode == 0, result.stderr
    assert "tracked 1" in result.stdout
    assert "flushed False" in result.stdout
    assert result.stderr.count("could not write the outbox") == 1
    assert "Traceback" not in result.stderr
