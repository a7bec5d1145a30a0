"""Run schemathesis with every check, positive and negative data, against a real ``jobprogress serve``.

``tox -e wire-fuzz`` runs this: a collector on a free loopback port with a fresh SQLite store and a token
file in a temporary directory, then ``schemathesis run --checks all --mode all`` on its /openapi.json
(deterministic generation), then the collector is stopped. Prints the figures (cases, failures, time)
and exits with schemathesis' code. Extra arguments go to ``schemathesis run``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "wire-fuzz-token-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"jobprogress serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("jobprogress serve did not become healthy in 30 s")


def main(extra: list[str]) -> int:
    beside = Path(sys.executable).with_name("schemathesis")  # this environment's, even when not on PATH
    schemathesis = str(beside) if beside.exists() else shutil.which("schemathesis")
    if schemathesis is None:
        raise SystemExit("schemathesis is not installed (pip install 'jobprogress-sdk[test]')")
    with tempfile.TemporaryDirectory(prefix="wire-fuzz-") as workdir:
        token_file = Path(workdir, "token")
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "jobprogress.cli", "serve", "--port", str(port)]
        serve += ["--db", f"sqlite:///{workdir}/progress.db", "--token-file", str(token_file)]
        server = subprocess.Popen(serve, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_healthy(url, server)
            report = Path(workdir, "report.json")
            command = [schemathesis, "--config-file", str(HERE / "schemathesis.toml"), "run"]
            command += [f"{url}/openapi.json", "--checks", "all", "--mode", "all"]
            command += ["--generation-deterministic", "--continue-on-failure", "--no-color"]
            command += ["-H", f"Authorization: Bearer {TOKEN}"]
            command += ["--report", "json", "--report-json-path", str(report), *extra]
            started = time.monotonic()
            code = subprocess.call(command, cwd=workdir)
            elapsed = time.monotonic() - started
            if report.exists():
                figures = json.loads(report.read_text())
                cases = figures["test_cases"]
                print(
                    f"wire-fuzz: {cases['generated']} cases, {cases['unique_failures']} unique failures "
                    f"({cases['with_failures']} failing cases), {len(figures['errors'])} errors, "
                    f"{elapsed:.0f} s; schemathesis exit code {code}"
                )
            return code
        finally:
            server.send_signal(signal.SIGINT)
            try:
                _, errors = server.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                _, errors = server.communicate()
            if server.returncode not in (0, -signal.SIGINT) and errors:
                sys.stderr.write(errors.decode("utf-8", "replace")[-4000:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
