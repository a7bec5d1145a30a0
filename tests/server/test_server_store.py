"""The collector in front of a real store (SQLite and Postgres): rows 7, 8, 9 and 26, and ``serve()``."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from _http_support import (
    TOKEN,
    ReplyDroppingProxy,
    auth,
    collector_process,
    free_port,
    heartbeat,
    progress_update,
    running_app,
    stop_process,
    wait_for,
    wire,
)
from jobprogress.envelope import JobStatus
from jobprogress.errors import ConfigurationError, SinkError
from jobprogress.server import create_app, serve
from jobprogress.sinks.http import HttpSink
from jobprogress.store import ProgressStore

POSTGRES_URL = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")


@dataclass
class Store:
    url: str
    prefix: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'progress.db'}", prefix)
        return
    if not POSTGRES_URL:
        pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to run the Postgres cases")
    yield Store(POSTGRES_URL, prefix)
    from sqlalchemy import create_engine

    from jobprogress.store.schema import tables_for

    engine = create_engine(POSTGRES_URL)
    try:
        tables_for(prefix).metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def collector(store: Store) -> Iterator[httpx.Client]:
    app = create_app(store.url, token=TOKEN, table_prefix=store.prefix)
    with running_app(app) as url, httpx.Client(base_url=url, headers=auth(), timeout=10) as client:
        yield client


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[HttpSink]]:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    sinks: list[HttpSink] = []
    yield sinks
    for each in sinks:
        each.close(1.0)


def _job(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _post(client: httpx.Client, *messages) -> None:
    response = client.post("/v1/batch", json=[wire(m) for m in messages])
    assert response.status_code == 200, response.text


def test_an_empty_store_reads_as_no_jobs(collector: httpx.Client) -> None:
    assert collector.get("/v1/jobs").json() == []
    assert collector.get("/v1/jobs/none").status_code == 404


def test_hostile_read_parameters_are_4xx_on_every_backend(collector: httpx.Client) -> None:
    # Postgres refuses a NUL in a text parameter: it must never get that far (a 5xx for bad input).
    _post(collector, heartbeat("été", kind="scan"))  # the tables exist, so the query would really run
    for path in ("/v1/jobs?kind=%00", "/v1/jobs?kind=a%00b", "/v1/jobs/a%00b", "/v1/jobs/%1b%5b2J"):
        response = collector.get(path)
        assert response.status_code == 422, (path, response.text)
        assert "job_id" in response.text or "kind" in response.text
    assert collector.get("/v1/jobs?kind=%C3%A9t%C3%A9").json() == []
    assert collector.get("/v1/jobs/%C3%A9t%C3%A9").json()["job_id"] == "été"


def test_status_filters_are_the_stores() -> None:
    from jobprogress.server.openapi import JOB_FILTERS
    from jobprogress.store.query import STATUS_FILTERS

    assert tuple(JOB_FILTERS) == tuple(STATUS_FILTERS)


def test_row26_heartbeat_without_progress_keeps_stored_progress(collector: httpx.Client) -> None:
    _post(collector, progress_update("r26", done=5, total=10, seq=1))
    response = collector.post("/v1/heartbeat", json=wire(heartbeat("r26", done=None, seq=2)))
    assert response.status_code == 200
    job = _job(collector, "r26")
    assert (job["done"], job["total"], job["status"]) == (5, 10, "running")
    _post(collector, heartbeat("r26", done=None, seq=3, status=JobStatus.SUCCEEDED))
    job = _job(collector, "r26")
    assert (job["done"], job["total"], job["status"]) == (5, 10, "succeeded")


def test_row8_out_of_order_seq_is_ignored(collector: httpx.Client) -> None:
    _post(collector, heartbeat("r8", done=50, seq=5))
    _post(collector, heartbeat("r8", done=40, seq=4, status=JobStatus.FAILED))  # stale: 200, no change
    job = _job(collector, "r8")
    assert (job["done"], job["status"]) == (50, "running")
    assert job["workers"][0]["seq"] == 5


def test_read_routes_match_the_store(collector: httpx.Client, store: Store) -> None:
    _post(
        collector,
        heartbeat("scan-1", "w1", done=3, total=10, kind="scan"),
        heartbeat("scan-1", "w2", done=4, total=10, kind="scan"),
        heartbeat(
            "parse-1", "w1", done=7, kind="parse", status=JobStatus.FAILED, error="ValueError: bad row"
        ),
    )
    listed = collector.get("/v1/jobs").json()
    with ProgressStore(store.url, table_prefix=store.prefix) as progress_store:
        expected = [view.model_dump(mode="json") for view in progress_store.jobs(limit=500)]
        failed = [view.job_id for view in progress_store.jobs(status="failed")]
    assert listed == expected
    assert {job["job_id"]: job["done"] for job in listed} == {"scan-1": 7, "parse-1": 7}
    assert [job["job_id"] for job in collector.get("/v1/jobs?status=failed").json()] == failed == ["parse-1"]
    assert [job["job_id"] for job in collector.get("/v1/jobs?kind=scan").json()] == ["scan-1"]
    assert len(collector.get("/v1/jobs?limit=1").json()) == 1


def test_row7_duplicate_delivery_after_a_lost_reply_is_one_row(collector: httpx.Client, sink) -> None:
    port = int(str(collector.base_url).rstrip("/").rsplit(":", 1)[1])
    messages = [heartbeat("r7", done=9, total=9, seq=11, status=JobStatus.SUCCEEDED)]
    with ReplyDroppingProxy(port) as proxy:
        lossy = HttpSink(proxy.url + "?timeout=5")
        sink.append(lossy)
        with pytest.raises(SinkError) as info:
            lossy.send(messages)
    assert info.value.retryable is True  # the worker cannot know it landed: it will send again
    assert proxy.replies == [200]  # ...but the collector did commit
    before = _job(collector, "r7")
    direct = HttpSink(str(collector.base_url))
    sink.append(direct)
    direct.send(messages)  # the retry
    direct.send(messages)  # and once more for good measure
    after = _job(collector, "r7")
    assert len(after["workers"]) == 1
    for key in ("done", "total", "status"):
        assert after[key] == before[key]
    assert after["workers"][0]["seq"] == 11
    assert after["workers"][0]["progressed_at"] == before["workers"][0]["progressed_at"]


def test_the_sink_delivers_gzip_bodies_to_the_collector(collector: httpx.Client, sink) -> None:
    gzipped = HttpSink(f"{collector.base_url}?compress=gzip")
    sink.append(gzipped)
    gzipped.send([heartbeat(f"gz-{i}", done=i, total=400) for i in range(400)])  # several bodies
    jobs = collector.get("/v1/jobs?limit=1000").json()
    assert len(jobs) == 400
    assert {job["job_id"]: job["done"] for job in jobs} == {f"gz-{i}": i for i in range(400)}


def test_row9_two_collector_processes_on_one_database(
    store: Store, token_file: Path, tmp_path: Path, sink
) -> None:
    log = tmp_path / "collectors.log"
    with (
        collector_process(store.url, token_file, log, table_prefix=store.prefix) as (first, _),
        collector_process(store.url, token_file, log, table_prefix=store.prefix) as (second, _),
    ):
        sinks = [HttpSink(first), HttpSink(second)]
        sink.extend(sinks)
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                # Each thread delivers the same (job, worker) rows with interleaved seqs through
                # both collectors, every batch twice, as retries after lost replies would.
                for seq in range(index, 200, 4):
                    batch = [
                        heartbeat(f"r9-{job}", "w", done=seq, total=1000, seq=seq + 1) for job in range(5)
                    ]
                    sinks[seq % 2].send(batch)
                    sinks[(seq + 1) % 2].send(batch)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        with httpx.Client(base_url=second, headers=auth()) as client:
            jobs = client.get("/v1/jobs").json()
    assert sorted(job["job_id"] for job in jobs) == [f"r9-{job}" for job in range(5)]
    for job in jobs:
        assert len(job["workers"]) == 1
        assert job["workers"][0]["seq"] == 200  # the newest seq wins
        assert job["done"] == 199
    assert "Traceback" not in log.read_text()


def test_serve_logs_never_hold_the_token(token_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with collector_process(f"sqlite:///{tmp_path / 'p.db'}", token_file, log) as (url, _):
        with httpx.Client(base_url=url) as client:
            assert client.post(f"/v1/batch?token={TOKEN}", json=[]).status_code == 401
            assert client.get(f"/v1/jobs?access_token={TOKEN}").status_code == 401
            bad = {"Authorization": f"Bearer {TOKEN[:-2]}"}
            assert client.post("/v1/batch", json=[], headers=bad).status_code == 401
            assert (
                client.post("/v1/batch", json=[wire(heartbeat("logged"))], headers=auth()).status_code == 200
            )
    text = log.read_text()
    assert "/v1/batch" in text  # the access log is on...
    assert "token=***" in text  # ...with the credential redacted
    assert TOKEN[:-2] not in text


def test_serve_refuses_to_start_without_a_usable_token_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    with pytest.raises(ConfigurationError, match="token-file"):
        serve(db)
    with pytest.raises(ConfigurationError, match="does not exist"):
        serve(db, token_file=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ConfigurationError, match="empty"):
        serve(db, token_file=empty)
    assert not (tmp_path / "p.db").exists()


_SERVE_TLS = (
    "import sys; from jobprogress.server import serve; "
    "serve(sys.argv[1], port=int(sys.argv[2]), token_file=sys.argv[3], ssl_certfile=sys.argv[4], "
    "ssl_keyfile=sys.argv[5])"
)


def test_tls_is_verified_by_default(
    token_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    db = f"sqlite:///{tmp_path / 'p.db'}"
    with open(tmp_path / "tls.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE_TLS, db, str(port), str(token_file), str(cert), str(key)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"https://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url, cert), timeout=20)
        trusting = HttpSink(f"{url}?verify={cert}")
        default = HttpSink(url)
        try:
            trusting.send([heartbeat("tls")])
            with pytest.raises(SinkError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                default.send([heartbeat("tls")])  # a self-signed certificate is not trusted by default
        finally:
            # Closed before the server stops: uvicorn waits out its graceful timeout for an idle TLS
            # connection whose peer never answers the close_notify.
            trusting.close(1.0)
            default.close(1.0)
    finally:
        stop_process(process)


def _answers(url: str, cert: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(cert))
        return httpx.get(url + "/healthz", verify=context, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_attempts_through_the_collector(collector: httpx.Client) -> None:
    # A rerun after every worker ended is a new attempt; a resume=True start (on the wire) joins it.
    _post(collector, heartbeat("nightly", "host:1", run_id="a", seq=1, status=JobStatus.SUCCEEDED, done=10))
    _post(collector, heartbeat("nightly", "host:2", run_id="b", seq=2, status=JobStatus.SUCCEEDED, done=10))
    job = _job(collector, "nightly")
    assert (job["attempt"], job["done"], [w["worker_id"] for w in job["workers"]]) == (2, 10, ["host:2"])
    resumed = {**wire(heartbeat("nightly", "host:3", run_id="c", seq=3, done=4)), "resume": True}
    assert collector.post("/v1/heartbeat", json=resumed).status_code == 200
    job = _job(collector, "nightly")
    assert (job["attempt"], job["done"], [w["attempt"] for w in job["workers"]]) == (2, 14, [2, 2])
    (listed,) = [view for view in collector.get("/v1/jobs").json() if view["job_id"] == "nightly"]
    assert listed == job
