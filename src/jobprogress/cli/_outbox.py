"""``jobprogress outbox list|deliver``: what earlier processes could not deliver, and delivering it now."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ._safe import scrub

__all__ = ["outbox"]


def _root(directory: str | None) -> Path:
    from jobprogress._outbox import outbox_root

    setting = directory if directory is not None else os.environ.get("JOBPROGRESS_OUTBOX")
    root = outbox_root(setting)
    if root is None:
        raise click.ClickException("the outbox is turned off (JOBPROGRESS_OUTBOX is empty); pass --dir DIR")
    return root


_DIR_OPTION = click.option(
    "--dir",
    "directory",
    default=None,
    metavar="DIR",
    help="Outbox directory (default: $JOBPROGRESS_OUTBOX, else the user cache directory).",
)


@click.group()
def outbox() -> None:
    """States that processes could not deliver before they ended, kept on disk for the next one."""


@outbox.command("list")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per sink.")
def list_(directory: str | None, as_json: bool) -> None:
    """Show, per sink, how many job states wait in the outbox (finals among them) and since when."""
    from jobprogress._outbox import outboxes

    root = _root(directory)
    summaries = [box.summary() for box in outboxes(root)]
    summaries = [summary for summary in summaries if summary["files"]]
    if as_json:
        click.echo(json.dumps(summaries, ensure_ascii=True, indent=2))
        return
    console = Console(highlight=False)
    if not summaries:
        console.print(f"nothing waits in {scrub(str(root))}", markup=False)
        return
    table = Table(title=f"outbox {scrub(str(root))}", title_justify="left")
    table.add_column("sink", overflow="fold")
    for name in ("states", "finals", "files", "bytes"):
        table.add_column(name, justify="right")
    table.add_column("oldest (UTC)", no_wrap=True)
    for summary in summaries:
        oldest = str(summary["oldest"] or "")[:19].replace("T", " ")
        counts = (str(summary[key]) for key in ("states", "finals", "files", "bytes"))
        table.add_row(scrub(str(summary["sink"])), *counts, oldest)
    console.print(table)


@outbox.command()
@_DIR_OPTION
@click.option("--sink", "sinks", multiple=True, metavar="URL", help="Only this sink URL (repeatable).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to keep retrying a sink that fails.",
)
def deliver(directory: str | None, sinks: tuple[str, ...], timeout: float) -> None:
    """Deliver what waits in the outbox now (what any process configuring the sink also does)."""
    from jobprogress._log import redact_url
    from jobprogress._outbox import outboxes
    from jobprogress._runtime import deliver_outbox
    from jobprogress.errors import JobProgressError

    root = _root(directory)
    boxes = [box for box in outboxes(root) if box.files() and (not sinks or box.url in sinks)]
    if not boxes:
        click.echo("nothing to deliver")
        return
    left = 0
    for box in boxes:
        name = scrub(redact_url(box.url))
        try:
            done, delivered = deliver_outbox(box.url, root, timeout)
        except JobProgressError as exc:
            left += 1
            click.echo(f"{name}: not delivered: {scrub(str(exc))}", err=True)
            continue
        if done:
            click.echo(f"{name}: delivered {delivered} state(s)")
        else:
            left += 1
            click.echo(
                f"{name}: the sink still fails after {timeout:g}s; the states stay in the outbox", err=True
            )
    if left:
        raise SystemExit(1)
