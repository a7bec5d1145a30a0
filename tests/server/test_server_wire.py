"""RELIABILITY row 40: the collector is strict at the boundary, and what it refuses is never stored."""

from __future__ import annotations

import json

import pytest

from _http_support import TOKEN, heartbeat, wire
from _server_support import Collector
from jobprogress._states import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES

_GOOD = wire(heartbeat(job_id="good"))
_AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "image/png", "application/x-www-form-urlencoded", "application/jsonx"],
)
def test_row40_wrong_content_type_is_415_and_nothing_is_stored(
    collector: Collector, content_type: str | None
) -> None:
    headers = dict(_AUTH) if content_type is None else {**_AUTH, "Content-Type": content_type}
    response = collector.client.post("/v1/batch", content=json.dumps([_GOOD]), headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert response.headers["content-type"] == "application/json"
    assert collector.writer.messages == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_or_without_a_charset_is_accepted(collector: Collector, content_type: str) -> None:
    headers = {**_AUTH, "Content-Type": content_type}
    assert collector.client.post("/v1/batch", content=json.dumps([_GOOD]), headers=headers).status_code == 200
    assert len(collector.writer.messages) == 1


def _with_progress(**changes: object) -> str:
    message = dict(_GOOD)
    message["progress"] = {**message["progress"], **changes}  # type: ignore[dict-item]
    return json.dumps([message])


def _rate_token(token: str) -> str:
    """A batch whose throughput is written as ``token``, which may not be JSON at all."""
    return _with_progress(throughput_per_sec="@rate@").replace('"@rate@"', token)


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (json.dumps([{**_GOOD, "seq": True}]), 422, "seq"),
        (json.dumps([{**_GOOD, "seq": "5"}]), 422, "seq"),
        (_with_progress(items_done=True), 422, "items_done"),
        (_with_progress(items_done="5"), 422, "items_done"),
        (_with_progress(throughput_per_sec="1.5"), 422, "throughput_per_sec"),
        (_rate_token("NaN"), 400, "NaN"),
        (_rate_token("Infinity"), 400, "Infinity"),
        (_rate_token("-Infinity"), 400, "Infinity"),
        (_rate_token("1e999"), 400, "1e999"),
        (_rate_token("1" + "0" * 400), 400, "401 digits"),  # an integer no double holds is not I-JSON
        (json.dumps([{**_GOOD, "extra": float("nan")}]), 400, "NaN"),
        (json.dumps([{**_GOOD, "job_id": "scan\u202e42"}]), 422, "U+202E"),
        (json.dumps([{**_GOOD, "job_id": "scan\u200b42"}]), 422, "U+200B"),
        (json.dumps([{**_GOOD, "worker_id": "w\x9b"}]), 422, "U+009B"),
        (json.dumps([{**_GOOD, "run_id": "r\ue000"}]), 422, "U+E000"),
        (json.dumps([{**_GOOD, "run_id": "r\U000e0080"}]), 422, "U+E0080"),
    ],
)
def test_row40_coercion_non_finite_and_hidden_characters_are_refused(
    collector: Collector, body: str, status: int, names: str
) -> None:
    response = collector.client.post(
        "/v1/batch", content=body, headers={**_AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]
    assert collector.writer.messages == []  # nothing stored


def test_row40_the_json_api_escapes_what_an_older_store_holds(collector: Collector) -> None:
    from jobprogress.store.views import JobView

    collector.reader.views = [
        JobView(
            job_id="old\u202ejob",
            kind="k\x9b\u202e",
            unit="files",
            done=3,
            total=10,
            throughput=1.5,
            eta_seconds=5,
            status="running",
            stalled=False,
            lost=False,
            updated_at=None,
            error=None,
            payload={"a": 1},
            workers=[],
        )
    ]
    raw = collector.client.get("/v1/jobs", headers=_AUTH).content
    assert raw.isascii()
    assert b"\\u202e" in raw
    assert b"\\u009b" in raw
    assert json.loads(raw)[0]["kind"] == "k\x9b\u202e"


def test_batch_limits_are_coherent() -> None:
    # The smallest valid message, many times over, must fit the body limit at the count limit.
    smallest = {
        "type": "progress",
        "job_id": "j",
        "worker_id": "w",
        "run_id": "r",
        "seq": 0,
        "progress": {"items_done": 0, "updated_at": "2026-01-01T00:00:00Z"},
    }
    beat = {k: v for k, v in smallest.items() if k != "progress"}
    beat.update(type="heartbeat", status="failed", updated_at="2026-01-01T00:00:00Z")
    one = min(len(json.dumps(each, separators=(",", ":"))) for each in (smallest, beat))
    assert MAX_BATCH_MESSAGES * (one + 1) + 1 <= MAX_BATCH_BYTES
    from jobprogress.sinks import http

    assert (http.MAX_BATCH_MESSAGES, http.MAX_BATCH_BYTES) == (MAX_BATCH_MESSAGES, MAX_BATCH_BYTES)
