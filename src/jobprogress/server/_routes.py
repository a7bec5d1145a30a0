"""The collector's route handlers: bounded, validated writes, and the read routes over the Jobs view.

Bodies are read as they stream, under a byte bound and a time bound (``_body``), and validated with the
wire models; every refusal is a problem response naming the field (``_problems``). Writes go through
one writer task that merges concurrent requests into one transaction (``_coalesce``); reads run on a
worker thread, so the event loop never blocks on the database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

import anyio
from pydantic import Field, TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from jobprogress._states import MAX_ID_LENGTH, MAX_KIND_LENGTH
from jobprogress._validate import check_id
from jobprogress._version import __version__
from jobprogress.envelope import Heartbeat, Message, ProgressUpdate
from jobprogress.errors import InvalidProgressError
from jobprogress.server._body import BodyError, content_encoding, declared_length, drain, read_bounded
from jobprogress.server._coalesce import WriteCoalescer
from jobprogress.server._limits import CollectorCounters, store_unavailable
from jobprogress.server._metrics import REFUSAL_SCOPE_KEY, CollectorMetrics
from jobprogress.server._problems import (
    Refusal,
    check_query_text,
    invalid,
    out_of_range,
    problem,
    query_number,
    validate,
)
from jobprogress.server.openapi import JOB_FILTERS, openapi_document

if TYPE_CHECKING:
    from jobprogress.server._store import JobReader, MessageWriter
    from jobprogress.store.views import JobView

__all__ = ["Collector"]

logger = logging.getLogger("jobprogress.server")

DEFAULT_JOBS_LIMIT: Final = 500
MAX_JOBS_LIMIT: Final = 10000
MAX_JOBS_OFFSET: Final = 2**31 - 1
"""Far beyond any real page; keeps the value inside every database's integer range."""
MAX_ACTIVE_WITHIN: Final = 1e9
"""Seconds (about 31 years): beyond it a window means "all", and datetime arithmetic would overflow."""

_HEARTBEAT: Final = TypeAdapter(Heartbeat)
_PROGRESS: Final = TypeAdapter(ProgressUpdate)


class _LogOnce:
    """Logs a warning per kind of failure at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                return
            self._last[kind] = now
        logger.warning(message, *args, exc_info=exc_info)


def _json_bytes(payload: object) -> bytes:
    # ASCII with \u escapes: whatever an older store holds (a bidi override, a C1 control) reaches a
    # client escaped, never raw and never stripped, so what is shown can be typed back.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _json_content(values: list[str]) -> bool:
    """True for ``application/json`` with or without parameters (a charset), as the only header."""
    if len(values) != 1:
        return False
    media_type = values[0].split(";", 1)[0].strip().lower()
    return media_type == "application/json"


class Collector:
    """The route handlers and the state they share (``app.state.collector``)."""

    def __init__(
        self,
        writer: MessageWriter,
        reader: JobReader,
        *,
        max_body: int,
        max_batch: int,
        body_timeout: float,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.batch_adapter: TypeAdapter[list[Heartbeat | ProgressUpdate]] = TypeAdapter(
            Annotated[list[Message], Field(max_length=max_batch)]
        )
        self.openapi = _json_bytes(openapi_document(max_body=max_body, max_batch=max_batch))
        self.log_once = _LogOnce()
        self.counters = CollectorCounters()
        self.metrics = metrics or CollectorMetrics()
        self.coalescer = WriteCoalescer(self.metrics.timed_write(writer.write))
        self.readiness = Readiness(reader)

    async def _body(self, request: Request) -> bytes:
        if not _json_content(request.headers.getlist("content-type")):
            given = ", ".join(request.headers.getlist("content-type")) or "none"
            detail = f"unsupported Content-Type {given!r}; send application/json"
            drained = await drain(request.stream(), self.max_body, self.body_timeout)
            raise Refusal(problem(415, detail, close=not drained))
        try:
            length = declared_length(request.headers.getlist("content-length"))
        except BodyError as exc:
            raise Refusal(problem(exc.status_code, exc.detail, close=True)) from None
        if length is not None and length > self.max_body:
            detail = f"request body is {length} bytes, over the limit of {self.max_body} bytes"
            raise Refusal(problem(413, detail, close=True))
        chunks = request.stream()
        try:
            encoding = content_encoding(request.headers.getlist("content-encoding"))
            # A client trickling its body would hold an in-flight slot for as long as it likes.
            with anyio.fail_after(self.body_timeout):
                return await read_bounded(chunks, limit=self.max_body, encoding=encoding)
        except TimeoutError:
            detail = f"the request body did not arrive within {self.body_timeout:g} s"
            raise Refusal(problem(408, detail, close=True)) from None
        except BodyError as exc:
            # Read what is left (bounded), so the refusal reaches the client and the connection lives on.
            # (A gzip bomb is refused for what it inflates to; its compressed rest is still small.)
            drained = exc.within_limit and await drain(chunks, self.max_body, self.body_timeout)
            raise Refusal(problem(exc.status_code, exc.detail, close=not drained)) from None
        except ClientDisconnect:
            raise Refusal(problem(400, "client disconnected before the body ended", close=True)) from None

    async def _accept(
        self, request: Request, parse: Callable[[bytes], list[Heartbeat | ProgressUpdate]]
    ) -> Response:
        """Read, validate (``parse``) and write one write route's body."""
        try:
            messages = parse(await self._body(request))
        except Refusal as refusal:
            return refusal.response
        if messages:
            try:
                await self.coalescer.write(messages)
            except Exception as exc:
                # The store retries nothing itself: ask the worker to, after a pause.
                self.counters.store_failures += 1
                request.scope[REFUSAL_SCOPE_KEY] = "store_unavailable"
                self.log_once(
                    f"write:{type(exc).__name__}",
                    "writing %d message(s) to the store failed, answering 503: %s: %s",
                    len(messages),
                    type(exc).__name__,
                    exc,
                )
                return store_unavailable()
        self.counters.accepted += len(messages)
        if messages:
            self.metrics.accepted_request(len(messages))
        return JSONResponse({"accepted": len(messages)})

    async def heartbeat(self, request: Request) -> Response:
        return await self._accept(request, lambda body: [validate(_HEARTBEAT, body, "heartbeat")])

    async def progress(self, request: Request) -> Response:
        return await self._accept(request, lambda body: [validate(_PROGRESS, body, "progress update")])

    async def batch(self, request: Request) -> Response:
        return await self._accept(request, lambda body: validate(self.batch_adapter, body, "batch"))

    async def _read(self, call: Callable[[], Any]) -> Any:
        try:
            return await run_in_threadpool(call)
        except Exception as exc:
            self.log_once(
                f"read:{type(exc).__name__}",
                "reading the store failed, answering 503: %s: %s",
                type(exc).__name__,
                exc,
            )
            raise Refusal(store_unavailable()) from None

    async def jobs(self, request: Request) -> Response:
        try:
            status = request.query_params.get("status")
            if status is not None and status not in JOB_FILTERS:
                raise out_of_range("status", f"must be one of {', '.join(JOB_FILTERS)}")
            kind = request.query_params.get("kind")
            if kind is not None:
                check_query_text("kind", kind, MAX_KIND_LENGTH)
            limit = query_number(request, "limit", int)
            limit = DEFAULT_JOBS_LIMIT if limit is None else limit
            if not 1 <= limit <= MAX_JOBS_LIMIT:
                raise out_of_range("limit", f"must be between 1 and {MAX_JOBS_LIMIT}")
            offset = query_number(request, "offset", int) or 0
            if not 0 <= offset <= MAX_JOBS_OFFSET:
                raise out_of_range("offset", f"must be between 0 and {MAX_JOBS_OFFSET}")
            active_within = query_number(request, "active_within", float)
            if active_within is not None and not 0 < active_within <= MAX_ACTIVE_WITHIN:  # NaN fails too
                raise out_of_range(
                    "active_within", f"must be a number of seconds > 0 and <= {MAX_ACTIVE_WITHIN:g}"
                )
            views: list[JobView] = await self._read(
                lambda: self.reader.jobs(
                    status=status, kind=kind, active_within=active_within, limit=limit, offset=offset
                )
            )
        except Refusal as refusal:
            return refusal.response
        return Response(
            _json_bytes([view.model_dump(mode="json") for view in views]), media_type="application/json"
        )

    async def job(self, request: Request) -> Response:
        job_id: str = request.path_params["job_id"]
        try:
            try:
                check_id("job_id", job_id)  # e.g. a NUL, which Postgres would refuse as a parameter
            except InvalidProgressError as exc:
                raise invalid("path", "job_id", str(exc)) from None
            view: JobView | None = await self._read(lambda: self.reader.job(job_id))
        except Refusal as refusal:
            return refusal.response
        if view is None:
            return problem(404, f"no job {job_id[:MAX_ID_LENGTH]!r}")
        return Response(_json_bytes(view.model_dump(mode="json")), media_type="application/json")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def metrics_text(self, request: Request) -> Response:
        return await metrics_response(self.metrics)

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")


METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus version scrapes (newer clients label the same text 1.0.0)."""
READY_TIMEOUT: Final = 5.0
"""Seconds the store has to answer a readiness probe."""
READY_CACHE: Final = 1.0
"""Seconds a readiness answer is reused."""


class Readiness:
    """``GET /readyz``: 200 when the store answers a query within :data:`READY_TIMEOUT`, else 503.

    The route needs no token (probes carry none), so its answer is reused for :data:`READY_CACHE`
    seconds and concurrent probes share one query: a flood of anonymous probes costs the store at most
    one query a second.
    """

    def __init__(self, reader: object, clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self._clock = clock
        self._checked: tuple[float, bool] | None = None
        self._lock = anyio.Lock()

    def _probe(self) -> None:
        probe = getattr(self.reader, "ping", None) or getattr(self.reader, "counts", None)
        if probe is not None:
            probe()
        else:
            self.reader.jobs(limit=1)  # type: ignore[attr-defined]

    async def _ready(self) -> bool:
        async with self._lock:
            if self._checked is not None and self._clock() - self._checked[0] < READY_CACHE:
                return self._checked[1]
            try:
                with anyio.fail_after(READY_TIMEOUT):
                    await anyio.to_thread.run_sync(self._probe, abandon_on_cancel=True)
                ok = True
            except Exception as exc:
                logger.warning("readiness: the store did not answer: %s: %s", type(exc).__name__, exc)
                ok = False
            self._checked = (self._clock(), ok)
            return ok

    async def respond(self, request: Request) -> Response:
        if await self._ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "detail": "the progress store does not answer"}, 503)


async def metrics_response(metrics: CollectorMetrics) -> Response:
    """The Prometheus text exposition (``GET /metrics``); the store is read on a worker thread."""
    body = await run_in_threadpool(metrics.exposition)
    return Response(body, media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})
