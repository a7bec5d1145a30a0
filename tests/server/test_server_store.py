"""The collector in front of a real store (SQLite and Postgres): rows 7, 8 and 26, and the Jobs view."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from _http_support import TOKEN, ReplyDroppingProxy, auth, heartbeat, progress_update, running_app, wire
from _server_support import Store
from jobprogress.envelope import JobStatus
from jobprogress.errors import SinkError
from jobprogress.server import create_app
from jobprogress.sinks.http import HttpSink
from jobprogress.store import ProgressStore


@pytest.fixture
def collector(store: Store) -> Iterator[httpx.Client]:
    # Here the collector is a client of the app in front of the real store (conftest's runs on doubles).
    app = create_app(store.url, token=TOKEN, table_prefix=store.prefix)
    with running_app(app) as url, httpx.Client(base_url=url, headers=auth(), timeout=10) as client:
        yield client


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
