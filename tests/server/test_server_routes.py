"""The collector's routes on a real uvicorn server, with in-memory doubles for the store.

The store-backed rows are in test_server_store.py; auth, bodies, problems, limits and coalescing each
have their own module beside this one.
"""

from __future__ import annotations

from _http_support import auth, heartbeat, progress_update, wire
from _server_support import Collector
from jobprogress.server import openapi_document
from jobprogress.store.views import JobView

# -- open routes -----------------------------------------------------------------------------------


def test_healthz_and_openapi_need_no_token(collector: Collector) -> None:
    assert collector.client.get("/healthz").json()["status"] == "ok"
    document = collector.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/heartbeat",
        "/v1/progress",
        "/v1/batch",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
    }
    assert document == openapi_document()


def test_single_message_routes(collector: Collector) -> None:
    hb, pu = heartbeat(), progress_update()
    assert collector.client.post("/v1/heartbeat", json=wire(hb), headers=auth()).json() == {"accepted": 1}
    assert collector.client.post("/v1/progress", json=wire(pu), headers=auth()).json() == {"accepted": 1}
    assert collector.client.post("/v1/batch", json=[], headers=auth()).json() == {"accepted": 0}
    assert collector.writer.messages == [hb, pu]


# -- read routes -----------------------------------------------------------------------------------


def _view(job_id: str) -> JobView:
    return JobView(
        job_id=job_id, kind="scan", unit="files", done=3, total=10, throughput=1.5, eta_seconds=5,
        status="running", stalled=False, lost=False, updated_at=None, error=None, payload={"a": 1},
        workers=[],
    )  # fmt: skip


def test_read_routes_serve_job_views_as_json(collector: Collector) -> None:
    collector.reader.views = [_view("a/b"), _view("c")]
    response = collector.client.get(
        "/v1/jobs?status=stalled&kind=scan&limit=5&offset=1&active_within=60", headers=auth()
    )
    assert response.status_code == 200
    assert response.json() == [view.model_dump(mode="json") for view in collector.reader.views]
    assert collector.reader.calls[-1] == {
        "status": "stalled", "kind": "scan", "active_within": 60.0, "limit": 5, "offset": 1,
    }  # fmt: skip
    assert collector.client.get("/v1/jobs/a/b", headers=auth()).json()["job_id"] == "a/b"
    assert collector.client.get("/v1/jobs/a%2Fb", headers=auth()).json()["job_id"] == "a/b"
    missing = collector.client.get("/v1/jobs/nope", headers=auth())
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
