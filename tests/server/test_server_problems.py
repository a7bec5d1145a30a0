"""Bad input is a 4xx problem response naming the field (``server._problems``), row 25."""

from __future__ import annotations

import json

import httpx
import pytest

from _http_support import TOKEN, auth, heartbeat, progress_update, running_app, wire
from _server_support import Collector, MemoryWriter, StaticReader
from jobprogress._states import MAX_BATCH_MESSAGES
from jobprogress.server import create_app

# -- row 25: bad input is 4xx naming the field -----------------------------------------------------

_GOOD = wire(heartbeat(job_id="good"))
_T = "2024-01-01T00:00:00Z"


def _with(**changes: object) -> dict[str, object]:
    message = dict(_GOOD)
    for key, value in changes.items():
        if value is ...:
            message.pop(key)
        else:
            message[key] = value
    return message


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        ("/v1/batch", b"{", 400, "JSON"),
        ("/v1/batch", b"\xff\xfe[]", 400, "JSON"),
        ("/v1/batch", b"[" * 100_00 + b"]" * 100_00, 400, "JSON"),
        ("/v1/batch", b"", 400, "JSON"),
        ("/v1/batch", b'{"not": "an array"}', 422, "array"),
        ("/v1/batch", json.dumps([_with(job_id=...)]), 422, "job_id"),
        ("/v1/batch", json.dumps([_with(job_id=7)]), 422, "job_id"),
        ("/v1/batch", json.dumps([_with(job_id="x" * 257)]), 422, "job_id"),
        ("/v1/batch", json.dumps([_with(job_id="a\x1bb")]), 422, "job_id"),
        ("/v1/batch", json.dumps([_with(worker_id="\u0085")]), 422, "worker_id"),
        ("/v1/batch", json.dumps([_with(job_id="   ")]), 422, "job_id"),
        ("/v1/batch", json.dumps([_with(seq=2**63)]), 422, "seq"),
        ("/v1/batch", json.dumps([_with(seq=-1)]), 422, "seq"),
        ("/v1/batch", json.dumps([_with(seq=1.5)]), 422, "seq"),
        ("/v1/batch", json.dumps([_with(status="exploded")]), 422, "status"),
        ("/v1/batch", json.dumps([_with(type="gossip")]), 422, "type"),
        ("/v1/batch", json.dumps([_with(updated_at="yesterday")]), 422, "updated_at"),
        ("/v1/batch", json.dumps([_with(updated_at="2024-01-01T00:00:00")]), 422, "updated_at"),
        ("/v1/batch", json.dumps([_with(progress={"items_done": -1, "updated_at": _T})]), 422, "items_done"),
        ("/v1/batch", json.dumps([_with(progress={"items_done": 1, "updated_at": _T, "payload": {"n": {}}})]),
         422, "payload"),
        ("/v1/batch", '[{"job_id": "a\\ud800"}]', 400, "JSON"),
        ("/v1/heartbeat", json.dumps(wire(progress_update())), 422, "type"),
        ("/v1/heartbeat", json.dumps([_GOOD]), 422, "heartbeat"),
        ("/v1/progress", json.dumps(_GOOD), 422, "type"),
        ("/v1/progress", json.dumps({**wire(progress_update()), "progress": None}), 422, "progress"),
    ],
)  # fmt: skip
def test_row25_bad_bodies_are_4xx_naming_the_problem(
    collector: Collector, path: str, body: str | bytes, status: int, names: str
) -> None:
    response = collector.client.post(path, content=body, headers=auth())
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert names in detail
    if status == 422:
        assert response.json()["errors"]
    assert collector.writer.messages == []


def test_batches_over_the_message_limit_are_422() -> None:
    writer = MemoryWriter()
    app = create_app(token=TOKEN, writer=writer, reader=StaticReader(), max_body=2**20)
    over = MAX_BATCH_MESSAGES + 1
    with running_app(app) as url, httpx.Client(base_url=url) as client:
        response = client.post("/v1/batch", json=[_GOOD] * over, headers=auth())
        assert response.status_code == 422
        assert str(MAX_BATCH_MESSAGES) in response.json()["detail"]
        assert client.post("/v1/batch", json=[_GOOD] * MAX_BATCH_MESSAGES, headers=auth()).status_code == 200
    assert len(writer.messages) == MAX_BATCH_MESSAGES


def test_row25_unknown_fields_are_ignored(collector: Collector) -> None:
    newer = {**_GOOD, "from_the_future": {"x": 1}, "v": 2}
    newer["progress"] = {**newer["progress"], "unit": "parsecs", "shiny": True}
    response = collector.client.post("/v1/heartbeat", json=newer, headers=auth())
    assert response.status_code == 200, response.text
    (stored,) = collector.writer.messages
    assert stored.progress is not None
    assert stored.progress.unit == "parsecs"


def test_wrong_method_and_unknown_path_are_4xx(collector: Collector) -> None:
    assert collector.client.get("/v1/batch", headers=auth()).status_code == 405
    assert collector.client.put("/v1/jobs", headers=auth()).status_code == 405
    assert collector.client.get("/v2/anything").status_code == 404


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("status=exploded", "status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("offset=353964420332641243365376", "offset"),  # found by the fuzz: overflowed SQLite INTEGER
        ("active_within=3773082413614871.0", "active_within"),
        ("active_within=nan", "active_within"),
        ("active_within=-3", "active_within"),
        ("active_within=inf", "active_within"),
        ("kind=" + "k" * 300, "kind"),
    ],
)
def test_read_route_bad_parameters_are_422_naming_them(collector: Collector, query: str, name: str) -> None:
    response = collector.client.get(f"/v1/jobs?{query}", headers=auth())
    assert response.status_code == 422
    assert name in response.json()["detail"]
