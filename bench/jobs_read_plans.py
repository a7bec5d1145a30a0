"""EXPLAIN of each Jobs query shape (issue 12) on SQLite or Postgres, over a store of JOBS x 4 workers.

Shapes: a page (``jobs(limit=500)``), filtered pages (failed, lost, the actionable states, a kind),
the streamed display order (``iter_jobs(limit=20)``), one job, ``counts()`` and the writer's refresh
of a batch's summary rows. The planner's own choices (nothing disabled), after ANALYZE on Postgres.
Prints, asserts nothing.

Usage::

    python bench/jobs_read_plans.py sqlite:////tmp/plans.db 10000
    python bench/jobs_read_plans.py \\
        'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dplans' 10000
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from jobprogress.envelope import Heartbeat, JobProgressEnvelope
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store._summary import _summary_select


def _fill(url: str, jobs: int) -> None:
    now = datetime.now(timezone.utc)
    with StoreWriter(url) as writer:
        for first in range(0, jobs, 500):
            writer.write(
                [
                    Heartbeat(
                        job_id=f"job-{job:06d}",
                        worker_id=f"w{worker}",
                        run_id="r",
                        seq=1,
                        status="failed" if job % 100 == 0 and worker == 0 else "running",
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


def main(url: str, jobs: int = 2000) -> None:
    _fill(url, jobs)
    store = ProgressStore(url)
    store.jobs(limit=1)  # reads the schema version
    pages = store._pages
    page: dict[str, Any] = {"job_id": None, "statuses": None, "kinds": None, "active_within": None}
    statements: dict[str, Any] = {
        "jobs(limit=500)": pages.statement(**page, limit=500, offset=0),
        "jobs(status='failed', limit=50)": pages.statement(
            **{**page, "statuses": ["failed"]}, limit=50, offset=0
        ),
        "jobs(status='lost', limit=50)": pages.statement(
            **{**page, "statuses": ["lost"]}, limit=50, offset=0
        ),
        "jobs(status=actionable, limit=1000)": pages.statement(
            **{**page, "statuses": ["failed", "lost", "stalled"]}, limit=1000, offset=0
        ),
        "jobs(kind='scan', limit=50)": pages.statement(**{**page, "kinds": ["scan"]}, limit=50, offset=0),
        "iter_jobs(limit=20)": pages.statement(**page, limit=20, offset=0, streamed=True),
        "job(id)": pages.statement(**{**page, "job_id": "job-000001"}, limit=None, offset=0),
        "counts()": pages.counts(kinds=None, active_within=None),
    }
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(sa.text("ANALYZE"))
        # The SELECT of the writer's INSERT ... SELECT ... ON CONFLICT, for a batch of 500 jobs.
        batch = [f"job-{job:06d}" for job in range(min(jobs, 500))]
        among = store._tables.progress.c.job_id.in_(batch)
        statements["writer: summary refresh of 500 jobs"] = _summary_select(store._tables, among)
        cutoff = time.time() - 30
        for name, statement in statements.items():
            bound = statement.params(store_now=cutoff + 30, cutoff=cutoff)
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
    store.close()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
