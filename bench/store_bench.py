"""Store benchmarks of issue 3; prints figures, asserts nothing.

(a) SQLite, N worker processes x M jobs each for S seconds at the default interval: lock errors that
    reached workers, final states lost, rows written per second, and database writes against a
    write-per-advance() baseline (Celery's update_state pattern).
(b) ProgressStore.jobs() over 10,000 jobs x 4 workers on SQLite, DuckDB and Postgres: median latency
    of a page of 500 and of the whole list (targets 50 ms and 250 ms).
(c) 1,000 sequential short jobs into SQLite: wall time added per job against no sink (target 0.2 ms).

Usage::

    python bench/store_bench.py b            # one part
    python bench/store_bench.py a --workers 16 --jobs 50 --seconds 60
    JOBPROGRESS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        python bench/store_bench.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone


def _populate(url: str, prefix: str, jobs: int, workers: int) -> None:
    from jobprogress.envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
    from jobprogress.store import StoreWriter

    now = datetime.now(timezone.utc)
    statuses = ["running", "running", "succeeded", "failed"]
    with StoreWriter(url, table_prefix=prefix) as writer:
        batch: list[Heartbeat | ProgressUpdate] = []
        for job in range(jobs):
            for worker in range(workers):
                status = statuses[(job + worker) % 4] if job % 3 else "running"
                envelope = JobProgressEnvelope(
                    items_done=job * 10 + worker,
                    items_total=100_000,
                    unit="files" if job % 7 else "rows",
                    throughput_per_sec=12.5,
                    updated_at=now,
                    payload={"pass_rate": job / jobs, "note": f"batch {job * workers + worker}"},
                )
                batch.append(
                    Heartbeat(
                        job_id=f"job-{job:05d}",
                        worker_id=f"host-{worker}:{1000 + worker}",
                        run_id=uuid.uuid4().hex,
                        seq=1,
                        status=status,
                        kind=("scan", "parse", "backtest", "schema_eval")[job % 4],
                        error="ValueError: bad row" if status == "failed" else None,
                        progress=envelope,
                        updated_at=now,
                    )
                )
                if len(batch) >= 2000:
                    writer.write(batch)
                    batch = []
        writer.write(batch)


_cpu = [0.0]
"""CPU time of this process in the last measurement: on a busy machine, closer to the cost."""


def _median_ms(call: object, repeat: int) -> tuple[float, int]:
    timings: list[float] = []
    cpu: list[float] = []
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        cpu_start = time.process_time()
        result = call()  # type: ignore[operator]
        timings.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
        count = len(result)
    _cpu[0] = statistics.median(cpu)
    return statistics.median(timings), count


def bench_b(jobs: int = 10_000, workers: int = 4, repeat: int = 15, with_duckdb: bool = False) -> None:
    from jobprogress.store import ProgressStore

    print(f"(b) ProgressStore.jobs() over {jobs:,} jobs x {workers} workers (median of {repeat})")
    targets: list[tuple[str, str, str]] = []
    tmp = tempfile.mkdtemp(prefix="jp-bench-")
    targets.append(("sqlite", f"sqlite:///{tmp}/bench.db", "bench_"))
    if with_duckdb:
        # Loading 40,000 rows through per-row upserts takes minutes on DuckDB, so it is opt-in.
        targets.append(("duckdb", f"duckdb:///{tmp}/bench.duckdb", "bench_"))
    pg = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    if pg:
        targets.append(("postgres", pg, prefix))
    else:
        print("  postgres: skipped (set JOBPROGRESS_TEST_POSTGRES_URL)")
    for name, url, table_prefix in targets:
        start = time.perf_counter()
        _populate(url, table_prefix, jobs, workers)
        load = time.perf_counter() - start
        try:
            with ProgressStore(url, table_prefix=table_prefix) as store:
                store.jobs(limit=1)  # warm the engine and the version check
                page, page_count = _median_ms(lambda: store.jobs(limit=500), repeat)
                page_cpu = _cpu[0]
                whole, whole_count = _median_ms(lambda: store.jobs(), max(3, repeat // 3))
                whole_cpu = _cpu[0]
                active, _ = _median_ms(lambda: store.jobs(active_within=60, limit=500), repeat)
                failed, failed_count = _median_ms(lambda: store.jobs(status="failed", limit=500), repeat)
                one, _ = _median_ms(lambda: [store.job("job-05000")], repeat)
            print(
                f"  {name:8} page of {page_count}: {page:6.1f} ms [cpu {page_cpu:5.1f}] (target 50)   "
                f"whole list of {whole_count:,}: {whole:6.1f} ms [cpu {whole_cpu:5.1f}] (target 250)"
                "\n           "
                f"active page: {active:5.1f} ms   failed page ({failed_count}): {failed:5.1f} ms   "
                f"job(): {one:4.1f} ms   [load {load:.1f} s]"
            )
        finally:
            if name == "postgres":
                _drop_postgres(url, table_prefix)


def _drop_postgres(url: str, prefix: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for table in ("job_progress", "job_progress_history", "job_progress_schema"):
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{prefix}{table}"'))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--workers", type=int, default=16, help="(a) worker processes")
    parser.add_argument("--jobs", type=int, default=50, help="(a) jobs per worker")
    parser.add_argument("--seconds", type=float, default=60.0, help="(a) duration")
    parser.add_argument("--duckdb", action="store_true", help="(b) also DuckDB (slow to load)")
    parser.add_argument("--short-jobs", type=int, default=1000, help="(c) sequential short jobs")
    args = parser.parse_args(argv)
    for part in args.parts:
        if part == "a":
            bench_a(args.workers, args.jobs, args.seconds)
        elif part == "b":
            bench_b(with_duckdb=args.duckdb)
        else:
            bench_c(args.short_jobs)
    return 0


def bench_a(workers: int, jobs: int, seconds: float) -> None:
    print("(a) needs the core tracker; not written yet")


def bench_c(count: int) -> None:
    print("(c) needs the core tracker; not written yet")


if __name__ == "__main__":
    sys.exit(main())
