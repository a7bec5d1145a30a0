"""The click commands behind ``jobprogress``: jobs, show, watch, serve, demo; outbox, schema and web.

A command starts a new process each time, so this module imports only what every command needs:
outbox, schema and web are imported when they are asked for (:class:`_Commands`), rich only by the
commands that draw with it, and ``jobs`` prints to a pipe or a file without rich (the same text:
:func:`~jobprogress.cli._format.plain_jobs_table`). ``tests/cli/test_cli_plain.py`` checks both.
"""

from __future__ import annotations

import builtins
import functools
import gc
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from jobprogress._states import JOB_STATES, STATE_GROUPS

from ._format import (
    PIPE_WIDTH,
    comma_separated,
    counts_line,
    job_row,
    parse_states,
    plain_jobs_table,
    plain_line,
    summary_line,
)
from ._options import bind_options, read_access_options, store_options
from ._safe import scrub
from ._source import DEFAULT_DB, JobSource, SourceError

if TYPE_CHECKING:
    from rich.console import Console

    from jobprogress.store.views import JobView

__all__ = ["DEFAULT_DB", "cli"]

TABLE_ROWS: Final = 1000
"""Rows `jobs` prints without --limit: laying out a terminal table of 10,000 rows takes seconds."""
WATCH_PAGE: Final = 500
"""Jobs a live view reads per refresh (plus the actionable ones): what a screen can usefully show."""
DEMO_STALL_AFTER: Final = 5.0
"""The demo lasts seconds, so its view judges lost and stalled sooner than the default."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _filter_options(func: _F) -> _F:
    func = click.option(
        "--kind",
        "kinds",
        multiple=True,
        metavar="KIND",
        help="Only jobs of this kind (repeatable or comma-separated): scan, parse, backtest, schema_eval, …",
    )(func)
    return click.option(
        "--status",
        "statuses",
        multiple=True,
        metavar="STATUS",
        help=f"Only jobs showing this status (repeatable or comma-separated): {', '.join(JOB_STATES)}, "
        f"or the groups {' and '.join(STATE_GROUPS)}.",
    )(func)


def _states(statuses: Sequence[str]) -> frozenset[str]:
    try:
        return parse_states(statuses)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--status'") from None


def _kinds(kinds: Sequence[str]) -> frozenset[str]:
    return frozenset(comma_separated(kinds))


def _open(db_url: str, stall_after: float) -> JobSource:
    # Opening the first store imports SQLAlchemy and pydantic: some 70,000 objects that all live on,
    # which the cyclic GC would scan again and again (a fifth of that time). Paused, as the store's fold
    # pauses it (``store._aggregate.gc_paused``); a GC the caller turned off stays off.
    paused = gc.isenabled()
    gc.disable()
    try:
        return JobSource(db_url, stall_after=stall_after)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if paused:
            gc.enable()


def on_terminal() -> bool:
    """Whether a full-screen view can run here: stdin and stdout are both a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _console() -> Console:
    from ._render import plain_console

    return plain_console()


def _printed_plain() -> bool:
    """Whether rich would print to stdout as to a file: then ``_format``'s plain layouts are rich's.

    Only the plain case: stdout is not a terminal, writes UTF-8, and nothing asks rich to treat it
    as one (``FORCE_COLOR``, ``TTY_COMPATIBLE``, Jupyter, another rich console's proxy). Off Windows,
    where rich writes to a console through its own calls. Anything else is left to rich.
    """
    out = sys.stdout
    if out is None or sys.platform == "win32" or hasattr(out, "rich_proxied_file"):
        return False
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return False
    if hasattr(builtins, "get_ipython") or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return False
    if not (getattr(out, "encoding", None) or "utf-8").lower().startswith("utf"):
        return False
    try:
        return not out.isatty()
    except ValueError:  # a closed stream
        return False


def _write(text: str) -> None:
    """Write to stdout as rich's console does, a closed pipe included (``jobs | head``: exit 1, quietly)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


def _print_message(message: str) -> None:
    """Print one line of ours (not markup) as ``_console().print(message, markup=False)`` does."""
    columns = os.environ.get("COLUMNS", str(PIPE_WIDTH))  # plain_console's width off a terminal
    text = plain_line(message, int(columns)) if columns.isdecimal() and _printed_plain() else None
    if text is not None:
        _write(text)
        return
    _console().print(message, markup=False)


def _print_jobs_table(views: Sequence[JobView], caption: str, *, soft_wrap: bool | None = None) -> None:
    """Print the Jobs table (see ``_render.jobs_table``); ``soft_wrap`` None: off a terminal only."""
    now = datetime.now(timezone.utc)
    if _printed_plain():
        text = plain_jobs_table([job_row(view, now) for view in views], caption)
        if text is not None:
            _write(text)
            return
    from ._render import jobs_table

    console = _console()
    # Off a terminal nothing is cropped: the table prints whole values (see jobs_table).
    wrap = not console.is_terminal if soft_wrap is None else soft_wrap
    console.print(jobs_table(views, now, caption=caption), soft_wrap=wrap)


def _stream_json(views: Iterable[JobView], *, lines: bool) -> None:
    """Print jobs as JSON Lines, or as the JSON list ``_dump`` would print, one job at a time."""
    first = True
    for view in views:
        text = json.dumps(
            view.model_dump(mode="json"), ensure_ascii=True, allow_nan=False, indent=None if lines else 2
        )
        if not lines:
            text = ("[\n" if first else ",\n") + "\n".join("  " + line for line in text.splitlines())
            click.echo(text, nl=False)
        else:
            click.echo(text)
        first = False
    if not lines:
        click.echo("[]" if first else "\n]")


def _dump(data: Any) -> str:
    # ASCII-escaped, so no control, bidi or other non-ASCII character from a worker reaches the terminal.
    return json.dumps(data, ensure_ascii=True, allow_nan=False, indent=2)


class _Commands(click.Group):
    """The ``jobprogress`` group: commands kept in modules of their own are imported when asked for."""

    LAZY: Final = {"outbox": "._outbox", "schema": "._schema", "web": "._web"}
    """Command name -> the module (in this package) that defines a command of that name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            # A lazy name loads its module; an unknown one loads them all, so click's "did you mean"
            # (which reads self.commands) sees every command.
            wanted = (cmd_name,) if cmd_name in self.LAZY else tuple(self.LAZY)
            for name in wanted:
                if name not in self.commands:
                    module = importlib.import_module(self.LAZY[name], __package__)
                    self.add_command(getattr(module, name))
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="jobprogress-sdk", prog_name="jobprogress")  # the distribution's name
def cli() -> None:
    """Live progress of long-running jobs across many workers.

    Start with `jobprogress demo`, then look around with `jobprogress jobs`, `show JOB` and `watch`.
    """


@cli.command()
@store_options
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of jobs (JobView fields).")
@click.option(
    "--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per job and line (JSON Lines)."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Show at most this many jobs."
)
def jobs(
    db_url: str,
    stall_after: float,
    statuses: Sequence[str],
    kinds: Sequence[str],
    as_json: bool,
    as_jsonl: bool,
    limit: int | None,
) -> None:
    """Print the Jobs table: failed, lost and stalled first, then running, then ready."""
    states = _states(statuses)
    with _open(db_url, stall_after) as source:
        if as_json or as_jsonl:
            # Streamed: each job is printed as the store hands it over, so memory stays flat.
            try:
                _stream_json(
                    source.iter_jobs(states=states, kinds=_kinds(kinds), limit=limit), lines=as_jsonl
                )
            except SourceError as exc:
                raise click.ClickException(str(exc)) from None
            return
        try:
            shown = (
                TABLE_ROWS + 1 if limit is None else limit
            )  # one more than the table holds: "more" is known
            views = list(source.iter_jobs(states=states, kinds=_kinds(kinds), limit=shown))
            counts = source.counts(states=states, kinds=_kinds(kinds)) if views else None
        except SourceError as exc:
            raise click.ClickException(str(exc)) from None
        if not views:
            filtered = " matching the filters" if states or kinds else ""
            _print_message(f"No jobs{filtered} in {source.display_url}.")
            return
        caption = counts_line(counts) if counts is not None else summary_line(views)
        if limit is None and len(views) > TABLE_ROWS:
            caption += f" · the first {TABLE_ROWS:,} shown; --limit N, --status, --kind or --json for more"
            views = views[:TABLE_ROWS]
        _print_jobs_table(views, caption)


@cli.command()
@store_options
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (JobView fields).")
@click.option(
    "--attempts",
    "all_attempts",
    is_flag=True,
    help="Show every attempt of the job, newest first (with --json: a list), not only the newest.",
)
def show(db_url: str, stall_after: float, job_id: str, as_json: bool, all_attempts: bool) -> None:
    """Show one job: envelope, payload, failure detail and each worker of its newest attempt."""
    with _open(db_url, stall_after) as source:
        try:
            if all_attempts:
                attempts = source.attempts(job_id)
                view = attempts[0] if attempts else None
            else:
                view = source.job(job_id)
            if view is None:
                known = source.job_ids()
        except SourceError as exc:
            raise click.ClickException(str(exc)) from None
        if view is None:
            import difflib

            message = f"no job {scrub(job_id)!r} in {source.display_url}"
            close = difflib.get_close_matches(job_id, known, n=3)
            if close:
                message += "; did you mean " + " or ".join(repr(scrub(name)) for name in close) + "?"
            raise click.ClickException(message)
        if all_attempts:
            if as_json:
                click.echo(_dump([attempt.model_dump(mode="json") for attempt in attempts]))
                return
            from ._render import job_detail

            console = _console()
            now = datetime.now(timezone.utc)
            for attempt in attempts:
                console.print(job_detail(attempt, now, newest=view.attempt))
            return
        if as_json:
            click.echo(_dump(view.model_dump(mode="json")))
            return
        from ._render import job_detail

        _console().print(job_detail(view, datetime.now(timezone.utc)))


@cli.command()
@store_options
@_filter_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes.",
)
@click.option(
    "--page",
    type=click.IntRange(min=1),
    default=WATCH_PAGE,
    show_default=True,
    metavar="N",
    help="Show the N most recently active jobs, plus every failed, lost or stalled one.",
)
@click.option("--all", "show_all", is_flag=True, help="Show every job (each refresh reads the whole list).")
def watch(
    db_url: str,
    stall_after: float,
    statuses: Sequence[str],
    kinds: Sequence[str],
    interval: float,
    page: int,
    show_all: bool,
) -> None:
    """Live full-screen Jobs view (q quits, / filters, a shows actionable jobs only).

    Without a terminal (stdin or stdout redirected: a pipe, cron, CI) it prints one plain snapshot
    of the same jobs, as `jobs` would, and exits.
    """
    states = _states(statuses)
    kind_set = _kinds(kinds)
    with _open(db_url, stall_after) as source:
        try:
            source.page(size=1)  # fail before taking over the screen when the store cannot be read
        except SourceError as exc:
            raise click.ClickException(str(exc)) from None
        truncated = False

        def fetch() -> Sequence[JobView]:
            nonlocal truncated
            if show_all:
                return source.jobs(states=states, kinds=kind_set)
            views, truncated = source.page(size=page, states=states, kinds=kind_set)
            return views

        def banner() -> str:
            return f"newest {page} and every actionable job shown (--all for all)" if truncated else ""

        if not on_terminal():
            # A pipe, a file, cron, CI: a full-screen view would write escape codes and never end.
            # One plain snapshot of the same page instead, as `jobs` prints it.
            try:
                views = fetch()
            except SourceError as exc:
                raise click.ClickException(str(exc)) from None
            caption = summary_line(views) + (f" · {banner()}" if banner() else "")
            _print_jobs_table(views, caption, soft_wrap=True)
            return
        from ._tui import JobsApp

        JobsApp(fetch, source_name=source.display_url, interval=interval, banner=banner).run()


@cli.command()
@store_options
@functools.partial(bind_options, port=8787)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the bearer token every /v1/ request must send (required).",
)
@click.option(
    "--limit-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Answer 503 with Retry-After beyond this many requests in flight.",
)
@functools.partial(
    read_access_options,
    token_help="File holding a second token that may read (/jobs, /metrics, GET /v1/jobs) but not write.",
    open_help="Serve /jobs and /metrics to all, without a token.",
)
def serve(
    db_url: str,
    stall_after: float,
    host: str,
    port: int,
    token_file: str | None,
    limit_concurrency: int | None,
    read_token_file: str | None,
    open_read: bool,
) -> None:
    """Run the HTTP collector: workers POST progress to it, it writes to --db and serves the Jobs API."""
    from jobprogress.errors import JobProgressError

    try:
        from jobprogress.server import serve as run_server
    except ImportError as exc:
        raise click.ClickException(scrub(str(exc))) from None
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "token_file": token_file,
        "limit_concurrency": limit_concurrency,
        "stall_after": stall_after,  # the collector's Jobs API judges liveness too
        "read_token_file": read_token_file,
        "open_read": open_read,
    }
    try:
        run_server(db_url, **options)
    except JobProgressError as exc:
        raise click.ClickException(scrub(str(exc))) from None


@cli.command()
@functools.partial(store_options, stall_after=DEMO_STALL_AFTER)
@click.option(
    "--path",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Directory tree the workers scan and parse [default: the Python standard library].",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1.0, max=600.0),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help="About how long the workers take.",
)
@click.option(
    "--no-tui", is_flag=True, help="Print plain progress lines and a summary instead of the live view."
)
def demo(
    db_url: str,
    stall_after: float,
    path: str | None,
    duration: float,
    no_tui: bool,
) -> None:
    """Run real worker processes (scan, parse, backtest, schema_eval) into --db and show them live.

    One job fails on purpose and one worker is killed with SIGKILL early on, so the view shows a
    failed job and, after --stall-after, a lost one. Without a terminal (a pipe, cron, CI) it runs
    as --no-tui.
    """
    from .demo import DemoError, run_demo

    try:
        code = run_demo(
            db_url,
            path=path,
            duration=duration,
            stall_after=stall_after,
            tui=not no_tui and on_terminal(),  # the live view needs a terminal; else plain lines
            out=sys.stdout,
        )
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)
