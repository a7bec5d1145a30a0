"""Problem responses: every refusal the collector answers, as JSON that names the bad field.

Bad input of any kind is answered with a 4xx here, before it reaches the store; only real faults end
in :func:`server_fault` (500). A route raises :class:`Refusal` carrying its response; the middleware,
which answer before a route runs, use :func:`refuse` on the raw ASGI connection.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobprogress._states import MAX_ID_LENGTH
from jobprogress._validate import check_text
from jobprogress.errors import InvalidProgressError
from jobprogress.server._body import drain_asgi

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = [
    "Refusal",
    "check_json",
    "check_query_text",
    "http_exception",
    "invalid",
    "out_of_range",
    "problem",
    "query_number",
    "refuse",
    "server_fault",
    "validate",
]

logger = logging.getLogger("jobprogress.server")

_MAX_ERRORS: Final = 20


class Refusal(Exception):
    """Raised by a route's helpers with the response to answer instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def problem(status: int, detail: str, *, close: bool = False, **extra: Any) -> Response:
    """An error response; ASCII-escaped JSON, so no text quoted from a request can break its encoding.

    ``close`` for a refusal whose request body was not read to its end: the connection cannot be reused.
    """
    headers = {"Connection": "close"} if close else None
    body = json.dumps({"detail": detail, **extra}, separators=(",", ":"), ensure_ascii=True)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def invalid(
    location: str, name: str, detail: str, *, message: str | None = None, kind: str = "value_error"
) -> Refusal:
    """A 422 for one bad request parameter; ``location`` is ``"query"`` or ``"path"``."""
    error = {"loc": [location, name], "msg": detail if message is None else message, "type": kind}
    return Refusal(problem(422, detail, errors=[error]))


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    max_body: int,
    body_timeout: float,
) -> None:
    """Answer ``status`` before any route runs: read a small refused body first, then send the problem."""
    drained = await drain_asgi(scope, receive, max_body, body_timeout)
    body = json.dumps({"detail": detail}, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    extra = [] if drained else [(b"connection", b"close")]
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


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a JSON number")  # 1e999 would read as Infinity
    return number


def _finite_integer(text: str) -> int:
    number = int(text)
    try:
        float(number)
    except OverflowError:
        raise ValueError(f"{text[:20]}... ({len(text)} digits) is out of range for a JSON number") from None
    return number


def check_json(body: bytes) -> None:
    """I-JSON (RFC 7493): no ``NaN``/``Infinity`` literals, no number that overflows a double.

    Raises:
        Refusal: 400 naming what is wrong.
    """
    try:
        json.loads(body, parse_constant=_not_json, parse_float=_finite, parse_int=_finite_integer)
    except (ValueError, RecursionError) as exc:
        raise Refusal(problem(400, f"request body is not valid JSON: {exc}")) from None


def validate(adapter: TypeAdapter[Any], body: bytes, what: str) -> Any:
    """Validate ``body`` as JSON; raise a response-carrying error naming each bad field."""
    check_json(body)
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = _error_list(exc)
        if any(item["type"] == "json_invalid" for item in errors):
            raise Refusal(problem(400, f"request body is not valid JSON: {errors[0]['msg']}")) from None
        raise Refusal(problem(422, f"invalid {what}: {_describe(errors)}", errors=errors)) from None


def query_number(request: Request, name: str, parse: Callable[[str], Any]) -> Any:
    """The query parameter ``name`` parsed with ``parse`` (``int`` or ``float``), or None when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError:
        detail = f"query parameter {name!r} is not a valid number"
        raise invalid("query", name, detail, message="not a valid number", kind="parsing") from None


def check_query_text(name: str, value: str, max_length: int = MAX_ID_LENGTH) -> None:
    """Refuse a query value no database can take as a parameter (a NUL, a lone surrogate, too long)."""
    try:
        check_text(f"query parameter {name!r}", value, max_length)
    except InvalidProgressError as exc:
        raise invalid("query", name, str(exc)) from None


def out_of_range(name: str, message: str) -> Refusal:
    """A 422 for the query parameter ``name``; ``message`` says what it must be."""
    return invalid("query", name, f"query parameter {name!r} {message}", message=message)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404, 405) as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:  # pragma: no cover - starlette raises only 4xx HTTPExceptions itself
        logger.error("server error on %s %s: %s", request.method, request.url.path, exc.detail)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def server_fault(request: Request, exc: Exception) -> Response:
    """A 500 for an unexpected error, logged with its traceback."""
    # Only real faults end here: every kind of bad input is answered with a 4xx before.
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)
