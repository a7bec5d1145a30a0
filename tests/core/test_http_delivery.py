"""Worker → reporter → http:// sink → collector: RELIABILITY rows 1-6, many worker processes, restarts.

These run the whole path: ``jp.track`` in worker code, the background reporter with its retries and
latest-wins mailboxes, the HTTP sink, and stub servers or the real collector on loopback.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import jobprogress as jp
from _http_support import (
    TOKEN,
    ScriptedStub,
    SilentServer,
    StubReply,
    auth,
    collector_process,
    free_port,
    running_app,
    wait_for,
)
from jobprogress.envelope import parse_messages
from jobprogress.server import create_app

POSTGRES_URL = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _http_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    yield
    jp.shutdown(2.0)


def _sink_stats() -> dict:
    (stats,) = jp.stats()["sinks"].values()
    return stats


def _delivered(timeout: float) -> bool:
    """Poll ``jp.flush`` until all is delivered (a Retry-After past its deadline ends a flush early)."""
    return wait_for(lambda: jp.flush(0.5), timeout=timeout, interval=0.05)


def _messages(stub: ScriptedStub) -> list:
    return [message for request in stub.requests for message in parse_messages(request.body)]


# -- row 1: refused connections, then recovery -----------------------------------------------------


def test_row1_refused_connections_keep_the_latest_state_and_deliver_after_recovery(tmp_path: Path) -> None:
    port = free_port()
    jp.configure(sinks=[f"http://127.0.0.1:{port}?timeout=1"], interval=0.05, keepalive=5)
    with jp.track("row1", unit="files", total=100_000, kind="scan") as tracker:
        started = time.perf_counter()
        for _ in range(100_000):
            tracker.advance()
        elapsed = time.perf_counter() - started
        assert wait_for(lambda: _sink_stats()["failures"] >= 1, timeout=5)
    assert elapsed < 1.0  # ~10 µs per advance() at worst, whatever the sink does
    assert _sink_stats()["pending"] == 1  # latest-wins: one (job, worker) state, not 100k updates
    app = create_app(f"sqlite:///{tmp_path / 'p.db'}", token=TOKEN)
    with running_app(app, port=port) as url:
        assert _delivered(10.0)
        job = httpx.get(f"{url}/v1/jobs/row1", headers=auth()).json()
    assert (job["done"], job["total"], job["status"]) == (100_000, 100_000, "succeeded")


# -- row 2: a sink that never replies --------------------------------------------------------------


def test_row2_flush_returns_by_its_deadline_when_the_collector_hangs() -> None:
    with SilentServer() as silent:
        jp.configure(sinks=[silent.url + "?timeout=1"], interval=0.05, keepalive=5)
        with jp.track("row2", unit="rows") as tracker:
            tracker.advance(5)
        started = time.monotonic()
        delivered = jp.flush(0.5)
        elapsed = time.monotonic() - started
        assert delivered is False
        assert elapsed < 0.5 + 0.3  # RELIABILITY says +100 ms; the slack is for a shared, busy machine
        assert _sink_stats()["pending"] >= 1  # the final state is still held, waiting or in flight
        jp.shutdown(0.5)
        assert time.monotonic() - started < 3.0


# -- row 3: slow sink, 100 jobs, 1M advance() ------------------------------------------------------


def test_row3_slow_sink_keeps_memory_flat_and_sends_at_most_once_a_second_per_job() -> None:
    with ScriptedStub([StubReply(200, delay=0.2)]) as stub:
        jp.configure(sinks=[stub.url], interval=1.0, keepalive=10)
        trackers = [jp.track(f"row3-{i}", unit="rows", total=10_000).start() for i in range(100)]
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            started = time.monotonic()
            for _ in range(100):  # 1M advance() calls spread over ~2.5 s, so several intervals pass
                for tracker in trackers:
                    for _ in range(100):
                        tracker.advance()
                time.sleep(0.025)
            growth = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        for tracker in trackers:
            tracker.finish()
        elapsed = time.monotonic() - started
        assert jp.flush(15.0) is True
    assert growth < 1_000_000
    per_job = Counter(message.job_id for message in _messages(stub))
    assert set(per_job) == {f"row3-{i}" for i in range(100)}
    # start + one per interval + finish (a final state may split into a heartbeat and an update)
    assert max(per_job.values()) <= elapsed / 1.0 + 4
    finals = {m.job_id: m for m in _messages(stub) if m.type == "heartbeat" and m.status.value == "succeeded"}
    assert len(finals) == 100


# -- row 4: 429 with Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize("form", ["seconds", "http-date", "garbage"])
def test_row4_429_retry_after_is_honoured(form: str) -> None:
    if form == "seconds":
        header, earliest = "2", 2.0
    elif form == "http-date":
        when = int(time.time()) + 3  # HTTP dates have whole seconds
        header, earliest = email.utils.formatdate(when, usegmt=True), None
    else:
        header, earliest = "in a little while", 0.8  # falls back to the 1 s (±20 %) backoff
    with ScriptedStub([StubReply(429, headers={"Retry-After": header}), StubReply(200)]) as stub:
        jp.configure(sinks=[stub.url], interval=0.05, keepalive=5)
        with jp.track("row4", unit="rows") as tracker:
            tracker.advance()
        # No flush while it backs off: a waiting flush retries soon whatever the backoff.
        assert wait_for(lambda: len(stub.requests) >= 2, timeout=10.0)
        assert _delivered(10.0)
    first, second = stub.requests[0], stub.requests[1]
    if form == "http-date":
        # the first arrival, on the wall clock, was some time before the stated date
        wall_first = time.time() - (time.monotonic() - first.at)
        earliest = when - wall_first - 0.05
    assert second.at - first.at >= earliest
    assert second.at - first.at < earliest + 3.0


# -- row 5: a 503 storm ----------------------------------------------------------------------------


def test_row5_503_storm_retries_are_jittered_bounded_and_not_synchronised() -> None:
    sinks = 5
    with ScriptedStub([StubReply(503)]) as stub:
        urls = [f"{stub.url}/s{i}?timeout=2" for i in range(sinks)]
        jp.configure(sinks=urls, interval=0.05, keepalive=5)
        trackers = [jp.track(f"row5-{i}", unit="rows").start() for i in range(50)]
        for tracker in trackers:
            tracker.advance(3)
        time.sleep(3.6)  # a real wait: the backoff under test runs on the real clock
        for tracker in trackers:
            tracker.finish()
        cutoff = time.monotonic()
        jp.shutdown(0.2)  # retries soon, whatever the backoff, until its deadline: not the pattern under test
    arrivals: dict[str, list[float]] = {}
    during_shutdown: dict[str, int] = {}
    for request in stub.requests:
        if request.at < cutoff:
            arrivals.setdefault(request.path.split("/")[1], []).append(request.at)
        else:
            during_shutdown[request.path.split("/")[1]] = (
                during_shutdown.get(request.path.split("/")[1], 0) + 1
            )
    assert all(count <= 3 for count in during_shutdown.values())  # 0.1 s, 0.2 s... within 0.2 s
    assert len(arrivals) == sinks
    second_attempt_gaps = []
    for times in arrivals.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert 2 <= len(times) <= 4  # 1 s, 2 s, 4 s... : bounded, never a hot loop
        # 1 s then 2 s, ±20 %; the upper bounds allow for a busy machine waking the sender late
        assert 0.75 <= gaps[0] <= 1.2 + 0.4
        if len(gaps) > 1:
            assert 1.55 <= gaps[1] <= 2.4 + 0.6
        second_attempt_gaps.append(gaps[0])
    # jitter: the sinks' retries do not line up
    assert max(second_attempt_gaps) - min(second_attempt_gaps) > 0.01


# -- row 6: client errors --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 413, 422])
def test_row6_client_errors_are_not_retried_logged_once_and_counted(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobprogress")
    with ScriptedStub([StubReply(status, body=b'{"detail": "refused"}')]) as stub:
        jp.configure(sinks=[stub.url], interval=0.05, keepalive=5, max_batch=1)
        for index in range(3):
            with jp.track(f"row6-{index}", unit="rows") as tracker:
                tracker.advance()
        assert jp.flush(5.0) is True  # dropped: nothing left to deliver
        requests = len(stub.requests)
        stats = _sink_stats()
    received = [(m.job_id, m.seq) for r in stub.requests for m in parse_messages(r.body)]
    assert len(received) == len(set(received))  # nothing was sent twice
    assert stats["dropped"] == len(received)
    assert stats["retries"] == 0
    assert stats["failures"] == 0
    assert requests == stats["dropped"]  # max_batch=1: one request per message
    warnings = [r for r in caplog.records if "not retried" in r.getMessage()]
    assert len(warnings) == 1
    assert TOKEN not in caplog.text


# -- row 28: a burst beyond the collector's concurrency limit --------------------------------------


class _GatedWriter:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.messages: list = []

    def write(self, messages) -> None:
        assert self.gate.wait(10)
        self.messages.extend(messages)

    def close(self) -> None:
        pass


class _NoJobs:
    def jobs(self, **_: object) -> list:
        return []

    def job(self, job_id: str) -> None:
        return None

    def close(self) -> None:
        pass


def test_row28_the_sdk_honours_503_retry_after_from_a_busy_collector() -> None:
    writer = _GatedWriter()
    app = create_app(token=TOKEN, writer=writer, reader=_NoJobs(), max_in_flight=2)
    counters = app.state.collector.counters
    with running_app(app) as url:
        # five sinks (distinct URLs, one collector) post at once: two get in, three are refused
        jp.configure(sinks=[f"{url}?timeout={5 + i}" for i in range(5)], interval=0.05, keepalive=5)
        with jp.track("row28", unit="rows") as tracker:
            tracker.advance()
        assert wait_for(lambda: counters.refused_busy >= 3, timeout=10)
        refused_at = time.monotonic()
        writer.gate.set()
        assert _delivered(10.0)
        delivered_in = time.monotonic() - refused_at
        stats = jp.stats()["sinks"]
    assert counters.refused_busy == 3  # each refused sink waited, then got in on its next attempt
    assert sum(sink["failures"] for sink in stats.values()) == 3
    assert delivered_in >= 0.9  # Retry-After: 1 (the gate opened right away; only the pause delays them)
    assert {m.job_id for m in writer.messages} == {"row28"}
    assert sum(1 for m in writer.messages if m.type == "heartbeat" and m.status.value == "succeeded") == 5


# -- many worker processes through the collector ---------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import jobprogress as jp

    url, index, barrier, count = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    jp.configure(sinks=[url], worker_id=f"proc-{index}", interval=0.05, keepalive=5)
    # A fan-out: every worker has started every job before any ends, so they are one attempt each.
    trackers = [jp.track(f"multi-{job}", unit="rows", total=200, kind="parse").start() for job in range(5)]
    assert jp.flush(20)
    (barrier / str(index)).touch()
    deadline = time.monotonic() + 30
    while len(list(barrier.iterdir())) < count:
        if time.monotonic() > deadline:
            sys.exit(4)
        time.sleep(0.01)
    for job, tracker in enumerate(trackers):
        for _ in range(200):
            tracker.advance()
        if job == 4 and index == 0:
            tracker.fail(ValueError("bad row 17"))
        else:
            tracker.finish()
    deadline = time.monotonic() + 20
    while not jp.flush(1.0):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.05)
    """
)


def _run_workers(url: str, count: int, env: dict[str, str], barrier: Path) -> None:
    barrier.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-c", _WORKER, url, str(index), str(barrier), str(count)], env=env)
        for index in range(count)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0


def _worker_env() -> dict[str, str]:
    return {**os.environ, "JOBPROGRESS_HTTP_TOKEN": TOKEN}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_in_several_processes_report_every_final_state(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        db_url, prefix = f"sqlite:///{tmp_path / 'p.db'}", "cf_"
    else:
        if not POSTGRES_URL:
            pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to run the Postgres case")
        db_url, prefix = POSTGRES_URL, f"t{os.getpid()}_{int(time.time() * 1000) % 10**8}_"
    app = create_app(db_url, token=TOKEN, table_prefix=prefix)
    try:
        with running_app(app) as url:
            _run_workers(url, 4, _worker_env(), tmp_path / "barrier")
            jobs = httpx.get(f"{url}/v1/jobs", headers=auth()).json()
    finally:
        if backend == "postgres":
            _drop_tables(db_url, prefix)
    assert sorted(job["job_id"] for job in jobs) == [f"multi-{job}" for job in range(5)]
    for job in jobs:
        assert sorted(worker["worker_id"] for worker in job["workers"]) == [f"proc-{i}" for i in range(4)]
        assert all(worker["done"] == 200 for worker in job["workers"])
        expected = "failed" if job["job_id"] == "multi-4" else "succeeded"
        assert job["status"] == expected
        assert job["done"] == 800
    failed = next(job for job in jobs if job["job_id"] == "multi-4")
    assert "bad row 17" in failed["error"]


def _drop_tables(db_url: str, prefix: str) -> None:
    from sqlalchemy import create_engine

    from jobprogress.store.schema import drop_schema

    engine = create_engine(db_url)
    try:
        drop_schema(engine, prefix)
    finally:
        engine.dispose()


# -- a collector restarted mid-run -----------------------------------------------------------------

_RESTART_WORKER = textwrap.dedent(
    """
    import pathlib, sys, time
    import jobprogress as jp

    url, signals = sys.argv[1], pathlib.Path(sys.argv[2])
    jp.configure(sinks=[url], worker_id="restart-w", interval=0.05, keepalive=5)
    trackers = [jp.track(f"restart-{i}", unit="files", total=100).start() for i in range(3)]
    for tracker in trackers:
        tracker.advance(50)
    (signals / "half").touch()
    deadline = time.monotonic() + 30
    while not (signals / "resume").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for tracker in trackers:
        tracker.advance(50)
    trackers[0].finish()
    trackers[1].fail("disk on fire")
    trackers[2].advance(0)  # still running: its latest state must land too
    (signals / "finished").touch()
    deadline = time.monotonic() + 25
    while not jp.flush(1.0):  # flush does not wait on a failing sink: poll while it retries
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.05)
    """
)


def test_collector_restarted_mid_run_loses_nothing_the_worker_holds(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    db_url, port, log = f"sqlite:///{tmp_path / 'p.db'}", free_port(), tmp_path / "collector.log"
    url = f"http://127.0.0.1:{port}"
    signals = tmp_path / "signals"
    signals.mkdir()

    def done_of(job_id: str) -> int | None:
        response = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth())
        return response.json()["done"] if response.status_code == 200 else None

    with collector_process(db_url, token_file, log, port=port) as (_, first):
        worker = subprocess.Popen(
            [sys.executable, "-c", _RESTART_WORKER, url + "?timeout=2", str(signals)], env=_worker_env()
        )
        try:
            assert wait_for(lambda: (signals / "half").exists(), timeout=30)
            assert wait_for(lambda: all(done_of(f"restart-{i}") == 50 for i in range(3)), timeout=10)
            first.kill()  # a crash, not a graceful stop
            first.wait(timeout=10)
            (signals / "resume").touch()
            assert wait_for(lambda: (signals / "finished").exists(), timeout=30)
            with collector_process(db_url, token_file, log, port=port):
                assert worker.wait(timeout=40) == 0  # its flush succeeded once the collector was back
                jobs = {job["job_id"]: job for job in httpx.get(f"{url}/v1/jobs", headers=auth()).json()}
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert {job_id: (job["done"], job["status"]) for job_id, job in jobs.items()} == {
        "restart-0": (100, "succeeded"),
        "restart-1": (100, "failed"),
        "restart-2": (100, "running"),
    }
    assert json.dumps(jobs).count("disk on fire") >= 1
