"""``http://`` and ``https://``: post messages to a collector (``jobprogress serve``) with httpx.

One attempt per :meth:`HttpSink.send`: the reporter owns retries, backoff and the latest-wins
mailboxes, so this sink only turns the outcome of each request into a :class:`SinkError` that says
whether and when to try again. URL form::

    http(s)://HOST:PORT[/BASE]?timeout=10&connect_timeout=5&token_env=JOBPROGRESS_HTTP_TOKEN&verify=true
                               &compress=gzip

``verify`` is ``true`` (default), ``false``, or the path of a CA bundle. The bearer token comes from the
environment variable named by ``token_env`` (default ``JOBPROGRESS_HTTP_TOKEN``), read when the sink is
created; it never appears in a log line, an error message or a ``repr``.
"""

from __future__ import annotations

import email.utils
import gzip
import math
import os
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

from jobprogress._states import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from jobprogress._version import __version__
from jobprogress.envelope import dump_message
from jobprogress.errors import ConfigurationError, MissingExtraError, SinkError
from jobprogress.hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    import httpx

    from jobprogress.envelope import Heartbeat, ProgressUpdate

__all__ = [
    "DEFAULT_TOKEN_ENV",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "HttpSink",
    "jobprogress_register_sinks",
    "parse_retry_after",
]

DEFAULT_TOKEN_ENV: Final = "JOBPROGRESS_HTTP_TOKEN"
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
MAX_TIMEOUT: Final = 60.0
RETRY_AFTER_429_DEFAULT: Final = 60.0
"""Seconds to wait after a 429 that did not say how long (RELIABILITY "Numbers to hold")."""

_PARAMS: Final = ("timeout", "connect_timeout", "token_env", "verify", "compress")
_RETRYABLE_4XX: Final = frozenset({408, 429})
_SNIPPET: Final = 200


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Args:
        value: The header value, or None when absent.
        now: POSIX time to measure an HTTP-date against (default: the current time).

    Returns:
        Non-negative seconds, or None when the header is absent or malformed (the caller then falls
        back to its own backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64 or not text.isascii():
        return None  # float() would also read non-ASCII digits
    if text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # RFC 9110 only allows integers, but "1.5" is an unambiguous intent; refuse nan/inf/negative.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" in RFC 2822 means "UTC, origin unknown"
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError("the http:// sink", "http", "httpx") from exc
    return httpx


def _parse_float(url_for_errors: str, name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} in {url_for_errors!r} is not a number") from None
    if not (math.isfinite(value) and low < value <= high):
        raise ConfigurationError(f"{name}={raw!r} in {url_for_errors!r} must be > {low:g} and <= {high:g}")
    return value


class HttpSink:
    """Posts batches of messages to ``{base}/v1/batch`` of a jobprogress collector.

    One ``httpx.Client`` per process (rebuilt after ``fork``), bounded timeouts, TLS verification on
    by default. Thread-safe, though the reporter calls it from one thread.

    Args:
        url: ``http://`` or ``https://`` base URL of the collector, with optional query parameters
            ``timeout`` (seconds any one network step may take - sending the body, waiting for the
            reply - and the deadline for reading the reply's body; default 10), ``connect_timeout``
            (default 5),
            ``token_env`` (environment variable holding the bearer token, default
            ``JOBPROGRESS_HTTP_TOKEN``), ``verify`` (``true``, ``false`` or a CA bundle path) and
            ``compress`` (``none`` or ``gzip``: bodies gzip-compressed, for slow links).

    Raises:
        ConfigurationError: a malformed URL, credentials in the URL or an unknown parameter.
        MissingExtraError: httpx is not installed.
    """

    def __init__(self, url: str) -> None:
        self._httpx = _import_httpx()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"HttpSink serves http:// and https:// URLs, not {parts.scheme!r}")
        if parts.username is not None or parts.password is not None:
            # Do not echo the URL: the user part may be the secret itself.
            raise ConfigurationError(
                "credentials in an http(s):// sink URL are not supported; put the bearer token in "
                f"the {DEFAULT_TOKEN_ENV} environment variable"
            )
        if not parts.hostname:
            raise ConfigurationError(f"sink URL {url!r} has no host; expected e.g. http://127.0.0.1:8787")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigurationError(f"sink URL {url!r} has an invalid port") from None
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - set(_PARAMS)
        if unknown:
            raise ConfigurationError(
                f"unknown parameter(s) {sorted(unknown)} in http sink URL {url!r}; "
                f"valid: {', '.join(_PARAMS)}"
            )

        def param(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.url = url
        self.base_url = base
        self.endpoint = base + "/v1/batch"
        raw_timeout = param("timeout")
        self.timeout = (
            DEFAULT_TIMEOUT
            if raw_timeout is None
            else _parse_float(url, "timeout", raw_timeout, 0.0, MAX_TIMEOUT)
        )
        raw_connect = param("connect_timeout")
        connect = (
            DEFAULT_CONNECT_TIMEOUT
            if raw_connect is None
            else _parse_float(url, "connect_timeout", raw_connect, 0.0, MAX_TIMEOUT)
        )
        self.connect_timeout = min(connect, self.timeout)
        self.token_env = param("token_env") or DEFAULT_TOKEN_ENV
        token = os.environ.get(self.token_env, "").strip()
        if token and not token.isascii():
            raise ConfigurationError(f"the token in ${self.token_env} holds non-ASCII characters")
        if any(ch in token for ch in "\r\n\x00"):
            raise ConfigurationError(f"the token in ${self.token_env} holds a line break or NUL")
        self.__token = token
        compress = (param("compress") or "none").lower()
        if compress not in ("none", "gzip"):
            raise ConfigurationError(f"compress={compress!r} in {url!r}; valid: none, gzip")
        self.compress = compress == "gzip"
        verify = param("verify")
        self.verify: bool | str
        if verify is None or verify.lower() in ("1", "true", "yes", "on"):
            self.verify = True
        elif verify.lower() in ("0", "false", "no", "off"):
            self.verify = False
        else:
            if not os.path.exists(verify):
                raise ConfigurationError(f"verify={verify!r} in {url!r}: no such CA bundle file")
            self.verify = verify
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_pid = 0
        self._closed = False

    def __repr__(self) -> str:
        auth = f"token from ${self.token_env}" if self.__token else "no token"
        return f"HttpSink({self.base_url!r}, {auth})"

    @property
    def has_token(self) -> bool:
        """Whether a bearer token was found in the environment when the sink was created."""
        return bool(self.__token)

    def _client_for_this_process(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise SinkError("the http sink is closed", retryable=False)
            pid = os.getpid()
            if self._client is not None and self._client_pid != pid:
                # Forked: the pooled sockets are shared with the parent; never reuse them here. Closing
                # a plain or TLS socket without a shutdown handshake leaves the parent's copy intact.
                stale, self._client = self._client, None
                try:
                    stale.close()
                except Exception:
                    pass
            if self._client is None:
                httpx = self._httpx
                headers = {
                    "User-Agent": f"jobprogress/{__version__}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                }
                if self.__token:
                    headers["Authorization"] = f"Bearer {self.__token}"
                self._client = httpx.Client(
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                    verify=self._ssl_context(),
                    follow_redirects=False,
                    trust_env=False,  # a proxy from the environment would see the bearer token
                    # Idle connections are dropped before the collector's keep-alive timeout (15 s in
                    # serve(), uvicorn's default 5 s), so a send never races the server closing one.
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=4.0),
                )
                self._client_pid = pid
            return self._client

    def _ssl_context(self) -> bool | ssl.SSLContext:
        if isinstance(self.verify, bool):
            return self.verify
        if os.path.isdir(self.verify):
            return ssl.create_default_context(capath=self.verify)
        return ssl.create_default_context(cafile=self.verify)

    def _bodies(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> Iterator[tuple[bytes, int]]:
        """JSON array bodies of at most MAX_BATCH_MESSAGES and MAX_BATCH_BYTES, with their sizes."""
        parts: list[bytes] = []
        size = 2  # "[" and "]"
        for message in messages:
            encoded = dump_message(message).encode("utf-8")
            if 2 + len(encoded) > MAX_BATCH_BYTES:
                raise SinkError(
                    f"a {message.type} message of job {message.job_id!r} is {len(encoded)} bytes as JSON, "
                    f"over the collector's {MAX_BATCH_BYTES}-byte body limit",
                    retryable=False,
                )
            extra = len(encoded) + (1 if parts else 0)
            if parts and (len(parts) >= MAX_BATCH_MESSAGES or size + extra > MAX_BATCH_BYTES):
                yield b"[" + b",".join(parts) + b"]", len(parts)
                parts, size, extra = [], 2, len(encoded)
            parts.append(encoded)
            size += extra
        if parts:
            yield b"[" + b",".join(parts) + b"]", len(parts)

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """POST ``messages`` to ``/v1/batch``, split into bodies under the collector's limits.

        Raises:
            SinkError: the collector refused a request or could not be reached. ``retryable`` is
                False for 4xx answers other than 408 and 429; ``retry_after`` holds the seconds the
                collector asked for (60 after a 429 that named none).
        """
        if not messages:
            return
        client = self._client_for_this_process()
        for body, count in self._bodies(messages):
            self._post(client, body, count)

    def _post(self, client: httpx.Client, body: bytes, count: int) -> None:
        httpx = self._httpx
        headers = None
        if self.compress:
            # The collector's body limit holds after inflation too, so batches are sized on the JSON.
            body = gzip.compress(body, compresslevel=5)
            headers = {"Content-Encoding": "gzip"}
        deadline = time.monotonic() + self.timeout
        try:
            with client.stream("POST", self.endpoint, content=body, headers=headers) as response:
                status = response.status_code
                if 200 <= status < 300:
                    self._drain(response, deadline)  # a fully read response keeps the connection alive
                    return
                retry_after_header = response.headers.get("Retry-After")
                snippet = self._read_snippet(response, deadline)
        except httpx.TimeoutException as exc:
            raise SinkError(
                f"POST {self.endpoint} timed out after {self.timeout:g} s ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise SinkError(
                f"POST {self.endpoint} failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        retry_after = parse_retry_after(retry_after_header)
        what = f"POST {self.endpoint} ({count} messages) answered {status}"
        if snippet:
            what += f": {snippet}"
        if status == 429 and retry_after_header is None:
            # Rate limited without a stated pause: wait long (a malformed header instead falls back to
            # the reporter's backoff, like any unparsable hint).
            raise SinkError(what, retryable=True, retry_after=RETRY_AFTER_429_DEFAULT)
        if status in _RETRYABLE_4XX or status >= 500:
            raise SinkError(what, retryable=True, retry_after=retry_after)
        # 3xx (redirects are not followed: they would carry the token elsewhere) and other 4xx:
        # repeating the same request cannot succeed.
        raise SinkError(what, retryable=False)

    def _read_snippet(self, response: httpx.Response, deadline: float) -> str:
        """The start of an error body, for the log; bounded in size and time."""
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= _SNIPPET * 4 or time.monotonic() > deadline:
                    break
        except self._httpx.HTTPError:
            pass
        text = b"".join(chunks).decode("utf-8", "replace")
        text = " ".join(text.split())
        if len(text) > _SNIPPET:
            text = text[: _SNIPPET - 1] + "…"
        return self._scrub(text)

    def _drain(self, response: httpx.Response, deadline: float) -> None:
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > MAX_BATCH_BYTES or time.monotonic() > deadline:
                break  # an odd collector; the connection is simply not reused

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text

    def flush(self, timeout: float) -> bool:
        """Nothing is buffered here (the reporter holds pending messages): always True."""
        return True

    def close(self, timeout: float) -> None:
        """Close the connection pool; later sends fail without retry."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            # In a forked child this closes only the child's copies of the pooled sockets.
            client.close()


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    register("http", HttpSink)
    register("https", HttpSink)
