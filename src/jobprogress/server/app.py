"""The collector's ASGI application (Starlette): validation, auth, limits, and writes through the store.

Layers, outermost first: an in-flight limiter that answers 503 with ``Retry-After`` when too many
requests are being served; bearer-token auth on every ``/v1/`` route (constant time, on bytes); then the
routes, which read bodies as they stream under a byte bound and validate them with the wire models.
Writes go to one writer task that merges concurrent requests into one transaction on a worker thread
(see ``_coalesce``), so the event loop never blocks on the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol
from urllib.parse import parse_qsl, unquote_to_bytes

import anyio
from pydantic import Field, TypeAdapter, ValidationError

from jobprogress._states import MAX_ID_LENGTH, MAX_KIND_LENGTH
from jobprogress._validate import check_id, check_text
from jobprogress._version import __version__
from jobprogress.envelope import Heartbeat, Message, ProgressUpdate
from jobprogress.errors import ConfigurationError, InvalidProgressError, MissingExtraError
from jobprogress.server._body import BodyError, content_encoding, declared_length, read_bounded
from jobprogress.server._coalesce import WriteCoalescer
from jobprogress.server.openapi import JOB_FILTERS, openapi_document
from jobprogress.server.runner import CREDENTIAL_QUERY_NAMES

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        "the collector (jobprogress serve)", "server", (exc.name or "starlette").split(".")[0]
    ) from exc

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from jobprogress.store.query import ProgressStore
    from jobprogress.store.views import JobView

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

DEFAULT_MAX_BODY: Final = 65536
DEFAULT_MAX_BATCH: Final = 1000
DEFAULT_MAX_IN_FLIGHT: Final = 64
DEFAULT_BODY_TIMEOUT: Final = 10.0
DEFAULT_JOBS_LIMIT: Final = 500
MAX_JOBS_LIMIT: Final = 10000
MAX_JOBS_OFFSET: Final = 2**31 - 1
"""Far beyond any real page; keeps the value inside every database's integer range."""
MAX_ACTIVE_WITHIN: Final = 1e9
"""Seconds (about 31 years): beyond it a window means "all", and datetime arithmetic would overflow."""
BUSY_RETRY_AFTER: Final = 1
"""Seconds a client is asked to wait when too many requests are in flight."""
DB_RETRY_AFTER: Final = 2
"""Seconds a client is asked to wait when the database failed."""

_REALM: Final = b'Bearer realm="jobprogress"'
_MAX_ERRORS: Final = 20


class MessageWriter(Protocol):
    """What the collector writes through (``jobprogress.store.StoreWriter``)."""

    def write(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None: ...

    def close(self) -> None: ...


class JobReader(Protocol):
    """What the collector reads through (``jobprogress.store.ProgressStore``)."""

    def jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        active_within: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobView]: ...

    def job(self, job_id: str) -> JobView | None: ...

    def close(self) -> None: ...


_HEARTBEAT: Final = TypeAdapter(Heartbeat)
_PROGRESS: Final = TypeAdapter(ProgressUpdate)


def _missing_sqlite_file(db_url: str) -> bool:
    """Whether ``db_url`` names a SQLite file that does not exist yet (the collector creates it on write)."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return False
    if database.startswith("file:"):
        database = database[5:].split("?", 1)[0]
    return not os.path.exists(database)


class _StoreReader:
    """A ``ProgressStore`` opened on first use.

    Before the first write a SQLite file may not exist, and ``ProgressStore`` (rightly, for reading
    commands) refuses to create one; until then the collector serves an empty Jobs view.
    """

    def __init__(self, db_url: str, *, stall_after: float, table_prefix: str) -> None:
        self.db_url = db_url
        self.stall_after = stall_after
        self.table_prefix = table_prefix
        self._store: ProgressStore | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> ProgressStore | None:
        with self._lock:
            if self._store is None and not self._closed and not _missing_sqlite_file(self.db_url):
                from jobprogress.store import ProgressStore

                self._store = ProgressStore(
                    self.db_url, stall_after=self.stall_after, table_prefix=self.table_prefix
                )
            return self._store

    def jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        active_within: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobView]:
        store = self._open()
        if store is None:
            return []
        return store.jobs(status=status, kind=kind, active_within=active_within, limit=limit, offset=offset)

    def job(self, job_id: str) -> JobView | None:
        store = self._open()
        return None if store is None else store.job(job_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()


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
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


async def _send_json(
    send: Send, status: int, payload: object, headers: Sequence[tuple[bytes, bytes]] = (), *, close: bool
) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    extra = [(b"connection", b"close")] if close else []
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *extra,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _drain_asgi(scope: Scope, receive: Receive, budget: int, timeout: float) -> bool:
    """Read and drop a request body we refuse, up to ``budget`` bytes; True when it ended within that.

    Answering before the body is read and then closing makes the kernel reset the connection, and the
    client may lose the answer with it; reading a small body first lets the answer arrive, and keeps
    the connection usable.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > budget:
            return False
    with anyio.move_on_after(timeout):  # nor may a trickling body hold the connection
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            budget -= len(message.get("body", b""))
            if budget < 0:
                return False
            if not message.get("more_body", False):
                return True
    return False


async def _drain(chunks: AsyncIterator[bytes], budget: int, timeout: float) -> bool:
    """:func:`_drain_asgi` for a body already being read through ``request.stream()``."""
    with anyio.move_on_after(timeout):
        try:
            async for chunk in chunks:
                budget -= len(chunk)
                if budget < 0:
                    return False
        except ClientDisconnect:
            return False
        return True
    return False


@dataclasses.dataclass
class CollectorCounters:
    """What a collector has done since it started (``app.state.collector.counters``)."""

    accepted: int = 0
    """Messages written to the store."""
    refused_busy: int = 0
    """Requests answered 503 because too many were in flight."""
    store_failures: int = 0
    """Requests answered 503 because the store failed."""


class _InFlightLimit:
    """Answers 503 with Retry-After once ``limit`` requests are being served (``/healthz`` exempt).

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
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.counters.refused_busy += 1
            drained = await _drain_asgi(scope, receive, self.max_body, self.body_timeout)
            await _send_json(
                send,
                503,
                {"detail": f"too many requests in flight (limit {self.limit}); retry later"},
                [(b"retry-after", str(BUSY_RETRY_AFTER).encode("ascii"))],
                close=not drained,
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _digest(token: bytes) -> bytes:
    # Comparing fixed-size digests keeps the comparison constant-time in the token's length too.
    return hashlib.sha256(token).digest()


class _BearerAuth:
    """Requires ``Authorization: Bearer <token>`` on every ``/v1/`` route; compares bytes in constant time."""

    def __init__(self, app: ASGIApp, token: str, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._expected = _digest(token.encode("utf-8"))
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        detail, header = problem
        # Never echo the header or query values: they may be the token, or close to it.
        logger.info("refused %s %s: %s", scope.get("method", "?"), scope["path"], detail)
        drained = await _drain_asgi(scope, receive, self.max_body, self.body_timeout)
        await _send_json(send, 401, {"detail": detail}, [(b"www-authenticate", header)], close=not drained)

    def _problem(self, scope: Scope) -> tuple[str, bytes] | None:
        query: bytes = scope.get("query_string", b"")
        if query:
            names = {
                name.strip().lower() for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            }
            # By name, and by value: the token under any other parameter name is refused too.
            if names & CREDENTIAL_QUERY_NAMES or self._token in unquote_to_bytes(query.replace(b"+", b" ")):
                return (
                    "credentials in the query string are refused; send 'Authorization: Bearer <token>'",
                    _REALM + b', error="invalid_request"',
                )
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if not values:
            return "missing 'Authorization: Bearer <token>' header", _REALM
        if len(values) > 1:
            return "more than one Authorization header", _REALM + b', error="invalid_request"'
        scheme, _, credentials = values[0].strip().partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            return "the Authorization header must be 'Bearer <token>'", _REALM + b', error="invalid_request"'
        if not hmac.compare_digest(_digest(credentials.strip()), self._expected):
            return "invalid bearer token", _REALM + b', error="invalid_token"'
        return None


def _error_list(error: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for item in error.errors(include_url=False, include_input=False, include_context=False)[:_MAX_ERRORS]:
        errors.append({"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]})
    return errors


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = len(errors) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _problem(status: int, detail: str, *, close: bool = False, **extra: Any) -> Response:
    """An error response; ASCII-escaped JSON, so no text quoted from a request can break its encoding.

    ``close`` for a refusal whose request body was not read to its end: the connection cannot be reused.
    """
    headers = {"Connection": "close"} if close else None
    body = json.dumps({"detail": detail, **extra}, separators=(",", ":"), ensure_ascii=True)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _validate(adapter: TypeAdapter[Any], body: bytes, what: str) -> Any:
    """Validate ``body`` as JSON; raise a response-carrying error naming each bad field."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = _error_list(exc)
        if any(item["type"] == "json_invalid" for item in errors):
            raise _Refusal(_problem(400, f"request body is not valid JSON: {errors[0]['msg']}")) from None
        raise _Refusal(_problem(422, f"invalid {what}: {_describe(errors)}", errors=errors)) from None


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _query_number(request: Request, name: str, parse: Callable[[str], Any]) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise _Refusal(
            _problem(
                422,
                f"query parameter {name!r} is not a valid number",
                errors=[{"loc": ["query", name], "msg": "not a valid number", "type": "parsing"}],
            )
        ) from None


def _check_query_text(name: str, value: str, max_length: int = MAX_ID_LENGTH) -> None:
    try:
        check_text(f"query parameter {name!r}", value, max_length)
    except InvalidProgressError as exc:
        raise _Refusal(
            _problem(422, str(exc), errors=[{"loc": ["query", name], "msg": str(exc), "type": "value_error"}])
        ) from None


def _out_of_range(name: str, message: str) -> _Refusal:
    return _Refusal(
        _problem(
            422,
            f"query parameter {name!r} {message}",
            errors=[{"loc": ["query", name], "msg": message, "type": "value_error"}],
        )
    )


class _Collector:
    """The route handlers and the state they share."""

    def __init__(
        self,
        writer: MessageWriter,
        reader: JobReader,
        *,
        max_body: int,
        max_batch: int,
        body_timeout: float,
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
        self.coalescer = WriteCoalescer(writer.write)

    async def _body(self, request: Request) -> bytes:
        try:
            length = declared_length(request.headers.getlist("content-length"))
        except BodyError as exc:
            raise _Refusal(_problem(exc.status_code, exc.detail, close=True)) from None
        if length is not None and length > self.max_body:
            detail = f"request body is {length} bytes, over the limit of {self.max_body} bytes"
            raise _Refusal(_problem(413, detail, close=True))
        chunks = request.stream()
        try:
            encoding = content_encoding(request.headers.getlist("content-encoding"))
            # A client trickling its body would hold an in-flight slot for as long as it likes.
            with anyio.fail_after(self.body_timeout):
                return await read_bounded(chunks, limit=self.max_body, encoding=encoding)
        except TimeoutError:
            detail = f"the request body did not arrive within {self.body_timeout:g} s"
            raise _Refusal(_problem(408, detail, close=True)) from None
        except BodyError as exc:
            # Read what is left (bounded), so the refusal reaches the client and the connection lives on.
            # (A gzip bomb is refused for what it inflates to; its compressed rest is still small.)
            drained = exc.within_limit and await _drain(chunks, self.max_body, self.body_timeout)
            raise _Refusal(_problem(exc.status_code, exc.detail, close=not drained)) from None
        except ClientDisconnect:
            raise _Refusal(_problem(400, "client disconnected before the body ended", close=True)) from None

    async def _write(self, messages: list[Heartbeat | ProgressUpdate]) -> Response:
        if messages:
            try:
                await self.coalescer.write(messages)
            except Exception as exc:
                # The store retries nothing itself: ask the worker to, after a pause.
                self.counters.store_failures += 1
                self.log_once(
                    f"write:{type(exc).__name__}",
                    "writing %d message(s) to the store failed, answering 503: %s: %s",
                    len(messages),
                    type(exc).__name__,
                    exc,
                )
                return JSONResponse(
                    {"detail": "the progress store is unavailable; retry later"},
                    status_code=503,
                    headers={"Retry-After": str(DB_RETRY_AFTER)},
                )
        self.counters.accepted += len(messages)
        return JSONResponse({"accepted": len(messages)})

    async def heartbeat(self, request: Request) -> Response:
        try:
            message = _validate(_HEARTBEAT, await self._body(request), "heartbeat")
        except _Refusal as refusal:
            return refusal.response
        return await self._write([message])

    async def progress(self, request: Request) -> Response:
        try:
            message = _validate(_PROGRESS, await self._body(request), "progress update")
        except _Refusal as refusal:
            return refusal.response
        return await self._write([message])

    async def batch(self, request: Request) -> Response:
        try:
            messages = _validate(self.batch_adapter, await self._body(request), "batch")
        except _Refusal as refusal:
            return refusal.response
        return await self._write(messages)

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
            raise _Refusal(
                JSONResponse(
                    {"detail": "the progress store is unavailable; retry later"},
                    status_code=503,
                    headers={"Retry-After": str(DB_RETRY_AFTER)},
                )
            ) from None

    async def jobs(self, request: Request) -> Response:
        try:
            status = request.query_params.get("status")
            if status is not None and status not in JOB_FILTERS:
                raise _out_of_range("status", f"must be one of {', '.join(JOB_FILTERS)}")
            kind = request.query_params.get("kind")
            if kind is not None:
                _check_query_text("kind", kind, MAX_KIND_LENGTH)
            limit = _query_number(request, "limit", int)
            limit = DEFAULT_JOBS_LIMIT if limit is None else limit
            if not 1 <= limit <= MAX_JOBS_LIMIT:
                raise _out_of_range("limit", f"must be between 1 and {MAX_JOBS_LIMIT}")
            offset = _query_number(request, "offset", int) or 0
            if not 0 <= offset <= MAX_JOBS_OFFSET:
                raise _out_of_range("offset", f"must be between 0 and {MAX_JOBS_OFFSET}")
            active_within = _query_number(request, "active_within", float)
            if active_within is not None and not 0 < active_within <= MAX_ACTIVE_WITHIN:  # NaN fails too
                raise _out_of_range(
                    "active_within", f"must be a number of seconds > 0 and <= {MAX_ACTIVE_WITHIN:g}"
                )
            views: list[JobView] = await self._read(
                lambda: self.reader.jobs(
                    status=status, kind=kind, active_within=active_within, limit=limit, offset=offset
                )
            )
        except _Refusal as refusal:
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
                raise _Refusal(
                    _problem(
                        422,
                        str(exc),
                        errors=[{"loc": ["path", "job_id"], "msg": str(exc), "type": "value_error"}],
                    )
                ) from None
            view: JobView | None = await self._read(lambda: self.reader.job(job_id))
        except _Refusal as refusal:
            return refusal.response
        if view is None:
            return _problem(404, f"no job {job_id[:MAX_ID_LENGTH]!r}")
        return Response(_json_bytes(view.model_dump(mode="json")), media_type="application/json")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:  # pragma: no cover - starlette raises only 4xx HTTPExceptions itself
        logger.error("server error on %s %s: %s", request.method, request.url.path, exc.detail)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_fault(request: Request, exc: Exception) -> Response:
    # Only real faults end here: every kind of bad input is answered with a 4xx before.
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


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
        reader = _StoreReader(db_url, stall_after=stall_after, table_prefix=table_prefix)
    collector = _Collector(writer, reader, max_body=max_body, max_batch=max_batch, body_timeout=body_timeout)

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
        exception_handlers={HTTPException: _http_exception, Exception: _server_fault},
        lifespan=lifespan,
    )
    app.add_middleware(_BearerAuth, token=token.strip(), max_body=max_body, body_timeout=body_timeout)
    app.add_middleware(
        _InFlightLimit,
        limit=max_in_flight,
        counters=collector.counters,
        max_body=max_body,
        body_timeout=body_timeout,
    )
    app.state.collector = collector
    return app
