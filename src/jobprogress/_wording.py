"""The words of the Jobs view: progress lines per kind (spec §6), sizes, rates, durations, state words.

Pure functions over the read side's views (:class:`~jobprogress.store.JobView`,
:class:`~jobprogress.store.WorkerView`), shared by the terminal views (``jobprogress jobs``, ``show``,
``watch``, the demo) and the browser view (``jobprogress serve``/``web``), so both word a job alike.
Every string taken from a view passes through :func:`~jobprogress._text.scrub` here: what these
functions return is plain text with every hidden character escaped (not markup; the terminal views
wrap it in ``rich.text.Text``, the pages let Jinja escape it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import ACTIONABLE, FAILED, JOB_STATES, RUNNING, SUCCEEDED, job_state
from jobprogress._text import scrub

if TYPE_CHECKING:
    from jobprogress.store.views import JobView, WorkerView

__all__ = [
    "ago",
    "amount",
    "aware",
    "eta_text",
    "human_bytes",
    "human_count",
    "human_duration",
    "last_seen",
    "pass_rate",
    "percent",
    "progress_line",
    "rate",
    "state_of",
    "workers_cell",
]

_ERROR_IN_LINE: Final = 72
_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def state_of(view: JobView | WorkerView) -> str:
    """The word shown for a job or worker: ``lost`` or ``stalled`` when a running one is judged so."""
    status = view.status
    if status == RUNNING:
        return job_state(status, stalled=view.stalled, lost=view.lost)
    return status if status in JOB_STATES else scrub(status)  # a newer writer's word, shown as text


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: a store may hand back naive datetimes (SQLite has no time zone
    type); they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


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
    seconds = (aware(now) - aware(moment)).total_seconds()
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
    reason = getattr(view, "eta_reason", None)  # a WorkerView has none
    return None if reason is None else scrub(reason)


def _amount_of(view: JobView | WorkerView) -> str:
    workers = getattr(view, "workers", None)
    if view.done is None and workers and all(worker.done is None for worker in workers):
        return "no progress yet"  # not "mixed units": no worker reported any
    return amount(view.done, view.total, view.unit)


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
            parts.append(_amount_of(view))
        elif view.done is not None and not _is_bytes(view.unit):
            total = f"/{human_count(view.total)}" if view.total is not None else ""
            parts.append(f"{human_count(view.done)}{total} paths analysed")
        else:
            parts.append(_amount_of(view))
    else:
        parts.append(_amount_of(view))
    if kind == "backtest":
        pass_percent = pass_rate(view.done, view.payload)
        if pass_percent is not None:
            parts.append(f"pass {pass_percent:.1f}%")
    if view.status == RUNNING:
        speed = rate(view.throughput, view.unit)
        if speed is not None:
            parts.append(speed)
        eta = eta_text(view)
        if eta is not None:
            parts.append(eta)
    if view.status == FAILED and view.error:
        error = scrub(view.error)
        # The list shows the start of the error; the detail view shows all of it.
        parts.append(error if len(error) <= _ERROR_IN_LINE else error[: _ERROR_IN_LINE - 1] + "…")
    return " · ".join(parts)


def percent(view: JobView | WorkerView) -> float | None:
    """How far along, 0-100, when the view has a total; None otherwise."""
    if view.done is None or not view.total:
        return None
    return max(0.0, min(100.0, 100.0 * view.done / view.total))


def last_seen(view: JobView) -> datetime | None:
    """When the store last heard from any worker of the job (store clock), else the worker clock."""
    seen = [aware(worker.seen_at) for worker in view.workers if worker.seen_at is not None]
    if seen:
        return max(seen)
    return None if view.updated_at is None else aware(view.updated_at)


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
