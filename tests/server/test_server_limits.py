"""503 with Retry-After: too many requests in flight (row 28), or the store failing (``server._limits``)."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from _http_support import TOKEN, auth, heartbeat, running_app, wait_for, wire
from _server_support import Collector, MemoryWriter, StaticReader
from jobprogress.errors import SinkError, StoreError
from jobprogress.server import create_app
from jobprogress.sinks.http import HttpSink
from jobprogress.store.views import JobView

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


def test_read_failure_is_503(collector: Collector) -> None:
    def broken(**_: object) -> list[JobView]:
        raise StoreError("could not connect")

    collector.reader.jobs = broken  # type: ignore[method-assign]
    response = collector.client.get("/v1/jobs", headers=auth())
    assert response.status_code == 503
    assert "retry-after" in response.headers
