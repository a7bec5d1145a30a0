"""The Jobs read side of issue 12 over N jobs x 4 workers, on SQLite and Postgres, in one run.

Measures every row of the issue's table: ``jobs(limit=500)``, the whole ``jobs()`` list (a store's
first call, which folds every job, and the median of later ones, which reuse unchanged jobs' views),
``jobs(status="failed", limit=50)`` with 1% failed, ``counts()``, ``jobprogress jobs --limit 20``
wall time (process start included), ``jobprogress jobs --json`` peak RSS over an empty store's, and a
``watch`` page refresh (``JobSource.page(size=500)``, what ``watch`` polls), each next to its target.
The in-run anchor is the read side before ``{prefix}job_summary``: every progress row read and folded
in Python (the reference of ``tests/store/test_read_property.py``). The writer's throughput is measured
too (loading, and steady batches of 400 progress updates), since the writer now keeps the summary.
Backends are interleaved round by round, and each figure is reported as min-max over the rounds,
since the machine is shared. Prints, asserts nothing.

The same script measures the code before the summary: run it with ``PYTHONPATH`` pointing at an
older ``src`` (``git archive <commit> src | tar -x -C /tmp/before``).

Usage::

    JOBPROGRESS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/jobs_read_bench.py --jobs 10000 --rounds 3
    python bench/jobs_read_bench.py --jobs 30000 --writes-only          # the writer alone
    PYTHONPATH=/tmp/before/src python bench/jobs_read_bench.py --jobs 30000 --writes-only
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

_CLI = [sys.executable, "-m", "jobprogress.cli"]


_TARGETS = {
    # figure: (10k x 4, 100k x 4)
    "jobs(limit=500) ms": (20.0, 50.0),
    "jobs() whole ms": (250.0, 2500.0),
    "jobs() whole, first call ms": (250.0, 2500.0),
    "jobs(failed, 50) ms": (10.0, 20.0),
    "counts() ms": (20.0, 60.0),
    "watch page ms": (50.0, 80.0),
    "cli --limit 20 s": (0.4, 0.5),
    "cli --json RSS growth MB": (40.0, 40.0),
}


def _target(key: str, jobs: int) -> str:
    if key not in _TARGETS:
        return ""
    small, large = _TARGETS[key]
    return f"<= {small if jobs <= 10_000 else large:g}"


def _populate(url: str, jobs: int, workers: int) -> float:
    """Fill the store; returns the writer's messages per second."""
    from jobprogress.envelope import Heartbeat, JobProgressEnvelope
    from jobprogress.store import StoreWriter

    now = datetime.now(timezone.utc)
    start = time.perf_counter()
    with StoreWriter(url) as writer:
        batch: list[Heartbeat] = []
        for job in range(jobs):
            for worker in range(workers):
                if job % 100 == 0 and worker == 0:
                    status = "failed"  # 1% of the jobs
                elif job % 3 == 0:
                    status = "running"
                else:
                    status = "succeeded"
                batch.append(
                    Heartbeat(
                        job_id=f"job-{job:06d}",
                        worker_id=f"host-{worker}:{1000 + worker}",
                        run_id=f"run-{job}-{worker}",
                        seq=1,
                        status=status,
                        kind=("scan", "parse", "backtest", "schema_eval")[job % 4],
                        error="ValueError: bad row" if status == "failed" else None,
                        progress=JobProgressEnvelope(
                            items_done=job * 10 + worker,
                            items_total=100_000,
                            unit="files" if job % 7 else "rows",
                            throughput_per_sec=12.5,
                            updated_at=now,
                            payload={"pass_rate": job / jobs, "note": f"batch {job * workers + worker}"},
                        ),
                        updated_at=now,
                    )
                )
                if len(batch) >= 2000:
                    writer.write(batch)
                    batch = []
        writer.write(batch)
    return jobs * workers / (time.perf_counter() - start)


def _steady_writes(url: str, jobs: int, workers: int, batches: int = 20) -> float:
    """Messages per second of batches of 400 progress updates to running jobs' existing rows.

    Five groups of 100 running jobs take turns, as a collector's batches would; a first pass lets the
    writer learn their runs, so the timed batches are the steady state (no attempt lookups).
    """
    from jobprogress.envelope import JobProgressEnvelope, ProgressUpdate
    from jobprogress.store import StoreWriter

    now = datetime.now(timezone.utc)
    running = [job for job in range(jobs) if job % 3 == 0 and job % 100][:500]
    groups = [running[start : start + 400 // workers] for start in range(0, len(running), 400 // workers)]

    def batch(group: list[int], seq: int) -> list[ProgressUpdate]:
        return [
            ProgressUpdate(
                job_id=f"job-{job:06d}",
                worker_id=f"host-{worker}:{1000 + worker}",
                run_id=f"run-{job}-{worker}",
                seq=seq,
                progress=JobProgressEnvelope(
                    items_done=seq, items_total=100_000, unit="files" if job % 7 else "rows", updated_at=now
                ),
            )
            for job in group
            for worker in range(workers)
        ]

    with StoreWriter(url) as writer:
        for group in groups:
            writer.write(batch(group, 2))
        start = time.perf_counter()
        for step in range(batches):
            writer.write(batch(groups[step % len(groups)], 3 + step))
        return batches * 400 / (time.perf_counter() - start)


def _reference_fold(store: Any) -> int:
    """The read side before the summary: every progress row read, judged and folded in Python."""
    import sqlalchemy as sa

    from jobprogress.store._aggregate import WORKER_COLUMNS, fold

    cutoff = time.time() - store.stall_after
    with store._engine().connect() as connection:
        rows = connection.execute(sa.text(f"SELECT {', '.join(WORKER_COLUMNS)} FROM cf_job_progress")).all()
    newest: dict[str, int] = {}
    for row in rows:
        newest[row.job_id] = max(newest.get(row.job_id, 0), row.attempt)
    flagged = [
        (
            *row,
            int(row.status == "running" and row.seen_at is not None and row.seen_at < cutoff),
            int(
                row.status == "running"
                and row.seen_at is not None
                and row.progressed_at is not None
                and row.seen_at >= cutoff > row.progressed_at
            ),
        )
        for row in rows
        if row.attempt == newest[row.job_id]
    ]
    return len(fold(flagged)[0])


def _ms(call: Callable[[], Any], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def _cpu_ms(call: Callable[[], Any], repeat: int) -> float:
    """This process's CPU time per call (median): on a shared machine, the part that is this code's.

    For SQLite it is the whole call; for Postgres it leaves out the server's work.
    """
    timings = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        timings.append((time.process_time() - start) * 1000)
    return statistics.median(timings)


def _cli_wall(url: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([*_CLI, "jobs", "--db", url, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


_RSS_PROBE = (
    "import resource, runpy, sys; sys.argv = ['jobprogress'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('jobprogress.cli', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
)


def _cli_rss_mb(url: str, *args: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, "jobs", "--db", url, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return int(done.stderr.strip().splitlines()[-1]) / 1024  # ru_maxrss is KiB on Linux


def _measure(url: str, empty_url: str, repeat: int) -> dict[str, float]:
    from jobprogress.cli._source import JobSource
    from jobprogress.store import ProgressStore

    figures: dict[str, float] = {}
    with ProgressStore(url) as store:
        # A store's first whole list folds every job; later calls reuse the views of unchanged jobs.
        store.jobs(limit=1)
        figures["jobs() whole, first call ms"] = _ms(store.jobs, 1)
    with ProgressStore(url) as store:
        store.jobs(limit=1)
        figures["jobs() whole, first call CPU ms"] = _cpu_ms(store.jobs, 1)
    with ProgressStore(url) as store:
        store.jobs(limit=1)
        figures["jobs(limit=500) ms"] = _ms(lambda: store.jobs(limit=500), repeat)
        figures["jobs() whole ms"] = _ms(store.jobs, max(1, repeat // 3))
        figures["jobs() whole CPU ms"] = _cpu_ms(store.jobs, max(1, repeat // 3))
        figures["jobs(failed, 50) ms"] = _ms(lambda: store.jobs(status="failed", limit=50), repeat)
        figures["counts() ms"] = _ms(store.counts, repeat)
        figures["anchor: fold of every row ms"] = _ms(lambda: _reference_fold(store), max(1, repeat // 3))
    with JobSource(url) as source:
        figures["watch page ms"] = _ms(lambda: source.page(size=500), repeat)
    figures["cli --limit 20 s"] = _cli_wall(url, "--limit", "20")
    figures["cli --json RSS growth MB"] = _cli_rss_mb(url, "--json") - _cli_rss_mb(empty_url, "--json")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs (100,000 uses the larger targets)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the backends")
    parser.add_argument("--repeat", type=int, default=9, help="calls per in-process figure (median)")
    parser.add_argument(
        "--writes-only", action="store_true", help="only the writer's figures (steady: best of 3 passes)"
    )
    options = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="jp-read-bench-")
    targets = {"sqlite": f"sqlite:///{tmp}/jobs.db"}
    empties = {"sqlite": f"sqlite:///{tmp}/empty.db"}
    schemas: list[str] = []
    pg = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
    if pg:
        import sqlalchemy as sa

        admin = sa.create_engine(pg, poolclass=sa.pool.NullPool)
        for role in ("jobs", "empty"):
            schema = f"jp_bench_{uuid.uuid4().hex[:8]}"
            with admin.begin() as connection:
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            schemas.append(schema)
            url = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
            (targets if role == "jobs" else empties)["postgres"] = url
    writes: dict[str, tuple[float, float]] = {}
    try:
        for name, url in targets.items():
            start = time.perf_counter()
            loading = _populate(url, options.jobs, options.workers)
            passes = 3 if options.writes_only else 1
            steady = max(_steady_writes(url, options.jobs, options.workers) for _ in range(passes))
            writes[name] = (loading, steady)
            if options.writes_only:
                print(f"{name}: writer {loading:,.0f} msg/s loading, {steady:,.0f} msg/s steady")
                continue
            _populate(empties[name], 1, 1)
            if name == "postgres":
                import sqlalchemy as sa

                engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
                with engine.begin() as connection:
                    connection.execute(sa.text("ANALYZE"))
                engine.dispose()
            print(
                f"{name}: loaded {options.jobs:,} x {options.workers} in {time.perf_counter() - start:.1f} s"
            )
        if options.writes_only:
            return 0
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(options.rounds):
            for name, url in targets.items():  # interleaved: each round measures every backend
                rounds[name].append(_measure(url, empties[name], options.repeat))
        print(
            f"\n{options.jobs:,} jobs x {options.workers} workers, "
            f"{options.rounds} interleaved rounds (min-max)"
        )
        for name, results in rounds.items():
            print(
                f"  {name}: writer {writes[name][0]:,.0f} msg/s loading, {writes[name][1]:,.0f} msg/s steady"
            )
            print(f"    {'figure':30} {'min':>9}   {'max':>9}  target")
            for key in results[0]:
                values = [result[key] for result in results]
                print(f"    {key:30} {min(values):9.3f} - {max(values):9.3f}  {_target(key, options.jobs)}")
        print(f"  (bench process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    finally:
        if schemas and pg:
            import sqlalchemy as sa

            admin = sa.create_engine(pg, poolclass=sa.pool.NullPool)
            with admin.begin() as connection:
                for schema in schemas:
                    connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
