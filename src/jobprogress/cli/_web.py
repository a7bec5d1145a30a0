"""``jobprogress web``: the Jobs pages in a browser, over a store that has no collector."""

from __future__ import annotations

import click

from ._safe import scrub
from ._source import DEFAULT_DB

__all__ = ["web"]


@click.command()
@click.option(
    "--db",
    "db_url",
    envvar="JOBPROGRESS_DB",
    default=DEFAULT_DB,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="Progress database (sqlite:///…, duckdb:///…, postgresql+psycopg://…), read only.",
)
@click.option(
    "--stall-after",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="A running worker with no message for this long is lost; with no progress, stalled.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8788, show_default=True, help="Port to bind.")
@click.option(
    "--read-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the token a reader sends (as the Basic-auth password, or a bearer token).",
)
@click.option(
    "--open",
    "open_read",
    is_flag=True,
    help="Serve everyone without a token (instead of --read-token-file).",
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
