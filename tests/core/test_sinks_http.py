"""The http:// sink on its own: one attempt per send, against scripted loopback stubs."""

from __future__ import annotations

import email.utils
import json
import os
import time

import pytest

from _http_support import (
    TOKEN,
    ScriptedStub,
    SilentServer,
    StubReply,
    free_port,
    heartbeat,
    progress_update,
)
from jobprogress import _plugins
from jobprogress.envelope import parse_messages
from jobprogress.errors import ConfigurationError, SinkError
from jobprogress.sinks.http import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    RETRY_AFTER_429_DEFAULT,
    HttpSink,
    parse_retry_after,
)


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture
def make_sink():
    sinks: list[HttpSink] = []

    def make(url: str) -> HttpSink:
        sink = HttpSink(url)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(1.0)


# -- configuration ---------------------------------------------------------------------------------


def test_http_and_https_schemes_are_registered_through_the_hook(token_env: str) -> None:
    from jobprogress.sinks import http

    registered = {}
    http.jobprogress_register_sinks(register=lambda scheme, factory: registered.setdefault(scheme, factory))
    assert registered == {"http": HttpSink, "https": HttpSink}
    assert "jobprogress.sinks.http" in _plugins.BUILTIN_PLUGINS
    sink = registered["https"]("https://collector.example:443/base/")
    assert sink.endpoint == "https://collector.example:443/base/v1/batch"
    assert sink.verify is True  # TLS verification is on unless switched off
    sink.close(1.0)
    insecure = HttpSink("https://collector.example?verify=false")
    assert insecure.verify is False
    insecure.close(1.0)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8787?bogus=1", "unknown parameter"),
        ("http://127.0.0.1:8787?timeout=0", "timeout"),
        ("http://127.0.0.1:8787?timeout=nan", "timeout"),
        ("http://127.0.0.1:8787?timeout=abc", "not a number"),
        ("http://127.0.0.1:8787?timeout=600", "timeout"),
        ("http://127.0.0.1:notaport", "invalid port"),
        ("http://", "no host"),
        ("http://127.0.0.1:8787?verify=/no/such/ca.pem", "CA bundle"),
        ("http://127.0.0.1:8787?compress=brotli", "compress"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        HttpSink(url)


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpSink("http://user:hunter2-secret@127.0.0.1:8787")
    assert "hunter2-secret" not in str(info.value)
    assert "JOBPROGRESS_HTTP_TOKEN" in str(info.value)


def test_token_never_in_repr(token_env: str, make_sink) -> None:
    sink = make_sink("http://127.0.0.1:8787")
    assert sink.has_token
    assert TOKEN not in repr(sink)
    assert TOKEN not in str(sink)
    public = {name: value for name, value in vars(sink).items() if not name.startswith("_")}
    assert TOKEN not in repr(public)


def test_token_from_a_named_env_variable(monkeypatch: pytest.MonkeyPatch, make_sink) -> None:
    monkeypatch.delenv("JOBPROGRESS_HTTP_TOKEN", raising=False)
    monkeypatch.setenv("MY_COLLECTOR_TOKEN", "other-token")
    with ScriptedStub() as stub:
        sink = make_sink(stub.url + "?token_env=MY_COLLECTOR_TOKEN&timeout=2")
        sink.send([heartbeat()])
    assert stub.requests[0].headers["authorization"] == "Bearer other-token"


def test_no_token_sends_no_authorization_header(monkeypatch: pytest.MonkeyPatch, make_sink) -> None:
    monkeypatch.delenv("JOBPROGRESS_HTTP_TOKEN", raising=False)
    with ScriptedStub() as stub:
        sink = make_sink(stub.url)
        assert not sink.has_token
        sink.send([heartbeat()])
    assert "authorization" not in stub.requests[0].headers


# -- what goes over the wire -----------------------------------------------------------------------


def test_send_posts_one_json_array_to_v1_batch_with_the_bearer_token(token_env: str, make_sink) -> None:
    messages = [heartbeat(done=3, total=10), progress_update(done=4, payload={"ok": True})]
    with ScriptedStub() as stub:
        make_sink(stub.url + "/").send(messages)
    (request,) = stub.requests
    assert request.path == "/v1/batch"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert parse_messages(request.body) == messages


def test_compress_gzip_sends_gzip_bodies(token_env: str, make_sink) -> None:
    import gzip

    messages = [heartbeat(job_id=f"gz-{i}") for i in range(300)]
    with ScriptedStub() as stub:
        make_sink(stub.url + "?compress=gzip").send(messages)
    received = []
    for request in stub.requests:
        assert request.headers["content-encoding"] == "gzip"
        inflated = gzip.decompress(request.body)
        assert len(inflated) <= MAX_BATCH_BYTES  # the collector's limit holds after inflation
        assert len(request.body) < len(inflated) / 3
        received.extend(parse_messages(inflated))
    assert received == messages


def test_large_batches_are_split_under_the_message_and_byte_limits(token_env: str, make_sink) -> None:
    small = [heartbeat(job_id=f"job-{i}") for i in range(MAX_BATCH_MESSAGES * 2 + 5)]
    big_payload = {f"k{i}": "x" * 200 for i in range(15)}  # ~3.2 kB per message
    big = [progress_update(job_id=f"big-{i}", payload=big_payload) for i in range(60)]
    with ScriptedStub() as stub:
        sink = make_sink(stub.url)
        sink.send(small)
        sink.send(big)
    received = []
    for request in stub.requests:
        assert len(request.body) <= MAX_BATCH_BYTES
        batch = parse_messages(request.body)
        assert 1 <= len(batch) <= MAX_BATCH_MESSAGES
        received.extend(batch)
    assert received == small + big  # nothing lost, order kept
    assert len(stub.requests) >= 3 + 3


def test_an_empty_send_makes_no_request(token_env: str, make_sink) -> None:
    with ScriptedStub() as stub:
        make_sink(stub.url).send([])
    assert stub.requests == []


# -- outcomes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
def test_row6_client_errors_are_not_retryable(status: int, token_env: str, make_sink) -> None:
    with ScriptedStub([StubReply(status, body=b'{"detail": "no"}')]) as stub:
        sink = make_sink(stub.url)
        with pytest.raises(SinkError) as info:
            sink.send([heartbeat()])
    assert info.value.retryable is False
    assert str(status) in str(info.value)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_and_408_are_retryable(status: int, token_env: str, make_sink) -> None:
    with ScriptedStub([StubReply(status)]) as stub:
        with pytest.raises(SinkError) as info:
            make_sink(stub.url).send([heartbeat()])
    assert info.value.retryable is True
    assert info.value.retry_after is None


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("7", 7.0, 7.0),
        ("HTTP-DATE+30", 27.0, 31.0),
        ("soon, please", None, None),
        (None, RETRY_AFTER_429_DEFAULT, RETRY_AFTER_429_DEFAULT),
    ],
)
def test_row4_429_retry_after_seconds_date_garbage_missing(
    header: str | None, low: float | None, high: float | None, token_env: str, make_sink
) -> None:
    headers = {}
    if header is not None:
        headers["Retry-After"] = _http_date(30) if header == "HTTP-DATE+30" else header
    with ScriptedStub([StubReply(429, headers=headers)]) as stub:
        with pytest.raises(SinkError) as info:
            make_sink(stub.url).send([heartbeat()])
    assert info.value.retryable is True
    if low is None:
        assert info.value.retry_after is None  # garbage: the reporter falls back to its backoff
    else:
        assert info.value.retry_after is not None
        assert low <= info.value.retry_after <= high


def test_row28_busy_503_with_retry_after_is_honoured(token_env: str, make_sink) -> None:
    with ScriptedStub([StubReply(503, headers={"Retry-After": "1"})]) as stub:
        with pytest.raises(SinkError) as info:
            make_sink(stub.url).send([heartbeat()])
    assert info.value.retryable is True
    assert info.value.retry_after == 1.0


def test_parse_retry_after() -> None:
    base = 1_700_000_000.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(email.utils.formatdate(base + 90, usegmt=True), now=base) == pytest.approx(90.0)
    assert parse_retry_after(email.utils.formatdate(base - 90, usegmt=True), now=base) == 0.0  # past: now
    for garbage in (None, "", "-5", "nan", "inf", "soon", "Mon, 99 Foo 2024", "1" * 100, "٣"):
        assert parse_retry_after(garbage) is None, garbage


def test_error_messages_never_hold_the_token(token_env: str, make_sink) -> None:
    # A hostile or buggy collector that echoes the Authorization header back in its error body.
    echo = json.dumps({"detail": f"bad token Bearer {TOKEN}"}).encode()
    with ScriptedStub([StubReply(401, body=echo)]) as stub:
        with pytest.raises(SinkError) as info:
            make_sink(stub.url).send([heartbeat()])
    assert TOKEN not in str(info.value)
    assert "***" in str(info.value)


def test_row1_refused_connection_is_a_retryable_failure(token_env: str, make_sink) -> None:
    sink = make_sink(f"http://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(SinkError) as info:
        sink.send([heartbeat()])
    assert info.value.retryable is True
    assert TOKEN not in str(info.value)


def test_row2_a_server_that_never_replies_times_out(token_env: str, make_sink) -> None:
    with SilentServer() as silent:
        sink = make_sink(silent.url + "?timeout=0.5")
        started = time.monotonic()
        with pytest.raises(SinkError, match="timed out") as info:
            sink.send([heartbeat()])
        elapsed = time.monotonic() - started
    assert info.value.retryable is True
    assert elapsed < 2.0
    assert sink.flush(0.1) is True  # nothing is buffered in the sink itself


def test_redirects_are_not_followed(token_env: str, make_sink) -> None:
    with ScriptedStub([StubReply(307, headers={"Location": "http://elsewhere.invalid/"})]) as stub:
        with pytest.raises(SinkError) as info:
            make_sink(stub.url).send([heartbeat()])
    assert info.value.retryable is False
    assert len(stub.requests) == 1


def test_connection_is_reused_between_sends(token_env: str, make_sink) -> None:
    with ScriptedStub() as stub:
        sink = make_sink(stub.url)
        sink.send([heartbeat()])
        client = sink._client
        sink.send([heartbeat()])
        assert sink._client is client
    assert len(stub.requests) == 2


def test_closed_sink_refuses_without_retry(token_env: str) -> None:
    sink = HttpSink("http://127.0.0.1:8787")
    sink.close(1.0)
    sink.close(1.0)  # idempotent
    with pytest.raises(SinkError) as info:
        sink.send([heartbeat()])
    assert info.value.retryable is False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_builds_its_own_client(token_env: str, make_sink) -> None:
    with ScriptedStub() as stub:
        sink = make_sink(stub.url)
        sink.send([heartbeat(job_id="parent")])
        parent_client = sink._client
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                sink.send([heartbeat(job_id="child")])
                code = 0 if sink._client is not parent_client else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        sink.send([heartbeat(job_id="parent-again")])  # the parent's pool still works
        assert sink._client is parent_client
    jobs = [parse_messages(request.body)[0].job_id for request in stub.requests]
    assert jobs == ["parent", "child", "parent-again"]


# -- optional dependencies -------------------------------------------------------------------------

_IMPORT_CHECK = """
import sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # as if the extra were not installed
import jobprogress, jobprogress.sinks.http, jobprogress.server
heavy = [m for m in ("httpx", "starlette", "uvicorn", "sqlalchemy") if sys.modules.get(m) is not None]
assert not heavy, heavy
from jobprogress.errors import MissingExtraError
from jobprogress.sinks.http import HttpSink
try:
    HttpSink("http://127.0.0.1:8787")
except MissingExtraError as exc:
    print("sink:", exc)
try:
    from jobprogress.server import create_app
except MissingExtraError as exc:
    print("server:", exc)
"""


def test_importing_the_modules_loads_no_extra_and_a_missing_extra_is_a_kind_error() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, "httpx", "starlette"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "sink: the http:// sink needs the 'httpx' package" in done.stdout
    assert "pip install 'jobprogress-sdk[http]'" in done.stdout
    assert "server: the collector (jobprogress serve) needs the 'starlette' package" in done.stdout
    assert "pip install 'jobprogress-sdk[server]'" in done.stdout
