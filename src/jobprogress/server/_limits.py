"""Back-pressure: 503 with ``Retry-After`` when too many requests are in flight or the store failed.

Both ask the worker to come back later; its ``http://`` sink honours ``Retry-After`` and keeps the
newest state meanwhile. :class:`CollectorCounters` counts what was accepted and what was refused.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from starlette.responses import JSONResponse, Response

from jobprogress.server._problems import refuse

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "BUSY_RETRY_AFTER",
    "DB_RETRY_AFTER",
    "DEFAULT_MAX_IN_FLIGHT",
    "CollectorCounters",
    "InFlightLimit",
    "store_unavailable",
]

DEFAULT_MAX_IN_FLIGHT: Final = 64
BUSY_RETRY_AFTER: Final = 1
"""Seconds a client is asked to wait when too many requests are in flight."""
DB_RETRY_AFTER: Final = 2
"""Seconds a client is asked to wait when the database failed."""


@dataclasses.dataclass
class CollectorCounters:
    """What a collector has done since it started (``app.state.collector.counters``)."""

    accepted: int = 0
    """Messages written to the store."""
    refused_busy: int = 0
    """Requests answered 503 because too many were in flight."""
    store_failures: int = 0
    """Requests answered 503 because the store failed."""


class InFlightLimit:
    """Answers 503 with Retry-After once ``limit`` requests are being served (probes and /metrics exempt).

    uvicorn's own ``--limit-concurrency`` answers 503 without Retry-After and counts idle keep-alive
    connections too, so this is the limit clients see; uvicorn's is a backstop set higher.
    """

    def __init__(
        self, app: ASGIApp, limit: int, counters: CollectorCounters, max_body: int, body_timeout: float
    ) -> None:
        self.app = app
        self.limit = limit
        self.counters = counters
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.in_flight = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/healthz", "/readyz", "/metrics"):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.counters.refused_busy += 1
            scope["jobprogress.refusal"] = "busy"  # the metrics' reason (_metrics.REFUSAL_SCOPE_KEY)
            await refuse(
                scope,
                receive,
                send,
                503,
                f"too many requests in flight (limit {self.limit}); retry later",
                [(b"retry-after", str(BUSY_RETRY_AFTER).encode("ascii"))],
                max_body=self.max_body,
                body_timeout=self.body_timeout,
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def store_unavailable() -> Response:
    """The answer when the store failed: the store retries nothing itself, so the worker is asked to."""
    return JSONResponse(
        {"detail": "the progress store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(DB_RETRY_AFTER)},
    )
