"""Bearer-token auth for the ``/v1/`` routes, and keeping credentials out of the access log.

The token is compared as bytes, through fixed-size digests, in constant time. A credential in the query
string is refused even beside a good header (it would land in proxy and access logs), by name
(:data:`CREDENTIAL_QUERY_NAMES`) and by value; the access log shows query values only for the read
routes' own filters (:data:`LOGGED_QUERY_NAMES`).

Importing this module loads no extra: ``runner`` takes its names from here before it checks for uvicorn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CREDENTIAL_QUERY_NAMES",
    "LOGGED_QUERY_NAMES",
    "BearerAuth",
    "ReadAuth",
    "RedactQueryCredentials",
    "is_read_path",
]

logger = logging.getLogger("jobprogress.server")

CREDENTIAL_QUERY_NAMES: Final = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "auth", "bearer"}
)
"""Query parameters that look like credentials: refused by the collector and redacted from its logs."""

LOGGED_QUERY_NAMES: Final = frozenset(
    {"status", "kind", "limit", "offset", "active_within", "state", "page", "partial"}
)
"""The read routes' own parameters: the only query values the access log shows."""

_REALM: Final = b'Bearer realm="jobprogress"'
_BASIC_REALM: Final = b'Basic realm="jobprogress (read)", charset="UTF-8"'


def _digest(token: bytes) -> bytes:
    # Comparing fixed-size digests keeps the comparison constant-time in the token's length too.
    return hashlib.sha256(token).digest()


class BearerAuth:
    """Requires ``Authorization: Bearer <token>`` on every ``/v1/`` route; compares bytes in constant time.

    A ``read_token`` is accepted as well on the read routes (``GET /v1/jobs…``), never on a write route.
    """

    def __init__(
        self, app: ASGIApp, token: str, max_body: int, body_timeout: float, read_token: str | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._expected = _digest(token.encode("utf-8"))
        self._read_expected = None if read_token is None else _digest(read_token.encode("utf-8"))
        self._token = token.encode("utf-8")
        from jobprogress.server._problems import refuse  # needs Starlette: not at import (see the docstring)

        self._refuse = refuse

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
        await self._refuse(
            scope,
            receive,
            send,
            401,
            detail,
            [(b"www-authenticate", header)],
            max_body=self.max_body,
            body_timeout=self.body_timeout,
        )

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
        given = _digest(credentials.strip())
        if hmac.compare_digest(given, self._expected):
            return None
        reading = scope.get("method") in ("GET", "HEAD") and (
            scope["path"] == "/v1/jobs" or scope["path"].startswith("/v1/jobs/")
        )
        if reading and self._read_expected is not None and hmac.compare_digest(given, self._read_expected):
            return None
        return "invalid bearer token", _REALM + b', error="invalid_token"'


def is_read_path(path: str) -> bool:
    """The routes :class:`ReadAuth` guards: the HTML Jobs view and ``/metrics``."""
    return path == "/jobs" or path.startswith("/jobs/") or path == "/metrics"


class ReadAuth:
    """Guards the Jobs pages and ``/metrics``: a token (the bearer token or the read token), or open.

    A token comes as ``Authorization: Bearer <token>`` (curl, Prometheus), or as the password of HTTP
    Basic auth with any user name (a browser asks for it once and sends it with every request,
    the page's own refresh included), never in the query string. ``open_access`` (``--open``)
    lets everyone read; it must be asked for explicitly.
    """

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], open_access: bool = False) -> None:
        self.app = app
        self.open_access = open_access
        self._expected = tuple(_digest(token.encode("utf-8")) for token in tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.open_access or not is_read_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        detail = self._problem(scope)
        if detail is None:
            await self.app(scope, receive, send)
            return
        logger.info("refused %s %s: %s", scope.get("method", "?"), scope["path"], detail)
        html = scope["path"] != "/metrics"
        challenge = _BASIC_REALM if html else _REALM
        body = (
            f"401 Unauthorized: {detail}. Sign in with any user name and the collector's token "
            "(or its read token) as the password.\n"
            if html
            else f"401 Unauthorized: {detail}; send 'Authorization: Bearer <token>'\n"
        ).encode("ascii")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"www-authenticate", challenge),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _problem(self, scope: Scope) -> str | None:
        query: bytes = scope.get("query_string", b"")
        if query:
            names = {
                name.strip().lower() for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            }
            if names & CREDENTIAL_QUERY_NAMES:
                return "credentials in the query string are refused"
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if not values:
            return "no credentials"
        if len(values) > 1:
            return "more than one Authorization header"
        scheme, _, credentials = values[0].strip().partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except ValueError:
                return "malformed Basic credentials"
            credentials = decoded.partition(b":")[2]
        elif scheme.lower() != b"bearer":
            return "the Authorization header must be 'Bearer <token>' or Basic"
        given = _digest(credentials)
        # Every comparison runs, so the time taken does not say which token came close.
        matched = [hmac.compare_digest(given, expected) for expected in self._expected]
        return None if any(matched) else "invalid token"


def _redact_path(path: str) -> str:
    """A request target whose query values are replaced by ``***``, but for the read routes' own filters.

    A credential may come under any name (``?password=``, ``?authorization=``); only values of the
    parameters the collector defines are known to be harmless.
    """
    if "?" not in path:
        return path
    route, _, query = path.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return route + "?<redacted>"
    if all(name.strip().lower() in LOGGED_QUERY_NAMES for name, _ in pairs):
        return path
    clean = [(name, value if name.strip().lower() in LOGGED_QUERY_NAMES else "***") for name, value in pairs]
    return route + "?" + urlencode(clean, safe="*")


class RedactQueryCredentials(logging.Filter):
    """Keeps tokens sent in a query string (refused, but still logged by uvicorn) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _redact_path(args[2]), *args[3:])
        return True
