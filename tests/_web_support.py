"""A real SQLite store holding a job in every state, on a fake store clock, for the Jobs-page tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _store_support import StoreClock, envelope, heartbeat, update
from jobprogress.store import ProgressStore, StoreWriter

STALL = 30.0
XSS_ID = "<script>alert(1)</script>"
READ_TOKEN = "read-token-0123456789abcdef"


@dataclass
class SeededStore:
    url: str
    clock: StoreClock
    writer: StoreWriter
    reader: ProgressStore
    seq: int = 100

    def advance(self, job: str, done: int, *, worker: str = "w1", total: int = 100) -> None:
        """A worker of ``job`` reports ``done`` (a new row version: what the page must pick up)."""
        self.seq += 1
        self.writer.write([update(self.seq, done, total, job=job, worker=worker, run=f"{job}-{worker}")])


def seed(writer: StoreWriter, clock: StoreClock) -> None:
    """running, stalled, lost, failed, succeeded and cancelled jobs, and ids that carry markup."""

    def run(job: str, worker: str) -> str:
        return f"{job}-{worker}"

    first = []
    for job in ("scan-running", "scan-stalled", "scan-lost", XSS_ID):
        for worker in ("w1", "w2"):
            first.append(heartbeat(1, job=job, worker=worker, run=run(job, worker), kind="scan"))
            first.append(update(2, 10, 100, job=job, worker=worker, run=run(job, worker)))
    first.append(
        heartbeat(
            1,
            "failed",
            job="parse-failed",
            run=run("parse-failed", "w1"),
            kind="parse",
            error="ValueError: row 812 has 3 columns, expected 4",
            progress=envelope(812, 4000, unit="rows", payload={"file": "big.csv"}),
        )
    )
    first.append(
        heartbeat(
            1,
            "succeeded",
            job="backtest-done",
            run=run("backtest-done", "w1"),
            kind="backtest",
            progress=envelope(500, 500, unit="iterations", payload={"passed": 490, "failed": 10}),
        )
    )
    first.append(
        heartbeat(1, "cancelled", job="eval-cancelled", run=run("eval-cancelled", "w1"), kind="schema_eval")
    )
    writer.write(first)
    clock.advance(STALL + 10)
    later = []
    for job in ("scan-running", XSS_ID):
        for worker in ("w1", "w2"):
            later.append(
                update(3, 40, 100, job=job, worker=worker, run=run(job, worker), payload={"note": "<b>x</b>"})
            )
    for worker in ("w1", "w2"):  # alive (a heartbeat) but no progress since the start: stalled
        later.append(
            heartbeat(3, job="scan-stalled", worker=worker, run=run("scan-stalled", worker), kind="scan")
        )
    writer.write(later)  # scan-lost says nothing: lost


@contextmanager
def seeded_store(tmp_path: Path, url: str | None = None, table_prefix: str = "cf_") -> Iterator[SeededStore]:
    """The seeded store: a SQLite file in ``tmp_path``, or ``url`` (Postgres) under ``table_prefix``."""
    url = url or f"sqlite:///{tmp_path / 'progress.db'}"
    # A fake clock (liveness is judged on it, deterministically) that starts a minute and a bit before
    # the wall clock, so the pages' "seen 1m ago" read as they would in production.
    clock = StoreClock(time.time() - 2 * STALL)
    writer = StoreWriter(url, clock=clock, table_prefix=table_prefix)
    seed(writer, clock)
    reader = ProgressStore(url, stall_after=STALL, clock=clock, table_prefix=table_prefix)
    try:
        yield SeededStore(url, clock, writer, reader)
    finally:
        writer.close()
        reader.close()
