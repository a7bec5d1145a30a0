"""Engines: one per URL, settings and process, shared by writers and stores; the store's clock in SQL."""

from __future__ import annotations

import pytest

from _store_support import (
    StoreTarget,
    backend_params,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
)
from jobprogress.store import ProgressStore, StoreWriter

pytestmark = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def test_stores_for_one_url_share_one_engine(store: ProgressStore, store_target: StoreTarget) -> None:
    with ProgressStore(store_target.url) as other:
        other.jobs()
        store.jobs()
        assert other._engine() is store._engine()
    store.jobs()  # closing one store leaves the other working


def test_concurrent_reads_from_threads(store_target: StoreTarget, writer: StoreWriter) -> None:
    # The collector serves reads from several threads through one store.
    import threading

    from jobprogress.store import _engine

    writer.write([heartbeat(1, job=f"job-{index}") for index in range(20)])
    results: list[int] = []
    with ProgressStore(store_target.url) as store:
        barrier = threading.Barrier(8)

        def read() -> None:
            barrier.wait()
            for _ in range(5):
                results.append(len(store.jobs()))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        key = store._lease.key
        assert key is not None
        assert _engine._users[key] == 2  # this store once, the writer once: no lease leaked by a race
    assert results == [20] * 40
