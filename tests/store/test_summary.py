"""``{prefix}job_summary`` (schema 4): migrated from the release before, and the plans it makes flat.

The plan tests read ``EXPLAIN`` of every read shape: a page, a filtered page, several states, a kind,
the streamed display order, one job and the counts never scan ``{prefix}job_progress``; pages walk an
index of the summary in their order (no sort of the whole list). Postgres plans a small table with
sequential scans whatever its indexes, so the Postgres test sets ``enable_seqscan = off``: what it
checks is that an index path exists for each shape, not the planner's choice on a tiny table (the
planner's choices at 10,000 and 100,000 jobs are printed by ``bench/jobs_read_plans.py``, and in
``docs/user-guide.md``, "Read side at scale").
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from _store_support import StoreClock, StoreTarget, backend_params, envelope, heartbeat
from jobprogress.errors import StoreError
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store._pages import PageRequest
from jobprogress.store.schema import SCHEMA_VERSION, tables_for


def _write_mix(writer: StoreWriter, clock: StoreClock, jobs: int = 30) -> None:
    for index in range(jobs):
        clock.advance(1.0)
        status = ("running", "failed", "succeeded", "cancelled")[index % 4]
        messages = [
            heartbeat(1, job=f"job-{index:03d}", worker=f"w{worker}", kind=("scan", "parse")[index % 2],
                      progress=envelope(index + worker))
            for worker in range(2)
        ]  # fmt: skip
        if status != "running":
            messages.append(heartbeat(2, status, job=f"job-{index:03d}", worker="w1", error="boom"))
        writer.write(messages)


@pytest.mark.parametrize("store_target", backend_params(), indirect=True)
def test_a_version_3_store_is_read_then_migrated_and_backfilled(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    clock = StoreClock()
    with StoreWriter(store_target.url, clock=clock) as writer:
        _write_mix(writer, clock)
    with ProgressStore(store_target.url, clock=clock) as store:
        before = store.jobs()
        counts = store.counts()
    engine = store_target.engine()
    tables = tables_for("cf_")
    with engine.begin() as connection:  # what the release before wrote: no summary, version 3
        connection.execute(sa.text("DROP TABLE cf_job_summary"))
        connection.execute(sa.update(tables.version).values(version=3))
    with ProgressStore(store_target.url, clock=clock) as store:
        # Read by grouping the progress rows until a writer of this release migrates the tables.
        assert store.jobs() == before
        assert store.jobs(status="failed", limit=3) == [job for job in before if job.state == "failed"][:3]
        assert store.jobs(search="JOB-00") == [job for job in before if job.job_id.startswith("job-00")]
        assert store.counts() == counts
        assert store.job_ids() == sorted(job.job_id for job in before)
        with pytest.raises(StoreError, match="schema version 4"):
            store.jobs(limit=2, after=before[0].job_id)
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def start(index: int) -> None:
        try:
            with StoreWriter(
                store_target.url, clock=clock, busy_timeout=5 + index, lock_timeout=5 + index
            ) as w:
                barrier.wait()
                w.write([heartbeat(5, job="late", worker=f"w{index}", progress=envelope(index))])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(tables.version.c.version)).scalar_one() == SCHEMA_VERSION == 4
        summary = {row.job_id: row for row in connection.execute(sa.select(tables.summary))}
    engine.dispose()
    assert set(summary) == {job.job_id for job in before} | {"late"}  # backfilled, then refreshed
    assert summary["late"].workers == 3
    assert summary["job-001"].status == "failed"
    with ProgressStore(store_target.url, clock=clock) as store:
        assert [job for job in store.jobs() if job.job_id != "late"] == before
        assert store.counts()["running"] == counts["running"] + 1
        assert store.job_ids() == sorted([job.job_id for job in before] + ["late"])


def _shapes(store: ProgressStore) -> dict[str, Any]:
    pages = store._pages
    return {
        "page": pages.statement(PageRequest(limit=500)),
        "keyset page": pages.statement(PageRequest(limit=500, after="job-00100")),
        "failed page": pages.statement(PageRequest(statuses=("failed",), limit=50)),
        "lost page": pages.statement(PageRequest(statuses=("lost",), limit=50)),
        "actionable page": pages.statement(PageRequest(statuses=("failed", "lost", "stalled"), limit=1000)),
        "kind page": pages.statement(PageRequest(kinds=("scan",), limit=50)),
        "search page": pages.statement(PageRequest(search="00_1", limit=50)),
        "every match": pages.statement(PageRequest(search="00_1")),  # the web view's search
        "streamed page": pages.statement(PageRequest(limit=20, streamed=True)),
        "streamed lost": pages.statement(PageRequest(statuses=("lost", "stalled"), limit=20, streamed=True)),
        "one job": pages.statement(PageRequest(job_id="job-00001")),
        "counts": pages.counts(kinds=None, active_within=None),
    }


def _fill(url: str, jobs: int = 400) -> None:
    clock = StoreClock()
    with StoreWriter(url, clock=clock) as writer:
        writer.write(
            [
                heartbeat(
                    1,
                    "failed" if job % 100 == 0 and worker == 0 else "running",
                    job=f"job-{job:05d}",
                    worker=f"w{worker}",
                    kind=("scan", "parse")[job % 2],
                    progress=envelope(job),
                )
                for job in range(jobs)
                for worker in range(4)
            ]
        )


def _explain(store_target: StoreTarget, setup: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each shape's EXPLAIN rows (SQLite: id, parent, detail; Postgres: one text line each)."""
    _fill(store_target.url)
    with ProgressStore(store_target.url) as store:
        store.jobs(limit=1)  # reads the schema version: the summary path
        shapes = _shapes(store)
    engine = store_target.engine()
    postgres = store_target.backend == "postgres"
    plans: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for statement in setup:
            connection.exec_driver_sql(statement)
        for name, statement in shapes.items():
            bound = statement.params(store_now=1.9e9, cutoff=1.9e9 - 30)
            sql = str(bound.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
            explain = "EXPLAIN (COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
            plans[name] = [tuple(row) for row in connection.exec_driver_sql(explain + sql)]
    engine.dispose()
    return plans


def _plans(store_target: StoreTarget, setup: list[str]) -> dict[str, str]:
    return {
        name: "\n".join(str(row[-1]) for row in rows) for name, rows in _explain(store_target, setup).items()
    }


def _sqlite_sorts_of_summary_rows(rows: list[tuple[Any, ...]]) -> list[str]:
    """The summary reads a temporary B-tree sorts directly (a sibling in the plan tree): a sort of
    every row the read returns, not of a walk bounded by its LIMIT (those sort a subquery's rows)."""
    sorted_under = {parent for _, parent, _, detail in rows if detail.startswith("USE TEMP B-TREE")}
    return [
        detail
        for _, parent, _, detail in rows
        if parent in sorted_under and detail.startswith(("SEARCH cf_job_summary", "SCAN cf_job_summary"))
    ]


def _postgres_unbounded_sorts(plan: str) -> list[str]:
    """Summary scans below a Sort with no Limit between them: a sort of every row the scan returns."""
    found, open_sorts = [], []  # (indent, bounded) of the Sort nodes above the current line
    limits: list[int] = []
    for line in plan.splitlines():
        indent = len(line) - len(line.lstrip(" -"))
        open_sorts = [(depth, bounded) for depth, bounded in open_sorts if depth < indent]
        limits = [depth for depth in limits if depth < indent]
        node = line.strip(" ->")
        if node.startswith(("Sort", "Incremental Sort")):
            open_sorts.append((indent, False))
        elif node.startswith("Limit"):
            limits.append(indent)
        elif " on cf_job_summary" in node and any(
            not any(sort_depth < depth for depth in limits) for sort_depth, _ in open_sorts
        ):
            found.append(node)
    return found


@pytest.mark.parametrize("store_target", backend_params("sqlite"), indirect=True)
def test_sqlite_plans_never_scan_the_progress_table(store_target: StoreTarget) -> None:
    rows = _explain(store_target, [])
    plans = {name: "\n".join(str(row[-1]) for row in plan) for name, plan in rows.items()}
    for name, plan in plans.items():
        assert "SCAN cf_job_progress" not in plan, (name, plan)
        assert "SCAN cf_job_summary\n" not in plan + "\n", (name, plan)  # a bare scan: no index
    for name in ("page", "keyset page", "failed page", "kind page"):
        # The page's order is the index's: no sort of the summary.
        assert "USING INDEX ix_cf_job_summary_" in plans[name], (name, plans[name])
        assert "TEMP B-TREE" not in plans[name], (name, plans[name])
    # Lost and stalled jobs are judged on the reader's clock: each walk reads an index in the page's
    # order and stops at the page's LIMIT; only the walks' limited rows are merged and sorted, never
    # every lost job (issue 12: the watch view's actionable query at 100,000 jobs). (The streamed
    # display order lists running jobs by id: that walk sorts the jobs that run, not the lost ones.)
    for name in ("lost page", "actionable page", "streamed lost", "failed page", "search page"):
        assert _sqlite_sorts_of_summary_rows(rows[name]) == [], (name, plans[name])
    assert "SEARCH cf_job_progress USING PRIMARY KEY (job_id=?)" in plans["page"]
    # A keyset page starts its walk at the cursor (a range of the order index), skipping nothing.
    assert "ix_cf_job_summary_order (last_seen<?)" in plans["keyset page"], plans["keyset page"]
    assert "USING COVERING INDEX ix_cf_job_summary_liveness" in plans["counts"]


@pytest.mark.parametrize("store_target", backend_params("postgres"), indirect=True)
def test_postgres_plans_never_scan_the_progress_table(store_target: StoreTarget) -> None:
    # On 1,600 rows every path is cheap and the planner may read the whole table; with sequential
    # scans, hash and merge joins off it must show an index path for each shape, if there is one.
    setup = ["ANALYZE", "SET enable_seqscan = off", "SET enable_hashjoin = off", "SET enable_mergejoin = off"]
    plans = _plans(store_target, setup)
    # A plan that sorts every lost job exists too; with sorts priced out, a bounded walk must exist.
    bounded = _plans(store_target, [*setup, "SET enable_sort = off"])
    for name in ("lost page", "actionable page", "streamed lost", "page", "kind page", "search page"):
        assert _postgres_unbounded_sorts(bounded[name]) == [], (name, bounded[name])
    # The lost jobs seen before the cutoff are a range of last_seen, read in the page's order.
    assert "last_seen < " in bounded["lost page"], bounded["lost page"]
    for name, plan in plans.items():
        lines = plan.splitlines()
        assert "Seq Scan" not in plan, (name, plan)
        for index, line in enumerate(lines):
            if " on cf_job_progress" in line:  # read by key, never whole
                assert "Index Cond: ((job_id)::text = " in lines[index + 1], (name, plan)
    assert " on cf_job_progress" in plans["page"]
    # A keyset page is a range of the order index (here every job has one last_seen: the whole range).
    assert "Index Cond: (last_seen <= " in plans["keyset page"], plans["keyset page"]
    for name in ("page", "kind page"):
        assert "Index Scan using ix_cf_job_summary_" in plans[name], (name, plans[name])
        assert "Sort" not in plans[name].split("Limit", 1)[1], (name, plans[name])
    # Counts read the summary through one of its indexes (the planner picks the liveness or the status
    # index depending on its statistics; either reads no progress row and no table heap it can skip).
    assert "using ix_cf_job_summary_" in plans["counts"], plans["counts"]
    assert " on cf_job_progress" not in plans["counts"], plans["counts"]
