"""Property: every read path agrees with a reference fold of every progress row, on every backend.

Randomized stores (mixed units, missing totals, lost/stalled/final mixes, clock edges exactly at
``stall_after``, several kinds, second attempts): the reference reads every row of
``{prefix}job_progress``, keeps each job's newest attempt, flags lost and stalled workers in Python and
folds them with :func:`_aggregate.fold` — the read side before ``{prefix}job_summary``. The summary
path must give the same jobs for the whole list, pages and offsets, each state and several at once,
kinds, ``active_within``, the streamed display order (with limits) and the per-state counts.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _store_support import STALL, StoreClock, StoreTarget, backend_params, envelope, heartbeat
from jobprogress._states import JOB_STATES, RUNNING, STATUS_FILTERS
from jobprogress.cli._format import sort_jobs
from jobprogress.store import JobView, ProgressStore, StoreWriter
from jobprogress.store._aggregate import WORKER_COLUMNS, fold

_worker = st.tuples(
    st.sampled_from(["running", "running", "failed", "succeeded", "cancelled"]),
    st.sampled_from(["files", "rows"]),
    st.integers(0, 50),
    st.one_of(st.none(), st.integers(0, 60)),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0, 7.25])),
    st.sampled_from([0.0, 1.0, STALL - 1, STALL, STALL + 1]),  # clock advance before the message
    st.booleans(),  # a later keepalive without progress
    st.sampled_from(["scan", "parse", None]),  # kind
)
_job = st.tuples(st.lists(_worker, min_size=1, max_size=3), st.booleans())  # workers, a second attempt
_store = st.lists(_job, min_size=1, max_size=6)

_counter = itertools.count()


def reference(target: StoreTarget, prefix: str, now: float) -> tuple[list[JobView], dict[str, float]]:
    """Every job folded in Python from every row, and each job's last message over all attempts."""
    import sqlalchemy as sa

    cutoff = now - STALL
    engine = target.engine()
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(f"SELECT {', '.join(WORKER_COLUMNS)} FROM {prefix}job_progress")
        ).all()
    engine.dispose()
    newest: dict[str, int] = {}
    active: dict[str, float] = {}
    for row in rows:
        newest[row.job_id] = max(newest.get(row.job_id, 0), row.attempt)
        if row.seen_at is not None:
            active[row.job_id] = max(active.get(row.job_id, row.seen_at), row.seen_at)
    flagged: list[tuple[Any, ...]] = []
    for row in rows:
        if row.attempt != newest[row.job_id]:
            continue
        running = row.status == RUNNING
        lost = running and row.seen_at is not None and row.seen_at < cutoff
        stalled = (
            running
            and row.seen_at is not None
            and row.progressed_at is not None
            and row.seen_at >= cutoff
            and row.progressed_at < cutoff
        )
        flagged.append((*row, int(lost), int(stalled)))
    views, _ = fold(flagged)
    return views, active


def fill(url: str, prefix: str, clock: StoreClock, jobs: list[tuple[list[tuple[Any, ...]], bool]]) -> None:
    with StoreWriter(url, clock=clock, table_prefix=prefix) as writer:
        for job_index, (workers, rerun) in enumerate(jobs):
            job = f"job-{job_index}"
            for worker_index, worker_spec in enumerate(workers):
                status, unit, done, total, rate, advance, keepalive, kind = worker_spec
                clock.advance(advance)
                worker = f"w{worker_index}"
                progress = envelope(done, total, unit=unit, throughput=rate)
                writer.write([heartbeat(1, job=job, worker=worker, kind=kind, progress=progress)])
                if status != "running":
                    writer.write(
                        [heartbeat(2, status, job=job, worker=worker, kind=kind, error=f"e{worker_index}")]
                    )
                elif keepalive:
                    clock.advance(STALL / 2)
                    writer.write([heartbeat(2, job=job, worker=worker, kind=kind, progress=progress)])
            if rerun and all(spec[0] != "running" for spec in workers):
                # Every worker ended: a new run of w0 begins attempt 2, the others stay in attempt 1.
                clock.advance(1.0)
                writer.write(
                    [heartbeat(5, job=job, worker="w0", run="run-2", kind="parse", progress=envelope(1))]
                )


def check(store: ProgressStore, views: list[JobView], active: dict[str, float], now: float) -> None:
    assert store.jobs() == views
    for limit, offset in ((1, 0), (2, 1), (3, 2), (len(views) + 1, 0)):
        assert store.jobs(limit=limit, offset=offset) == views[offset : offset + limit]
    for states in (None, ["running", "stalled", "lost"]):  # keyset pages walk the same list
        wanted = [job for job in views if states is None or job.state in states]
        walked: list[JobView] = []
        while True:
            after = walked[-1].job_id if walked else None
            page = store.jobs(status=states, limit=2, after=after)
            if not page:
                break
            walked.extend(page)
        assert walked == wanted
    for state in STATUS_FILTERS:
        wanted = [job for job in views if job.state == state]
        assert store.jobs(status=state) == wanted, state
        assert store.jobs(status=state, limit=1) == wanted[:1], state
    for states in (["failed", "lost", "stalled"], ["running", "succeeded"]):
        wanted = [job for job in views if job.state in states]
        assert store.jobs(status=states) == wanted
        assert store.jobs(status=states, limit=2, offset=1) == wanted[1:3]
    for kind in ("scan", "parse"):
        assert store.jobs(kind=kind) == [job for job in views if job.kind == kind]
        assert (
            store.jobs(kind=kind, status="running", limit=2)
            == [job for job in views if job.kind == kind and job.state == "running"][:2]
        )
    assert store.jobs(active_within=STALL) == [job for job in views if active[job.job_id] >= now - STALL]
    ordered = sort_jobs(views)
    assert list(store.iter_jobs(batch=2)) == ordered
    assert list(store.iter_jobs(limit=3)) == ordered[:3]
    assert (
        list(store.iter_jobs(status=["lost", "succeeded"], limit=2))
        == [job for job in ordered if job.state in ("lost", "succeeded")][:2]
    )
    assert store.counts() == {**dict.fromkeys(JOB_STATES, 0), **Counter(job.state for job in views)}
    assert store.counts(kind="scan") == {
        **dict.fromkeys(JOB_STATES, 0),
        **Counter(job.state for job in views if job.kind == "scan"),
    }
    for job in views[:2]:
        assert store.job(job.job_id) == job


def agree(store_target: StoreTarget, jobs: list[tuple[list[tuple[Any, ...]], bool]], wait: float) -> None:
    prefix = f"p{next(_counter)}_"  # one fresh set of tables per example, in the test's store
    clock = StoreClock()
    fill(store_target.url, prefix, clock, jobs)
    clock.advance(wait)
    views, active = reference(store_target, prefix, clock.now)
    with ProgressStore(store_target.url, stall_after=STALL, clock=clock, table_prefix=prefix) as store:
        check(store, views, active, clock.now)


_WAITS = st.sampled_from([0.0, STALL - 1, STALL, STALL + 1])
_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=_HEALTH)
@given(jobs=_store, wait=_WAITS)
def test_sql_paths_agree_with_the_reference_fold(
    store_target: StoreTarget, jobs: list[tuple[list[tuple[Any, ...]], bool]], wait: float
) -> None:
    agree(store_target, jobs, wait)


@pytest.mark.parametrize("store_target", backend_params("duckdb"), indirect=True)
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=_HEALTH)
@given(jobs=_store, wait=_WAITS)
def test_sql_paths_agree_with_the_reference_fold_on_duckdb(
    store_target: StoreTarget, jobs: list[tuple[list[tuple[Any, ...]], bool]], wait: float
) -> None:
    # The same property, fewer examples: DuckDB spends about a second creating each example's tables.
    agree(store_target, jobs, wait)


@pytest.mark.parametrize("store_target", backend_params("sqlite"), indirect=True)
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_concatenate_to_the_whole_list(store_target: StoreTarget, limit: int) -> None:
    clock = StoreClock()
    with StoreWriter(store_target.url, clock=clock) as writer:
        for index in range(7):
            clock.advance(index % 2)  # ties on the store clock are ordered by job id
            writer.write([heartbeat(1, job=f"job-{index}", progress=envelope(index))])
    with ProgressStore(store_target.url, stall_after=STALL, clock=clock) as store:
        whole = store.jobs()
        pages = [job for offset in range(0, 7, limit) for job in store.jobs(limit=limit, offset=offset)]
        assert pages == whole
