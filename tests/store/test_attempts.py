"""Attempts (issue 11): a new start of a job after its previous attempt ended is a new attempt.

The rule's cases on every backend, decided by the writer inside its transaction; two writer instances
stand for two processes (each has its own cache of the runs it stored). Also: the read side shows the
newest attempt only, ``attempts()`` the older ones, the history table records the attempt, and tables
of schema version 1 are migrated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from _store_support import (
    STALL,
    StoreClock,
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
)
from jobprogress.envelope import Heartbeat
from jobprogress.store import JobView, ProgressStore, StoreWriter
from jobprogress.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


@pytest.fixture
def other_writer(store_target: StoreTarget, clock: StoreClock) -> Iterator[StoreWriter]:
    """A second writer: another process's view, with a cache of its own."""
    with StoreWriter(store_target.url, clock=clock) as writer:
        yield writer


def start(
    seq: int, worker: str, run: str, status: str = "running", *, done: int = 0, total: int = 1000, **kw: Any
) -> Heartbeat:
    return heartbeat(seq, status, worker=worker, run=run, progress=envelope(done, total), **kw)


def resumed(message: Heartbeat) -> Heartbeat:
    return message.model_copy(update={"resume": True})


def job(store: ProgressStore) -> JobView:
    view = store.job("job-1")
    assert view is not None
    return view


def shown(view: JobView) -> tuple[int, int | None, int | None, list[str], str]:
    return view.attempt, view.done, view.total, [worker.worker_id for worker in view.workers], view.status


def test_a_rerun_after_every_worker_ended_is_a_new_attempt(
    store: ProgressStore, writer: StoreWriter, clock: StoreClock
) -> None:
    # The same script run twice: worker ids are <hostname>:<pid>, so the second run adds new rows.
    writer.write([start(1, "host:100", "a1"), start(1, "host:101", "b1")])
    writer.write([start(2, "host:100", "a1", "succeeded", done=1000), start(2, "host:101", "b1", done=600)])
    writer.write([start(3, "host:101", "b1", "succeeded", done=1000)])
    assert shown(job(store)) == (1, 2000, 2000, ["host:100", "host:101"], "succeeded")
    clock.advance(60)
    writer.write([start(10, "host:200", "a2")])  # every row of attempt 1 is final: a new attempt
    assert shown(job(store)) == (2, 0, 1000, ["host:200"], "running")
    writer.write([start(11, "host:201", "b2", done=10)])  # joins: host:200 still runs
    writer.write([start(12, "host:200", "a2", "succeeded", done=1000)])
    writer.write([start(13, "host:201", "b2", "succeeded", done=1000)])
    view = job(store)
    assert shown(view) == (2, 2000, 2000, ["host:200", "host:201"], "succeeded")  # N/N, not 2N/2N
    assert [worker.attempt for worker in view.workers] == [2, 2]
    listed = {listed.job_id: listed for listed in store.jobs()}["job-1"]
    assert shown(listed) == shown(view)
    paged = [listed for listed in store.jobs(limit=10) if listed.job_id == "job-1"]
    assert [shown(listed) for listed in paged] == [shown(view)]


def test_a_late_joiner_while_another_runs_joins_the_attempt(
    store: ProgressStore, writer: StoreWriter, other_writer: StoreWriter
) -> None:
    writer.write([start(1, "w1", "r1")])
    other_writer.write([start(2, "w2", "r2", done=5)])  # another process, w1 still running
    writer.write([start(3, "w1", "r1", "succeeded", done=1000)])
    other_writer.write([start(4, "w3", "r3", done=7)])  # w2 still running: still attempt 1
    view = job(store)
    assert shown(view) == (1, 1012, 3000, ["w1", "w2", "w3"], "running")


def test_workers_starting_in_one_batch_share_an_attempt_even_when_already_final(
    store: ProgressStore, writer: StoreWriter
) -> None:
    # Short workers reach the store with their final state first; stored together, they began together.
    writer.write([start(1, "w1", "r1", "succeeded", done=1000), start(1, "w2", "r2", "failed", done=3)])
    assert shown(job(store)) == (1, 1003, 2000, ["w1", "w2"], "failed")
    writer.write([start(5, "w1", "r3", "succeeded", done=1000), start(5, "w2", "r4", "succeeded", done=1000)])
    assert shown(job(store)) == (2, 2000, 2000, ["w1", "w2"], "succeeded")


def test_a_resume_start_joins_the_ended_attempt(
    store: ProgressStore, writer: StoreWriter, other_writer: StoreWriter
) -> None:
    writer.write([start(1, "w1", "r1", "failed", done=400)])
    other_writer.write([resumed(start(5, "w2", "r2", done=450))])  # resume=True: a continuation
    assert shown(job(store)) == (1, 850, 2000, ["w1", "w2"], "failed")
    writer.write([resumed(start(6, "w1", "r3", done=400))])  # the failed worker resumes in place
    other_writer.write([start(7, "w2", "r2", "succeeded", done=1000)])
    writer.write([start(8, "w1", "r3", "succeeded", done=1000)])
    assert shown(job(store)) == (1, 2000, 2000, ["w1", "w2"], "succeeded")


def test_a_lone_worker_restarted_under_its_worker_id_begins_a_new_attempt(
    store: ProgressStore, writer: StoreWriter, other_writer: StoreWriter
) -> None:
    writer.write([start(1, "fixed", "r1", done=300)])  # then killed: the row stays running
    other_writer.write([start(9, "fixed", "r2", done=0)])  # its own old row does not count as running
    view = job(store)
    assert shown(view) == (2, 0, 1000, ["fixed"], "running")
    assert view.workers[0].run_id == "r2"


def test_a_retried_worker_of_a_running_fanout_joins_its_attempt(
    store: ProgressStore, writer: StoreWriter, other_writer: StoreWriter, clock: StoreClock
) -> None:
    writer.write([start(1, "w1", "r1", done=100), start(1, "w2", "r2", done=200)])
    # w2 dies and is retried under the same worker id: it takes over its row, nothing counted twice.
    other_writer.write([start(5, "w2", "r3", done=0)])
    assert shown(job(store)) == (1, 100, 2000, ["w1", "w2"], "running")
    # w1 dies and is retried under a new worker id: a row more, and the dead one turns lost.
    clock.advance(STALL + 1)
    other_writer.write([start(6, "w1-retry", "r4", done=5), start(6, "w2", "r3", done=50)])
    view = job(store)
    assert shown(view) == (1, 155, 3000, ["w1", "w1-retry", "w2"], "running")
    assert [worker.lost for worker in view.workers] == [True, False, False]


def test_writers_with_stale_caches_still_follow_the_store(
    store: ProgressStore, writer: StoreWriter, other_writer: StoreWriter
) -> None:
    writer.write([start(1, "w1", "r1", "succeeded", done=1000)])
    other_writer.write([start(5, "w1", "r2")])  # attempt 2, unknown to the first writer's cache
    writer.write([start(2, "w1", "r1", "succeeded", done=1000)])  # a late duplicate of run r1
    assert shown(job(store)) == (2, 0, 1000, ["w1"], "running")
    writer.write([start(6, "w2", "r3", done=4)])  # joins attempt 2 (w1 runs), read from the store
    assert shown(job(store)) == (2, 4, 2000, ["w1", "w2"], "running")


def test_a_batch_replaying_a_whole_attempt_and_a_new_start(store: ProgressStore, writer: StoreWriter) -> None:
    # Messages of the old run and the start of the next in one batch (an outbox replay, say): the old
    # run's tail keeps its attempt, the new run begins the next.
    writer.write([start(1, "w1", "r1")])
    writer.write([start(2, "w1", "r1", "succeeded", done=1000), start(3, "w1", "r2", done=1)])
    assert shown(job(store)) == (2, 1, 1000, ["w1"], "running")


def test_attempts_lists_every_attempt_newest_first(store: ProgressStore, writer: StoreWriter) -> None:
    assert store.attempts("job-1") == []
    writer.write([start(1, "w1", "r1", "failed", done=10, error="ValueError: x")])
    writer.write([start(2, "w2", "r2", "succeeded", done=1000)])
    writer.write([start(3, "w3", "r3", done=20), start(3, "w4", "r4", done=30)])
    attempts = store.attempts("job-1")
    assert [shown(attempt) for attempt in attempts] == [
        (3, 50, 2000, ["w3", "w4"], "running"),
        (2, 1000, 1000, ["w2"], "succeeded"),
        (1, 10, 1000, ["w1"], "failed"),
    ]
    assert attempts[2].error == "ValueError: x"
    assert attempts[0] == job(store)
    # Filters judge the newest attempt: the failed first attempt does not make the job failed.
    assert "job-1" not in [listed.job_id for listed in store.jobs(status="failed")]
    assert "job-1" in [listed.job_id for listed in store.jobs(status="running")]
    assert "job-1" in [listed.job_id for listed in store.jobs(kind="scan", limit=5)]


def test_kind_filter_uses_the_newest_attempts_kind(store: ProgressStore, writer: StoreWriter) -> None:
    writer.write([start(1, "w1", "r1", "succeeded", kind="parse")])
    writer.write([start(2, "w1", "r2", kind="scan")])
    assert [listed.job_id for listed in store.jobs(kind="parse")] == []
    assert "job-1" in [listed.job_id for listed in store.jobs(kind="scan")]


def test_steady_state_batches_look_nothing_up(store_target: StoreTarget, writer: StoreWriter) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    sa.event.listen(Engine, "before_cursor_execute", record)
    try:
        writer.write([start(1, "w1", "r1"), start(1, "w2", "r2")])
        first = [text for text in statements if text.startswith("SELECT")]
        statements.clear()
        for seq in range(2, 6):
            writer.write([start(seq, "w1", "r1", done=seq), start(seq, "w2", "r2", done=seq)])
        steady = list(statements)
    finally:
        sa.event.remove(Engine, "before_cursor_execute", record)
    assert any("GROUP BY" in text for text in first)  # a new run is looked up once...
    # ...and never again (on Postgres each batch takes its jobs' advisory locks: a SELECT reading no row)
    locks = [
        text for text in steady if text.startswith("SELECT SET_CONFIG(") and "PG_ADVISORY_XACT_LOCK(" in text
    ]
    assert len(locks) == (4 if store_target.backend == "postgres" else 0)
    assert not [text for text in steady if text.startswith("SELECT") and text not in locks]
    writes = [text for text in steady if not text.startswith(("BEGIN", "SELECT"))]
    # Per batch: the upsert, then the refresh of the batch's jobs' summary rows (one INSERT ... SELECT).
    assert [text.split()[0] for text in writes] == ["INSERT"] * 8
    assert ["JOB_SUMMARY" in text.split(" SELECT ")[0] for text in writes] == [False, True] * 4


def test_history_records_each_messages_attempt(store_target: StoreTarget, clock: StoreClock) -> None:
    import sqlalchemy as sa

    with StoreWriter(store_target.url, clock=clock, history=True) as writer:
        writer.write([start(1, "w1", "r1", "succeeded", done=1000)])
        writer.write([start(2, "w1", "r2", done=5)])
        writer.write([start(3, "w1", "r2", "succeeded", done=1000)])
    engine = store_target.engine()
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT seq, run_id, attempt FROM cf_job_progress_history ORDER BY seq")
        ).all()
    assert [tuple(row) for row in rows] == [(1, "r1", 1), (2, "r2", 2), (3, "r2", 2)]


# -- schema version 1 --------------------------------------------------------------------------------

V1_TABLES = (
    """CREATE TABLE cf_job_progress (
        job_id VARCHAR(256) NOT NULL, worker_id VARCHAR(256) NOT NULL, kind TEXT, status VARCHAR(16) NOT NULL,
        unit VARCHAR(64), done BIGINT, total BIGINT, throughput DOUBLE PRECISION, eta_seconds BIGINT,
        payload_json TEXT, error TEXT, run_id VARCHAR(256) NOT NULL, seq BIGINT NOT NULL,
        status_seq BIGINT NOT NULL, progress_seq BIGINT NOT NULL, started_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION, progressed_at DOUBLE PRECISION, seen_at DOUBLE PRECISION,
        PRIMARY KEY (job_id, worker_id))""",
    """CREATE TABLE cf_job_progress_history (
        job_id VARCHAR(256) NOT NULL, worker_id VARCHAR(256) NOT NULL, seq BIGINT NOT NULL,
        type VARCHAR(16) NOT NULL, run_id VARCHAR(256) NOT NULL, kind TEXT, status VARCHAR(16),
        unit VARCHAR(64), done BIGINT, total BIGINT, throughput DOUBLE PRECISION, eta_seconds BIGINT,
        payload_json TEXT, error TEXT, updated_at DOUBLE PRECISION, seen_at DOUBLE PRECISION,
        PRIMARY KEY (job_id, worker_id, seq))""",
    """CREATE TABLE cf_job_progress_schema (
        component VARCHAR(64) NOT NULL PRIMARY KEY, version INTEGER NOT NULL)""",
    "INSERT INTO cf_job_progress_schema (component, version) VALUES ('job_progress', 1)",
    """INSERT INTO cf_job_progress (job_id, worker_id, kind, status, unit, done, total, run_id, seq,
        status_seq, progress_seq, started_at, updated_at, progressed_at, seen_at)
        VALUES ('job-1', 'old-host:1', 'scan', 'succeeded', 'files', 1000, 1000, 'r0', 1, 1, 1,
        1800000000, 1800000000, 1800000000, 1800000000)""",
)


def make_v1_store(target: StoreTarget) -> None:
    import sqlalchemy as sa

    engine = target.engine()
    with engine.begin() as connection:
        for statement in V1_TABLES:
            connection.execute(sa.text(statement))
    engine.dispose()


def columns_of(target: StoreTarget, table: str) -> list[str]:
    import sqlalchemy as sa

    engine = target.engine()
    with engine.connect() as connection:
        row = connection.execute(sa.text(f"SELECT * FROM {table}")).keys()
    return list(row)


def test_version_1_tables_are_read_then_migrated_by_the_first_writer(
    store_target: StoreTarget, clock: StoreClock
) -> None:
    import sqlalchemy as sa

    make_v1_store(store_target)
    with ProgressStore(store_target.url, clock=clock) as store:
        assert shown(job(store)) == (1, 1000, 1000, ["old-host:1"], "succeeded")  # before any migration
        with StoreWriter(store_target.url, clock=clock, history=True) as writer:
            writer.write([start(5, "new-host:2", "r1", done=3)])
        assert "attempt" in columns_of(store_target, "cf_job_progress")
        assert "attempt" in columns_of(store_target, "cf_job_progress_history")
        # The row from before the migration is attempt 1; the rerun after it ended is attempt 2.
        assert shown(job(store)) == (2, 3, 1000, ["new-host:2"], "running")
        assert [shown(attempt) for attempt in store.attempts("job-1")][1] == (
            1,
            1000,
            1000,
            ["old-host:1"],
            "succeeded",
        )
    engine = store_target.engine()
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version FROM cf_job_progress_schema")).scalar_one()
    assert (
        version == SCHEMA_VERSION == 4
    )  # version 1 went through 2 (attempt), 3 (the jobs view), 4 (summary)
    assert "state" in columns_of(store_target, "cf_jobs")


def test_writers_racing_to_migrate_version_1_tables_all_succeed(
    store_target: StoreTarget, clock: StoreClock
) -> None:
    make_v1_store(store_target)
    writers = [StoreWriter(store_target.url, clock=clock) for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(index: int) -> None:
        barrier.wait()
        try:
            writers[index].write([start(5 + index, f"w{index}", f"r{index}", done=index)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert errors == []
    assert columns_of(store_target, "cf_job_progress").count("attempt") == 1
    with ProgressStore(store_target.url, clock=clock) as store:
        view = job(store)
    assert view.attempt == 2  # the old row ended; the four writers' workers share the next attempt
    assert len(view.workers) == 4


def test_the_run_cache_is_bounded_and_forgets_the_oldest(store_target: StoreTarget) -> None:
    from jobprogress.store._attempts import RunCache

    cache = RunCache(size=3)
    cache.remember([(("j", f"w{index}"), (f"r{index}", 1)) for index in range(3)])
    cache.remember([(("j", "w0"), ("r9", 2))])  # seen again: now the newest
    cache.remember([(("j", "w3"), ("r3", 1))])
    assert len(cache) == 3
    assert cache.get(("j", "w1")) is None  # the oldest went first
    assert cache.get(("j", "w0")) == ("r9", 2)
    assert cache.get(("j", "w3")) == ("r3", 1)
