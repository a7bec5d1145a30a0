"""`jobs --json` and `--jsonl` stream jobs in display order; the summary line counts in SQL (issue 12)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from jobprogress.cli._commands import cli
from jobprogress.envelope import Heartbeat, JobProgressEnvelope
from jobprogress.store import ProgressStore, StoreWriter

_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    messages = []
    for index in range(30):
        status = ("running", "failed", "succeeded", "cancelled")[index % 4]
        for worker in ("w1", "w2"):
            progress = JobProgressEnvelope(items_done=index, items_total=100, unit="files", updated_at=_AT)
            messages.append(
                Heartbeat(
                    job_id=f"job-{index:02d}",
                    worker_id=worker,
                    run_id="r",
                    seq=1,
                    updated_at=_AT,
                    status=status,
                    progress=progress,
                )
            )
    with StoreWriter(url) as writer:
        writer.write(messages)
    return url


def test_json_and_jsonl_stream_the_same_jobs_as_the_list(tmp_path: Path) -> None:
    from jobprogress.cli._format import sort_jobs

    url = _store(tmp_path)
    runner = CliRunner()
    with ProgressStore(url) as store:
        expected = [view.model_dump(mode="json") for view in sort_jobs(store.jobs())]
    listed = runner.invoke(cli, ["jobs", "--db", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert listed.output == json.dumps(expected, ensure_ascii=True, indent=2) + "\n"
    lines = runner.invoke(cli, ["jobs", "--db", url, "--jsonl", "--limit", "5"])
    assert lines.exit_code == 0, lines.output
    assert [json.loads(line) for line in lines.output.splitlines()] == expected[:5]
    empty = runner.invoke(cli, ["jobs", "--db", url, "--json", "--kind", "nothing"])
    assert empty.output == "[]\n"


def test_the_summary_line_counts_the_whole_store_not_the_page(tmp_path: Path) -> None:
    url = _store(tmp_path)
    result = CliRunner().invoke(cli, ["jobs", "--db", url, "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "30 jobs: 8 failed, 0 lost, 0 stalled, 8 running, 14 ready" in result.output
