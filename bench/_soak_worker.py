"""One soak worker: works through jobs of every kind with the public API and journals what it completes.

The journal is the ground truth the checker compares the store against. It is an append-only text file
per worker (one ``write`` per line, so a SIGKILL never leaves half a line), shared by every run of that
worker id::

    S <time> <n> <job_id>        job number n started
    I <time> <job_id> <index>    item <index> of the job completed (written before advance())
    F <time> <job_id>            the job's with-block exited normally
    R <time> <job_id> <stored> <journalled> <direct>   a restarted run resumed the job (stored: what
                                 the store or collector held for it, "-" when it could not be read)

Because an item is journalled before it is counted, the store can never rightly show more than the
journal holds at that moment: more would be double counting.

A restarted worker continues the job it was on. Writing directly to a store it uses
``jp.track(..., resume=True)`` and redoes the items between the stored ``done`` and its journal
(progress is at-least-once); through the collector, which cannot answer ``resume``, it restarts from its
journal with ``set_done()``. Samples of ``(time, job, done)`` taken right after ``advance()`` let the
checker measure delivery latency. Every exception is caught and written to the run's result file: an
error raised into worker code is a violation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jobprogress as jp

KINDS = ("scan", "parse", "backtest", "schema_eval")
UNITS = {"scan": "files", "parse": "rows", "backtest": "iterations", "schema_eval": "records"}
SAMPLE_EVERY = 0.5  # seconds between latency samples


@dataclass(frozen=True)
class WorkerSpec:
    """What one run of one worker does; picklable, so it crosses to forkserver children."""

    worker_id: str
    path: str  # "sqlite", "postgres" (direct) or "http" (through the collector)
    group: str  # job ids are shared by the two workers of a group
    sink_url: str
    token: str
    run: int
    seed: int
    directory: str
    interval: float
    keepalive: float
    hang_seconds: float
    min_items: int = 10
    max_items: int = 120
    min_item_time: float = 0.02
    max_item_time: float = 0.12

    @property
    def journal_path(self) -> Path:
        return Path(self.directory) / f"{self.worker_id}.journal"

    @property
    def samples_path(self) -> Path:
        return Path(self.directory) / f"{self.worker_id}.run{self.run}.samples"

    @property
    def result_path(self) -> Path:
        return Path(self.directory) / f"{self.worker_id}.run{self.run}.json"


@dataclass(frozen=True)
class JobPlan:
    number: int
    job_id: str
    kind: str
    unit: str
    total: int
    item_time: float


def plan(spec: WorkerSpec, number: int) -> JobPlan:
    """Job ``number`` of this worker: the kind is shared by its group, the size and speed are its own."""
    kind = KINDS[number % len(KINDS)]
    digest = hashlib.sha256(f"{spec.seed}:{spec.worker_id}:{number}".encode()).digest()
    rng = random.Random(digest)
    return JobPlan(
        number=number,
        job_id=f"{kind}-{spec.group}-{number:04d}",
        kind=kind,
        unit=UNITS[kind],
        total=rng.randint(spec.min_items, spec.max_items),
        item_time=rng.uniform(spec.min_item_time, spec.max_item_time),
    )


@dataclass
class Journal:
    """This worker's journal: where it was, read back at the start of a run."""

    next_number: int
    items: dict[str, set[int]]

    @classmethod
    def read(cls, path: Path) -> Journal:
        next_number = 0
        items: dict[str, set[int]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                if not line.endswith("\n"):
                    continue
                fields = line.split()
                if fields[0] == "S":
                    next_number = int(fields[2])
                    items.setdefault(fields[3], set())
                elif fields[0] == "I":
                    items.setdefault(fields[2], set()).add(int(fields[3]))
                elif fields[0] == "F":
                    next_number += 1
        return cls(next_number, items)


class _Signals:
    """SIGTERM asks the worker to finish its current job and stop; SIGUSR1 makes it hang (stall)."""

    def __init__(self, hang_seconds: float) -> None:
        self.stop = False
        self.hang_until = 0.0
        self._hang_seconds = hang_seconds
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    def _on_term(self, _signum: int, _frame: Any) -> None:
        self.stop = True

    def _on_usr1(self, _signum: int, _frame: Any) -> None:
        self.hang_until = time.monotonic() + self._hang_seconds


def _payload(kind: str, done: int, rng: random.Random) -> dict[str, Any]:
    if kind == "scan":
        return {"files_ok": done, "dir": f"/data/{rng.randint(0, 9)}"}
    if kind == "parse":
        return {"rows_bad": rng.randint(0, 3), "table": "events"}
    if kind == "backtest":
        return {"sharpe": round(rng.uniform(-1.0, 3.0), 3), "trades": done * 2}
    return {"schema_ok": rng.random() > 0.1, "columns": rng.randint(3, 40)}


def _collector_done(spec: WorkerSpec, job_id: str) -> int | None:
    """This worker's ``done`` of ``job_id`` as the collector serves it (``GET /v1/jobs/{job_id}``).

    Returns None when the collector does not answer within a few tries (it may be restarting, or the
    proxy in a 429/503 window).
    """
    import httpx

    base = spec.sink_url.split("?", 1)[0].rstrip("/")
    headers = {"Authorization": f"Bearer {spec.token}"}
    for _attempt in range(6):
        try:
            response = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=5.0, trust_env=False)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 404:
            return 0
        if response is not None and response.status_code == 200:
            workers = response.json().get("workers", [])
            return next((int(w["done"] or 0) for w in workers if w["worker_id"] == spec.worker_id), 0)
        time.sleep(0.5)
    return None


def run_worker(spec: WorkerSpec) -> None:
    """Entry point of a worker process (forkserver child). Exits 0 when nothing went wrong."""
    signals = _Signals(spec.hang_seconds)
    # jobprogress logs its (expected) delivery retries once per kind; keep them in a per-worker file
    # instead of interleaving 48 workers' lines with the report.
    log_fd = os.open(
        Path(spec.directory) / f"{spec.worker_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
    )
    os.dup2(log_fd, 2)
    os.close(log_fd)
    result: dict[str, Any] = {
        "worker_id": spec.worker_id,
        "path": spec.path,
        "run": spec.run,
        "spec": asdict(spec),
    }
    exit_code = 0
    try:
        os.environ["JOBPROGRESS_HTTP_TOKEN"] = spec.token
        jp.configure(
            sinks=[spec.sink_url],
            worker_id=spec.worker_id,
            interval=spec.interval,
            keepalive=spec.keepalive,
        )
        journal = Journal.read(spec.journal_path)
        rng = random.Random(f"{spec.seed}:{spec.worker_id}:{spec.run}")
        number = journal.next_number
        jobs_finished = items_done = 0
        last_sample = 0.0
        with (
            open(spec.journal_path, "a", buffering=1, encoding="utf-8") as log,
            open(spec.samples_path, "a", buffering=1, encoding="utf-8") as samples,
        ):
            while not signals.stop:
                job = plan(spec, number)
                journalled = journal.items.get(job.job_id, set())
                log.write(f"S {time.time():.6f} {number} {job.job_id}\n")
                direct = spec.path != "http"
                # Through the collector resume=True has no store to read: ask the collector's read API
                # what it holds (it must not exceed the journal), then continue from the journal.
                held = _collector_done(spec, job.job_id) if journalled and not direct else None
                with jp.track(
                    job.job_id, unit=job.unit, total=job.total, kind=job.kind, resume=direct
                ) as tracker:
                    if journalled:
                        stored = tracker.done if direct else held
                        shown = "-" if stored is None else stored
                        log.write(
                            f"R {time.time():.6f} {job.job_id} {shown} {len(journalled)} {int(direct)}\n"
                        )
                        if not direct:
                            tracker.set_done(len(journalled))
                    start = tracker.done  # indices from here to the journal's are redone (at-least-once)
                    for index in range(start, job.total):
                        while time.monotonic() < signals.hang_until and not signals.stop:
                            time.sleep(0.05)  # a stuck item: no progress, the reporter keeps alive
                        if not signals.stop:
                            time.sleep(job.item_time)  # the work; once asked to stop, finish fast
                        log.write(f"I {time.time():.6f} {job.job_id} {index}\n")
                        tracker.advance()
                        items_done += 1
                        now = time.time()
                        if now - last_sample >= SAMPLE_EVERY:
                            last_sample = now
                            samples.write(f"{now:.6f} {job.job_id} {tracker.done}\n")
                        if index % 25 == 24:
                            tracker.set_payload(**_payload(job.kind, tracker.done, rng))
                log.write(f"F {time.time():.6f} {job.job_id}\n")
                jobs_finished += 1
                number += 1
        # Asked to stop: wait (bounded) until the final states are delivered, then shut down.
        deadline = time.monotonic() + 60.0
        delivered = jp.flush(timeout=2.0)
        while not delivered and time.monotonic() < deadline:
            time.sleep(0.25)
            delivered = jp.flush(timeout=2.0)
        stats = jp.stats()
        jp.shutdown(timeout=5.0)
        result.update(
            jobs_finished=jobs_finished,
            items_done=items_done,
            delivered=delivered,
            stats=stats["sinks"],
        )
    except BaseException as exc:  # every error is reported to the parent, and fails the run
        result["error"] = "".join(traceback.format_exception(exc))
        exit_code = 3
    result["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tmp = spec.result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
    tmp.replace(spec.result_path)
    os._exit(exit_code)  # the final states were flushed above; skip interpreter teardown
