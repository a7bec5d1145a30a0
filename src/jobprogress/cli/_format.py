"""Plain-text wording of the Jobs view: progress lines per kind (spec §6), sizes, durations, order.

Pure functions over :class:`~jobprogress.store.JobView` and :class:`~jobprogress.store.WorkerView`,
shared by ``jobs``, ``show``, ``watch`` and the demo. Every string taken from a view is passed through
:func:`~jobprogress.cli._safe.scrub` here, so what these functions return is safe plain text (not markup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Final

from jobprogress._states import (
    ACTIONABLE,
    FAILED,
    JOB_STATES,
    READY,
    RUNNING,
    SUCCEEDED,
    expand_states,
    job_state,
)
from jobprogress.store.views import JobView, WorkerView

from ._safe import scrub

__all__ = [
    "ago",
    "amount",
    "comma_separated",
    "counts_line",
    "eta_text",
    "human_bytes",
    "human_count",
    "human_duration",
    "job_row",
    "last_seen",
    "parse_states",
    "pass_rate",
    "progress_line",
    "rate",
    "sort_jobs",
    "state_of",
    "summary_counts",
    "summary_line",
    "workers_cell",
]

# Sort rank of each state (the ready ones share theirs); a newer writer's status sorts with running.
_RANK: Final = {
    **{state: rank for rank, state in enumerate((*ACTIONABLE, RUNNING))},
    **dict.fromkeys(READY, len(ACTIONABLE) + 1),
}
_RUNNING_RANK: Final = _RANK[RUNNING]

_ERROR_IN_LINE: Final = 72
_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def state_of(view: JobView | WorkerView) -> str:
    """The word shown for a job or worker: ``lost`` or ``stalled`` when a running one is judged so."""
    status = view.status
    if status == RUNNING:
        return job_state(status, stalled=view.stalled, lost=view.lost)
    return status if status in _RANK else scrub(status)


def parse_states(values: Iterable[str]) -> frozenset[str]:
    """Turn ``--status`` values (repeatable, comma-separated) into a set of state words.

    ``actionable`` stands for failed, lost and stalled; ``ready`` for succeeded and cancelled.

    Raises:
        ValueError: a value is not a state word, naming the valid ones.
    """
    return frozenset(expand_states(word.lower() for word in comma_separated(values)))


def comma_separated(values: Iterable[str]) -> list[str]:
    """The non-empty parts of repeatable, comma-separated option values, stripped: ``a, b`` → a, b."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _aware(moment: datetime) -> datetime:
    # A store may hand back naive datetimes (SQLite has no time zone type); they are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def last_seen(view: JobView) -> datetime | None:
    """When the store last heard from any worker of the job (store clock), else the worker clock."""
    seen = [_aware(worker.seen_at) for worker in view.workers if worker.seen_at is not None]
    if seen:
        return max(seen)
    return None if view.updated_at is None else _aware(view.updated_at)


def sort_jobs(views: Iterable[JobView]) -> list[JobView]:
    """Actionable first (failed, lost, stalled), then running, then ready (succeeded, cancelled).

    Running jobs keep a stable order (by job id) so a live view does not reshuffle every second; the
    others show the most recently updated first, where the newest failure matters most.
    """

    def key(view: JobView) -> tuple[int, float, str]:
        rank = _RANK.get(state_of(view), _RUNNING_RANK)
        if rank == _RUNNING_RANK:
            return (rank, 0.0, view.job_id)
        seen = last_seen(view)
        return (rank, -(seen - _EPOCH).total_seconds() if seen else 0.0, view.job_id)

    return sorted(views, key=key)


def summary_counts(views: Iterable[JobView]) -> dict[str, int]:
    """How many jobs show each state word, every word present (``ready`` = succeeded + cancelled)."""
    counts = dict.fromkeys(JOB_STATES, 0)
    for view in views:
        state = state_of(view)
        counts[state if state in counts else RUNNING] += 1
    return counts


def summary_line(views: Sequence[JobView]) -> str:
    """One line such as ``7 jobs: 1 failed, 1 lost, 0 stalled, 3 running, 2 ready``."""
    return counts_line(summary_counts(views))


def counts_line(counts: Mapping[str, int]) -> str:
    """The summary line from per-state counts (``ProgressStore.counts()``, one SQL aggregate)."""
    jobs = sum(counts.values())
    ready = sum(counts.get(state, 0) for state in READY)
    noun = "job" if jobs == 1 else "jobs"
    parts = [f"{counts.get(state, 0)} {state}" for state in (*ACTIONABLE, RUNNING)]
    return f"{jobs} {noun}: {', '.join(parts)}, {ready} ready"


def human_count(value: int) -> str:
    """An integer with thousands separators: ``1,234,567``."""
    return f"{value:,}"


def human_bytes(value: float) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``12.3 MiB``."""
    size = float(value)
    for unit in _BYTE_UNITS:
        if abs(size) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns on the last unit


def human_duration(seconds: float) -> str:
    """A short duration: ``45s``, ``3m 05s``, ``2h 03m``, ``3d 04h``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def ago(moment: datetime | None, now: datetime) -> str:
    """How long before ``now`` a moment was: ``just now``, ``5s ago``, ``3m ago``; ``never`` for None."""
    if moment is None:
        return "never"
    seconds = (_aware(now) - _aware(moment)).total_seconds()
    if seconds < 1:  # includes a moment slightly in the future (another host's clock)
        return "just now"
    return f"{human_duration(seconds).split(' ')[0]} ago"


def _is_bytes(unit: str | None) -> bool:
    return unit == "bytes"


def amount(done: int | None, total: int | None, unit: str | None) -> str:
    """``120/400 files``, ``12.0 MiB / 40.0 MiB``, ``5,000 rows`` (no total) or ``no progress yet``."""
    if done is None:
        return "mixed units" if unit is None else "no progress yet"
    if _is_bytes(unit):
        text = human_bytes(done)
        return f"{text} / {human_bytes(total)}" if total is not None else text
    unit_word = scrub(unit) if unit else "items"
    if total is not None:
        return f"{human_count(done)}/{human_count(total)} {unit_word}"
    return f"{human_count(done)} {unit_word}"


def rate(throughput: float | None, unit: str | None) -> str | None:
    """``35.2 files/s`` or ``1.5 MiB/s``; None when there is no finite rate."""
    if throughput is None or not math.isfinite(throughput):
        return None
    if _is_bytes(unit):
        return f"{human_bytes(throughput)}/s"
    unit_word = scrub(unit) if unit else "items"
    return f"{throughput:,.1f} {unit_word}/s"


def _number(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def pass_rate(done: int | None, payload: Mapping[str, Any] | None) -> float | None:
    """A backtest's pass rate in percent, from the payload.

    ``pass_rate`` is read as a fraction when at most 1, else as a percentage; without it, ``passed``
    is divided by ``passed + failed`` when the payload has ``failed``, else by the iterations done.
    """
    if not payload:
        return None
    explicit = _number(payload, "pass_rate")
    if explicit is not None:
        return explicit * 100 if 0 <= explicit <= 1 else explicit
    passed = _number(payload, "passed")
    if passed is None:
        return None
    failed = _number(payload, "failed")
    attempts = passed + failed if failed is not None else (float(done) if done else 0.0)
    return 100 * passed / attempts if attempts > 0 else None


def _paths_analysed(payload: Mapping[str, Any] | None) -> int | None:
    if not payload:
        return None
    for key in ("paths_analysed", "paths_analyzed", "paths"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def eta_text(view: JobView | WorkerView) -> str | None:
    """``ETA 1m 05s``; for a job without one, why, when a worker is the cause (``waiting on a stalled
    worker``: :attr:`JobView.eta_reason`); else None."""
    if view.eta_seconds is not None:
        return f"ETA {human_duration(view.eta_seconds)}"
    reason = view.eta_reason if isinstance(view, JobView) else None
    return None if reason is None else scrub(reason)


def progress_line(view: JobView | WorkerView) -> str:
    """The progress line of spec §6, by kind.

    - scan: files done/total, throughput, ETA;
    - parse: rows done/total, or bytes done human-sized, with throughput and ETA;
    - backtest: iterations done and the pass rate from the payload;
    - schema_eval: paths analysed (payload ``paths_analysed``, else items done);
    - any other kind: done/total in its unit, throughput, ETA.

    Rate and ETA show while the job runs (for a job whose ETA waits on a lost or stalled worker, the
    reason shows where the ETA would be); a failed job ends with its error summary.
    """
    kind = view.kind
    parts: list[str] = []
    if kind == "schema_eval":
        paths = _paths_analysed(view.payload)
        if paths is not None:
            parts.append(f"{human_count(paths)} paths analysed")
            parts.append(amount(view.done, view.total, view.unit))
        elif view.done is not None and not _is_bytes(view.unit):
            total = f"/{human_count(view.total)}" if view.total is not None else ""
            parts.append(f"{human_count(view.done)}{total} paths analysed")
        else:
            parts.append(amount(view.done, view.total, view.unit))
    else:
        parts.append(amount(view.done, view.total, view.unit))
    if kind == "backtest":
        percent = pass_rate(view.done, view.payload)
        if percent is not None:
            parts.append(f"pass {percent:.1f}%")
    if view.status == RUNNING:
        speed = rate(view.throughput, view.unit)
        if speed is not None:
            parts.append(speed)
        eta = eta_text(view)
        if eta is not None:
            parts.append(eta)
    if view.status == FAILED and view.error:
        error = scrub(view.error)
        # The list shows the start of the error; the detail panel shows all of it.
        parts.append(error if len(error) <= _ERROR_IN_LINE else error[: _ERROR_IN_LINE - 1] + "…")
    return " · ".join(parts)


def workers_cell(view: JobView) -> str:
    """``3``, or ``3 (1 lost)`` when some workers need attention."""
    trouble: dict[str, int] = {}
    for worker in view.workers:
        if worker.status != SUCCEEDED:  # the common case, answered without a call
            state = state_of(worker)
            if state in ACTIONABLE:
                trouble[state] = trouble.get(state, 0) + 1
    text = str(len(view.workers))
    if trouble and len(view.workers) > 1:
        text += " (" + ", ".join(f"{count} {state}" for state, count in trouble.items()) + ")"
    return text


def job_row(view: JobView, now: datetime) -> tuple[str, str, str, str, str, str]:
    """The cells of one Jobs-list row: job, kind, state, progress, workers, updated."""
    return (
        scrub(view.job_id),
        scrub(view.kind) if view.kind else "-",
        state_of(view),
        progress_line(view),
        workers_cell(view),
        ago(last_seen(view), now),
    )
