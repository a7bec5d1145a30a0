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
from typing import Any, Final

import anyio

from jobprogress._states import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from jobprogress._version import __version__
from jobprogress.errors import ConfigurationError, MissingExtraError

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse, Response
    from starlette.routing import BaseRoute, Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        "the collector (jobprogress serve)", "server", (exc.name or "starlette").split(".")[0]
    ) from exc

# Below the check: these modules import Starlette too.
from jobprogress.server._auth import BearerAuth, ReadAuth
from jobprogress.server._limits import DEFAULT_MAX_IN_FLIGHT, CollectorCounters, InFlightLimit
from jobprogress.server._metrics import CollectorMetrics, LiveWorkers, MetricsMiddleware
from jobprogress.server._problems import http_exception, server_fault
from jobprogress.server._routes import Collector, Readiness, metrics_response
from jobprogress.server._store import JobReader, MessageWriter, StoreReader
from jobprogress.server._web import STATIC_DIR, SecurityHeaders, WebPages

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_IN_FLIGHT",
    "CollectorCounters",
    "JobReader",
    "MessageWriter",
    "create_app",
    "create_web_app",
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
    read_token: str | None = None,
    open_read: bool = False,
) -> Starlette:
    """Build the collector's ASGI application: the ingest and read API, the Jobs pages, the metrics.

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
        read_token: A second token that may read (``GET /v1/jobs…``, ``/jobs``, ``/metrics``), not write.
        open_read: Let anyone read ``/jobs`` and ``/metrics`` without a token (the JSON API still needs one).

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
    if read_token is not None and (not isinstance(read_token, str) or not read_token.strip()):
        raise ConfigurationError("the read token must be a non-empty string")
    metrics = CollectorMetrics(counts=_counts_of(reader), live_workers=LiveWorkers(stall_after))
    collector = Collector(
        writer, reader, max_body=max_body, max_batch=max_batch, body_timeout=body_timeout, metrics=metrics
    )

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

    pages = WebPages(reader)
    routes: list[BaseRoute] = [
        Route("/healthz", collector.healthz, methods=["GET"]),
        Route("/readyz", collector.readiness.respond, methods=["GET"]),
        Route("/metrics", collector.metrics_text, methods=["GET"]),
        Route("/openapi.json", collector.openapi_json, methods=["GET"]),
        Route("/v1/heartbeat", collector.heartbeat, methods=["POST"]),
        Route("/v1/progress", collector.progress, methods=["POST"]),
        Route("/v1/batch", collector.batch, methods=["POST"]),
        Route("/v1/jobs", collector.jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id:path}", collector.job, methods=["GET"]),
        *_page_routes(pages),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_exception, Exception: server_fault},
        lifespan=lifespan,
    )
    tokens = (token.strip(),) if read_token is None else (token.strip(), read_token.strip())
    app.add_middleware(ReadAuth, tokens=tokens, open_access=open_read)
    app.add_middleware(
        BearerAuth,
        token=token.strip(),
        max_body=max_body,
        body_timeout=body_timeout,
        read_token=None if read_token is None else read_token.strip(),
    )
    app.add_middleware(
        InFlightLimit,
        limit=max_in_flight,
        counters=collector.counters,
        max_body=max_body,
        body_timeout=body_timeout,
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.collector = collector
    return app


def _counts_of(reader: object) -> Any:
    counts = getattr(reader, "counts", None)
    return None if counts is None else (lambda: counts())


def _page_routes(pages: WebPages) -> list[BaseRoute]:
    return [
        Route("/jobs", pages.jobs, methods=["GET"]),
        Route("/jobs/{job_id:path}", pages.job, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def create_web_app(
    db_url: str | None = None,
    *,
    read_token: str | None = None,
    open_read: bool = False,
    stall_after: float = 30.0,
    table_prefix: str = "cf_",
    reader: JobReader | None = None,
) -> Starlette:
    """The Jobs pages alone, over a store without a collector (what ``jobprogress web`` serves).

    Serves ``/jobs``, ``/jobs/{job_id}``, ``/static/…``, ``/metrics`` (jobs by state, request latency),
    ``/healthz`` and ``/readyz``; nothing that writes.

    Args:
        db_url: SQLAlchemy URL of the progress store; may be omitted when ``reader`` is given.
        read_token: The token a reader must send (Basic password or bearer); required unless ``open_read``.
        open_read: Serve everyone without a token (say so explicitly: ``--open``).
        stall_after: Seconds without a message (lost) or without progress (stalled).
        table_prefix: Prefix of the store's tables.
        reader: Reads the Jobs view (default ``ProgressStore(db_url)``); closed when the app shuts down.

    Raises:
        ConfigurationError: neither a read token nor ``open_read``, both, or no store.
    """
    if (read_token is None) == (not open_read):
        raise ConfigurationError(
            "the Jobs pages need either a read token (--read-token-file PATH) or --open to serve "
            "everyone without one"
            if read_token is None
            else "give a read token or --open, not both"
        )
    if read_token is not None and (not isinstance(read_token, str) or not read_token.strip()):
        raise ConfigurationError("the read token must be a non-empty string")
    if not (isinstance(stall_after, (int, float)) and math.isfinite(stall_after) and stall_after > 0):
        raise ConfigurationError(f"stall_after must be a positive number of seconds, got {stall_after!r}")
    if reader is None:
        if not db_url:
            raise ConfigurationError("the Jobs pages need a database URL (--db)")
        reader = StoreReader(db_url, stall_after=stall_after, table_prefix=table_prefix)
    store = reader
    metrics = CollectorMetrics(counts=_counts_of(store))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await run_in_threadpool(store.close)
            except Exception:
                logger.warning("closing %r failed", store, exc_info=True)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def metrics_text(request: Request) -> Response:
        return await metrics_response(metrics)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", Readiness(store).respond, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/", lambda request: RedirectResponse("/jobs", status_code=307), methods=["GET"]),
        *_page_routes(WebPages(store)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    tokens = () if read_token is None else (read_token.strip(),)
    app.add_middleware(ReadAuth, tokens=tokens, open_access=open_read)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
