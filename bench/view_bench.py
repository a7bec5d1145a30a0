"""How long one refresh of the Jobs view takes over 10,000 jobs x 4 workers while 8 processes write.

    python bench/view_bench.py [--jobs 10000] [--workers 4] [--writers 8] [--refreshes 10]

Fills a fresh SQLite store (StoreWriter), starts writer processes that keep 100 live trackers each
advancing through the public API (``jp.configure`` + ``jp.track``, interval 1 s), then measures, per
refresh of ``jobprogress watch`` as it runs by default (a page: the 500 most recently active jobs plus
every actionable one) and with ``--all`` (every job):

- query: the store read (``JobSource.page`` or ``.jobs``), plus the actionable-first ordering;
- build: the row cells and the summary line (the watch app's worker thread);
- apply: the UI-thread work (diff, DataTable cell updates, re-sort when the order changed);
- frame: from the apply until the headless screen has painted;
- view = build + apply + frame, the part the view owns (target <= 100 ms); refresh = query + view.

Also prints the first load (rows added in passes of 500) and a rich render of the `jobs` table.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path
from typing import Any

TARGET_MS = 100.0


def fill(url: str, jobs: int, workers: int) -> float:
    from jobprogress.envelope import Heartbeat, JobProgressEnvelope
    from jobprogress.store import StoreWriter

    kinds = [("scan", "files"), ("parse", "rows"), ("backtest", "iterations"), ("schema_eval", "records")]
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    batch: list[Heartbeat] = []
    with StoreWriter(url) as writer:
        for job in range(jobs):
            kind, unit = kinds[job % len(kinds)]
            status = "failed" if job % 97 == 0 else "succeeded" if job % 3 == 0 else "running"
            for worker in range(workers):
                batch.append(
                    Heartbeat(
                        job_id=f"job-{job:05d}",
                        worker_id=f"w{worker}",
                        run_id=f"run-{job}-{worker}",
                        seq=1,
                        status=status,
                        kind=kind,
                        error="ValueError: bad row 17" if status == "failed" else None,
                        progress=JobProgressEnvelope(
                            items_done=job % 1000,
                            items_total=1000,
                            unit=unit,
                            throughput_per_sec=12.5,
                            eta_seconds=80,
                            updated_at=now,
                            payload={"passed": job % 50} if kind == "backtest" else None,
                        ),
                        updated_at=now,
                    )
                )
            if len(batch) >= 2000:
                writer.write(batch)
                batch = []
        if batch:
            writer.write(batch)
    return time.perf_counter() - started


def keep_writing(url: str, index: int, jobs: int, workers: int, stop: Any) -> None:
    """One writer process: 100 live trackers of existing (job, worker) rows, advancing until stopped."""
    import jobprogress as jp

    jp.configure(sinks=[url], worker_id=f"w{index % workers}", interval=1.0)
    trackers = [
        jp.track(f"job-{job:05d}", unit="files", total=10**9, kind="scan")
        for job in range(index, jobs, 8)[:100]
    ]
    for tracker in trackers:
        tracker.start()
    while not stop.is_set():
        for tracker in trackers:
            tracker.advance(7)
        time.sleep(0.02)
    jp.shutdown(timeout=2.0)


async def measure(url: str, refreshes: int, stall_after: float, page: int | None) -> dict[str, list[float]]:
    from jobprogress.cli._format import job_row, summary_line
    from jobprogress.cli._source import JobSource
    from jobprogress.cli._tui import JobsApp

    source = JobSource(url, stall_after=stall_after)
    timings: dict[str, list[float]] = {"query": [], "build": [], "apply": [], "frame": [], "first_load": []}

    def fetch() -> list:  # type: ignore[type-arg]
        started = time.perf_counter()
        views = source.jobs() if page is None else source.page(size=page)[0]
        timings["query"].append(time.perf_counter() - started)
        return views

    app = JobsApp(fetch, source_name=url, interval=3600)
    original_sync = app._sync_table

    def timed_sync() -> None:
        started = time.perf_counter()
        original_sync()
        timings["apply"].append(time.perf_counter() - started)

    app._sync_table = timed_sync  # type: ignore[method-assign]
    async with app.run_test(size=(160, 50)) as pilot:
        started = time.perf_counter()
        while app.refresh_count < 1 or len(app.shown_job_ids) < len(app._order):
            await pilot.pause(0.01)
        await pilot.pause()
        timings["first_load"].append(time.perf_counter() - started)
        timings["apply"].clear()
        timings["query"].clear()
        for _ in range(refreshes):
            count = app.refresh_count
            await pilot.press("r")
            while app.refresh_count == count:
                await pilot.pause(0.001)
            applied = time.perf_counter()
            await pilot.pause()  # until idle: the screen has been composed and painted
            timings["frame"].append(time.perf_counter() - applied)
            # The worker thread's own measure covers query + build; take the query out.
            timings["build"].append(app.last_refresh_seconds - timings["query"][-1])  # type: ignore[operator]
            await asyncio.sleep(0.3)
        views = source.jobs() if page is None else source.page(size=page)[0]
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        [job_row(view, now) for view in views]
        summary_line(views)
        timings["build_alone"] = [time.perf_counter() - started]
        timings["rows"] = [0.0] * len(app.shown_job_ids)
    source.close()
    return timings


def rich_render(url: str, stall_after: float) -> tuple[float, float]:
    from rich.console import Console

    from jobprogress.cli._commands import TABLE_ROWS
    from jobprogress.cli._render import jobs_table
    from jobprogress.cli._source import JobSource

    with JobSource(url, stall_after=stall_after) as source:
        views = source.jobs()
    now = datetime.now(timezone.utc)
    timings = []
    for rows in (50, TABLE_ROWS):
        console = Console(file=StringIO(), width=160, force_terminal=True)
        started = time.perf_counter()
        console.print(jobs_table(views[:rows], now))
        timings.append(time.perf_counter() - started)
    return timings[0], timings[1]


def ms(values: list[float]) -> str:
    values = sorted(values)
    median = statistics.median(values) * 1000
    worst = values[-1] * 1000
    return f"median {median:7.1f} ms   max {worst:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--refreshes", type=int, default=10)
    parser.add_argument("--stall-after", type=float, default=30.0)
    parser.add_argument("--page", type=int, default=500, help="what `watch` reads per refresh by default")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        seconds = fill(url, args.jobs, args.workers)
        print(f"filled {args.jobs:,} jobs x {args.workers} workers in {seconds:.1f} s")
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        writers = [
            context.Process(target=keep_writing, args=(url, index, args.jobs, args.workers, stop))
            for index in range(args.writers)
        ]
        for process in writers:
            process.start()
        time.sleep(3.0)  # let every writer start and send
        try:
            results = {
                f"watch (page of {args.page}, the default)": asyncio.run(
                    measure(url, args.refreshes, args.stall_after, args.page)
                ),
                "watch --all (every job)": asyncio.run(measure(url, args.refreshes, args.stall_after, None)),
            }
            page, whole = rich_render(url, args.stall_after)
        finally:
            stop.set()
            for process in writers:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()
        alive = sum(process.exitcode is None for process in writers)
        print(f"{args.writers} writer processes x 100 live trackers (interval 1 s); still running: {alive}")
        for title, timings in results.items():
            print(f"-- {title}: {len(timings['rows'])} rows in the table")
            print(f"first load (all rows in the table): {timings['first_load'][0] * 1000:7.1f} ms")
            for name in ("query", "build", "apply", "frame"):
                print(f"{name:>6}: {ms(timings[name])}")
            parts = zip(timings["build"], timings["apply"], timings["frame"], strict=False)
            view = [build + apply + frame for build, apply, frame in parts]
            refresh = [query + rest for query, rest in zip(timings["query"], view, strict=False)]
            print(f"  view: {ms(view)}   (build + apply + frame; target <= {TARGET_MS:.0f} ms)")
            ratio = statistics.median(refresh) * 1000 / TARGET_MS
            print(f"refresh: {ms(refresh)}   (query + view; median / target = {ratio:.2f})")
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work on it skews every figure)")
        print(
            f"`jobs` table render: 50 rows {page * 1000:.1f} ms, 1,000 rows (its cap) {whole * 1000:.0f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
