"""`jobprogress demo` off a terminal: real worker processes leave every kind, a failed job, a lost one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import jobprogress
from jobprogress.cli._commands import cli


@pytest.mark.slow
def test_demo_no_tui_leaves_each_kind_a_failed_and_a_lost_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    tree = Path(jobprogress.__file__).parent  # a small real tree: this package's own files
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobprogress.cli",
            "demo",
            "--db",
            url,
            "--duration",
            "3",
            "--path",
            str(tree),
        ],
        stdin=subprocess.DEVNULL,  # no terminal (issue 13, item 1): plain lines, as with --no-tui
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr  # no full-screen view, no escape codes
    assert result.stderr == ""
    assert "Demo finished" in result.stdout
    lines = result.stdout.splitlines()
    # Item 2: at 80 columns job ids stay whole, and the next commands are whole lines of their own.
    rows = [line.split() for line in lines if line.startswith(" backtest-mean-reversion ")]
    assert rows, result.stdout
    assert "failed" in rows[0]
    assert f"  jobprogress show backtest-mean-reversion --db {url}" in lines
    assert "killed worker demo-schema-2 with SIGKILL" in result.stdout

    listed = CliRunner().invoke(
        cli, ["jobs", "--db", url, "--json", "--stall-after", "1"], catch_exceptions=False
    )
    assert listed.exit_code == 0, listed.output
    jobs = {item["job_id"]: item for item in json.loads(listed.stdout)}
    assert {item["kind"] for item in jobs.values()} == {"scan", "parse", "backtest", "schema_eval"}
    failed = [item for item in jobs.values() if item["status"] == "failed"]
    assert [item["job_id"] for item in failed] == ["backtest-mean-reversion"]
    assert failed[0]["error"].startswith("DataGapError: price series has a gap")
    lost = [item for item in jobs.values() if item["status"] == "running" and item["lost"]]
    assert [item["job_id"] for item in lost] == ["schema-eval-stdlib"]
    workers = {worker["worker_id"]: worker for worker in lost[0]["workers"]}
    assert workers["demo-schema-1"]["status"] == "succeeded"
    assert workers["demo-schema-2"]["lost"] is True
    assert 0 < workers["demo-schema-2"]["done"] < workers["demo-schema-2"]["total"]
    succeeded = {job_id for job_id, item in jobs.items() if item["status"] == "succeeded"}
    assert succeeded == {"scan-stdlib", "parse-stdlib-py", "parse-stdlib-data", "backtest-momentum"}
    assert jobs["scan-stdlib"]["done"] == jobs["scan-stdlib"]["total"] > 0
    assert len(jobs["scan-stdlib"]["workers"]) == 3
    assert jobs["parse-stdlib-data"]["unit"] == "bytes"
    assert jobs["parse-stdlib-py"]["unit"] == "rows"
    assert jobs["backtest-momentum"]["payload"]["pass_rate"] is not None
    assert jobs["schema-eval-stdlib"]["payload"]["paths_analysed"] > 0
