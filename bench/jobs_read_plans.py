"""EXPLAIN of each Jobs query shape (issue 12) on SQLite or Postgres, over a small filled store.

Shapes: a page (``jobs(limit=500)``), a filtered page (``status="failed", limit=50``), the whole list,
one job (``job()``), the streamed list (``iter_jobs(limit=20)``) and ``counts()``. Prints, asserts nothing.

Usage::

    python bench/jobs_read_plans.py sqlite:////tmp/plans.db
    python bench/jobs_read_plans.py 'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dplans'
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from jobprogress.envelope import Heartbeat, JobProgressEnvelope
from jobprogress.store import ProgressStore, StoreWriter


def main(url: str, jobs: int = 2000) -> None:
    now = datetime.now(timezone.utc)
    with StoreWriter(url) as writer:
        writer.write(
            [
                Heartbeat(
                    job_id=f"job-{job:05d}",
                    worker_id=f"w{worker}",
                    run_id="r",
                    seq=1,
                    status="failed" if job % 100 == 0 and worker == 0 else "running",
                    progress=JobProgressEnvelope(
                        items_done=job, items_total=10**6, unit="files", updated_at=now
                    ),
                    updated_at=now,
                )
                for job in range(jobs)
                for worker in range(4)
            ]
        )
    store = ProgressStore(url)
    page: dict[str, Any] = {"job_id": None, "statuses": None, "kinds": None, "active_within": None}
    shapes = {
        "jobs(limit=500)": lambda a: store._statement(a, **page, limit=500, offset=0),
        "jobs(status='failed', limit=50)": lambda a: store._statement(
            a, **{**page, "statuses": ["failed"]}, limit=50, offset=0
        ),
        "jobs() whole list": lambda a: store._statement(a, **page, limit=None, offset=0),
        "job(id)": lambda a: store._statement(a, **{**page, "job_id": "job-00001"}, limit=None, offset=0),
        "iter_jobs(limit=20)": lambda a: store._statement(a, **page, limit=20, offset=0, streamed=True),
    }
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(sa.text("ANALYZE cf_job_progress"))
        jobs_view, state, _ = store._judged(True, job_id=None, kinds=None, active_within=None)
        word = state.label("state")
        counted = sa.select(word, sa.func.count()).select_from(jobs_view).group_by(word)
        statements = {name: shape(True) for name, shape in shapes.items()}
        statements["counts()"] = counted
        for name, statement in statements.items():
            bound = statement.params(store_now=1e10, cutoff=1e10 - 30)
            sql = str(bound.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
            explain = "EXPLAIN (COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
            print(f"== {name}")
            for row in connection.exec_driver_sql(explain + sql):
                print("   ", row[0] if postgres else row[-1])
    store.close()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
