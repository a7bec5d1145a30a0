"""Bearer-token auth on the /v1/ routes (row 27) and the access-log redaction (``server._auth``)."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from _http_support import TOKEN, auth, heartbeat, raw_request, read_response, wire
from _server_support import Collector, post_head
from jobprogress.server.runner import RedactQueryCredentials

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
    from jobprogress.server._auth import _redact_path

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
    two = post_head(
        "/v1/batch", f"Authorization: Bearer {TOKEN}", f"Authorization: Bearer {TOKEN}", "Content-Length: 2"
    )
    status, _, _ = raw_request(collector.port, two + b"[]")
    assert status == 401


def test_row27_a_refused_body_is_read_first_so_the_401_arrives_and_the_connection_lives(
    collector: Collector,
) -> None:
    # Closing with the body unread makes the kernel reset the connection, which can swallow the 401.
    body = json.dumps([wire(heartbeat())] * 50).encode()
    head = post_head("/v1/batch", f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        for _ in range(3):  # three refusals on one keep-alive connection
            sock.sendall(head + body)
            status, headers, _ = read_response(sock)
            assert status == 401
            assert headers.get("connection") != "close"
        sock.sendall(
            post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", f"Content-Length: {len(body)}") + body
        )
        assert read_response(sock)[0] == 200
    assert len(collector.writer.messages) == 50


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
