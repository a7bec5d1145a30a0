"""Options several commands share: the store to read (``--db``, ``--stall-after``), the address to
bind and who may read (``--host``, ``--port``, ``--read-token-file``, ``--open``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import click

from ._source import DEFAULT_DB

__all__ = ["DEFAULT_STALL_AFTER", "bind_options", "read_access_options", "store_options"]

DEFAULT_STALL_AFTER: Final = 30.0

_F = TypeVar("_F", bound=Callable[..., Any])


def store_options(
    func: _F, *, stall_after: float = DEFAULT_STALL_AFTER, db_help: str = "Progress database"
) -> _F:
    """``--db URL`` (``JOBPROGRESS_DB``) and ``--stall-after SECONDS``."""
    func = click.option(
        "--stall-after",
        type=click.FloatRange(min=0, min_open=True),
        default=stall_after,
        show_default=True,
        metavar="SECONDS",
        help="A running worker with no message for this long is lost; with no progress, stalled.",
    )(func)
    return click.option(
        "--db",
        "db_url",
        envvar="JOBPROGRESS_DB",
        default=DEFAULT_DB,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help=f"{db_help} (sqlite:///…, duckdb:///…, postgresql+psycopg://…).",
    )(func)


def bind_options(func: _F, *, port: int) -> _F:
    """``--host`` (loopback by default) and ``--port``."""
    func = click.option(
        "--port", type=click.IntRange(0, 65535), default=port, show_default=True, help="Port to bind."
    )(func)
    return click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")(func)


def read_access_options(func: _F, *, token_help: str, open_help: str) -> _F:
    """``--read-token-file PATH`` and ``--open``: who may read the pages and ``/metrics``."""
    func = click.option("--open", "open_read", is_flag=True, help=open_help)(func)
    return click.option("--read-token-file", type=click.Path(dir_okay=False), default=None, help=token_help)(
        func
    )
