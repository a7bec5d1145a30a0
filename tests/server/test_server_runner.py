"""Running the collector: the token file, ``serve()`` in a process, two collectors on one database, TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from _http_support import TOKEN, auth, collector_process, free_port, heartbeat, stop_process, wait_for, wire
from _server_support import Store
from jobprogress.errors import ConfigurationError, SinkError
from jobprogress.server import read_token_file, serve
from jobprogress.sinks.http import HttpSink


def test_token_file_rules(tmp_path) -> None:
    path = tmp_path / "token"
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_token_file(path)
    path.write_text("  \n\t")
    with pytest.raises(ConfigurationError, match="empty"):
        read_token_file(path)
    path.write_text("two words")
    with pytest.raises(ConfigurationError) as info:
        read_token_file(path)
    assert "two words" not in str(info.value)
    path.write_text(f"\n  {TOKEN}  \n")
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_token_file(tmp_path)


def test_row9_two_collector_processes_on_one_database(
    store: Store, token_file: Path, tmp_path: Path, sink
) -> None:
    log = tmp_path / "collectors.log"
    with (
        collector_process(store.url, token_file, log, table_prefix=store.prefix) as (first, _),
        collector_process(store.url, token_file, log, table_prefix=store.prefix) as (second, _),
    ):
        sinks = [HttpSink(first), HttpSink(second)]
        sink.extend(sinks)
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                # Each thread delivers the same (job, worker) rows with interleaved seqs through
                # both collectors, every batch twice, as retries after lost replies would.
                for seq in range(index, 200, 4):
                    batch = [
                        heartbeat(f"r9-{job}", "w", done=seq, total=1000, seq=seq + 1) for job in range(5)
                    ]
                    sinks[seq % 2].send(batch)
                    sinks[(seq + 1) % 2].send(batch)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        with httpx.Client(base_url=second, headers=auth()) as client:
            jobs = client.get("/v1/jobs").json()
    assert sorted(job["job_id"] for job in jobs) == [f"r9-{job}" for job in range(5)]
    for job in jobs:
        assert len(job["workers"]) == 1
        assert job["workers"][0]["seq"] == 200  # the newest seq wins
        assert job["done"] == 199
    assert "Traceback" not in log.read_text()


def test_serve_logs_never_hold_the_token(token_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with collector_process(f"sqlite:///{tmp_path / 'p.db'}", token_file, log) as (url, _):
        with httpx.Client(base_url=url) as client:
            assert client.post(f"/v1/batch?token={TOKEN}", json=[]).status_code == 401
            assert client.get(f"/v1/jobs?access_token={TOKEN}").status_code == 401
            bad = {"Authorization": f"Bearer {TOKEN[:-2]}"}
            assert client.post("/v1/batch", json=[], headers=bad).status_code == 401
            assert (
                client.post("/v1/batch", json=[wire(heartbeat("logged"))], headers=auth()).status_code == 200
            )
    text = log.read_text()
    assert "/v1/batch" in text  # the access log is on...
    assert "token=***" in text  # ...with the credential redacted
    assert TOKEN[:-2] not in text


def test_serve_refuses_to_start_without_a_usable_token_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    with pytest.raises(ConfigurationError, match="token-file"):
        serve(db)
    with pytest.raises(ConfigurationError, match="does not exist"):
        serve(db, token_file=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ConfigurationError, match="empty"):
        serve(db, token_file=empty)
    assert not (tmp_path / "p.db").exists()


_SERVE_TLS = (
    "import sys; from jobprogress.server import serve; "
    "serve(sys.argv[1], port=int(sys.argv[2]), token_file=sys.argv[3], ssl_certfile=sys.argv[4], "
    "ssl_keyfile=sys.argv[5])"
)


def test_tls_is_verified_by_default(
    token_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPROGRESS_HTTP_TOKEN", TOKEN)
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    db = f"sqlite:///{tmp_path / 'p.db'}"
    with open(tmp_path / "tls.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE_TLS, db, str(port), str(token_file), str(cert), str(key)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"https://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url, cert), timeout=20)
        trusting = HttpSink(f"{url}?verify={cert}")
        default = HttpSink(url)
        try:
            trusting.send([heartbeat("tls")])
            with pytest.raises(SinkError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                default.send([heartbeat("tls")])  # a self-signed certificate is not trusted by default
        finally:
            # Closed before the server stops: uvicorn waits out its graceful timeout for an idle TLS
            # connection whose peer never answers the close_notify.
            trusting.close(1.0)
            default.close(1.0)
    finally:
        stop_process(process)


def _answers(url: str, cert: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(cert))
        return httpx.get(url + "/healthz", verify=context, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_runner_loads_no_extra_until_serve_runs() -> None:
    # read_token_file and the access-log filter come without Starlette: serve() checks the extra first.
    check = (
        "import sys, jobprogress.server.runner; "
        "print([name for name in ('starlette', 'uvicorn') if name in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
