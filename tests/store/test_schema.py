"""The store's tables: created once however many writers race, versioned, migrated, under a checked prefix."""

from __future__ import annotations

import threading

import pytest

from _store_support import (
    StoreTarget,
    backend_params,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
)
from jobprogress.errors import ConfigurationError, StoreError
from jobprogress.store import ProgressStore, StoreWriter
from jobprogress.store.schema import SCHEMA_VERSION, tables_for

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def test_schema_is_versioned_and_a_newer_one_is_refused(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1)])
    engine = store_target.engine()
    version = tables_for("cf_").version
    with engine.begin() as connection:
        assert connection.execute(sa.select(version.c.version)).scalar_one() == SCHEMA_VERSION
        connection.execute(sa.update(version).values(version=SCHEMA_VERSION + 1))
    with StoreWriter(store_target.url) as writer, pytest.raises(StoreError, match="upgrade jobprogress"):
        writer.write([heartbeat(2)])
    with ProgressStore(store_target.url) as store, pytest.raises(StoreError, match="upgrade jobprogress"):
        store.jobs()


def test_concurrent_schema_creation_is_not_an_error(store_target: StoreTarget) -> None:
    # Writers with different settings get different engines, so they really race on CREATE TABLE.
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def create(index: int) -> None:
        try:
            with StoreWriter(store_target.url, busy_timeout=5 + index, lock_timeout=5 + index) as writer:
                barrier.wait()
                for attempt in range(20):
                    try:
                        writer.write([heartbeat(1, worker=f"w{index}")])
                        return
                    except StoreError as exc:
                        if store_target.backend != "duckdb" or attempt == 19:
                            raise
                        _ = exc  # DuckDB: another thread's write conflicted; retried like the reporter does
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(row["worker_id"] for row in stored_rows(store_target)) == ["w0", "w1", "w2", "w3"]


def test_table_prefix_is_checked_and_used(store_target: StoreTarget) -> None:
    with pytest.raises(ConfigurationError, match="table_prefix"):
        StoreWriter(store_target.url, table_prefix="x; DROP TABLE y")
    with StoreWriter(store_target.url, table_prefix="other_") as writer:
        writer.write([heartbeat(1)])
    assert stored_rows(store_target, "other_")[0]["job_id"] == "job-1"
    with ProgressStore(store_target.url) as store:
        assert store.jobs() == []  # the default prefix has no tables: no jobs, and none created
    with ProgressStore(store_target.url, table_prefix="other_") as store:
        assert [job.job_id for job in store.jobs()] == ["job-1"]


def test_an_older_schema_is_migrated_on_first_write(
    store_target: StoreTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from jobprogress.store import schema

    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(1)])
    engine = store_target.engine()
    version = tables_for("cf_").version
    with engine.begin() as connection:
        connection.execute(sa.update(version).values(version=SCHEMA_VERSION - 1))
    with monkeypatch.context() as patch:
        patch.delitem(schema.MIGRATIONS, SCHEMA_VERSION - 1)
        with StoreWriter(store_target.url) as writer, pytest.raises(StoreError, match="no migration"):
            writer.write([heartbeat(2)])
    applied: list[int] = []
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION - 1, lambda connection, tables: applied.append(1))
    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(2)])
    assert applied == [1]
    with engine.connect() as connection:
        assert connection.execute(sa.select(version.c.version)).scalar_one() == SCHEMA_VERSION
