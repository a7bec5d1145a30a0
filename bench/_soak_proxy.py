"""A tiny HTTP/1.1 fault proxy for the soak: forwards to the collector, or answers 429/503 on demand.

    python bench/_soak_proxy.py --listen PORT --upstream PORT --window 5 --rate 0.5 --stats FILE

Each SIGUSR1 opens a fault window of ``--window`` seconds in which a ``--rate`` share of requests is
answered, without reaching the collector, alternately ``429 Too Many Requests`` and ``503 Service
Unavailable``, both with ``Retry-After: 1``. Outside the window every request is forwarded. When the
collector cannot be reached (it is being restarted) the client's connection is closed without an answer,
which is what the client would see without a proxy. On SIGTERM the counters go to ``--stats`` as JSON.

Only what the ``http://`` sink and the soak's pollers send is supported: requests with a
``Content-Length`` body (or none); a chunked request is refused with 501.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from typing import Any

import httpx

MAX_HEADER = 65536
FORWARDED_REQUEST_HEADERS = ("authorization", "content-type", "content-encoding", "accept", "user-agent")
FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after", "www-authenticate")
REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}


class Proxy:
    def __init__(self, upstream: int, window: float, rate: float) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{upstream}", timeout=15.0, trust_env=False
        )
        self.window = window
        self.rate = rate
        self.fault_until = 0.0
        self.rng = random.Random(7)
        self.counts: dict[str, int] = {"forwarded": 0, "429": 0, "503": 0, "upstream_down": 0, "windows": 0}

    def open_window(self) -> None:
        self.fault_until = time.monotonic() + self.window
        self.counts["windows"] += 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._answer(writer, 501, b"chunked requests are not supported by the soak proxy", {})
            return False
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        keep_alive = headers.get("connection", "").lower() != "close"
        if time.monotonic() < self.fault_until and self.rng.random() < self.rate:
            status = 429 if (self.counts["429"] + self.counts["503"]) % 2 == 0 else 503
            self.counts[str(status)] += 1
            await self._answer(writer, status, b'{"detail":"injected by the soak"}', {"retry-after": "1"})
            return keep_alive
        forwarded = {name: headers[name] for name in FORWARDED_REQUEST_HEADERS if name in headers}
        try:
            response = await self.client.request(method, target, headers=forwarded, content=body)
        except httpx.HTTPError:
            self.counts["upstream_down"] += 1
            return False  # close without an answer: what the client sees when the collector is gone
        self.counts["forwarded"] += 1
        passed = {
            name: response.headers[name] for name in FORWARDED_RESPONSE_HEADERS if name in response.headers
        }
        await self._answer(writer, response.status_code, response.content, passed)
        return keep_alive

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        reason = REASONS.get(status, "OK" if status < 300 else "Error")
        lines = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


async def main(arguments: argparse.Namespace) -> None:
    proxy = Proxy(arguments.upstream, arguments.window, arguments.rate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.open_window)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", arguments.listen, limit=MAX_HEADER)
    async with server:
        await stop.wait()
    await proxy.client.aclose()
    with open(arguments.stats, "w", encoding="utf-8") as out:
        json.dump(proxy.counts, out)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--stats", required=True)
    return parser.parse_args()


if __name__ == "__main__":
    arguments: Any = _arguments()
    asyncio.run(main(arguments))
