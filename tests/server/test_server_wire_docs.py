"""The workers of docs/wire.md, run as written against a real collector (``jobprogress serve``).

The shell one (curl) always; the Node one where ``node`` (18+, for the built-in fetch) is installed.
Each posts a start heartbeat, progress and a final state with a bearer token; the job is then read
back from the collector's Jobs view.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _http_support import TOKEN, collector_process

WIRE_DOC = Path(__file__).resolve().parents[2] / "docs" / "wire.md"
_FENCE = re.compile(r"^```(?P<language>\w+)\n(?P<code>.*?)^```", re.DOTALL | re.MULTILINE)


def worker_source(language: str) -> str:
    """The one fenced block of ``language`` in docs/wire.md that is a complete worker."""
    blocks = [
        match["code"]
        for match in _FENCE.finditer(WIRE_DOC.read_text(encoding="utf-8"))
        if match["language"] == language and "/v1/heartbeat" in match["code"]
    ]
    assert len(blocks) == 1, f"docs/wire.md should hold one {language} worker, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("wire-docs")
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    db_url = f"sqlite:///{workdir / 'progress.db'}"
    with collector_process(db_url, token_file, workdir / "collector.log") as (url, _):
        yield url, workdir


def _run(command: list[str], url: str, cwd: Path) -> None:
    env = {**os.environ, "JOBPROGRESS_URL": url, "JOBPROGRESS_HTTP_TOKEN": TOKEN, "WORK_SECONDS": "0.05"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"


def _job(url: str, job_id: str) -> dict[str, object]:
    response = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    job: dict[str, object] = response.json()
    return job


def _finished(url: str, job_id: str) -> dict[str, object]:
    """The job as the Jobs view shows it, checked: one worker, done, all five files counted."""
    job = _job(url, job_id)
    assert job["job_id"] == job_id
    assert job["status"] == "succeeded"
    assert (job["done"], job["total"], job["unit"], job["kind"]) == (5, 5, "files", "export")
    assert job["lost"] is False
    assert [worker["status"] for worker in job["workers"]] == ["succeeded"]  # type: ignore[attr-defined]
    return job


def test_the_shell_worker_reports_to_the_collector(collector: tuple[str, Path]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url, workdir = collector
    script = workdir / "worker.sh"
    script.write_text(worker_source("bash"))
    _run(["sh", str(script), "docs-shell-worker"], url, workdir)
    _finished(url, "docs-shell-worker")


def test_the_node_worker_reports_to_the_collector(collector: tuple[str, Path]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript worker of docs/wire.md needs Node 18+")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"node {version.strip()} has no built-in fetch (Node 18+)")
    url, workdir = collector
    script = workdir / "worker.mjs"
    script.write_text(worker_source("js"))
    _run([node, str(script), "docs-node-worker"], url, workdir)
    _finished(url, "docs-node-worker")
