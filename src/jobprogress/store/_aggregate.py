"""Rows of ``{prefix}job_progress`` folded into views: a WorkerView per row, a JobView per job.

The aggregation rules of DESIGN §6 (see :mod:`jobprogress.store.views`), applied in Python to the rows
a query returned: sums of BIGINTs never overflow here, and the same status, ``lost`` and ``stalled``
rules that the page query filters on in SQL decide each job's fields.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Final

from jobprogress._states import FAILED, RUNNING, job_status
from jobprogress.envelope import trusted
from jobprogress.store._eta import job_eta
from jobprogress.store.views import JobView, WorkerView

__all__ = ["WORKER_COLUMNS", "ViewCache", "aggregate", "fold", "fold_attempts", "fold_job", "gc_paused"]

_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
_loads = json.loads

WORKER_COLUMNS: Final = (
    "job_id", "worker_id", "kind", "status", "unit", "done", "total", "throughput", "eta_seconds",
    "payload_json", "error", "run_id", "seq", "started_at", "updated_at", "progressed_at", "seen_at",
    "attempt",
)  # fmt: skip


def _time(value: float | None) -> datetime | None:
    """A stored POSIX time as an aware datetime; None for one no datetime can hold (a row from elsewhere)."""
    if value is None:
        return None
    try:
        return _fromtimestamp(value, _UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _stamp(value: float | None, previous: float | None, previous_stamp: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value == previous:
        return previous_stamp  # datetimes are immutable: a row's equal store times share one
    return _time(value)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a result becomes views.

    Fetching and folding a long list allocates hundreds of thousands of objects, none of which can
    form a cycle, and the collector would run over them again and again. Only a GC this call turned
    off is turned back on, so a caller that disabled it keeps it disabled.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _worker(row: Sequence[Any]) -> WorkerView:
    (
        _job_id, worker_id, kind, status, unit, done, total, throughput, eta_seconds,
        payload_json, error, run_id, seq, started_at, updated_at, progressed_at, seen_at,
        attempt, worker_lost, worker_stalled,
    ) = row  # fmt: skip
    seen = _time(seen_at)
    progressed = _stamp(progressed_at, seen_at, seen)
    return trusted(
        WorkerView,
        {
            "worker_id": worker_id,
            "kind": kind,
            "unit": unit,
            "done": done,
            "total": total,
            "throughput": throughput,
            "eta_seconds": eta_seconds,
            "status": status,
            "stalled": bool(worker_stalled),
            "lost": bool(worker_lost),
            "updated_at": _time(updated_at),
            "error": error,
            "payload": None if payload_json is None else _loads(payload_json),
            "run_id": run_id,
            "seq": seq,
            "started_at": _stamp(started_at, progressed_at, progressed),
            "progressed_at": progressed,
            "seen_at": seen,
            "attempt": attempt,
        },
    )


_SEEN_AT: Final = WORKER_COLUMNS.index("seen_at")
_WORKER_ID: Final = WORKER_COLUMNS.index("worker_id")
_ATTEMPT: Final = WORKER_COLUMNS.index("attempt")


ViewCache = dict[str, tuple[list[Sequence[Any]], JobView]]
"""Per job: the rows a view was folded from, and the view (views are immutable, so they can be shared)."""


def fold(rows: Sequence[Sequence[Any]], cache: ViewCache | None = None) -> tuple[list[JobView], ViewCache]:
    """Group result rows by job; order jobs by (last seen desc, job id) and workers by id.

    A job whose rows equal those of ``cache`` (the previous call's) keeps its previous view: a poller
    that asks every second pays only for the jobs that changed. The rows include the store-clock lost
    and stalled flags, so a job whose liveness changed is folded again.

    Returns:
        The views, and the cache to pass to the next call.
    """
    previous = cache or {}
    fresh: ViewCache = {}
    groups: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        group = groups.get(row[0])
        if group is None:
            groups[row[0]] = [row]
        else:
            group.append(row)
    # The page query's order, applied again: most recent message first (store clock), then job id.
    keyed = sorted(
        ((max(row[_SEEN_AT] or 0.0 for row in group), job_id, group) for job_id, group in groups.items()),
        key=lambda item: item[1],
    )
    keyed.sort(key=lambda item: item[0], reverse=True)  # stable: ties stay in job-id order
    views = []
    for _, job_id, group in keyed:
        if len(group) > 1:
            group.sort(key=_by_worker)
        hit = previous.get(job_id)
        if hit is not None and hit[0] == group:
            view = hit[1]
        else:
            view = aggregate(job_id, [_worker(row) for row in group])
        fresh[job_id] = (group, view)
        views.append(view)
    return views, fresh


def fold_job(rows: Sequence[Sequence[Any]]) -> JobView:
    """One job's rows of one attempt, ordered by worker id, folded into its view."""
    return aggregate(rows[0][0], [_worker(row) for row in rows])


def fold_attempts(rows: Sequence[Sequence[Any]]) -> list[JobView]:
    """One job's rows of every attempt, folded into a view per attempt, newest attempt first."""
    attempts: dict[int, list[Sequence[Any]]] = {}
    for row in rows:
        attempts.setdefault(row[_ATTEMPT], []).append(row)
    return [
        aggregate(group[0][0], [_worker(row) for row in sorted(group, key=_by_worker)])
        for _, group in sorted(attempts.items(), reverse=True)
    ]


def _by_worker(row: Sequence[Any]) -> str:
    return str(row[_WORKER_ID])


_EPOCH: Final = datetime.fromtimestamp(0, _UTC)


def _recency(worker: WorkerView) -> tuple[datetime, int]:
    return worker.seen_at or _EPOCH, worker.seq or 0


def _failure_recency(worker: WorkerView) -> tuple[datetime, int]:
    return worker.progressed_at or _EPOCH, worker.seq or 0


def aggregate(job_id: str, workers: list[WorkerView]) -> JobView:
    """Fold one job's worker rows into a :class:`JobView` (rules in :mod:`jobprogress.store.views`).

    Status, ``lost`` and ``stalled`` follow the same rules as the page query's filter in SQL. One
    pass over the workers: the whole Jobs list folds tens of thousands of them.
    """
    unit: str | None = None
    mixed_units = False
    done = 0
    any_done = False
    total: int | None = 0
    rate = 0.0
    any_rate = False
    running = lost_count = stalled_count = 0
    statuses: set[str] = set()
    failed_latest: WorkerView | None = None
    payload_latest: WorkerView | None = None
    kind: str | None = None
    updated_at: datetime | None = None
    attempt = 1
    for worker in workers:
        worker_unit = worker.unit
        if worker_unit is not None:
            if unit is None:
                unit = worker_unit
            elif worker_unit != unit:
                mixed_units = True  # different units are never summed
        if worker.done is not None:
            done += worker.done
            any_done = True
        if worker.total is None:
            total = None
        elif total is not None:
            total += worker.total
        status = worker.status
        statuses.add(status)
        if status == RUNNING:
            running += 1
            if worker.lost:
                lost_count += 1
            elif worker.throughput is not None:
                # Live workers only; a stalled one is alive but makes no progress, so adds nothing.
                any_rate = True
                if worker.stalled:
                    stalled_count += 1
                else:
                    rate += worker.throughput
            elif worker.stalled:
                stalled_count += 1
        elif status == FAILED and (
            failed_latest is None or _failure_recency(worker) > _failure_recency(failed_latest)
        ):
            failed_latest = worker
        if worker.payload is not None and (
            payload_latest is None or _recency(worker) > _recency(payload_latest)
        ):
            payload_latest = worker
        if worker.kind is not None and (kind is None or worker.kind > kind):
            kind = worker.kind
        if worker.updated_at is not None and (updated_at is None or worker.updated_at > updated_at):
            updated_at = worker.updated_at
        if worker.attempt > attempt:
            attempt = worker.attempt
    throughput: float | None = None
    eta: int | None = None
    eta_reason: str | None = None
    if mixed_units:
        unit = total = None
        job_done: int | None = None
    else:
        job_done = done if any_done else None
        # Each worker's rate is finite, but a sum of huge ones is not; an unknown rate is None, never inf.
        throughput = rate if any_rate and math.isfinite(rate) else None
        remaining = max(total - job_done, 0) if total is not None and job_done is not None else None
        eta, eta_reason = job_eta(workers, remaining, throughput)  # the rule: store/_eta.py
    lost = running > 0 and lost_count == running
    stalled = running > 0 and stalled_count > 0 and lost_count + stalled_count == running
    return trusted(
        JobView,
        {
            "job_id": job_id,
            "kind": kind,
            "unit": unit,
            "done": job_done,
            "total": total,
            "throughput": throughput,
            "eta_seconds": eta,
            "eta_reason": eta_reason,
            "status": job_status(statuses),
            "stalled": stalled,
            "lost": lost,
            "updated_at": updated_at,
            "error": None if failed_latest is None else failed_latest.error,
            "payload": None if payload_latest is None else payload_latest.payload,
            "workers": workers,
            "attempt": attempt,
        },
    )
