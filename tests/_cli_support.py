"""Builders for the CLI tests: JobView/WorkerView objects, and stores filled through StoreWriter."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from jobprogress.envelope import Heartbeat, JobProgressEnvelope, JobStatus, ProgressUnit
from jobprogress.store.views import JobView, WorkerView

if TYPE_CHECKING:
    from click.testing import CliRunner

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

HOSTILE = ("[/]", "[bold]", ":warning:", "\x1b[2J", "\x1b]0;x\x07", "\r", "\u202e")
"""RELIABILITY row 29: markup, an emoji code, CSI and OSC escapes, a carriage return, a bidi override."""

HOSTILE_TEXT = "A" + "B".join(HOSTILE) + "Z"
HOSTILE_ID = "[/][bold]:warning:\u202eid"
"""An id an older store may hold: markup and a bidi override (today's models refuse the override)."""

FORBIDDEN = ("\x1b", "\x07", "\r", "\u202e", "\x9b")
"""What no output may hold once rich's own style sequences are taken out: ESC, BEL, CR, bidi, C1 CSI."""


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``jobprogress ARGS``; the exit code, stdout and stderr."""
    from jobprogress.cli._commands import cli

    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def worker(worker_id: str = "w1", **fields: Any) -> WorkerView:
    values: dict[str, Any] = {
        "worker_id": worker_id,
        "kind": "scan",
        "unit": "files",
        "done": 10,
        "total": 100,
        "throughput": 2.5,
        "eta_seconds": 36,
        "status": "running",
        "stalled": False,
        "lost": False,
        "updated_at": NOW - timedelta(seconds=3),
        "error": None,
        "payload": None,
        "run_id": "run-1",
        "seq": 5,
        "started_at": NOW - timedelta(seconds=60),
        "progressed_at": NOW - timedelta(seconds=3),
        "seen_at": NOW - timedelta(seconds=2),
    }
    values.update(fields)
    return WorkerView(**values)


def job(job_id: str = "scan-1", workers: list[WorkerView] | None = None, **fields: Any) -> JobView:
    """A job; without ``workers``, one worker sharing the job's fields."""
    if workers is None:
        shared = {key: value for key, value in fields.items() if key in WorkerView.model_fields}
        workers = [worker(**shared)]
    values: dict[str, Any] = {
        "job_id": job_id,
        "kind": "scan",
        "unit": "files",
        "done": 10,
        "total": 100,
        "throughput": 2.5,
        "eta_seconds": 36,
        "status": "running",
        "stalled": False,
        "lost": False,
        "updated_at": NOW - timedelta(seconds=3),
        "error": None,
        "payload": None,
        "workers": workers,
    }
    values.update(fields)
    return JobView(**values)


def heartbeat(
    job_id: str,
    worker_id: str = "w1",
    *,
    seq: int = 1,
    status: str = "running",
    kind: str | None = "scan",
    unit: str = "files",
    done: int = 5,
    total: int | None = 10,
    throughput: float | None = 1.5,
    payload: dict[str, Any] | None = None,
    error: str | None = None,
) -> Heartbeat:
    # Built without validation, as a store written by an older release may hold them: today's models
    # refuse bidi overrides in ids and payload keys, but what is already stored must still show safely.
    now = datetime.now(timezone.utc)
    return Heartbeat.model_construct(
        job_id=job_id,
        worker_id=worker_id,
        run_id=f"run-{worker_id}",
        seq=seq,
        status=JobStatus(status),
        kind=kind,
        error=error,
        progress=JobProgressEnvelope.model_construct(
            items_done=done,
            items_total=total,
            unit=_unit(unit),
            throughput_per_sec=throughput,
            eta_seconds=None if throughput is None or total is None else int((total - done) / throughput),
            updated_at=now,
            payload=payload,
        ),
        updated_at=now,
    )


def _unit(unit: str) -> ProgressUnit | str:
    try:
        return ProgressUnit(unit)
    except ValueError:
        return unit


def fill_store(url: str) -> None:
    """One job of each kind and state: failed, lost, stalled, running (3), succeeded, plus hostile text.

    Lost and stalled are made with the store clock: the lost job's only message was stored 100 s ago;
    the stalled job progressed 100 s ago and sent a heartbeat just now.
    """
    from jobprogress.store import StoreWriter

    with StoreWriter(url) as writer:
        writer.write(
            [
                heartbeat("scan-src", "w1", done=40, total=100),
                heartbeat("scan-src", "w2", done=10, total=100),
                heartbeat("parse-rows", kind="parse", unit="rows", done=1200, total=5000, throughput=300.0),
                heartbeat(
                    "parse-bytes", kind="parse", unit="bytes", done=3 * 1024 * 1024, total=8 * 1024 * 1024
                ),
                heartbeat(
                    "backtest-ok",
                    kind="backtest",
                    unit="iterations",
                    status="succeeded",
                    done=200,
                    total=200,
                    payload={"passed": 150},
                ),
                heartbeat(
                    "backtest-bad",
                    kind="backtest",
                    unit="iterations",
                    status="failed",
                    done=37,
                    total=200,
                    error="ValueError: window 37 has a gap",
                ),
                heartbeat(
                    HOSTILE_ID,
                    HOSTILE_ID,
                    status="failed",
                    payload={HOSTILE_ID: HOSTILE_TEXT},
                    error=HOSTILE_TEXT,
                ),
            ]
        )
    with StoreWriter(url, clock=lambda: time.time() - 100) as past:
        past.write(
            [
                heartbeat(
                    "schema-lost", kind="schema_eval", unit="records", payload={"paths_analysed": 77}, seq=1
                ),
                heartbeat("scan-stalled", done=3, seq=1),
            ]
        )
    with StoreWriter(url) as writer:
        # Alive now, but done has not moved since the message stored 100 s ago.
        writer.write([heartbeat("scan-stalled", done=3, seq=2)])
