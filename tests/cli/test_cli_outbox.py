"""``jobprogress outbox list|deliver``, and the collector delivering its database's outbox at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _http_support import TOKEN, collector_process, wait_for
from _store_support import envelope, heartbeat
from jobprogress._outbox import Outbox
from jobprogress.cli._commands import cli
from jobprogress.store import ProgressStore


def spool_final(root: Path, url: str, job: str = "spooled-job") -> None:
    final = heartbeat(10**15, "succeeded", job=job, progress=envelope(10, 10))
    assert Outbox(root, url).spool({(job, "w1"): [final]}) is not None


def test_list_and_deliver_then_nothing_waits(tmp_path: Path) -> None:
    root, url = tmp_path / "outbox", f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    assert "nothing waits in" in runner.invoke(cli, ["outbox", "list", "--dir", str(root)]).output
    spool_final(root, url)
    listed = runner.invoke(cli, ["outbox", "list", "--dir", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    (summary,) = json.loads(listed.output)
    assert (summary["sink"], summary["states"], summary["finals"], summary["files"]) == (url, 1, 1, 1)
    table = runner.invoke(cli, ["outbox", "list", "--dir", str(root)])
    assert "p.db" in table.output
    delivered = runner.invoke(cli, ["outbox", "deliver", "--dir", str(root)])
    assert delivered.exit_code == 0, delivered.output
    assert "delivered 1 state(s)" in delivered.output
    with ProgressStore(url) as store:
        view = store.job("spooled-job")
    assert view is not None
    assert (view.status, view.done) == ("succeeded", 10)
    assert "nothing waits in" in runner.invoke(cli, ["outbox", "list", "--dir", str(root)]).output
    assert (
        runner.invoke(cli, ["outbox", "deliver", "--dir", str(root)]).output.strip() == "nothing to deliver"
    )


def test_deliver_to_a_sink_still_down_keeps_the_states_and_exits_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}?timeout=1"
        root = tmp_path / "outbox"
        spool_final(root, url)
        result = CliRunner().invoke(cli, ["outbox", "deliver", "--dir", str(root), "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "still fails after 0.5s" in result.output
    assert len(Outbox(root, url).files()) == 1


def test_password_is_hidden_and_an_off_outbox_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "outbox"
    spool_final(root, "postgresql+psycopg://user:hunter2@127.0.0.1:1/db")
    listed = CliRunner().invoke(cli, ["outbox", "list", "--dir", str(root), "--json"])
    assert "hunter2" not in listed.output
    assert "user:***@" in listed.output
    monkeypatch.setenv("JOBPROGRESS_OUTBOX", "")
    off = CliRunner().invoke(cli, ["outbox", "list"])
    assert off.exit_code == 1
    assert "the outbox is turned off" in off.output


def test_the_collector_delivers_the_outbox_of_its_database_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, db_url = tmp_path / "outbox", f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.setenv("JOBPROGRESS_OUTBOX", str(root))
    spool_final(root, db_url, job="left-by-a-worker")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with collector_process(db_url, token_file, tmp_path / "collector.log"):
        assert wait_for(lambda: not Outbox(root, db_url).files(), timeout=20)
    with ProgressStore(db_url) as store:
        view = store.job("left-by-a-worker")
    assert view is not None
    assert view.status == "succeeded"
