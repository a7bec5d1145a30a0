"""EXPLAIN of each Jobs query shape (issue 12) on SQLite or Postgres, over a store of JOBS x 4 workers.

Shapes: a page (``jobs(limit=500)``), filtered pages (failed, lost, the actionable states, a kind, a
search), the streamed display order (``iter_jobs(limit=20)``), one job, ``counts()`` and the writer's
refresh of a batch's summary rows. The planner's own choices (nothing disabled), after ANALYZE on
Postgres. The store is written on a fake store clock over 100 s and read 110 s after the first write
with ``stall_after=30``, so the running third of the jobs is 80% lost (the oldest), 20% alive: the
mix where the actionable query used to sort every lost job. ``--time`` also times, on that clock, the
actionable query and a ``watch`` page refresh (``JobSource.page(size=500)``), median of 9 calls.
Prints, asserts nothing.

Usage::

    python bench/jobs_read_plans.py sqlite:////tmp/plans.db 10000 [--time]
    python bench/jobs_read_plans.py \\
        'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dplans' 10000
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from jobprogress.envelope import Heartbeat, JobProgressEnvelope
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store._pages import PageRequest
from jobprogress.store._summary import _summary_select

START = 1_800_000_000.0
"""The fake store clock of the first write; the last is 100 s later, the read 110 s after the first."""


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _fill(url: str, jobs: int) -> None:
    """1% failed, a third running, the rest succeeded (as bench/jobs_read_bench.py), over 100 s."""
    now = datetime.now(timezone.utc)
    clock = _Clock()
    with StoreWriter(url, clock=clock) as writer:
        for first in range(0, jobs, 500):
            clock.now = START + 100.0 * first / jobs
            writer.write(
                [
                    Heartbeat(
                        job_id=f"job-{job:06d}",
                        worker_id=f"w{worker}",
                        run_id=f"r{job}-{worker}",
                        seq=1,
                        status="failed"
                        if job % 100 == 0 and worker == 0
                        else "running"
                        if job % 3 == 0
                        else "succeeded",
                        kind=("scan", "parse")[job % 2],
                        progress=JobProgressEnvelope(
                            items_done=job, items_total=10**6, unit="files", updated_at=now
                        ),
                        updated_at=now,
                    )
                    for job in range(first, min(first + 500, jobs))
                    for worker in range(4)
                ]
            )


def _median_ms(call: Callable[[], Any], repeat: int = 9) -> str:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return f"median {statistics.median(timings):.1f} ms (min {min(timings):.1f}, max {max(timings):.1f})"


def main(url: str, jobs: int = 2000, timed: bool = False) -> None:
    _fill(url, jobs)
    read_at = START + 110.0
    store = ProgressStore(url, clock=lambda: read_at)
    store.jobs(limit=1)  # reads the schema version
    pages = store._pages
    statements: dict[str, Any] = {
        "jobs(limit=500)": pages.statement(PageRequest(limit=500)),
        "jobs(status='failed', limit=50)": pages.statement(PageRequest(statuses=("failed",), limit=50)),
        "jobs(status='lost', limit=50)": pages.statement(PageRequest(statuses=("lost",), limit=50)),
        "jobs(status=actionable, limit=1000)": pages.statement(
            PageRequest(statuses=("failed", "lost", "stalled"), limit=1000)
        ),
        "jobs(kind='scan', limit=50)": pages.statement(PageRequest(kinds=("scan",), limit=50)),
        "jobs(search='00012', limit=500)": pages.statement(PageRequest(search="00012", limit=500)),
        "iter_jobs(limit=20)": pages.statement(PageRequest(limit=20, streamed=True)),
        "job(id)": pages.statement(PageRequest(job_id="job-000001")),
        "counts()": pages.counts(kinds=None, active_within=None),
    }
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:  # committed: the timed reads plan on these statistics too
            connection.execute(sa.text("ANALYZE"))
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        # The SELECT of the writer's INSERT ... SELECT ... ON CONFLICT, for a batch of 500 jobs.
        batch = [f"job-{job:06d}" for job in range(min(jobs, 500))]
        among = store._tables.progress.c.job_id.in_(batch)
        statements["writer: summary refresh of 500 jobs"] = _summary_select(store._tables, among)
        cutoff = read_at - store.stall_after
        for name, statement in statements.items():
            bound = statement.params(store_now=read_at, cutoff=cutoff)
            sql = str(
                bound.compile(
                    dialect=connection.dialect,
                    compile_kwargs={"literal_binds": True, "render_postcompile": True},
                )
            )
            explain = "EXPLAIN (COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
            print(f"== {name}")
            for row in connection.exec_driver_sql(explain + sql):
                print("   ", row[0] if postgres else row[-1])
    if timed:
        from jobprogress.cli._source import JobSource

        print(f"\n{jobs:,} jobs x 4 workers; states on the read clock: {store.counts()}")
        actionable = ["failed", "lost", "stalled"]
        print(
            "  jobs(status=actionable, limit=1000):",
            _median_ms(lambda: store.jobs(status=actionable, limit=1000)),
        )
        print(
            "  jobs(status='lost', limit=50):      ", _median_ms(lambda: store.jobs(status="lost", limit=50))
        )
        print("  jobs(search='00012'):               ", _median_ms(lambda: store.jobs(search="00012")))
        with JobSource(url) as source:
            source.close()
            source._store = store  # the fake read clock
            print("  watch page (page(size=500)):        ", _median_ms(lambda: source.page(size=500)))
    store.close()
    engine.dispose()


if __name__ == "__main__":
    arguments = [argument for argument in sys.argv[1:] if argument != "--time"]
    main(arguments[0], int(arguments[1]) if len(arguments) > 1 else 2000, "--time" in sys.argv)
