"""Loopback servers for the HTTP sink and collector tests: real uvicorn, scripted stubs, raw sockets."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from jobprogress.envelope import Heartbeat, JobProgressEnvelope, JobStatus, ProgressUpdate

TOKEN = "s3cret-T0ken-for-tests"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_app(app: Any, *, port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback in a thread; yields the base URL; stops it on exit."""
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say so, and without it every
    # keep-alive request waits ~40 ms on Nagle and delayed ACKs (uvicorn binding itself is not affected).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        # Longer than any pause between requests in a test, so a client never reuses a connection the
        # server is closing at that very moment (a reset that is the race, not the code under test).
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        if not wait_for(lambda: server.started or not thread.is_alive(), timeout=10):
            raise RuntimeError("uvicorn did not start")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def auth(token: str = TOKEN) -> dict[str, str]:
    """The headers of an authenticated request with a JSON body (the collector answers 415 to others)."""
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


_SEQ = iter(range(1, 1 << 62))


def now() -> datetime:
    return datetime.now(timezone.utc)


def heartbeat(
    job_id: str = "job-1",
    worker_id: str = "w-1",
    *,
    seq: int | None = None,
    status: JobStatus = JobStatus.RUNNING,
    done: int | None = 0,
    total: int | None = None,
    run_id: str = "run-1",
    kind: str | None = "scan",
    error: str | None = None,
) -> Heartbeat:
    progress = (
        None
        if done is None
        else JobProgressEnvelope(items_done=done, items_total=total, unit="files", updated_at=now())
    )
    return Heartbeat(
        job_id=job_id,
        worker_id=worker_id,
        run_id=run_id,
        seq=next(_SEQ) if seq is None else seq,
        status=status,
        kind=kind,
        error=error,
        progress=progress,
        updated_at=now(),
    )


def progress_update(
    job_id: str = "job-1",
    worker_id: str = "w-1",
    *,
    seq: int | None = None,
    done: int = 0,
    total: int | None = None,
    run_id: str = "run-1",
    payload: dict[str, Any] | None = None,
) -> ProgressUpdate:
    return ProgressUpdate(
        job_id=job_id,
        worker_id=worker_id,
        run_id=run_id,
        seq=next(_SEQ) if seq is None else seq,
        progress=JobProgressEnvelope(
            items_done=done, items_total=total, unit="files", updated_at=now(), payload=payload
        ),
    )


def wire(message: Heartbeat | ProgressUpdate) -> dict[str, Any]:
    return json.loads(message.model_dump_json())


# -- scripted stub ---------------------------------------------------------------------------------


@dataclass
class StubReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"accepted": 0}'
    delay: float = 0.0


@dataclass
class StubRequest:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedStub:
    """A threaded HTTP server answering each request from ``script`` (the last reply repeats)."""

    def __init__(self, script: list[StubReply] | None = None, port: int = 0) -> None:
        self.script = list(script or [StubReply()])
        self.requests: list[StubRequest] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with stub._lock:
                    stub.requests.append(
                        StubRequest(
                            time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    reply = stub.script.pop(0) if len(stub.script) > 1 else stub.script[0]
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply.body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ScriptedStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class SilentServer:
    """Accepts connections and never answers (RELIABILITY row 2)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def raw_request(
    port: int, head: bytes, body_parts: Sequence[bytes] = (), timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` and ``body_parts`` on a raw socket; return status, headers and body of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


# -- collector processes and proxies ---------------------------------------------------------------

_SERVE = (
    "import sys; from jobprogress.server import serve; "
    "serve(sys.argv[1], port=int(sys.argv[2]), token_file=sys.argv[3], table_prefix=sys.argv[4], "
    "stall_after=float(sys.argv[5]))"
)


@contextlib.contextmanager
def collector_process(
    db_url: str,
    token_file: os.PathLike[str] | str,
    log_path: os.PathLike[str] | str,
    *,
    port: int | None = None,
    table_prefix: str = "cf_",
    stall_after: float = 30.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``serve()`` in a subprocess (what ``jobprogress serve`` runs); yields its URL once /healthz answers."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVE,
                db_url,
                str(port),
                str(token_file),
                table_prefix,
                str(stall_after),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"collector exited with {process.returncode}: {Path(log_path).read_text()[-2000:]}"
                )
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_for(healthy, timeout=20, interval=0.05):
            raise RuntimeError("collector did not answer /healthz")
        yield url, process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class ReplyDroppingProxy:
    """Forwards each request to ``target`` and reads the reply, then hangs up without passing it on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.replies: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += conn.recv(65536)
                with socket.create_connection(("127.0.0.1", self.target_port), timeout=5) as upstream:
                    upstream.sendall(head + b"\r\n\r\n" + body)
                    status, _, _ = read_response(upstream)
                self.replies.append(status)
            # the reply is dropped: the connection closes without an answer

    def __enter__(self) -> ReplyDroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
