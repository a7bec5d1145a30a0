"""The sink contract's async side: the reporter drives asend/aflush/aclose on an event loop of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import anyio
import pytest

import jobprogress as jp
from jobprogress.envelope import Heartbeat, ProgressUpdate
from jobprogress.errors import SinkError
from jobprogress.testing import registered_sink

Message = Heartbeat | ProgressUpdate


class AsyncMemorySink:
    """An async-only sink: no send/flush/close, only their async counterparts."""

    instances: list[AsyncMemorySink] = []

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[Message] = []
        self.failures_left = 2 if "flaky" in url else 0
        self.flushed = 0
        self.closed = False
        self.loop_threads: set[str] = set()
        AsyncMemorySink.instances.append(self)

    async def asend(self, messages: Sequence[Message]) -> None:
        asyncio.get_running_loop()  # runs on a real event loop
        self.loop_threads.add(threading.current_thread().name)
        await anyio.sleep(0.001)
        if self.failures_left:
            self.failures_left -= 1
            raise SinkError("collector busy", retry_after=0.01)
        self.messages.extend(messages)

    async def aflush(self, timeout: float) -> bool:
        self.flushed += 1
        return True

    async def aclose(self, timeout: float) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def _fresh_instances() -> None:
    AsyncMemorySink.instances.clear()


def _final(sink: AsyncMemorySink, job_id: str) -> Heartbeat:
    beats = [m for m in sink.messages if isinstance(m, Heartbeat) and m.job_id == job_id]
    return beats[-1]


def test_reporter_delivers_through_asend_and_closes_with_aclose() -> None:
    with registered_sink("asyncmem", AsyncMemorySink):
        jp.configure(sinks=["asyncmem://"], interval=0.05)
        with jp.track("async-sink", unit="rows", total=3) as t:
            t.advance(3)
        assert jp.flush(5.0)
        sink = AsyncMemorySink.instances[-1]
        assert _final(sink, "async-sink").status.value == "succeeded"
        assert sink.flushed >= 1
        assert all(name.startswith("jobprogress-sink") for name in sink.loop_threads)
        jp.shutdown(2.0)
    assert sink.closed


def test_failing_asend_is_retried_like_send() -> None:
    with registered_sink("asyncmem", AsyncMemorySink):
        jp.configure(sinks=["asyncmem://flaky"], interval=0.05)
        with jp.track("async-retry") as t:
            t.advance()
        sink = AsyncMemorySink.instances[-1]
        deadline = time.monotonic() + 10
        while not (jp.flush(0.2) and sink.messages) and time.monotonic() < deadline:
            time.sleep(0.01)  # backing off for the sink's short Retry-After
        assert _final(sink, "async-retry").status.value == "succeeded"
        stats = jp.stats()["sinks"]["asyncmem://flaky"]
        assert stats["failures"] == 2
        assert stats["retries"] >= 2


@pytest.mark.anyio
async def test_async_api_with_an_async_sink_on_both_backends() -> None:
    with registered_sink("asyncmem", AsyncMemorySink):
        jp.configure(sinks=["asyncmem://"], interval=0.05)
        async with jp.track("both-backends", unit="iterations") as t:
            for _ in range(10):
                t.advance()
                await anyio.sleep(0)
        assert await jp.aflush(5.0)
        assert _final(AsyncMemorySink.instances[-1], "both-backends").progress.items_done == 10  # type: ignore[union-attr]
