"""JobSource: one-line errors for a bad --db (seen through the commands), and the page a live view reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _cli_support import HOSTILE_ID, invoke
from jobprogress.cli._commands import cli
from jobprogress.cli._source import JobSource, SourceError


def test_missing_sqlite_file_is_one_line_and_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    for command in (["jobs"], ["show", "x"], ["watch"]):
        result = runner.invoke(cli, [*command, "--db", f"sqlite:///{missing}"])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert str(missing) in lines[0]
        assert "does not exist" in lines[0]
        assert "Traceback" not in result.output
        assert not missing.exists()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("foo://somewhere", "foo://somewhere"),
        ("not a url", "not a database URL"),
        ("http://127.0.0.1:8787", "is a sink, not a database"),
        ("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x", "127.0.0.1"),
    ],
)
def test_bad_db_url_is_one_line_without_traceback(runner: CliRunner, url: str, needle: str) -> None:
    result = runner.invoke(cli, ["jobs", "--db", url])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "s3cret" not in result.stderr  # passwords never printed
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_database_without_tables_has_no_jobs(runner: CliRunner, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    code, out, _ = invoke(runner, "jobs", "--db", f"sqlite:///{path}")
    assert code == 0
    assert "No jobs in" in out
    code, out, _ = invoke(runner, "jobs", "--db", f"sqlite:///{path}", "--json")
    assert json.loads(out) == []


def test_page_holds_every_actionable_job_and_the_newest(store_url: str) -> None:
    from jobprogress.cli._source import JobSource

    actionable = {"backtest-bad", HOSTILE_ID, "schema-lost", "scan-stalled"}
    with JobSource(store_url) as source:
        views, truncated = source.page(size=2)
        assert truncated
        ids = [view.job_id for view in views]
        assert actionable <= set(ids)
        assert len(ids) <= len(actionable) + 2
        assert set(ids[: len(actionable)]) == actionable  # and they come first
        views, truncated = source.page(size=100)
        assert not truncated
        assert len(views) == 8
        views, _ = source.page(size=100, states={"running"}, kinds={"parse"})
        assert {view.job_id for view in views} == {"parse-rows", "parse-bytes"}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 100])
def test_page_comes_in_sort_jobs_order(store_url: str, size: int) -> None:
    """page() orders from the store's order instead of calling sort_jobs: the same order, every size."""
    from jobprogress.cli._format import sort_jobs

    with JobSource(store_url) as source:
        views, _ = source.page(size=size)
    assert [view.job_id for view in views] == [view.job_id for view in sort_jobs(views)]


def test_issue13_item9_an_unreachable_server_is_named_once() -> None:
    # Nothing listens on port 1: the driver refuses at once. The store normalises the URL to
    # postgresql+psycopg://, and the message must not repeat it after the one the user typed.
    with pytest.raises(SourceError) as raised:
        with JobSource("postgresql://nobody@127.0.0.1:1/progress") as source:
            source.jobs()
    message = str(raised.value)
    assert message.startswith("cannot read postgresql://nobody@127.0.0.1:1/progress: ")
    assert message.count("://") == 1, message
