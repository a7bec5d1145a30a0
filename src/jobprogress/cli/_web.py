"""``jobprogress web``: the Jobs pages in a browser, over a store that has no collector."""

from __future__ import annotations

import functools

import click

from ._options import bind_options, read_access_options, store_options
from ._safe import scrub

__all__ = ["web"]


@click.command()
@functools.partial(store_options, db_help="Progress database, read only")
@functools.partial(bind_options, port=8788)
@functools.partial(
    read_access_options,
    token_help="File holding the token a reader sends (as the Basic-auth password, or a bearer token).",
    open_help="Serve everyone without a token (instead of --read-token-file).",
)
def web(
    db_url: str, stall_after: float, host: str, port: int, read_token_file: str | None, open_read: bool
) -> None:
    """Serve the Jobs view as web pages (/jobs) and /metrics, reading --db; nothing on them writes."""
    from jobprogress.errors import JobProgressError

    try:
        from jobprogress.server import serve_web
    except ImportError as exc:
        raise click.ClickException(scrub(str(exc))) from None
    try:
        serve_web(
            db_url,
            host=host,
            port=port,
            read_token_file=read_token_file,
            open_read=open_read,
            stall_after=stall_after,
        )
    except JobProgressError as exc:
        raise click.ClickException(scrub(str(exc))) from None
