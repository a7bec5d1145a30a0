"""Doubles and helpers of the collector tests: an in-memory store, a raw request head, a real-store handle."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from jobprogress.envelope import Heartbeat, ProgressUpdate
from jobprogress.store.views import JobView

__all__ = ["LIMIT", "POSTGRES_URL", "Collector", "MemoryWriter", "StaticReader", "Store", "post_head"]

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


def post_head(path: str, *lines: str) -> bytes:
    """The head of a ``POST path`` request of JSON with these header lines, for a raw socket."""
    if not any(line.lower().startswith("content-type:") for line in lines):
        lines = ("Content-Type: application/json", *lines)
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *lines]) + "\r\n\r\n").encode("latin-1")


POSTGRES_URL = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")


@dataclass
class Store:
    url: str
    prefix: str
