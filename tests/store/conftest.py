"""Fixtures of the store's tests: a fake store clock, a writer and a store on it (tables created)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _store_support import STALL, StoreClock, StoreTarget, heartbeat
from _store_support import store_target_fixture as store_target_fixture  # the store_target fixture
from jobprogress.store import ProgressStore, StoreWriter


@pytest.fixture
def clock() -> StoreClock:
    return StoreClock()


@pytest.fixture
def writer(store_target: StoreTarget, clock: StoreClock) -> Iterator[StoreWriter]:
    with StoreWriter(store_target.url, clock=clock) as writer:
        yield writer


@pytest.fixture
def store(store_target: StoreTarget, clock: StoreClock, writer: StoreWriter) -> Iterator[ProgressStore]:
    writer.write([heartbeat(1, job="bootstrap")])  # the file and tables exist before the store opens
    with ProgressStore(store_target.url, stall_after=STALL, clock=clock) as store:
        yield store
