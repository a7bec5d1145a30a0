"""Write coalescing: requests that arrive together are written in one transaction (``server._coalesce``)."""

from __future__ import annotations

import asyncio
import threading

import httpx

from _http_support import TOKEN, auth, heartbeat, running_app, wire
from _server_support import Collector, MemoryWriter, StaticReader
from jobprogress.errors import StoreError
from jobprogress.server import create_app

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
