"""Bodies read under a byte and a time bound, gzip inflated, refused ones drained (row 24)."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest

from _http_support import TOKEN, auth, heartbeat, raw_request, read_response, running_app, wire
from _server_support import LIMIT, Collector, MemoryWriter, StaticReader, post_head
from jobprogress.server import create_app


def test_unsupported_encoding_is_refused_after_reading_the_body(collector: Collector) -> None:
    body = b"[]" + b" " * 30_000
    head = post_head(
        "/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Encoding: br", f"Content-Length: {len(body)}"
    )
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        sock.sendall(head + body)
        assert read_response(sock)[0] == 415
        sock.sendall(post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 2") + b"[]")
        assert read_response(sock)[0] == 200


# -- row 24: oversized bodies ----------------------------------------------------------------------


def test_row24_oversized_body_chunked_is_413_without_waiting_for_the_rest(collector: Collector) -> None:
    head = post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Transfer-Encoding: chunked")
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
        head = post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", f"Content-Length: {declared}")
        status, headers, body = raw_request(collector.port, head)  # the answer comes before any body
        assert status == 413, declared
        assert headers.get("connection") == "close"
        assert str(declared) in json.loads(body)["detail"]


def test_row24_a_short_content_length_bounds_what_is_read(collector: Collector) -> None:
    head = post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 10")
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
        head = post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Content-Length: 100")
        started = time.monotonic()
        status, headers, body = raw_request(port, head, [b"[" + b" " * 9])  # 10 of 100 bytes, then silence
        elapsed = time.monotonic() - started
        assert status == 408
        assert headers.get("connection") == "close"
        assert "0.5 s" in json.loads(body)["detail"]
        assert 0.4 < elapsed < 3.0
        # refused before authentication, a trickling body cannot hold the connection either
        started = time.monotonic()
        status, headers, _ = raw_request(
            port, post_head("/v1/batch", "Content-Length: 100"), [b"[" + b" " * 9]
        )
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
    head = post_head("/v1/batch", f"Authorization: Bearer {TOKEN}", "Transfer-Encoding: chunked")
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
