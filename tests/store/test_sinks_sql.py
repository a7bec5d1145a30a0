"""The sqlite/duckdb/postgresql sinks as plugins: lazy imports and connections, extras, fork, resume."""

from __future__ import annotations

import importlib.util
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

import jobprogress as jp
from _store_support import (
    StoreTarget,
    backend_params,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
    update,
)
from jobprogress import _plugins
from jobprogress.errors import ConfigurationError, MissingExtraError
from jobprogress.sinks import Sink
from jobprogress.sinks.sql import SqlSink, split_sink_url
from jobprogress.store import ProgressStore, StoreWriter

every_backend = pytest.mark.parametrize("store_target", backend_params(), indirect=True)


def test_schemes_are_registered_as_builtin_plugins() -> None:
    factories = _plugins.sink_factories()
    for scheme in ("sqlite", "duckdb", "postgresql", "postgresql+psycopg"):
        assert factories[scheme] is SqlSink


def test_importing_the_plugin_imports_no_database_library() -> None:
    code = (
        "import sys, jobprogress, jobprogress.sinks.sql, jobprogress.store; "
        "print(sorted(m for m in ('sqlalchemy', 'psycopg', 'duckdb', 'duckdb_engine') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_factory_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    sink = _plugins.create_sink(f"sqlite:///{path}")
    assert isinstance(sink, Sink)
    sink.close(1.0)
    assert not path.exists()
    pg = _plugins.create_sink("postgresql://nobody:secret@127.0.0.1:1/none?options=-cstatement_timeout%3D5s")
    assert "secret" not in repr(pg)  # constructed without connecting; the password stays hidden
    pg.close(1.0)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://u@h/db", "psycopg", "postgres"),
        ("postgresql+psycopg://u@h/db", "psycopg", "postgres"),
        ("duckdb:///x.duckdb", "duckdb_engine", "duckdb"),
    ],
)
def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=rf"pip install 'jobprogress-sdk\[{extra}\]'") as caught:
        SqlSink(url)
    assert caught.value.missing == module


def test_missing_sqlalchemy_names_the_sql_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(MissingExtraError, match=r"jobprogress-sdk\[sql\]"):
        SqlSink(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(MissingExtraError, match=r"jobprogress-sdk\[sql\]"):
        ProgressStore(f"sqlite:///{tmp_path}/x.db")


def test_sink_parameters_are_split_off_and_others_pass_through() -> None:
    assert split_sink_url("sqlite:////abs/p.db") == ("sqlite:////abs/p.db", "cf_", False)
    assert split_sink_url("sqlite:////abs/p.db?table_prefix=app_&history=true") == (
        "sqlite:////abs/p.db",
        "app_",
        True,
    )
    url, prefix, history = split_sink_url(
        "postgresql://h/db?options=-csearch_path%3Dx&history=0&sslmode=disable"
    )
    assert (prefix, history) == ("cf_", False)
    assert url == "postgresql://h/db?options=-csearch_path%3Dx&sslmode=disable"
    with pytest.raises(ConfigurationError, match="history"):
        split_sink_url("sqlite:///p.db?history=maybe")
    with pytest.raises(ConfigurationError, match="table_prefix"):
        SqlSink("sqlite:///p.db?table_prefix=bad-prefix")


@every_backend
def test_sink_writes_and_reads_back_for_resume(store_target: StoreTarget) -> None:
    sink = SqlSink(f"{store_target.url}{'&' if '?' in store_target.url else '?'}table_prefix=app_")
    try:
        assert sink.stored_done("job-1", "w1") is None
        sink.send([heartbeat(1), update(2, 33)])
        assert sink.flush(1.0)
        assert sink.stored_done("job-1", "w1") == (33, 2)
    finally:
        sink.close(1.0)
        sink.close(1.0)
    assert stored_rows(store_target, "app_")[0]["done"] == 33


def _child_send(url: str, parent_engine_id: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    sink = _SHARED["sink"]
    try:
        sink.send([heartbeat(5, worker="child", progress=None)])
        engine = sink._get_writer()._engine()
        queue.put(("ok", id(engine) != parent_engine_id))
    except BaseException as exc:
        queue.put(("error", repr(exc)))
    finally:
        sink.close(1.0)


_SHARED: dict[str, SqlSink] = {}


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
# Python 3.12+ warns about fork() when any thread runs (say, another library's); this test forks on purpose.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_forked_child_builds_its_own_engine(store_target: StoreTarget) -> None:
    sink = SqlSink(store_target.url)
    _SHARED["sink"] = sink
    try:
        sink.send([heartbeat(1, worker="parent")])
        parent_engine = sink._get_writer()._engine()
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_send, args=(store_target.url, id(parent_engine), queue))
        child.start()
        outcome = queue.get(timeout=60)
        child.join(timeout=60)
        queue.close()
        queue.join_thread()
        assert outcome == ("ok", True)
        assert child.exitcode == 0
        sink.send([heartbeat(2, "succeeded", worker="parent")])  # the parent's pool is intact
        assert sink._get_writer()._engine() is parent_engine
    finally:
        sink.close(1.0)
        _SHARED.clear()
    rows = {row["worker_id"]: row["status"] for row in stored_rows(store_target)}
    assert rows == {"child": "running", "parent": "succeeded"}


@every_backend
def test_track_resume_continues_from_the_stored_row(store_target: StoreTarget) -> None:
    with StoreWriter(store_target.url) as writer:
        writer.write(
            [
                heartbeat(1_000_000, job="resumable", worker="w-9"),
                update(1_000_001, 40, job="resumable", worker="w-9"),
            ]
        )
    jp.configure(sinks=[store_target.url], interval=0.05)
    with jp.track("resumable", unit="files", total=100, worker_id="w-9", resume=True) as tracker:
        assert tracker.done == 40
        tracker.advance(10)
    assert jp.flush(timeout=5.0)
    row = stored_rows(store_target)[0]
    assert (row["status"], row["done"]) == ("succeeded", 50)  # no double count, no restart from 0
    assert row["seq"] > 1_000_001
    with jp.track("fresh", unit="files", worker_id="w-9", resume=True) as tracker:
        assert tracker.done == 0  # nothing stored: starts at 0


@pytest.mark.parametrize("url", ["mysql://u:hunter2@h/db", "postgresql://u:hunter2@h:notaport/db"])
def test_bad_store_urls_are_configuration_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SqlSink(url) if url.startswith("postgresql") else StoreWriter(url)
    assert "hunter2" not in str(caught.value)
