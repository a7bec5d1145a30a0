"""``/metrics``: parsed with prometheus_client's own parser, the counts match what was sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _http_support import TOKEN, running_app
from _server_support import MemoryWriter, StaticReader
from jobprogress.server import create_app
from jobprogress.server._metrics import METRIC_NAMES, LiveWorkers, route_of

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "jobprogress-collector.json"


def progress(job: str, worker: str, seq: int, done: int) -> dict[str, Any]:
    return {
        "type": "progress",
        "job_id": job,
        "worker_id": worker,
        "run_id": f"{job}-{worker}",
        "seq": seq,
        "progress": {
            "items_done": done,
            "items_total": 10,
            "unit": "files",
            "updated_at": "2026-01-01T00:00:00Z",
        },
    }


def heartbeat(job: str, worker: str, seq: int, status: str) -> dict[str, Any]:
    return {
        "type": "heartbeat",
        "job_id": job,
        "worker_id": worker,
        "run_id": f"{job}-{worker}",
        "seq": seq,
        "status": status,
        "kind": "scan",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    app = create_app(f"sqlite:///{tmp_path / 'progress.db'}", token=TOKEN, stall_after=60)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_metrics_count_what_was_sent(client: httpx.Client) -> None:
    batch = [
        progress("job-a", "w1", 1, 3),
        progress("job-a", "w2", 1, 4),
        heartbeat("job-b", "w1", 1, "running"),
    ]
    assert client.post("/v1/batch", json=batch, headers=AUTH).json() == {"accepted": 3}
    assert client.post("/v1/progress", json=progress("job-a", "w1", 2, 5), headers=AUTH).status_code == 200
    assert (
        client.post("/v1/heartbeat", json=heartbeat("job-c", "w1", 1, "failed"), headers=AUTH).status_code
        == 200
    )
    # Refusals, by reason: 2 invalid, 1 unauthorized, 1 wrong media type, 1 too large.
    assert client.post("/v1/progress", json={"job_id": "x"}, headers=AUTH).status_code == 422
    assert client.post("/v1/batch", json=[{"type": "nope"}], headers=AUTH).status_code == 422
    assert client.post("/v1/progress", json=progress("job-a", "w1", 3, 6)).status_code == 401
    plain = {**AUTH, "Content-Type": "text/plain"}
    assert client.post("/v1/progress", content=b"{}", headers=plain).status_code == 415
    assert (
        client.post(
            "/v1/batch",
            content=b"[" + b" " * 70000 + b"]",
            headers={**AUTH, "Content-Type": "application/json"},
        ).status_code
        == 413
    )

    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    assert found[("jobprogress_messages_accepted_total", ())] == 5
    rejected = {
        labels[0][1]: value
        for (name, labels), value in found.items()
        if name == "jobprogress_requests_rejected_total"
    }
    assert rejected["invalid"] == 2
    assert rejected["unauthorized"] == 1
    assert rejected["unsupported_media_type"] == 1
    assert rejected["too_large"] == 1
    assert rejected["busy"] == rejected["store_unavailable"] == rejected["body_timeout"] == 0
    # Messages per accepted request: 3, 1, 1.
    assert found[("jobprogress_batch_messages_count", ())] == 3
    assert found[("jobprogress_batch_messages_sum", ())] == 5
    assert found[("jobprogress_batch_messages_bucket", (("le", "1.0"),))] == 2
    assert found[("jobprogress_store_write_duration_seconds_count", ())] >= 1  # merged writes: 1 to 3
    assert found[("jobprogress_store_write_failures_total", ())] == 0
    # Jobs by state from the store: job-a and job-b run, job-c failed. Live workers: job-a's two, job-b's one.
    assert found[("jobprogress_jobs", (("state", "running"),))] == 2
    assert found[("jobprogress_jobs", (("state", "failed"),))] == 1
    assert found[("jobprogress_jobs", (("state", "lost"),))] == 0
    assert found[("jobprogress_store_up", ())] == 1
    assert found[("jobprogress_live_workers", ())] == 3
    # Latency by route template and status code; a job id never becomes a label.
    client.get("/v1/jobs/job-a", headers=AUTH)
    again = samples(client.get("/metrics", headers=AUTH).text)
    assert (
        again[("jobprogress_request_duration_seconds_count", (("code", "200"), ("route", "/v1/batch")))] == 1
    )
    assert (
        again[("jobprogress_request_duration_seconds_count", (("code", "422"), ("route", "/v1/progress")))]
        == 1
    )
    assert (
        again[
            ("jobprogress_request_duration_seconds_count", (("code", "200"), ("route", "/v1/jobs/{job_id}")))
        ]
        == 1
    )
    assert "job-a" not in client.get("/metrics", headers=AUTH).text


def test_store_failures_are_counted() -> None:
    class Failing(MemoryWriter):
        def write(self, messages: Any) -> None:
            raise OSError("disk full")

    app = create_app(token=TOKEN, writer=Failing(), reader=StaticReader())
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/v1/progress", json=progress("j", "w", 1, 1), headers=AUTH).status_code == 503
        found = samples(client.get("/metrics", headers=AUTH).text)
    assert found[("jobprogress_store_write_failures_total", ())] == 1
    assert found[("jobprogress_store_write_duration_seconds_count", ())] == 1
    assert found[("jobprogress_requests_rejected_total", (("reason", "store_unavailable"),))] == 1
    assert found[("jobprogress_messages_accepted_total", ())] == 0


def test_each_app_has_its_own_registry() -> None:
    first = create_app(token=TOKEN, writer=MemoryWriter(), reader=StaticReader())
    second = create_app(token=TOKEN, writer=MemoryWriter(), reader=StaticReader())
    first.state.collector.metrics.accepted_request(7)
    assert first.state.collector.metrics.registry is not second.state.collector.metrics.registry
    text = second.state.collector.metrics.exposition().decode()
    assert samples(text)[("jobprogress_messages_accepted_total", ())] == 0


def test_live_workers_forget_the_quiet_and_the_finished() -> None:
    now = [0.0]
    live = LiveWorkers(30, clock=lambda: now[0])
    from jobprogress.envelope import Heartbeat, ProgressUpdate

    live.observe([ProgressUpdate.model_validate(progress("j", "w1", 1, 1))])
    live.observe([ProgressUpdate.model_validate(progress("j", "w2", 1, 1))])
    assert live() == 2
    live.observe([Heartbeat.model_validate(heartbeat("j", "w2", 2, "succeeded"))])
    assert live() == 1
    now[0] = 31
    assert live() == 0


def test_route_labels_are_bounded() -> None:
    assert route_of("/jobs/<script>") == "/jobs/{job_id}"
    assert route_of("/v1/jobs/a/b") == "/v1/jobs/{job_id}"
    assert route_of("/static/jobs.css") == "/static"
    assert route_of("/wp-admin") == "other"


def test_the_grafana_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 8
    queried = {name for expr in exprs for name in re.findall(r"\bjobprogress_[a-z_]+", expr)}
    exposed = set(METRIC_NAMES)
    suffixes = ("_bucket", "_count", "_sum")
    unknown = {
        name
        for name in queried
        if name not in exposed and not any(name.removesuffix(s) in exposed for s in suffixes)
    }
    assert not unknown, f"the dashboard queries metrics /metrics does not expose: {sorted(unknown)}"
    # And every family the dashboard names is really in a scrape.
    app = create_app(token=TOKEN, writer=MemoryWriter(), reader=StaticReader())
    app.state.collector.metrics.accepted_request(1)
    scraped = {
        family.name
        for family in text_string_to_metric_families(app.state.collector.metrics.exposition().decode())
    }
    for name in exposed - {"jobprogress_jobs", "jobprogress_store_up"}:  # StaticReader has no counts()
        assert name.removesuffix("_total") in scraped, name
