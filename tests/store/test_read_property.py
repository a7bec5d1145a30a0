"""Property: the SQL read paths (page query, streaming, counts) agree with the reference Python fold.

Randomized stores (mixed units, missing totals, lost/stalled/final mixes, clock edges exactly at
``stall_after``): ``jobs()`` over the whole list folds every row in Python (:func:`_aggregate.fold`),
which is the reference; ``jobs(limit=…)`` and ``jobs(status=…)`` judge state and order in SQL;
``iter_jobs()`` streams in the CLI's order; ``counts()`` is one SQL aggregate.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _store_support import STALL, StoreClock, envelope, heartbeat
from jobprogress._states import JOB_STATES, STATUS_FILTERS
from jobprogress.store import ProgressStore, StoreWriter

_worker = st.tuples(
    st.sampled_from(["running", "running", "failed", "succeeded", "cancelled"]),
    st.sampled_from(["files", "rows"]),
    st.integers(0, 50),
    st.one_of(st.none(), st.integers(0, 60)),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0, 7.25])),
    st.sampled_from([0.0, 1.0, STALL - 1, STALL, STALL + 1]),  # clock advance before the message
    st.booleans(),  # a later keepalive without progress
)
_store = st.lists(st.lists(_worker, min_size=1, max_size=3), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_store, st.sampled_from([0.0, STALL - 1, STALL, STALL + 1]))
def test_sql_paths_agree_with_the_python_fold(jobs: list[list[tuple]], wait: float) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'p.db'}"
        clock = StoreClock()
        with StoreWriter(url, clock=clock) as writer:
            for job_index, workers in enumerate(jobs):
                for worker_index, (status, unit, done, total, rate, advance, keepalive) in enumerate(workers):
                    clock.advance(advance)
                    job, worker = f"job-{job_index}", f"w{worker_index}"
                    progress = envelope(done, total, unit=unit, throughput=rate)
                    writer.write([heartbeat(1, "running", job=job, worker=worker, progress=progress)])
                    if status != "running":
                        writer.write([heartbeat(2, status, job=job, worker=worker, error=f"e{worker_index}")])
                    elif keepalive:
                        clock.advance(STALL / 2)
                        writer.write([heartbeat(2, "running", job=job, worker=worker, progress=progress)])
        clock.advance(wait)
        with ProgressStore(url, stall_after=STALL, clock=clock) as store:
            reference = store.jobs()  # the whole list: every row folded in Python
            paged = store.jobs(limit=len(reference) + 1)
            assert paged == reference
            for state in STATUS_FILTERS:
                assert store.jobs(status=state) == [job for job in reference if job.state == state]
            from jobprogress.cli._format import sort_jobs

            assert list(store.iter_jobs(batch=2)) == sort_jobs(reference)
            expected_counts = {**dict.fromkeys(JOB_STATES, 0), **Counter(job.state for job in reference)}
            assert store.counts() == expected_counts


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_concatenate_to_the_whole_list(tmp_path: Path, limit: int) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    clock = StoreClock()
    with StoreWriter(url, clock=clock) as writer:
        for index in range(7):
            clock.advance(index % 2)  # ties on the store clock are ordered by job id
            writer.write([heartbeat(1, job=f"job-{index}", progress=envelope(index))])
    with ProgressStore(url, stall_after=STALL, clock=clock) as store:
        whole = store.jobs()
        pages = [job for offset in range(0, 7, limit) for job in store.jobs(limit=limit, offset=offset)]
        assert pages == whole
