"""``jobprogress demo``: real worker processes doing real work, reported through the public API.

Eleven worker processes scan a directory tree (the Python standard library by default), parse the
files they find (lines and tokens of ``.py`` files; bytes of the others), run a small moving-average
backtest grid over a synthetic price series and evaluate the schema of Python modules (public paths and
their docstrings). Each one reports with ``jp.configure(...)`` and ``jp.track(...)`` into the store at
``--db``, exactly as an application would. On purpose, one backtest fails (an exception in the worker),
one byte parser pauses longer than ``--stall-after`` while staying alive (stalled), and one schema
worker is killed with SIGKILL early on, so its job shows as lost once ``--stall-after`` has passed.
The workers themselves are in :mod:`._demo_work`; this module plans them, runs them and shows them.

The workers pace themselves so the whole run takes about ``--duration`` seconds and can be watched.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from jobprogress._states import LOST, RUNNING
from jobprogress.errors import JobProgressError

from ._demo_work import PLANNED_FAILURE_EXIT, WorkerSpec, worker_main
from ._source import DEFAULT_DB, redact_url

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

    from jobprogress.store.views import JobView

    from ._source import JobSource

__all__ = ["DemoError", "run_demo"]

_SKIPPED_DIRS: Final = frozenset({"__pycache__", "site-packages", "dist-packages", ".git"})
_SCHEMA_FILES_PER_WORKER: Final = 120
_SCHEMA_MAX_BYTES: Final = 120_000
_PRELOAD: Final = (
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "jobprogress",
    "jobprogress.cli._demo_work",
    "jobprogress.envelope",
    "jobprogress.store.writer",
    "jobprogress.sinks.sql",
    "jobprogress._reporter",
)


class DemoError(JobProgressError):
    """The demo cannot run (unsupported database, nothing to scan, workers that never reported)."""


# -- planning ----------------------------------------------------------------------------------


def _collect(root: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(name for name in subdirs if name not in _SKIPPED_DIRS)
        found.extend(os.path.join(directory, name) for name in sorted(files))
    return found


def _spread(items: Sequence[str], count: int) -> list[str]:
    """At most ``count`` items spread evenly over the sequence."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


def plan(root: Path, db_url: str, *, duration: float, stall_after: float, quiet: bool) -> list[WorkerSpec]:
    """The demo's workers: 6 jobs, 11 processes, all four kinds, one failing, one stalling, one killed.

    Raises:
        DemoError: the tree holds no files, or no Python files to parse.
    """
    files = _collect(root)
    python = [path for path in files if path.endswith(".py")]
    other = [path for path in files if not path.endswith(".py")]
    if not files or not python:
        raise DemoError(f"{root} holds no Python files to scan and parse; pass --path DIR")
    schema = []
    for path in python:
        with contextlib.suppress(OSError):
            if os.stat(path).st_size <= _SCHEMA_MAX_BYTES:
                schema.append(path)
    schema = _spread(schema, 2 * _SCHEMA_FILES_PER_WORKER)
    # The stall shows only if the pause outlasts --stall-after while the demo still runs.
    stall_for = stall_after + 2.5 if stall_after + 2.5 < duration * 0.6 else 0.0

    def spec(
        task: str, job_id: str, worker_id: str, items: Sequence[str], share: float, **extra: Any
    ) -> WorkerSpec:
        return WorkerSpec(
            task=task,
            job_id=job_id,
            worker_id=worker_id,
            db_url=db_url,
            files=tuple(items),
            budget=duration * share,
            quiet=quiet,
            **extra,
        )

    return [
        *(spec("scan", "scan-stdlib", f"demo-scan-{n + 1}", files[n::3], 0.55) for n in range(3)),
        *(spec("parse_rows", "parse-stdlib-py", f"demo-parse-{n + 1}", python[n::2], 0.8) for n in range(2)),
        spec("parse_bytes", "parse-stdlib-data", "demo-bytes-1", other or python, 0.6, stall_for=stall_for),
        *(spec("backtest", "backtest-momentum", f"demo-backtest-{n + 1}", (), 0.9, seed=n) for n in range(2)),
        spec("backtest", "backtest-mean-reversion", "demo-backtest-3", (), 0.6, seed=7, fail_at=0.4),
        spec("schema_eval", "schema-eval-stdlib", "demo-schema-1", schema[0::2], 0.75),
        spec("schema_eval", "schema-eval-stdlib", "demo-schema-2", schema[1::2], 0.9, victim=True),
    ]


# -- running -----------------------------------------------------------------------------------


def _context() -> BaseContext:
    # forkserver: children fork from a clean server process (no threads, no open connections), cheap
    # once jobprogress is preloaded there; spawn where forkserver does not exist (Windows, some macOS).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Importing these once in the server (SQLAlchemy, pydantic models, the SQL sink) saves each of
        # the eleven workers most of a second of start-up on a small machine.
        context.set_forkserver_preload(list(_PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


class DemoRun:
    """The running demo: its processes, the planned kill, and what became of each worker."""

    def __init__(self, specs: Sequence[WorkerSpec], context: BaseContext) -> None:
        self.started = time.monotonic()
        self.killed: str | None = None
        victim_ready = context.Event()
        self.specs = [replace(spec, ready=victim_ready) if spec.victim else spec for spec in specs]
        self._victim_ready = victim_ready
        self.processes: list[BaseProcess] = [
            context.Process(target=worker_main, args=(spec,), name=spec.worker_id, daemon=True)  # type: ignore[attr-defined]
            for spec in self.specs
        ]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        threading.Thread(target=self._kill_victim, name="jobprogress-demo-kill", daemon=True).start()

    def _kill_victim(self) -> None:
        # Wait for the victim to have stored some progress, then kill it without any chance to clean up.
        self._victim_ready.wait(timeout=30.0)
        for spec, process in zip(self.specs, self.processes, strict=True):
            if spec.victim and process.is_alive():
                self.killed = spec.worker_id  # before the kill: whoever sees it dead also sees this
                process.kill()  # SIGKILL on POSIX

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def alive(self) -> int:
        return sum(process.is_alive() for process in self.processes)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        return self.alive() == 0

    def stop(self) -> None:
        """Terminate workers still running (the user left early), then reap them."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        self.join(5.0)
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(1.0)

    def surprises(self) -> list[str]:
        """Workers that ended other than planned (the planned failure and the kill are expected)."""
        problems = []
        for spec, process in zip(self.specs, self.processes, strict=True):
            expected = PLANNED_FAILURE_EXIT if spec.fail_at is not None else 0
            if spec.victim or process.exitcode in (expected, None):
                continue
            problems.append(f"{spec.worker_id} ({spec.job_id}) exited with code {process.exitcode}")
        return problems

    def banner(self) -> str:
        alive = self.alive()
        if alive:
            killed = f", {self.killed} killed with SIGKILL" if self.killed else ""
            return f"demo: {alive} worker processes running{killed} · {self.elapsed:.0f}s"
        return f"demo finished in {self.elapsed:.1f}s · explore with the arrows, q quits"

    def close(self) -> None:
        for process in self.processes:
            if process.exitcode is not None:
                process.close()


def _wait_for_store(url: str, stall_after: float, run: DemoRun, timeout: float = 30.0) -> JobSource:
    """Open the store once the workers have created it (reading never creates a database)."""
    from ._source import JobSource, SourceError

    deadline = time.monotonic() + timeout
    while True:
        try:
            source = JobSource(url, stall_after=stall_after)
        except SourceError as exc:
            error = exc
        else:
            try:
                if source.jobs(limit=1):
                    return source
                error = SourceError(f"no jobs in {source.display_url} yet")
            except SourceError as exc:
                error = exc
            source.close()
        if time.monotonic() > deadline or (run.alive() == 0 and run.elapsed > 1.0):
            raise DemoError(f"the workers never reported: {error}")
        time.sleep(0.1)


def _print_plain(run: DemoRun, source: JobSource, out: TextIO) -> None:
    from ._format import progress_line, state_of, summary_line

    last_state: dict[str, str] = {}
    killed_reported = False
    while True:
        finished = run.alive() == 0
        views = source.jobs()
        print(f"[{run.elapsed:5.1f}s] {summary_line(views)}", file=out, flush=True)
        for view in views:
            state = state_of(view)
            if last_state.get(view.job_id) != state and state != RUNNING:
                print(f"         {view.job_id}: {state} · {progress_line(view)}", file=out, flush=True)
            last_state[view.job_id] = state
        if run.killed and not killed_reported:
            print(f"         killed worker {run.killed} with SIGKILL", file=out, flush=True)
            killed_reported = True
        if finished:
            return
        run.join(1.0)


def _summary(run: DemoRun, views: Sequence[JobView], db_url: str, stall_after: float) -> list[str]:
    from ._format import state_of, summary_line

    lost = [view.job_id for view in views if state_of(view) == LOST]
    lines = [f"Demo finished in {run.elapsed:.1f}s. {summary_line(views)}."]
    if run.killed and not lost:
        lines.append(
            f"The job of the killed worker {run.killed} shows as lost once {stall_after:g}s pass without a "
            f"message (--stall-after)."
        )
    return lines


def _next_commands(db_url: str, stall_after: float) -> list[str]:
    """The commands to type next, each meant to be printed on a line of its own, unwrapped."""
    db = redact_url(db_url)
    db_option = "" if db_url == DEFAULT_DB else f" --db {db}"
    return [
        f"jobprogress jobs{db_option} --stall-after {stall_after:g}",
        f"jobprogress show backtest-mean-reversion{db_option}",
        f"jobprogress watch{db_option} --stall-after {stall_after:g}",
    ]


def run_demo(
    db_url: str,
    *,
    path: str | None = None,
    duration: float = 15.0,
    stall_after: float = 5.0,
    tui: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo into ``db_url``; return the process exit code (0 when everything went as planned).

    Raises:
        DemoError: the database or the tree cannot be used, or the workers never reported.
    """
    scheme = db_url.split("://", 1)[0].lower()
    if scheme.startswith("duckdb"):
        raise DemoError(
            "the demo writes from many processes at once; DuckDB allows one writing process, so use "
            "sqlite:///PATH or postgresql://…"
        )
    root = Path(path) if path else Path(sysconfig.get_paths()["stdlib"])
    specs = plan(root, db_url, duration=duration, stall_after=stall_after, quiet=tui)
    run = DemoRun(specs, _context())
    jobs = len({spec.job_id for spec in specs})
    print(
        f"jobprogress demo: {len(specs)} worker processes, {jobs} jobs, reading {root}", file=out, flush=True
    )
    run.start()
    views: list[JobView] = []
    completed = False
    try:
        source = _wait_for_store(db_url, stall_after, run)
        with source:
            if tui:
                from ._tui import JobsApp

                JobsApp(source.jobs, source_name=source.display_url, banner=run.banner).run()
            else:
                _print_plain(run, source, out)
            views = source.jobs()
        completed = run.alive() == 0
    except KeyboardInterrupt:
        pass  # Ctrl+C: stop the workers and say so, without a traceback
    finally:
        run.stop()
    from ._render import plain_console

    console = plain_console(out)
    if not tui and views:
        from datetime import datetime, timezone

        from ._render import jobs_table

        console.print(jobs_table(views, datetime.now(timezone.utc)), soft_wrap=not console.is_terminal)
    if not completed:
        console.print(f"Demo stopped early after {run.elapsed:.1f}s; its workers were terminated.")
        run.close()
        return 0
    for line in _summary(run, views, db_url, stall_after):
        console.print(line)
    console.print("Look around:")
    for command in _next_commands(db_url, stall_after):
        print(f"  {command}", file=out, flush=True)  # never wrapped, so it can be copied whole
    surprises = run.surprises()
    for problem in surprises:
        print(f"jobprogress demo: unexpected: {problem}", file=sys.stderr)
    run.close()
    return 1 if surprises else 0
