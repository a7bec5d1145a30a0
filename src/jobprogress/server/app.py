"""The collector's ASGI application (Starlette): the factory that wires auth, limits and routes to a store.

Layers, outermost first: an in-flight limiter that answers 503 with ``Retry-After`` when too many
requests are being served (``_limits``); bearer-token auth on every ``/v1/`` route, constant time, on
bytes (``_auth``); then the routes (``_routes``), which read bodies as they stream under a byte bound,
validate them with the wire models and answer every refusal as a problem naming the field
(``_problems``). Writes go to one writer task that merges concurrent requests into one transaction on a
worker thread (``_coalesce``), so the event loop never blocks on the database.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Final

import anyio

from jobprogress._states import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from jobprogress.errors import ConfigurationError, MissingExtraError

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        "the collector (jobprogress serve)", "server", (exc.name or "starlette").split(".")[0]
    ) from exc

# Below the check: these modules import Starlette too.
from jobprogress.server._auth import BearerAuth
from jobprogress.server._limits import DEFAULT_MAX_IN_FLIGHT, CollectorCounters, InFlightLimit
from jobprogress.server._problems import http_exception, server_fault
from jobprogress.server._routes import Collector
from jobprogress.server._store import JobReader, MessageWriter, StoreReader

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_IN_FLIGHT",
    "CollectorCounters",
    "JobReader",
    "MessageWriter",
    "create_app",
]

logger = logging.getLogger("jobprogress.server")

DEFAULT_MAX_BODY: Final = MAX_BATCH_BYTES
DEFAULT_MAX_BATCH: Final = MAX_BATCH_MESSAGES
DEFAULT_BODY_TIMEOUT: Final = 10.0


def create_app(
    db_url: str | None = None,
    *,
    token: str,
    stall_after: float = 30.0,
    max_body: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    table_prefix: str = "cf_",
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    writer: MessageWriter | None = None,
    reader: JobReader | None = None,
) -> Starlette:
    """Build the collector's ASGI application.

    Args:
        db_url: SQLAlchemy URL of the progress store (``sqlite:///…``, ``postgresql+psycopg://…``);
            may be omitted when both ``writer`` and ``reader`` are given.
        token: The bearer token every ``/v1/`` request must carry.
        stall_after: Seconds without a message (lost) or without progress (stalled) for the read routes.
        max_body: Largest request body in bytes, counted as it streams and again after gzip inflation.
        max_batch: Most messages in one ``POST /v1/batch``.
        max_in_flight: Requests served at once; more are answered 503 with ``Retry-After``.
        table_prefix: Prefix of the store's tables.
        body_timeout: Seconds a request body may take to arrive; slower ones are answered 408.
        writer: Writes messages (default ``StoreWriter(db_url)``); closed when the app shuts down.
        reader: Reads the Jobs view (default ``ProgressStore(db_url)``); closed when the app shuts down.

    Returns:
        A Starlette application; run it with uvicorn (see :func:`jobprogress.server.serve`).

    Raises:
        ConfigurationError: an empty token, a non-positive limit, or no store to use.
    """
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError("the collector needs a non-empty bearer token")
    for name, value in (("max_body", max_body), ("max_batch", max_batch), ("max_in_flight", max_in_flight)):
        if not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
    for name, seconds in (("stall_after", stall_after), ("body_timeout", body_timeout)):
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ConfigurationError(f"{name} must be a positive number of seconds, got {seconds!r}")
    if (writer is None or reader is None) and not db_url:
        raise ConfigurationError("the collector needs a database URL (--db)")
    if writer is None:
        from jobprogress.store import StoreWriter

        assert db_url is not None
        writer = StoreWriter(db_url, table_prefix=table_prefix)
    if reader is None:
        assert db_url is not None
        reader = StoreReader(db_url, stall_after=stall_after, table_prefix=table_prefix)
    collector = Collector(writer, reader, max_body=max_body, max_batch=max_batch, body_timeout=body_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tasks:
                await tasks.start(collector.coalescer.run)
                yield
                tasks.cancel_scope.cancel()
        finally:
            for resource in (collector.writer, collector.reader):
                try:
                    await run_in_threadpool(resource.close)
                except Exception:
                    logger.warning("closing %r failed", resource, exc_info=True)

    routes = [
        Route("/healthz", collector.healthz, methods=["GET"]),
        Route("/openapi.json", collector.openapi_json, methods=["GET"]),
        Route("/v1/heartbeat", collector.heartbeat, methods=["POST"]),
        Route("/v1/progress", collector.progress, methods=["POST"]),
        Route("/v1/batch", collector.batch, methods=["POST"]),
        Route("/v1/jobs", collector.jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id:path}", collector.job, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_exception, Exception: server_fault},
        lifespan=lifespan,
    )
    app.add_middleware(BearerAuth, token=token.strip(), max_body=max_body, body_timeout=body_timeout)
    app.add_middleware(
        InFlightLimit,
        limit=max_in_flight,
        counters=collector.counters,
        max_body=max_body,
        body_timeout=body_timeout,
    )
    app.state.collector = collector
    return app
