"""``jobprogress web`` and ``serve --read-token-file`` as commands: real processes, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from _http_support import TOKEN, free_port, stop_process, wait_for
from _web_support import READ_TOKEN, seeded_store
from jobprogress.cli._commands import cli


def _token_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@contextmanager
def _command(arguments: list[str], log: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobprogress.cli", *arguments, "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def up() -> bool:
            if process.poll() is not None:
                return True
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, timeout=30), log.read_text()
        assert process.poll() is None, log.read_text()
        yield url
    finally:
        stop_process(process)


def test_jobprogress_web_serves_the_pages_with_a_read_token(tmp_path: Path) -> None:
    read_token = _token_file(tmp_path / "read-token", READ_TOKEN)
    with seeded_store(tmp_path) as store:
        arguments = ["web", "--db", store.url, "--read-token-file", str(read_token)]
        with _command(arguments, tmp_path / "web.log") as url:
            assert httpx.get(f"{url}/jobs").status_code == 401
            page = httpx.get(f"{url}/jobs", auth=("me", READ_TOKEN))
            assert page.status_code == 200
            assert "parse-failed" in page.text
            assert httpx.get(f"{url}/readyz").status_code == 200
            metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}).text
            assert 'jobprogress_jobs{state="failed"} 1.0' in metrics
            assert httpx.post(f"{url}/v1/progress", json={}).status_code == 404  # nothing here writes
    assert READ_TOKEN not in (tmp_path / "web.log").read_text()


def test_serve_takes_a_read_token(tmp_path: Path) -> None:
    token = _token_file(tmp_path / "token", TOKEN)
    read_token = _token_file(tmp_path / "read-token", READ_TOKEN)
    db = f"sqlite:///{tmp_path / 'progress.db'}"
    arguments = ["serve", "--db", db, "--token-file", str(token), "--read-token-file", str(read_token)]
    with _command(arguments, tmp_path / "serve.log") as url:
        assert httpx.get(f"{url}/jobs", auth=("me", READ_TOKEN)).status_code == 200
        assert httpx.get(f"{url}/jobs", auth=("me", TOKEN)).status_code == 200
        bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert httpx.get(f"{url}/v1/jobs", headers=bearer).status_code == 200
        assert httpx.post(f"{url}/v1/batch", headers=bearer, json=[]).status_code == 401


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --read-token-file PATH, or --open"),
        (["--open", "--read-token-file", "{read}"], "not both"),
        (["--read-token-file", "{missing}"], "does not exist"),
    ],
)
def test_web_refuses_to_start_without_a_decision(tmp_path: Path, extra: list[str], message: str) -> None:
    read_token = _token_file(tmp_path / "read-token", READ_TOKEN)
    values = {"read": str(read_token), "missing": str(tmp_path / "nope")}
    arguments = ["web", "--db", f"sqlite:///{tmp_path / 'p.db'}", *(item.format(**values) for item in extra)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert message in result.output


def test_serve_refuses_a_read_token_equal_to_the_bearer_token(tmp_path: Path) -> None:
    token = _token_file(tmp_path / "token", TOKEN)
    arguments = ["serve", "--db", f"sqlite:///{tmp_path / 'p.db'}", "--token-file", str(token)]
    result = CliRunner().invoke(cli, [*arguments, "--read-token-file", str(token)])
    assert result.exit_code == 1
    assert "must differ from the bearer token" in result.output
