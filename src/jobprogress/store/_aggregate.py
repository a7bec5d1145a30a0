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
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import FAILED, RUNNING, job_status
from jobprogress.envelope import trusted
from jobprogress.store._eta import job_eta
from jobprogress.store.views import JobView, WorkerView

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

__all__ = ["WORKER_COLUMNS", "ViewCache", "fold", "fold_attempts", "fold_job", "gc_paused", "plain_rows"]

_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
_loads = json.loads
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The C scanner under ``json.loads``, minus its two whitespace scans: a stored payload is one JSON
document as the writer dumped it. Whatever it does not take whole goes to ``json.loads``, which
gives the same value or raises the same error."""
_EPOCH: Final = datetime.fromtimestamp(0, _UTC)

WORKER_COLUMNS: Final = (
    "job_id", "worker_id", "kind", "status", "unit", "done", "total", "throughput", "eta_seconds",
    "payload_json", "error", "run_id", "seq", "started_at", "updated_at", "progressed_at", "seen_at",
    "attempt",
)  # fmt: skip

_SEEN_AT: Final = WORKER_COLUMNS.index("seen_at")
_WORKER_ID: Final = WORKER_COLUMNS.index("worker_id")
_ATTEMPT: Final = WORKER_COLUMNS.index("attempt")

Stamps = dict[Any, "datetime | None"]
"""Store times already converted in one call, by stored value: rows written together share their
times, and a datetime is immutable, so equal values share one."""


def _time(value: float | None) -> datetime | None:
    """A stored POSIX time as an aware datetime; None for one no datetime can hold (a row from elsewhere)."""
    if value is None:
        return None
    try:
        return _fromtimestamp(value, _UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _stamps() -> Stamps:
    return {None: None}


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


def plain_rows(result: CursorResult[Any]) -> list[tuple[Any, ...]]:
    """A result's rows as plain tuples, which the fold compares with its cache in C (unlike Rows).

    When no column has a result processor (the read side's text, integers and floats have none on
    SQLite, Postgres or DuckDB), a Row only wraps the driver's tuple, and the whole Jobs list reads
    hundreds of thousands of them: the rows are then taken as the driver returns them, by
    SQLAlchemy's own fetch (which closes the cursor and wraps driver errors as ``fetchall`` does).
    Otherwise, or with a SQLAlchemy whose internals differ, through Rows.
    """
    metadata = getattr(result, "_metadata", None)
    fetch_all = getattr(result, "_fetchall_impl", None)
    if (
        fetch_all is not None
        and getattr(metadata, "_effective_processors", True) is None
        and getattr(metadata, "_tuplefilter", True) is None
    ):
        rows = fetch_all()
        if all(type(row) is tuple for row in rows):
            return rows  # type: ignore[no-any-return]
        return list(map(tuple, rows))
    return list(map(tuple, result))


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
    keyed = sorted(((_last_seen(group), job_id, group) for job_id, group in groups.items()), key=_second)
    keyed.sort(key=_first, reverse=True)  # stable: ties stay in job-id order
    stamps = _stamps()
    views = []
    for _, job_id, group in keyed:
        if len(group) > 1:
            _by_workers(group)
        hit = previous.get(job_id)
        view = hit[1] if hit is not None and hit[0] == group else _job(job_id, group, stamps)
        fresh[job_id] = (group, view)
        views.append(view)
    return views, fresh


def fold_job(rows: Sequence[Sequence[Any]]) -> JobView:
    """One job's rows of one attempt, ordered by worker id, folded into its view."""
    return _job(rows[0][0], rows, _stamps())


def fold_attempts(rows: Sequence[Sequence[Any]]) -> list[JobView]:
    """One job's rows of every attempt, folded into a view per attempt, newest attempt first."""
    attempts: dict[int, list[Sequence[Any]]] = {}
    for row in rows:
        attempts.setdefault(row[_ATTEMPT], []).append(row)
    stamps = _stamps()
    return [
        _job(group[0][0], _by_workers(group), stamps) for _, group in sorted(attempts.items(), reverse=True)
    ]


_first = itemgetter(0)
_second = itemgetter(1)
_seen_at = itemgetter(_SEEN_AT)


def _last_seen(group: list[Sequence[Any]]) -> Any:
    """A job's last message (store clock), 0 when none has a time: the list's order key."""
    try:
        last = max(map(_seen_at, group))
    except TypeError:  # a row without a time among rows with one
        last = max(row[_SEEN_AT] or 0.0 for row in group)
    return 0.0 if last is None else last


def _by_workers(group: list[Sequence[Any]]) -> list[Sequence[Any]]:
    """One attempt's rows of a job, in worker id order.

    The rows are tuples led by (job id, worker id), and an attempt's worker ids are distinct (the
    table's key) and text (its type), so tuple order is worker id order, compared in C without a key
    function per row.
    """
    try:
        group.sort()  # type: ignore[call-arg]
    except TypeError:  # not text after all: order them as text
        group.sort(key=lambda row: str(row[_WORKER_ID]))
    return group


def _job(job_id: str, rows: Sequence[Sequence[Any]], stamps: Stamps) -> JobView:
    """One job's rows (one attempt, in worker order) as a WorkerView each and the job's JobView.

    The rules of :mod:`jobprogress.store.views`; status, ``lost`` and ``stalled`` follow the same
    rules as the page query's filter in SQL. One pass over the rows, reading each value from the row
    rather than from its view: the whole Jobs list folds hundreds of thousands of workers. The views
    are built as :func:`jobprogress.envelope.trusted` builds them (every field is of its type
    already), inlined.
    """
    workers: list[WorkerView] = []
    unit: str | None = None
    mixed_units = False
    done = 0
    any_done = False
    total: int | None = 0
    rate = 0.0
    any_rate = False
    running = lost_count = stalled_count = 0
    statuses: set[str] = set()
    failed_key: tuple[datetime, int] | None = None
    error: str | None = None
    payload_key: tuple[datetime, int] | None = None
    payload: Any = None
    kind: str | None = None
    updated_at: datetime | None = None
    attempt = 1
    for row in rows:
        (
            _job_id, worker_id, worker_kind, status, worker_unit, worker_done, worker_total, throughput,
            eta_seconds, payload_json, worker_error, run_id, seq, started, updated, progressed, seen,
            worker_attempt, worker_lost, worker_stalled,
        ) = row  # fmt: skip
        seen_at = stamps.get(seen)
        if seen_at is None and seen is not None:
            seen_at = stamps[seen] = _time(seen)
        progressed_at = stamps.get(progressed)
        if progressed_at is None and progressed is not None:
            progressed_at = stamps[progressed] = _time(progressed)
        started_at = stamps.get(started)
        if started_at is None and started is not None:
            started_at = stamps[started] = _time(started)
        worker_updated_at = stamps.get(updated)
        if worker_updated_at is None and updated is not None:
            worker_updated_at = stamps[updated] = _time(updated)
        if payload_json is None:
            worker_payload = None
        else:
            try:
                worker_payload, end = _scan(payload_json, 0)
            except (StopIteration, TypeError):
                end = -1
            if end != len(payload_json):
                worker_payload = _loads(payload_json)
        lost = bool(worker_lost)
        stalled = bool(worker_stalled)
        worker = trusted(
            WorkerView,
            {
                "worker_id": worker_id,
                "kind": worker_kind,
                "unit": worker_unit,
                "done": worker_done,
                "total": worker_total,
                "throughput": throughput,
                "eta_seconds": eta_seconds,
                "status": status,
                "stalled": stalled,
                "lost": lost,
                "updated_at": worker_updated_at,
                "error": worker_error,
                "payload": worker_payload,
                "run_id": run_id,
                "seq": seq,
                "started_at": started_at,
                "progressed_at": progressed_at,
                "seen_at": seen_at,
                "attempt": worker_attempt,
            },
        )
        workers.append(worker)

        if worker_unit is not None:
            if unit is None:
                unit = worker_unit
            elif worker_unit != unit:
                mixed_units = True  # different units are never summed
        if worker_done is not None:
            done += worker_done
            any_done = True
        if worker_total is None:
            total = None
        elif total is not None:
            total += worker_total
        statuses.add(status)
        if status == RUNNING:
            running += 1
            if lost:
                lost_count += 1
            elif throughput is not None:
                # Live workers only; a stalled one is alive but makes no progress, so adds nothing.
                any_rate = True
                if stalled:
                    stalled_count += 1
                else:
                    rate += throughput
            elif stalled:
                stalled_count += 1
        elif status == FAILED:
            key = (progressed_at or _EPOCH, seq or 0)  # the most recently failed worker's error
            if failed_key is None or key > failed_key:
                failed_key = key
                error = worker_error
        if worker_payload is not None:
            key = (seen_at or _EPOCH, seq or 0)  # the most recently updated worker's payload
            if payload_key is None or key > payload_key:
                payload_key = key
                payload = worker_payload
        if worker_kind is not None and (kind is None or worker_kind > kind):
            kind = worker_kind
        if worker_updated_at is not None and (updated_at is None or worker_updated_at > updated_at):
            updated_at = worker_updated_at
        if worker_attempt > attempt:
            attempt = worker_attempt
    job_throughput: float | None = None
    eta: int | None = None
    eta_reason: str | None = None
    if mixed_units:
        unit = total = None
        job_done: int | None = None
    else:
        job_done = done if any_done else None
        # Each worker's rate is finite, but a sum of huge ones is not; an unknown rate is None, never inf.
        job_throughput = rate if any_rate and math.isfinite(rate) else None
        remaining = max(total - job_done, 0) if total is not None and job_done is not None else None
        eta, eta_reason = job_eta(workers, remaining, job_throughput)  # the rule: store/_eta.py
    return trusted(
        JobView,
        {
            "job_id": job_id,
            "kind": kind,
            "unit": unit,
            "done": job_done,
            "total": total,
            "throughput": job_throughput,
            "eta_seconds": eta,
            "eta_reason": eta_reason,
            "status": job_status(statuses),
            "stalled": running > 0 and stalled_count > 0 and lost_count + stalled_count == running,
            "lost": running > 0 and lost_count == running,
            "updated_at": updated_at,
            "error": error,
            "payload": payload,
            "workers": workers,
            "attempt": attempt,
        },
    )
