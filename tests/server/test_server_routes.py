"""The collector's HTTP layer on a real uvicorn server: auth, body limits, validation, limits, errors.

The store is replaced by in-memory doubles here (the store-backed rows are in test_server_store.py),
so each case shows exactly what the HTTP layer does.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from _http_support import (
    TOKEN,
    auth,
    heartbeat,
    progress_update,
    raw_request,
    read_response,
    running_app,
    wait_for,
    wire,
)
from jobprogress.envelope import Heartbeat, ProgressUpdate
from jobprogress.errors import ConfigurationError, SinkError, StoreError
from jobprogress.server import create_app, openapi_document, read_token_file
from jobprogress.server.runner import RedactQueryCredentials
from jobprogress.sinks.http import HttpSink
from jobprogress.store.views import JobView

LIMIT = 65536


@dataclass
class MemoryWriter:
    messages: list[Heartbeat | ProgressUpdate] = field(default_factory=list)
    fail: Exception | None = None
    gate: threading.Event | None = None
    closed: bool = False
    entered: threading.Event = field(default_factory=threading.Event)

    def write(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail is not None:
            raise self.fail
        self.messages.extend(messages)

    def close(self) -> None:
        self.closed = True


@dataclass
class StaticReader:
    views: list[JobView] = field(default_factory=list)
    calls: list[dict[str, object]] = field(default_factory=list)
    closed: bool = False

    def jobs(self, **filters: object) -> list[JobView]:
        self.calls.append(filters)
        return self.views

    def job(self, job_id: str) -> JobView | None:
        return next((view for view in self.views if view.job_id == job_id), None)

    def close(self) -> None:
        self.closed = True


@dataclass
class Collector:
    url: str
    port: int
    writer: MemoryWriter
    reader: StaticReader
    client: httpx.Client


@pytest.fixture
def collector() -> Iterator[Collector]:
    writer, reader = MemoryWriter(), StaticReader()
    app = create_app(token=TOKEN, writer=writer, reader=reader)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield Collector(url, int(url.rsplit(":", 1)[1]), writer, reader, client)
    assert writer.closed  # the lifespan released the store
    assert reader.closed


def _head(path: str, *lines: str) -> bytes:
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *lines]) + "\r\n\r\n").encode("latin-1")


# -- open routes -----------------------------------------------------------------------------------


def test_healthz_and_openapi_need_no_token(collector: Collector) -> None:
    assert collector.client.get("/healthz").json()["status"] == "ok"
    document = collector.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/v1/heartbeat",
        "/v1/progress",
        "/v1/batch",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
    }
    assert document == openapi_document()


# -- row 27: auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": TOKEN},
    ],
    ids=["missing", "wrong", "longer", "basic", "empty", "no-scheme"],
)
def test_row27_missing_or_wrong_token_is_401(collector: Collector, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/v1/batch"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x")):
        response = collector.client.request(method, path, headers=headers, content=b"[]")
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert collector.writer.messages == []


def test_row27_token_in_the_query_string_is_refused_even_with_a_good_header(collector: Collector) -> None:
    for name in ("token", "access_token", "TOKEN"):
        response = collector.client.post(f"/v1/batch?{name}={TOKEN}", headers=auth(), content=b"[]")
        assert response.status_code == 401
        assert "query string" in response.json()["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_row27_the_token_under_any_query_name_is_refused(collector: Collector) -> None:
    for query in (f"password={TOKEN}", f"authorization=Bearer%20{TOKEN}", f"x={TOKEN}extra"):
        response = collector.client.get(f"/v1/jobs?{query}", headers=auth())
        assert response.status_code == 401, query
        assert "query string" in response.json()["detail"]


def test_row27_access_log_shows_only_the_read_filters_values() -> None:
    from jobprogress.server.runner import _redact_path

    assert _redact_path("/v1/jobs?status=failed&limit=5") == "/v1/jobs?status=failed&limit=5"
    redacted = _redact_path(f"/v1/jobs?status=failed&password={TOKEN}&authorization=Bearer+{TOKEN}")
    assert TOKEN not in redacted
    assert redacted.startswith("/v1/jobs?status=failed&password=***")


def test_row27_non_ascii_and_malformed_headers_are_401_not_500(collector: Collector) -> None:
    for value in (b"Bearer \xff\xfe\xfd", "Bearer tökén".encode(), b"Bearer " + TOKEN.encode() + b"\xc3\xa9"):
        head = (
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nAuthorization: "
            + value
            + b"\r\n\r\n[]"
        )
        status, headers, _ = raw_request(collector.port, head)
        assert status == 401, value
        assert headers["www-authenticate"].startswith("Bearer")
    two = _head(
        "/v1/batch", f"Authorization: Bearer {TOKEN}", f"Authorization: Bearer {TOKEN}", "Content-Length: 2"
    )
    status, _, _ = raw_request(collector.port, two + b"[]")
    assert status == 401


def test_row27_a_refused_body_is_read_first_so_the_401_arrives_and_the_connection_lives(
    collector: Collector,
) -> None:
    # Closing with the body unread makes the kernel reset the connection, which can swallow the 401.
    body = json.dumps([wire(heartbeat())] * 50).encode()
    head = _head("/v1/batch", f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        for _ in range(3):  # three refusals on one keep-alive connection
            sock.sendall(head + body)
            status, headers, _ = read_response(sock)
            assert status == 401
            assert headers.get("connection") != "close"
        sock.sendall(
            _head("/v1/batch", f"Authorization: Bearer {TOKEN}", f"Content-Length: {len(body)}") + body
        )
        assert read_response(sock)[0] == 200
    assert len(collector.writer.messages) == 50


def test_unsupported_encoding_is_refused_after_reading_the_body(collector: Collector) -> None:
    body = b"[]" + b" " * 30_000
    head = _head(
        "/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Encoding: br", f"Content-Length: {len(body)}"
    )
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        sock.sendall(head + body)
        assert read_response(sock)[0] == 415
        sock.sendall(_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 2") + b"[]")
        assert read_response(sock)[0] == 200


def test_row27_auth_failures_never_log_the_token(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    access = logging.getLogger("uvicorn.access")
    redact = RedactQueryCredentials()  # what serve() installs
    access.addFilter(redact)
    try:
        collector.client.post(f"/v1/batch?token={TOKEN}", content=b"[]")
        collector.client.post("/v1/batch", headers={"Authorization": f"Bearer {TOKEN}-almost"}, content=b"[]")
        collector.client.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
    finally:
        access.removeFilter(redact)
    server_records = [r for r in caplog.records if r.name.startswith(("jobprogress", "uvicorn"))]
    assert sum(r.name == "jobprogress.server" for r in server_records) == 3, "auth failures are logged"
    for record in server_records:
        assert TOKEN[:-1] not in record.getMessage()


def test_access_log_redacts_credentials_in_query_strings() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", f"/v1/batch?limit=3&token={TOKEN}", "1.1", 401), None,
    )  # fmt: skip
    assert RedactQueryCredentials().filter(record)
    text = record.getMessage()
    assert TOKEN not in text
    assert "limit=3" in text
    assert "token=***" in text


# -- row 24: oversized bodies ----------------------------------------------------------------------


def test_row24_oversized_body_chunked_is_413_without_waiting_for_the_rest(collector: Collector) -> None:
    head = _head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Transfer-Encoding: chunked")
    piece = b" " * 8192
    parts = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (LIMIT // len(piece)) + [b"1\r\n \r\n"]
    # limit + 1 bytes sent and the body never terminated: the collector must answer anyway.
    status, headers, body = raw_request(collector.port, head, parts)
    assert status == 413
    assert headers.get("connection") == "close"
    assert "limit" in json.loads(body)["detail"]
    assert collector.writer.messages == []


def test_row24_oversized_body_lying_content_length_is_413_before_the_body(collector: Collector) -> None:
    for declared in (LIMIT + 1, 10_000_000):
        head = _head("/v1/batch", f"Authorization: Bearer {TOKEN}", f"Content-Length: {declared}")
        status, headers, body = raw_request(collector.port, head)  # the answer comes before any body
        assert status == 413, declared
        assert headers.get("connection") == "close"
        assert str(declared) in json.loads(body)["detail"]


def test_row24_a_short_content_length_bounds_what_is_read(collector: Collector) -> None:
    head = _head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 10")
    # ten bytes of a much longer array, then the client waits: the server does not wait for more
    status, _, _ = raw_request(collector.port, head, [b"[" + b"0," * 4 + b"0"])
    assert status == 400


def test_row24_oversized_body_gzip_bomb_is_413(collector: Collector) -> None:
    bomb = gzip.compress(b"[" + b" " * 20_000_000 + b"]", compresslevel=9)
    assert len(bomb) < LIMIT // 2
    response = collector.client.post(
        "/v1/batch", content=bomb, headers={**auth(), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "inflates" in response.json()["detail"]


def test_a_trickled_body_is_408_after_the_body_timeout() -> None:
    writer = MemoryWriter()
    app = create_app(token=TOKEN, writer=writer, reader=StaticReader(), body_timeout=0.5)
    with running_app(app) as url:
        port = int(url.rsplit(":", 1)[1])
        head = _head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 100")
        started = time.monotonic()
        status, headers, body = raw_request(port, head, [b"[" + b" " * 9])  # 10 of 100 bytes, then silence
        elapsed = time.monotonic() - started
        assert status == 408
        assert headers.get("connection") == "close"
        assert "0.5 s" in json.loads(body)["detail"]
        assert 0.4 < elapsed < 3.0
        # refused before authentication, a trickling body cannot hold the connection either
        started = time.monotonic()
        status, headers, _ = raw_request(port, _head("/v1/batch", "Content-Length: 100"), [b"[" + b" " * 9])
        elapsed = time.monotonic() - started
        assert status == 401
        assert headers.get("connection") == "close"
        assert 0.4 < elapsed < 3.0
    assert writer.messages == []


def test_row24_body_of_exactly_the_limit_is_accepted(collector: Collector) -> None:
    text = json.dumps([wire(heartbeat())]).encode()
    body = text + b" " * (LIMIT - len(text))
    assert len(body) == LIMIT
    assert collector.client.post("/v1/batch", content=body, headers=auth()).status_code == 200
    # one byte more is refused (sent chunked and left open, as in the chunked case above: a client
    # still sending while the server closes would see a reset instead of the answer)
    head = _head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Transfer-Encoding: chunked")
    status, _, _ = raw_request(collector.port, head, [b"%x\r\n%s\r\n" % (LIMIT + 1, body + b" ")])
    assert status == 413


def test_gzip_bodies_are_inflated(collector: Collector) -> None:
    messages = [heartbeat(job_id=f"gz-{i}") for i in range(50)]
    body = gzip.compress(json.dumps([wire(m) for m in messages]).encode())
    # two gzip members back to back are one valid gzip stream too
    half = json.dumps([wire(m) for m in messages]).encode()
    two_members = gzip.compress(half[:100]) + gzip.compress(half[100:])
    for content in (body, two_members):
        response = collector.client.post(
            "/v1/batch", content=content, headers={**auth(), "Content-Encoding": "gzip"}
        )
        assert response.status_code == 200, response.text
    assert collector.writer.messages == messages + messages


@pytest.mark.parametrize(
    ("encoding", "content", "status"),
    [
        ("br", b"[]", 415),
        ("deflate", b"[]", 415),
        ("gzip, gzip", gzip.compress(gzip.compress(b"[]")), 415),
        ("gzip", gzip.compress(b"[]")[:-6], 400),
        ("gzip", gzip.compress(b"[]") + b"garbage", 400),
        ("gzip", b"not gzip at all", 400),
        ("gzip", b"", 400),
        ("identity", b"[]", 200),
    ],
)
def test_content_encodings(collector: Collector, encoding: str, content: bytes, status: int) -> None:
    response = collector.client.post(
        "/v1/batch", content=content, headers={**auth(), "Content-Encoding": encoding}
    )
    assert response.status_code == status, response.text


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


def test_batches_over_1000_messages_are_422() -> None:
    writer = MemoryWriter()
    app = create_app(token=TOKEN, writer=writer, reader=StaticReader(), max_body=2**20)
    with running_app(app) as url, httpx.Client(base_url=url) as client:
        response = client.post("/v1/batch", json=[_GOOD] * 1001, headers=auth())
        assert response.status_code == 422
        assert "1000" in response.json()["detail"]
        assert client.post("/v1/batch", json=[_GOOD] * 1000, headers=auth()).status_code == 200
    assert len(writer.messages) == 1000


def test_row25_unknown_fields_are_ignored(collector: Collector) -> None:
    newer = {**_GOOD, "from_the_future": {"x": 1}, "v": 2}
    newer["progress"] = {**newer["progress"], "unit": "parsecs", "shiny": True}
    response = collector.client.post("/v1/heartbeat", json=newer, headers=auth())
    assert response.status_code == 200, response.text
    (stored,) = collector.writer.messages
    assert stored.progress is not None
    assert stored.progress.unit == "parsecs"


def test_single_message_routes(collector: Collector) -> None:
    hb, pu = heartbeat(), progress_update()
    assert collector.client.post("/v1/heartbeat", json=wire(hb), headers=auth()).json() == {"accepted": 1}
    assert collector.client.post("/v1/progress", json=wire(pu), headers=auth()).json() == {"accepted": 1}
    assert collector.client.post("/v1/batch", json=[], headers=auth()).json() == {"accepted": 0}
    assert collector.writer.messages == [hb, pu]


def test_wrong_method_and_unknown_path_are_4xx(collector: Collector) -> None:
    assert collector.client.get("/v1/batch", headers=auth()).status_code == 405
    assert collector.client.put("/v1/jobs", headers=auth()).status_code == 405
    assert collector.client.get("/v2/anything").status_code == 404


# -- the store failing -----------------------------------------------------------------------------


def test_database_failure_is_503_with_retry_after_and_the_sink_retries(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    collector.writer.fail = StoreError("database is locked")
    for _ in range(3):
        response = collector.client.post("/v1/batch", json=[wire(heartbeat())], headers=auth())
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
    assert sum("store failed" in record.getMessage() for record in caplog.records) == 1  # logged once
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    sink = HttpSink(collector.url)
    try:
        with pytest.raises(SinkError) as info:
            sink.send([heartbeat()])
        assert info.value.retryable is True
        assert info.value.retry_after is not None
        assert info.value.retry_after >= 1
        collector.writer.fail = None
        sink.send([heartbeat(job_id="after")])
    finally:
        sink.close(1.0)
    assert [m.job_id for m in collector.writer.messages] == ["after"]


# -- row 28: too many requests in flight -----------------------------------------------------------


def test_row28_200_concurrent_clients_get_503_with_retry_after_beyond_the_limit() -> None:
    gate = threading.Event()
    writer, reader = MemoryWriter(gate=gate), StaticReader()
    app = create_app(token=TOKEN, writer=writer, reader=reader, max_in_flight=8)

    async def burst(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:
            body = json.dumps([wire(heartbeat())])

            async def one() -> httpx.Response:
                return await client.post("/v1/batch", content=body, headers=auth())

            tasks = [asyncio.ensure_future(one()) for _ in range(200)]
            # all but the 8 in flight are refused at once; then the gate opens for those 8
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_for(lambda: sum(t.done() for t in tasks) >= 192, timeout=15)
            )
            gate.set()
            return list(await asyncio.gather(*tasks))

    with running_app(app) as url:
        responses = asyncio.run(burst(url))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 8
    assert statuses.count(503) == 192
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
    assert len(writer.messages) == 8


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


def test_read_failure_is_503(collector: Collector) -> None:
    def broken(**_: object) -> list[JobView]:
        raise StoreError("could not connect")

    collector.reader.jobs = broken  # type: ignore[method-assign]
    response = collector.client.get("/v1/jobs", headers=auth())
    assert response.status_code == 503
    assert "retry-after" in response.headers


# -- configuration ---------------------------------------------------------------------------------


def test_create_app_refuses_bad_settings() -> None:
    writer, reader = MemoryWriter(), StaticReader()
    with pytest.raises(ConfigurationError, match="token"):
        create_app(token="  ", writer=writer, reader=reader)
    with pytest.raises(ConfigurationError, match="max_body"):
        create_app(token=TOKEN, writer=writer, reader=reader, max_body=0)
    with pytest.raises(ConfigurationError, match="stall_after"):
        create_app(token=TOKEN, writer=writer, reader=reader, stall_after=float("nan"))
    with pytest.raises(ConfigurationError, match="database URL"):
        create_app(token=TOKEN)


def test_token_file_rules(tmp_path) -> None:
    path = tmp_path / "token"
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_token_file(path)
    path.write_text("  \n\t")
    with pytest.raises(ConfigurationError, match="empty"):
        read_token_file(path)
    path.write_text("two words")
    with pytest.raises(ConfigurationError) as info:
        read_token_file(path)
    assert "two words" not in str(info.value)
    path.write_text(f"\n  {TOKEN}  \n")
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_token_file(tmp_path)


# -- write coalescing ------------------------------------------------------------------------------


def test_concurrent_requests_are_written_together_in_one_transaction() -> None:
    gate = threading.Event()
    writer, reader = MemoryWriter(gate=gate), StaticReader()
    app = create_app(token=TOKEN, writer=writer, reader=reader)
    coalescer = app.state.collector.coalescer

    async def burst(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=20, headers=auth()) as client:
            first = asyncio.ensure_future(client.post("/v1/batch", json=[wire(heartbeat("first"))]))
            loop = asyncio.get_running_loop()
            # the first request goes into the (blocked) store write; ten more queue up behind it
            assert await loop.run_in_executor(None, writer.entered.wait, 10)
            rest = [
                asyncio.ensure_future(client.post("/v1/batch", json=[wire(heartbeat(f"job-{i}"))]))
                for i in range(10)
            ]
            deadline = loop.time() + 10
            while coalescer.pending < 10 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            return [response.status_code for response in await asyncio.gather(first, *rest)]

    with running_app(app) as url:
        statuses = asyncio.run(burst(url))
    assert statuses == [200] * 11
    assert coalescer.transactions == 2  # the first alone, then the ten merged
    assert sorted(m.job_id for m in writer.messages) == sorted(["first", *(f"job-{i}" for i in range(10))])


def test_a_failed_merged_write_fails_every_request_in_it(collector: Collector) -> None:
    collector.writer.fail = StoreError("disk I/O error")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=collector.url, timeout=20, headers=auth()) as client:
            return list(
                await asyncio.gather(
                    *(client.post("/v1/batch", json=[wire(heartbeat(f"j{i}"))]) for i in range(20))
                )
            )

    responses = asyncio.run(burst())
    assert {response.status_code for response in responses} == {503}
    assert all("retry-after" in response.headers for response in responses)


def test_openapi_document_shows_resume_and_attempts() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Heartbeat"]["properties"]["resume"] == {
        "default": False,
        "title": "Resume",
        "type": "boolean",
    }
    assert "resume" not in schemas["Heartbeat"]["required"]  # optional: v1 heartbeats stay valid
    for view in ("JobView", "WorkerView"):
        assert schemas[view]["properties"]["attempt"]["type"] == "integer"
        assert "attempt" in schemas[view]["required"]  # always in a response
