"""Shared helpers of the store tests: one store per backend and test, messages, a fake store clock.

Backends come from ``JOBPROGRESS_TEST_BACKENDS`` (comma-separated; default all three, as tox's
backend factor sets it). Postgres tests get a schema of their own, named in the URL's ``options``
(which also shows that ``options`` reaches the driver untouched), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jobprogress.envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate

if TYPE_CHECKING:
    from jobprogress.store import JobView, ProgressStore

POSTGRES_ENV = "JOBPROGRESS_TEST_POSTGRES_URL"
ALL_BACKENDS = ("sqlite", "duckdb", "postgres")
STALL = 30.0
"""``stall_after`` of the ``store`` fixture (tests/store/conftest.py)."""


def selected_backends() -> list[str]:
    raw = os.environ.get("JOBPROGRESS_TEST_BACKENDS", "")
    names = [name.strip() for name in raw.split(",") if name.strip()] or list(ALL_BACKENDS)
    return [name for name in ALL_BACKENDS if name in names]


def backend_params(*only: str) -> list[Any]:
    """pytest params for the selected backends (optionally a subset), Postgres ones marked."""
    names = [name for name in selected_backends() if not only or name in only]
    return [
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [], id=name)
        for name in names
    ]


class StoreClock:
    """The store's clock for tests: POSIX seconds that move only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class StoreTarget:
    """One store for one test: the URL to give writers, readers and sinks."""

    backend: str
    url: str
    path: Path | None = None
    cleanups: list[Any] = field(default_factory=list)

    def engine(self) -> Any:
        """A separate SQLAlchemy engine on the same database (for inspection and interference)."""
        import sqlalchemy as sa

        url = self.url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.cleanups.append(engine.dispose)
        return engine


def postgres_schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(name="store_target")
def store_target_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """A fresh store on the backend named by the test's ``backend`` parameter."""
    backend = request.param
    if backend == "sqlite":
        path = tmp_path / "progress.db"
        target = StoreTarget(backend, f"sqlite:///{path}", path)
        yield target
    elif backend == "duckdb":
        path = tmp_path / "progress.duckdb"
        target = StoreTarget(backend, f"duckdb:///{path}", path)
        yield target
    else:
        base = os.environ.get(POSTGRES_ENV)
        if not base:
            pytest.skip(f"{POSTGRES_ENV} is not set (CI sets it; export it to run the Postgres tests)")
        import sqlalchemy as sa

        schema = f"jp_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(
            base.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool
        )
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        target = StoreTarget(backend, postgres_schema_url(base, schema))
        try:
            yield target
        finally:
            for cleanup in target.cleanups:
                cleanup()
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        return
    for cleanup in target.cleanups:
        cleanup()


WORKER_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def envelope(
    done: int,
    total: int | None = 100,
    *,
    unit: str = "files",
    throughput: float | None = 2.0,
    payload: dict[str, Any] | None = None,
    at: datetime = WORKER_TIME,
) -> JobProgressEnvelope:
    return JobProgressEnvelope(
        items_done=done,
        items_total=total,
        unit=unit,
        throughput_per_sec=throughput,
        updated_at=at,
        payload=payload,
    )


def heartbeat(
    seq: int,
    status: str = "running",
    *,
    job: str = "job-1",
    worker: str = "w1",
    run: str = "run-1",
    kind: str | None = "scan",
    error: str | None = None,
    progress: JobProgressEnvelope | None = None,
    at: datetime = WORKER_TIME,
) -> Heartbeat:
    return Heartbeat(
        job_id=job,
        worker_id=worker,
        run_id=run,
        seq=seq,
        status=status,
        kind=kind,
        error=error,
        progress=progress,
        updated_at=at,
    )


def update(
    seq: int,
    done: int,
    total: int | None = 100,
    *,
    job: str = "job-1",
    worker: str = "w1",
    run: str = "run-1",
    **envelope_fields: Any,
) -> ProgressUpdate:
    return ProgressUpdate(
        job_id=job, worker_id=worker, run_id=run, seq=seq, progress=envelope(done, total, **envelope_fields)
    )


def skewed(hours: float) -> datetime:
    return WORKER_TIME + timedelta(hours=hours)


def jobs_by_id(store: ProgressStore) -> dict[str, JobView]:
    """The jobs of the ``store`` fixture by id, without the job it writes to create the tables."""
    return {job.job_id: job for job in store.jobs() if job.job_id != "bootstrap"}


def stored_rows(target: StoreTarget, prefix: str = "cf_") -> list[dict[str, Any]]:
    """Every row of ``{prefix}job_progress`` as dicts, by key (read through a separate engine)."""
    import sqlalchemy as sa

    engine = target.engine()
    with engine.connect() as connection:
        result = connection.execute(sa.text(f"SELECT * FROM {prefix}job_progress ORDER BY job_id, worker_id"))
        rows = [dict(row._mapping) for row in result]
    engine.dispose()
    return rows


class PrivatePostgres:
    """A throwaway Postgres cluster of one test: its own directory and port, restartable at will.

    Restarting the shared server would break every other test using it; this one belongs to the test.
    Needs root (the server runs as ``postgres``) and the server binaries, else the test is skipped.
    """

    def __init__(self, root: Path) -> None:
        import glob
        import socket

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or not found:
            pytest.skip("a private Postgres cluster needs root and /usr/lib/postgresql/*/bin")
        self._bin = Path(found[-1]).parent
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.root = root
        self.data = root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._running = False

    def _as_postgres(self, *args: str) -> None:
        import subprocess

        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, timeout=120, capture_output=True
        )

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "postgres.log")
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", *args
        )

    def start(self) -> None:
        import pwd

        os.chown(self.root, pwd.getpwnam("postgres").pw_uid, -1)
        self._as_postgres(str(self._bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._pg_ctl("start")
        self._running = True

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every client connection is terminated; waits until it is back."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._as_postgres(
                str(self._bin / "pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", "immediate"
            )


@pytest.fixture(name="private_postgres")
def private_postgres_fixture() -> Iterator[PrivatePostgres]:
    import shutil
    import tempfile

    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="jobprogress-test-pg-"))
    try:
        cluster = PrivatePostgres(root)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
