"""`jobprogress jobs|show|serve` through click's CliRunner, against real SQLite stores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from _cli_support import FORBIDDEN, HOSTILE_ID, HOSTILE_TEXT, fill_store, invoke
from jobprogress.cli import main
from jobprogress.cli._commands import cli
from jobprogress.store.views import JobView, WorkerView


def test_jobs_table_lists_actionable_first(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", store_url)
    assert code == 0
    order = [
        name
        for name in ("backtest-bad", "schema-lost", "scan-stalled", "parse-rows", "scan-src", "backtest-ok")
        if name in out
    ]
    assert len(order) == 6
    positions = [out.index(name) for name in order]
    assert positions == sorted(positions)
    # Stalled and lost are words, not colour alone.
    assert "lost" in out
    assert "stalled" in out
    assert "8 jobs: 2 failed, 1 lost, 1 stalled, 3 running, 1 ready" in out


def test_jobs_progress_lines_per_kind(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", store_url)
    assert code == 0
    text = " ".join(out.split())
    assert "1,200/5,000 rows" in text  # parse, rows
    assert "3.0 MiB / 8.0 MiB" in text  # parse, bytes human-sized
    assert "50/200 files" in text  # scan: two workers summed
    assert "pass 75.0%" in text  # backtest: passed / iterations done
    assert "77 paths analysed" in text  # schema_eval


def test_jobs_json_has_jobview_fields_and_is_ascii(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", store_url, "--json")
    assert code == 0
    assert out.isascii()
    jobs = json.loads(out)
    assert len(jobs) == 8
    for item in jobs:
        assert set(item) == set(JobView.model_fields)
        for worker in item["workers"]:
            assert set(worker) == set(WorkerView.model_fields)
        JobView.model_validate(item)
    by_id = {item["job_id"]: item for item in jobs}
    assert by_id["schema-lost"]["lost"] is True
    assert by_id["scan-stalled"]["stalled"] is True
    assert by_id["scan-src"]["done"] == 50
    assert len(by_id["scan-src"]["workers"]) == 2
    assert HOSTILE_ID in by_id  # escaped in the text, intact once decoded
    assert {item["job_id"] for item in jobs[:2]} == {HOSTILE_ID, "backtest-bad"}  # failed first


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--status", "failed"], {"backtest-bad", HOSTILE_ID}),
        (["--status", "lost,stalled"], {"schema-lost", "scan-stalled"}),
        (["--status", "lost", "--status", "stalled"], {"schema-lost", "scan-stalled"}),
        (["--status", "actionable"], {"backtest-bad", HOSTILE_ID, "schema-lost", "scan-stalled"}),
        (["--status", "ready"], {"backtest-ok"}),
        (["--status", "running"], {"parse-rows", "parse-bytes", "scan-src"}),
        (["--kind", "parse"], {"parse-rows", "parse-bytes"}),
        (["--kind", "backtest,schema_eval"], {"backtest-ok", "backtest-bad", "schema-lost"}),
        (["--kind", "backtest", "--status", "failed"], {"backtest-bad"}),
        (["--kind", "nothing-like-this"], set()),
    ],
)
def test_jobs_filters(runner: CliRunner, store_url: str, options: list[str], expected: set[str]) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", store_url, "--json", *options)
    assert code == 0
    assert {item["job_id"] for item in json.loads(out)} == expected


def test_jobs_limit_keeps_the_most_actionable(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", store_url, "--json", "--limit", "3")
    assert code == 0
    states = [(item["status"], item["lost"]) for item in json.loads(out)]
    assert states == [("failed", False), ("failed", False), ("running", True)]


def test_unknown_status_is_a_usage_error_naming_the_valid_ones(runner: CliRunner, store_url: str) -> None:
    result = runner.invoke(cli, ["jobs", "--db", store_url, "--status", "bogus"])
    assert result.exit_code == 2
    assert "unknown status 'bogus'" in result.stderr
    assert "stalled" in result.stderr


def test_db_comes_from_the_environment(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "jobs", "--json", env={"JOBPROGRESS_DB": store_url})
    assert code == 0
    assert len(json.loads(out)) == 8


def test_show_prints_envelope_payload_failure_and_workers(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "show", "--db", store_url, "backtest-bad")
    assert code == 0
    for needle in ("backtest-bad", "failed", "37/200 iterations", "ValueError: window 37 has a gap", "w1"):
        assert needle in out
    code, out, _ = invoke(runner, "show", "--db", store_url, "scan-src")
    assert code == 0
    assert "workers (2)" in out
    assert "w2" in out
    code, out, _ = invoke(runner, "show", "--db", store_url, "schema-lost")
    assert code == 0
    assert "paths_analysed" in out  # payload fields
    assert "lost" in out


def test_show_json(runner: CliRunner, store_url: str) -> None:
    code, out, _ = invoke(runner, "show", "--db", store_url, "scan-src", "--json")
    assert code == 0
    assert JobView.model_validate_json(out).done == 50


def test_show_unknown_job_fails_and_suggests(runner: CliRunner, store_url: str) -> None:
    result = runner.invoke(cli, ["show", "--db", store_url, "scan-sr"])
    assert result.exit_code == 1
    assert "no job 'scan-sr'" in result.stderr
    assert "did you mean 'scan-src'" in result.stderr


def test_serve_passes_options_through(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import jobprogress.server

    calls: list[tuple[str, dict[str, object]]] = []

    def fake_serve(db_url: str, **options: object) -> None:
        calls.append((db_url, options))

    monkeypatch.setattr(jobprogress.server, "serve", fake_serve)
    result = runner.invoke(
        cli,
        [
            "serve",
            "--db",
            "sqlite:///x.db",
            "--port",
            "9999",
            "--token-file",
            "tok",
            "--limit-concurrency",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        (
            "sqlite:///x.db",
            {
                "host": "127.0.0.1",
                "port": 9999,
                "token_file": "tok",
                "limit_concurrency": 5,
                "stall_after": 30.0,
                "read_token_file": None,
                "open_read": False,
            },
        )
    ]


def test_main_without_the_cli_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "textual", None)  # find_spec() then reports it missing
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "pip install 'jobprogress-sdk[cli]'" in err
    assert "textual" in err


def test_main_runs_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "--db", store_url, "--json"])
    assert exit_info.value.code == 0
    assert len(json.loads(capsys.readouterr().out)) == 8


def test_importing_the_cli_package_imports_no_extra() -> None:
    import subprocess

    code = (
        "import sys, jobprogress, jobprogress.cli; "
        "bad = [m for m in ('click', 'rich', 'textual', 'sqlalchemy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.postgres
def test_jobs_from_postgres(runner: CliRunner) -> None:
    import os
    import uuid

    base = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to run the Postgres tests")
    import sqlalchemy

    schema = f"cli_{uuid.uuid4().hex[:12]}"  # a schema of its own, so parallel runs never collide
    admin = sqlalchemy.create_engine(base)
    try:
        with admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in base else "?"
        url = f"{base}{separator}options=-csearch_path%3D{schema}"
        fill_store(url)
        code, out, _ = invoke(runner, "jobs", "--db", url, "--json", "--status", "actionable")
        assert code == 0
        assert {item["job_id"] for item in json.loads(out)} == {
            "backtest-bad",
            HOSTILE_ID,
            "schema-lost",
            "scan-stalled",
        }
        code, out, _ = invoke(runner, "show", "--db", url, "scan-src")
        assert code == 0
        assert "workers (2)" in out
    finally:
        with admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_jobs_table_caps_its_rows_and_says_so(
    runner: CliRunner, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobprogress.cli import _commands

    monkeypatch.setattr(_commands, "TABLE_ROWS", 3)
    code, out, _ = invoke(runner, "jobs", "--db", store_url)
    assert code == 0
    assert "8 jobs: 2 failed, 1 lost, 1 stalled, 3 running, 1 ready" in out  # counts cover every job
    assert "the first 3 shown" in out
    assert "backtest-ok" not in out
    code, out, _ = invoke(runner, "jobs", "--db", store_url, "--json")
    assert len(json.loads(out)) == 8  # --json is never capped


@pytest.mark.parametrize(
    ("options", "expected", "banner"),
    [
        ([], 8, ""),
        (["--page", "1"], 4, "newest 1 and every actionable job shown (--all for all)"),
        (["--page", "1", "--all"], 8, ""),
        (["--status", "failed"], 2, ""),
    ],
)
def test_watch_reads_a_page_by_default(
    runner: CliRunner,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    expected: int,
    banner: str,
) -> None:
    from jobprogress.cli._tui import JobsApp

    seen: list[tuple[int, str]] = []

    def run(self: JobsApp) -> None:  # what the app's worker thread would do, without a terminal
        views = self._fetch()
        seen.append((len(views), self._banner() if self._banner else ""))

    monkeypatch.setattr(JobsApp, "run", run)
    monkeypatch.setattr("jobprogress.cli._commands.on_terminal", lambda: True)
    result = runner.invoke(cli, ["watch", "--db", store_url, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen == [(expected, banner)]


def test_issue13_item1_watch_without_a_terminal_prints_one_snapshot_and_exits(
    runner: CliRunner, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobprogress.cli._tui import JobsApp

    def run(self: JobsApp) -> None:
        raise AssertionError("the full-screen view started without a terminal")

    monkeypatch.setattr(JobsApp, "run", run)
    # CliRunner's stdin and stdout are not terminals, like a pipe, cron or CI.
    result = runner.invoke(cli, ["watch", "--db", store_url, "--page", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    assert "Status" in result.stdout
    assert "Progress" in result.stdout
    assert "newest 1 and every actionable job shown (--all for all)" in result.stdout


def test_issue13_item2_piped_jobs_table_prints_every_value_whole(tmp_path: Path) -> None:
    from _cli_support import heartbeat
    from jobprogress.store import StoreWriter

    url = f"sqlite:///{tmp_path / 'long.db'}"
    long_id = "backtest-mean-reversion-" + "-".join(f"segment{n}" for n in range(12))
    with StoreWriter(url) as writer:
        writer.write([heartbeat(long_id, "host:1", status="running", done=3, total=10)])
    result = CliRunner(env={"COLUMNS": None}).invoke(cli, ["jobs", "--db", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert long_id in result.stdout  # on one line, whole, although wider than the 160-column default


@pytest.fixture
def rerun_url(tmp_path: Path) -> str:
    """A job run twice: attempt 1 failed on two workers, attempt 2 succeeded on one."""
    from _cli_support import heartbeat
    from jobprogress.store import StoreWriter

    url = f"sqlite:///{tmp_path / 'rerun.db'}"
    with StoreWriter(url) as writer:
        writer.write([
            heartbeat("nightly", "host:100", status="failed", done=3, total=10, error="OSError: disk full"),
            heartbeat("nightly", "host:101", status="succeeded", done=10, total=10),
        ])  # fmt: skip
        writer.write([heartbeat("nightly", "host:200", seq=2, status="succeeded", done=20, total=20)])
    return url


def test_show_and_jobs_show_the_newest_attempt_and_show_attempts_lists_each(
    runner: CliRunner, rerun_url: str
) -> None:
    code, out, _ = invoke(runner, "jobs", "--db", rerun_url, "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["attempt"], listed["status"], listed["done"], listed["total"]) == (2, "succeeded", 20, 20)
    assert [worker["worker_id"] for worker in listed["workers"]] == ["host:200"]
    assert listed["workers"][0]["attempt"] == 2
    code, out, _ = invoke(runner, "show", "--db", rerun_url, "nightly")
    assert code == 0
    assert "workers (1)" in out
    assert "show --attempts" in out  # tells that earlier attempts exist
    assert "host:100" not in out
    code, out, _ = invoke(runner, "show", "--db", rerun_url, "nightly", "--attempts")
    assert code == 0
    assert "nightly · attempt 2" in out
    assert "nightly · attempt 1" in out
    assert out.index("attempt 2") < out.index("attempt 1")  # newest first
    assert "2 (the newest)" in out
    assert "1 (attempt 2 is the newest)" in out
    assert "OSError: disk full" in out  # the first attempt's failure stays readable
    assert "workers (2)" in out
    assert "host:101" in out
    code, out, _ = invoke(runner, "show", "--db", rerun_url, "nightly", "--attempts", "--json")
    assert code == 0
    views = [JobView.model_validate(view) for view in json.loads(out)]
    assert [(view.attempt, view.status, view.done) for view in views] == [
        (2, "succeeded", 20),
        (1, "failed", 13),
    ]


def test_show_attempts_of_an_unknown_job_fails_and_suggests(runner: CliRunner, rerun_url: str) -> None:
    result = runner.invoke(cli, ["show", "--db", rerun_url, "nightli", "--attempts"])
    assert result.exit_code == 1
    assert "did you mean 'nightly'" in result.stderr


def test_row29_cli_output_holds_no_escape_from_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    fill_store(url)
    runner = CliRunner(env={"COLUMNS": "200"})
    table = runner.invoke(cli, ["jobs", "--db", url], catch_exceptions=False)
    detail = runner.invoke(cli, ["show", "--db", url, HOSTILE_ID], catch_exceptions=False)
    as_json = runner.invoke(cli, ["jobs", "--db", url, "--json"], catch_exceptions=False)
    for result in (table, detail, as_json):
        assert result.exit_code == 0, result.output
        for forbidden in FORBIDDEN:
            assert forbidden not in result.stdout, repr(forbidden)
    assert "[/][bold]:warning:\\u202eid" in table.stdout  # escaped, not dropped: it can be typed back
    assert "A[/]B[bold]B:warning:B\\x1b[2JB\\x1b]0;x\\x07B B\\u202eZ" in detail.stdout
    assert as_json.stdout.isascii()
    decoded = {item["job_id"]: item for item in json.loads(as_json.stdout)}
    assert decoded[HOSTILE_ID]["error"] == HOSTILE_TEXT  # --json keeps the data, escaped
