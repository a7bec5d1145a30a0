"""Soak infrastructure: a private Postgres cluster, the collector, the fault proxy, an SQLite lock holder.

Everything here is a throwaway service the soak starts, breaks on purpose and tears down again. None of
it touches the shared Postgres cluster on 127.0.0.1:5432 except :class:`SharedDatabase`, the fallback
that only creates (and later drops) a database of its own there and never restarts the server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "Collector",
    "FaultProxy",
    "PrivatePostgres",
    "SharedDatabase",
    "free_port",
    "hold_sqlite_lock",
    "wait_for",
]

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivatePostgres:
    """A throwaway Postgres cluster in a temporary directory, on a free port, restartable at will.

    Needs root (to run the server as the ``postgres`` user) and the server binaries. fsync is off:
    the soak tests reconnection and idempotence, not crash durability of the database itself.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if os.geteuid() != 0 or not found:
            raise RuntimeError(
                "a private Postgres cluster needs root and /usr/lib/postgresql/*/bin; pass "
                "--postgres-url to use a database of its own on an existing server instead"
            )
        self._bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="jobprogress-soak-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.restarts = 0
        self._started = False

    def _as_postgres(self, *args: str, timeout: float = 60.0) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _pg_ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", *args
        )

    def start(self) -> None:
        """initdb and start the cluster."""
        uid = pwd.getpwnam("postgres").pw_uid
        os.chown(self.root, uid, -1)
        self._as_postgres(str(self._bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._pg_ctl("start")
        self._started = True

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is terminated, the server comes back."""
        self._pg_ctl("restart", "-m", "fast")
        self.restarts += 1

    def destroy(self) -> None:
        """Stop the cluster (if it runs) and delete its directory; idempotent."""
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                self._as_postgres(
                    str(self._bin / "pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", "immediate"
                )
        shutil.rmtree(self.root, ignore_errors=True)


class SharedDatabase:
    """Fallback: a fresh database of our own on an existing server (never restarted); dropped at the end."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy.engine import make_url

        self._server = make_url(server_url).set(drivername="postgresql+psycopg")
        self.name = f"soak_{uuid.uuid4().hex[:12]}"
        self.url = self._server.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self, statement: str) -> None:
        import psycopg

        dsn = self._server.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(statement.encode())

    def start(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class _Service:
    """A subprocess listening on a fixed port: started, SIGKILLed and started again on that port."""

    def __init__(self, name: str, port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return _port_open(self.port)

    def start(self, timeout: float = 30.0) -> None:
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        if not wait_for(
            lambda: self._ready() or self._process is None or self._process.poll() is not None, timeout
        ):
            raise RuntimeError(f"{self.name} did not start within {timeout:g} s (see {self._log_path})")
        if self._process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self._process.returncode} (see {self._log_path})")

    def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> float:
        """SIGKILL and start again on the same port; returns the seconds it was unreachable."""
        began = time.monotonic()
        self.kill()
        self.start()
        self.restarts += 1
        return time.monotonic() - began

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Collector(_Service):
    """``jobprogress serve`` as its own process, exactly as an operator would run it."""

    def __init__(self, db_url: str, token_file: Path, stall_after: float, log_path: Path) -> None:
        super().__init__("collector", free_port(), log_path)
        self._db_url = db_url
        self._token_file = token_file
        self._stall_after = stall_after

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jobprogress.cli",
            "serve",
            "--db",
            self._db_url,
            "--port",
            str(self.port),
            "--token-file",
            str(self._token_file),
            "--stall-after",
            str(self._stall_after),
        ]

    def _ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


class FaultProxy(_Service):
    """``_soak_proxy.py`` in front of the collector: SIGUSR1 opens a window of 429/503 answers."""

    def __init__(
        self, upstream_port: int, window: float, rate: float, stats_path: Path, log_path: Path
    ) -> None:
        super().__init__("fault proxy", free_port(), log_path)
        self._upstream = upstream_port
        self._window = window
        self._rate = rate
        self.stats_path = stats_path

    def _command(self) -> list[str]:
        return [
            sys.executable,
            str(HERE / "_soak_proxy.py"),
            "--listen",
            str(self.port),
            "--upstream",
            str(self._upstream),
            "--window",
            str(self._window),
            "--rate",
            str(self._rate),
            "--stats",
            str(self.stats_path),
        ]

    def open_fault_window(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGUSR1)


def hold_sqlite_lock(path: str, seconds: float) -> tuple[float, float]:
    """Hold the SQLite write lock (``BEGIN IMMEDIATE``) for ``seconds``; returns its wall-clock window."""
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        began = time.time()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        return began, time.time()
    finally:
        connection.close()
