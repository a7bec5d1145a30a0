"""Store faults per backend: SQLite locks, WAL and bad files; Postgres outages and timeouts; DuckDB's lock.

RELIABILITY rows 11-14, 16 and 17. Row 16 (Postgres restart mid-run) runs twice: against the shared
server by terminating exactly the sink's connections (``pg_terminate_backend``, what a restart does to
a client), and for real with ``pg_ctl restart -m fast`` on a private throwaway cluster of the test's
own, since restarting the shared server would break every other test running against it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event

import jobprogress as jp
from _store_support import (
    PrivatePostgres,
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    private_postgres_fixture,  # noqa: F401  (the private_postgres fixture)
    selected_backends,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
    update,
)
from jobprogress.errors import ConfigurationError, SinkError, StoreError
from jobprogress.sinks.sql import SqlSink
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store import writer as writer_module

sqlite_only = pytest.mark.parametrize("store_target", backend_params("sqlite"), indirect=True)
postgres_only = pytest.mark.parametrize("store_target", backend_params("postgres"), indirect=True)
duckdb_only = pytest.mark.parametrize("store_target", backend_params("duckdb"), indirect=True)


def raw_sqlite(path: Path | None) -> sqlite3.Connection:
    assert path is not None
    return sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)


# -- SQLite -----------------------------------------------------------------------------------------


@sqlite_only
def test_row11_lock_held_longer_than_busy_timeout(store_target: StoreTarget) -> None:
    with StoreWriter(store_target.url, busy_timeout=0.3) as writer:
        writer.write([heartbeat(1)])
        holder = raw_sqlite(store_target.path)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreError, match="database is locked"):
            writer.write([heartbeat(2, "succeeded")])
        assert 0.25 <= time.monotonic() - started < 3  # it waited busy_timeout, then gave up
        holder.rollback()
        holder.close()
        writer.write([heartbeat(2, "succeeded")])  # the reporter's retry after the release lands
    assert stored_rows(store_target)[0]["status"] == "succeeded"


@sqlite_only
def test_row12_every_write_transaction_is_begin_immediate(store_target: StoreTarget) -> None:
    statements: list[str] = []
    with StoreWriter(store_target.url) as writer:
        engine = writer._engine()

        @event.listens_for(engine, "connect")
        def trace(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.set_trace_callback(statements.append)

        writer.write([heartbeat(1), update(2, 5)])
        writer.write([heartbeat(3, "succeeded")])
        writes = [sql for sql in statements if sql.startswith(("INSERT", "UPDATE", "DELETE", "CREATE"))]
        assert writes
        # Every transaction that writes began IMMEDIATE; a read-only one (the schema check) may be
        # deferred, as it never upgrades to a write.
        opened = None
        for sql in statements:
            if sql.startswith("BEGIN"):
                opened = sql
            elif sql.startswith(("INSERT", "UPDATE", "DELETE", "CREATE")):
                assert opened == "BEGIN IMMEDIATE", sql
            elif sql.startswith(("COMMIT", "ROLLBACK")):
                opened = None
        assert "BEGIN IMMEDIATE" in statements
        with ProgressStore(store_target.url) as store:
            statements.clear()
            store.jobs()
        assert [sql for sql in statements if sql.startswith("BEGIN")] == ["BEGIN"]  # reads stay deferred


@sqlite_only
def test_row12_deferred_read_then_write_fails_where_immediate_waits(store_target: StoreTarget) -> None:
    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1)])
        # The race: a deferred transaction reads, another writer commits, the first one's write then
        # fails at once with "database is locked" whatever the timeout (SQLITE_BUSY_SNAPSHOT).
        deferred, other = raw_sqlite(store_target.path), raw_sqlite(store_target.path)
        deferred.execute("BEGIN")
        deferred.execute("SELECT count(*) FROM cf_job_progress").fetchone()
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE cf_job_progress SET kind = 'other'")
        other.execute("COMMIT")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            deferred.execute("UPDATE cf_job_progress SET kind = 'deferred'")
        assert time.monotonic() - started < 1  # no waiting helped
        deferred.rollback()
        # The writer's BEGIN IMMEDIATE waits for the lock instead, and then succeeds.
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.4, other.rollback)
        release.start()
        started = time.monotonic()
        writer.write([heartbeat(2, "succeeded")])
        assert time.monotonic() - started >= 0.3
        release.join()
        deferred.close()
        other.close()
    assert stored_rows(store_target)[0]["status"] == "succeeded"


@sqlite_only
def test_row13_long_reader_then_wal_truncated_under_the_cap(
    store_target: StoreTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "_WAL_CHECK_INTERVAL", 0.0)
    cap = 256 * 1024
    wal = Path(f"{store_target.path}-wal")
    with StoreWriter(store_target.url, wal_cap_bytes=cap) as writer:
        writer.write([heartbeat(1)])
        reader = raw_sqlite(store_target.path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM cf_job_progress").fetchone()  # pins the WAL
        seq = 1
        while wal.stat().st_size <= 2 * cap:
            seq += 1
            batch = [
                heartbeat(seq, job=f"job-{index}", progress=envelope(seq, payload={"note": "x" * 200}))
                for index in range(100)
            ]
            writer.write(batch)  # writes keep landing while the reader holds its snapshot
            assert seq < 500
        reader.rollback()
        reader.close()
        writer.write([heartbeat(seq + 1)])
        assert wal.stat().st_size <= cap


@sqlite_only
def test_row14_unusable_paths_are_clear_configuration_errors(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="is not a directory"):
        SqlSink(f"sqlite:///{a_file}/progress.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        SqlSink(f"sqlite:///{garbage}")
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        jp.configure(sinks=[f"sqlite:///{garbage}"])
    with pytest.raises(StoreError, match="not a SQLite database"):
        ProgressStore(f"sqlite:///{garbage}")
    with (
        StoreWriter(f"sqlite:///{a_file}/progress.db") as writer,
        pytest.raises(StoreError, match="directory"),
    ):
        writer.write([heartbeat(1)])


@sqlite_only
def test_row14_database_full_is_a_retryable_sink_error(store_target: StoreTarget) -> None:
    sink = SqlSink(store_target.url)
    try:
        sink.send([heartbeat(1)])
        engine = sink._get_writer()._engine()
        probe = raw_sqlite(store_target.path)
        pages = probe.execute("PRAGMA page_count").fetchone()[0]
        probe.close()

        @event.listens_for(engine, "checkout")
        def cap_pages(dbapi_connection: sqlite3.Connection, *_: object) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        batch = [
            heartbeat(2, job=f"job-{index}", progress=envelope(1, payload={"n": "y" * 200}))
            for index in range(500)
        ]
        with pytest.raises(SinkError, match="database or disk is full") as caught:
            sink.send(batch)
        assert caught.value.retryable
    finally:
        sink.close(1.0)


@sqlite_only
def test_row14_broken_file_after_configure_never_reaches_worker_code(store_target: StoreTarget) -> None:
    jp.configure(sinks=[store_target.url], interval=0.05)
    assert store_target.path is not None
    store_target.path.write_bytes(os.urandom(8192))  # clobbered before the first send
    with jp.track("survivor", unit="files", total=3) as tracker:
        for _ in range(3):
            tracker.advance()
    assert tracker.status == "succeeded"
    assert jp.flush(timeout=0.5) is False  # the final state could not be stored
    failures = sum(sink["failures"] for sink in jp.stats()["sinks"].values())
    assert failures >= 1


# -- Postgres ---------------------------------------------------------------------------------------


@postgres_only
def test_row16_postgres_connections_dropped_mid_run_reconnect(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1, progress=envelope(10))])
        engine = writer._engine()
        with engine.connect() as connection:  # learn the pooled connection's server pid
            pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            connection.rollback()
        admin = store_target.engine()
        with admin.connect() as connection:
            assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        # What a restart leaves behind: a pooled connection whose server is gone. pre_ping notices
        # and reconnects, so the final state lands on the first try.
        writer.write([heartbeat(2, "succeeded", progress=envelope(100))])
    row = stored_rows(store_target)[0]
    assert (row["status"], row["done"]) == ("succeeded", 100)


@postgres_only
def test_row16_tracker_final_state_lands_after_connections_drop(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    application = f"jp-row16-{os.getpid()}-{time.monotonic_ns()}"
    jp.configure(sinks=[f"{store_target.url}&application_name={application}"], interval=0.05)
    with jp.track("pg-run", unit="rows", total=10, worker_id="pg-worker") as tracker:
        tracker.advance(5)
        assert jp.flush(timeout=5.0)
        admin = store_target.engine()
        with admin.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
                ),
                {"name": application},
            ).all()
        assert killed  # the sink's pooled connection is gone, as after a restart
        tracker.advance(5)
    assert jp.flush(timeout=5.0)
    row = stored_rows(store_target)[0]
    assert (row["status"], row["done"], row["worker_id"]) == ("succeeded", 10, "pg-worker")


def _postmaster_started(url: str) -> object:
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool
    )
    with engine.connect() as connection:
        started = connection.execute(sa.text("SELECT pg_postmaster_start_time()")).scalar_one()
    engine.dispose()
    return started


@pytest.mark.slow
@pytest.mark.skipif(
    "postgres" not in selected_backends(), reason="JOBPROGRESS_TEST_BACKENDS excludes postgres"
)
def test_row16_real_postgres_restart_mid_run(private_postgres: PrivatePostgres) -> None:
    before = _postmaster_started(private_postgres.url)
    jp.configure(sinks=[private_postgres.url], interval=0.05)
    with jp.track("restarted-db", unit="rows", total=10, worker_id="pg-worker") as tracker:
        tracker.advance(4)
        assert jp.flush(timeout=10.0)
        private_postgres.restart()  # pg_ctl restart -m fast: the sink's pooled connection dies
        tracker.advance(6)
    assert jp.flush(timeout=15.0)  # reconnected (pre-ping, or a retry) and the final state landed
    assert _postmaster_started(private_postgres.url) != before  # it really was restarted
    with ProgressStore(private_postgres.url) as store:
        job = store.job("restarted-db")
    assert job is not None
    assert (job.status, job.done, job.total) == ("succeeded", 10, 10)


@postgres_only
def test_row17_postgres_down_at_init_is_bounded(store_target: StoreTarget) -> None:
    with socket_without_listener() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/test"
        started = time.monotonic()
        with (
            StoreWriter(url, connect_timeout=1.0) as writer,
            pytest.raises(StoreError, match=r"127\.0\.0\.1"),
        ):
            writer.write([heartbeat(1)])
        assert time.monotonic() - started < 5
        started = time.monotonic()
        with ProgressStore(url, connect_timeout=1.0) as store, pytest.raises(StoreError):
            store.jobs()
        assert time.monotonic() - started < 5


@postgres_only
def test_row17_lock_timeout_fires_on_a_blocked_statement(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    with StoreWriter(store_target.url, lock_timeout=0.3) as writer:
        writer.write([heartbeat(1)])
        admin = store_target.engine()
        with admin.connect() as blocker:
            blocker.execute(sa.text("LOCK TABLE cf_job_progress IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(StoreError, match="lock timeout"):
                writer.write([heartbeat(2, "succeeded")])
            assert time.monotonic() - started < 3
            blocker.rollback()
        writer.write([heartbeat(2, "succeeded")])
    assert stored_rows(store_target)[0]["status"] == "succeeded"


class socket_without_listener:
    """A local TCP port that refuses connections (bound, never listening) for the block's duration."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        self._socket.close()


# -- DuckDB -----------------------------------------------------------------------------------------


@duckdb_only
def test_duckdb_second_process_gets_an_error_naming_the_holder(store_target: StoreTarget) -> None:
    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1)])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(store_target.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        sink = SqlSink(store_target.url)
        try:
            with pytest.raises(SinkError, match=f"PID {holder.pid}") as caught:
                sink.send([heartbeat(2, "succeeded")])
            assert "one writing process" in str(caught.value)
            assert caught.value.retryable
        finally:
            sink.close(1.0)
        with ProgressStore(store_target.url) as store, pytest.raises(StoreError, match=f"PID {holder.pid}"):
            store.jobs()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()  # type: ignore[union-attr]
    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(2, "succeeded")])  # the lock is free again: delivered
    with ProgressStore(store_target.url) as store:
        job = store.job("job-1")
    assert job is not None
    assert job.status == "succeeded"
