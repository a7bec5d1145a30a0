"""Running the collector with uvicorn: the token file, the access-log filter (from ``_auth``), ``serve()``."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from jobprogress._log import redact_url
from jobprogress._states import MAX_BATCH_BYTES
from jobprogress.errors import ConfigurationError, MissingExtraError
from jobprogress.server._auth import CREDENTIAL_QUERY_NAMES, LOGGED_QUERY_NAMES, RedactQueryCredentials

__all__ = [
    "CREDENTIAL_QUERY_NAMES",
    "LOGGED_QUERY_NAMES",
    "RedactQueryCredentials",
    "read_token_file",
    "serve",
    "serve_web",
]

logger = logging.getLogger("jobprogress.server")


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The bearer token held in ``path``, surrounding whitespace removed.

    Raises:
        ConfigurationError: the file is missing, unreadable, empty, or holds a token with whitespace,
            control or non-ASCII characters inside (which no HTTP client can send).
    """
    token_path = Path(path)
    try:
        raw = token_path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"token file {str(token_path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read token file {str(token_path)!r}: {exc.strerror}") from None
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"token file {str(token_path)!r} is not UTF-8 text") from None
    if not token:
        raise ConfigurationError(f"token file {str(token_path)!r} is empty; put a long random secret in it")
    if not token.isascii() or not token.isprintable() or any(ch.isspace() for ch in token):
        # The message must not quote the token.
        raise ConfigurationError(
            f"the token in {str(token_path)!r} must be printable ASCII without spaces "
            "(e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    try:
        mode = token_path.stat().st_mode
    except OSError:  # pragma: no cover - it was just read
        mode = 0
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("token file %s is readable by other users; chmod 600 it", token_path)
    return token


_token_in = read_token_file


def _with_prefix(db_url: str, table_prefix: str) -> str:
    return f"{db_url}{'&' if '?' in db_url else '?'}table_prefix={table_prefix}"


OUTBOX_REPLAY_TIMEOUT = 300.0
"""Seconds the collector keeps retrying the outbox of its own database at start-up."""


def _replay_outbox_in_background(sink_url: str) -> None:
    """Deliver what workers on this host spooled for this database (the same sink URL), off the main thread.

    A worker that wrote to the database directly and could not reach it before it ended left its
    states in the outbox; the collector owns the database, so it delivers them as a worker would.
    """
    from jobprogress import _runtime
    from jobprogress._outbox import Outbox, outbox_root

    root = outbox_root(_runtime.settings().outbox)
    if root is None or not Outbox(root, sink_url).files():
        return

    def run() -> None:
        try:
            done, delivered = _runtime.deliver_outbox(sink_url, root, OUTBOX_REPLAY_TIMEOUT)
        except Exception as exc:
            logger.warning("jobprogress: could not deliver the outbox of %s: %s", redact_url(sink_url), exc)
            return
        if delivered or not done:
            logger.info(
                "jobprogress: delivered %d state(s) from the outbox of %s%s",
                delivered,
                redact_url(sink_url),
                "" if done else "; the rest stays there",
            )

    threading.Thread(target=run, name="jobprogress-outbox-replay", daemon=True).start()


def serve(
    db_url: str,
    host: str = "127.0.0.1",
    port: int = 8787,
    token_file: str | os.PathLike[str] | None = None,
    *,
    limit_concurrency: int | None = None,
    stall_after: float = 30.0,
    max_body: int = MAX_BATCH_BYTES,
    table_prefix: str = "cf_",
    body_timeout: float = 10.0,
    log_level: str = "info",
    access_log: bool = True,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    read_token_file: str | os.PathLike[str] | None = None,
    open_read: bool = False,
) -> None:
    """Run the collector in the foreground until SIGINT or SIGTERM (what ``jobprogress serve`` calls).

    Args:
        db_url: SQLAlchemy URL of the progress store the collector writes to and reads from.
        host: Address to bind. The default, 127.0.0.1, accepts local clients only; bind a public
            address only behind TLS (a reverse proxy, or ``ssl_certfile``/``ssl_keyfile``).
        port: TCP port.
        token_file: File holding the bearer token (surrounding whitespace ignored). Required.
        limit_concurrency: Requests served at once (default 64); more are answered 503 with
            ``Retry-After``. uvicorn's own connection limit is set to ``4 * N + 64`` as a backstop.
        stall_after: Seconds after which running workers are judged stalled or lost by the read routes.
        max_body: Largest request body in bytes, also after gzip inflation.
        table_prefix: Prefix of the store's tables.
        body_timeout: Seconds a request body may take to arrive; slower ones are answered 408.
        log_level: uvicorn's log level.
        access_log: Whether uvicorn logs each request (credential-like query values are redacted).
        ssl_certfile: PEM certificate to serve HTTPS directly.
        ssl_keyfile: PEM private key for ``ssl_certfile``.
        read_token_file: File holding a second token that may read (``/jobs``, ``/metrics``,
            ``GET /v1/jobs``) but not write.
        open_read: Serve ``/jobs`` and ``/metrics`` to everyone without a token.

    Raises:
        ConfigurationError: no token file, a missing or empty one, or invalid limits.
        MissingExtraError: the ``server`` extra is not installed.
    """
    if token_file is None:
        raise ConfigurationError("the collector needs --token-file PATH holding its bearer token")
    token = _token_in(token_file)  # (the parameter read_token_file hides the function's name here)
    read_token = None if read_token_file is None else _read_token(read_token_file, token)
    if limit_concurrency is not None and (not isinstance(limit_concurrency, int) or limit_concurrency < 1):
        raise ConfigurationError(f"limit_concurrency must be a positive int, got {limit_concurrency!r}")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be between 0 and 65535, got {port!r}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigurationError("TLS needs both ssl_certfile and ssl_keyfile")
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError("the collector (jobprogress serve)", "server", "uvicorn") from exc
    from jobprogress.server.app import DEFAULT_MAX_IN_FLIGHT, create_app

    in_flight = limit_concurrency or DEFAULT_MAX_IN_FLIGHT
    app = create_app(
        db_url,
        token=token,
        stall_after=stall_after,
        max_body=max_body,
        max_in_flight=in_flight,
        table_prefix=table_prefix,
        body_timeout=body_timeout,
        read_token=read_token,
        open_read=open_read,
    )
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactQueryCredentials) for existing in access.filters):
        access.addFilter(RedactQueryCredentials())
    if host not in ("127.0.0.1", "localhost", "::1") and ssl_certfile is None:
        logger.warning(
            "binding %s without TLS: the bearer token crosses the network in clear text; put a TLS "
            "proxy in front, or pass a certificate",
            host,
        )
    _replay_outbox_in_background(db_url if table_prefix == "cf_" else _with_prefix(db_url, table_prefix))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        limit_concurrency=4 * in_flight + 64,
        proxy_headers=False,
        server_header=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=15,  # longer than the http sink keeps idle connections (4 s)
    )


def _read_token(path: str | os.PathLike[str], token: str | None) -> str:
    read_token = _token_in(path)
    if token is not None and read_token == token:
        raise ConfigurationError("the read token must differ from the bearer token (it cannot write)")
    return read_token


def serve_web(
    db_url: str,
    host: str = "127.0.0.1",
    port: int = 8788,
    read_token_file: str | os.PathLike[str] | None = None,
    *,
    open_read: bool = False,
    stall_after: float = 30.0,
    table_prefix: str = "cf_",
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve the Jobs pages of a store that has no collector (what ``jobprogress web`` calls).

    Args:
        db_url: SQLAlchemy URL of the progress store, read only.
        host: Address to bind (default loopback only).
        port: TCP port.
        read_token_file: File holding the token readers send (Basic password or bearer).
        open_read: Serve everyone without a token; must be asked for instead of ``read_token_file``.
        stall_after: Seconds without a message (lost) or without progress (stalled).
        table_prefix: Prefix of the store's tables.
        log_level: uvicorn's log level.
        access_log: Whether uvicorn logs each request.

    Raises:
        ConfigurationError: neither a token file nor ``open_read`` (or both), or a bad token file.
        MissingExtraError: the ``server`` extra is not installed.
    """
    if (read_token_file is None) == (not open_read):
        raise ConfigurationError(
            "jobprogress web needs --read-token-file PATH, or --open to serve everyone without a token"
            if read_token_file is None
            else "give --read-token-file or --open, not both"
        )
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be between 0 and 65535, got {port!r}")
    read_token = None if read_token_file is None else _read_token(read_token_file, None)
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError("the Jobs pages (jobprogress web)", "server", "uvicorn") from exc
    from jobprogress.server.app import create_web_app

    app = create_web_app(
        db_url, read_token=read_token, open_read=open_read, stall_after=stall_after, table_prefix=table_prefix
    )
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactQueryCredentials) for existing in access.filters):
        access.addFilter(RedactQueryCredentials())
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "binding %s: %s; put a TLS proxy in front",
            host,
            "anyone who can reach it reads every job"
            if open_read
            else "the read token crosses in clear text",
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
