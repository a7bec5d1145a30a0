"""Fixtures of the collector's tests: the app on in-memory doubles, a real store, a token file, sinks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _http_support import TOKEN, running_app
from _server_support import POSTGRES_URL, Collector, MemoryWriter, StaticReader, Store
from jobprogress.server import create_app
from jobprogress.sinks.http import HttpSink


@pytest.fixture
def collector() -> Iterator[Collector]:
    writer, reader = MemoryWriter(), StaticReader()
    app = create_app(token=TOKEN, writer=writer, reader=reader)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield Collector(url, int(url.rsplit(":", 1)[1]), writer, reader, client)
    assert writer.closed  # the lifespan released the store
    assert reader.closed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'progress.db'}", prefix)
        return
    if not POSTGRES_URL:
        pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to run the Postgres cases")
    yield Store(POSTGRES_URL, prefix)
    from sqlalchemy import create_engine

    from jobprogress.store.schema import drop_schema

    engine = create_engine(POSTGRES_URL)
    try:
        drop_schema(engine, prefix)
    finally:
        engine.dispose()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[HttpSink]]:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    sinks: list[HttpSink] = []
    yield sinks
    for each in sinks:
        each.close(1.0)
