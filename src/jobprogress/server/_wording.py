"""The words of the Jobs view in the browser: progress lines per kind, sizes, rates, durations, visible text.

The same wording as the terminal views (``jobprogress jobs``): the collector may not import the CLI
room, so the few pure rules it needs are written here, the progress line of DESIGN §6 by kind:

- scan: files done/total, rate, ETA; parse: rows or bytes (human-sized), rate, ETA;
- backtest: iterations and the pass rate from the payload; schema_eval: paths analysed;
- any other kind: done/total in its unit, rate, ETA. A failed job ends with the start of its error.

:func:`visible` makes hidden characters (controls, bidi overrides, zero-width) visible as escapes
(``\\u202e``), so an id shows what it is and can be typed back; markup is left to Jinja's autoescape.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import FAILED, RUNNING, job_state

if TYPE_CHECKING:
    from jobprogress.store.views import JobView, WorkerView

__all__ = ["ago", "amount", "human_duration", "progress_line", "rate", "state_of", "visible"]

_ESCAPED: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_ERROR_IN_LINE: Final = 72


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(value: object) -> str:
    """``value`` as text whose every character shows: controls and format characters become escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(char) if unicodedata.category(char) in _ESCAPED else char for char in text)


def state_of(view: JobView | WorkerView) -> str:
    """The word shown for a job or worker: ``lost`` or ``stalled`` when a running one is judged so."""
    return visible(job_state(view.status, stalled=view.stalled, lost=view.lost))


def human_count(value: int) -> str:
    return f"{value:,}"


def human_bytes(value: float) -> str:
    size = float(value)
    for unit in _BYTE_UNITS[:-1]:
        if abs(size) < 1024:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_BYTE_UNITS[-1]}"


def human_duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 03m``, ``3d 04h``."""
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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def ago(moment: datetime | None, now: datetime) -> str:
    """``just now``, ``5s ago``, ``3m ago``; ``never`` for None."""
    if moment is None:
        return "never"
    seconds = (_aware(now) - _aware(moment)).total_seconds()
    if seconds < 1:
        return "just now"
    return f"{human_duration(seconds).split(' ')[0]} ago"


def amount(done: int | None, total: int | None, unit: str | None) -> str:
    """``120/400 files``, ``12.0 MiB / 40.0 MiB``, ``5,000 rows`` or ``no progress yet``."""
    if done is None:
        return "mixed units" if unit is None else "no progress yet"
    if unit == "bytes":
        return f"{human_bytes(done)} / {human_bytes(total)}" if total is not None else human_bytes(done)
    word = visible(unit) if unit else "items"
    if total is not None:
        return f"{human_count(done)}/{human_count(total)} {word}"
    return f"{human_count(done)} {word}"


def rate(throughput: float | None, unit: str | None) -> str | None:
    """``35.2 files/s`` or ``1.5 MiB/s``; None without a finite rate."""
    if throughput is None or not math.isfinite(throughput):
        return None
    if unit == "bytes":
        return f"{human_bytes(throughput)}/s"
    return f"{throughput:,.1f} {visible(unit) if unit else 'items'}/s"


def _number(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def pass_rate(done: int | None, payload: Mapping[str, Any] | None) -> float | None:
    """A backtest's pass rate in percent: ``pass_rate`` (a fraction or a percentage), else passed/attempts."""
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


def _paths(payload: Mapping[str, Any] | None) -> int | None:
    for key in ("paths_analysed", "paths_analyzed", "paths"):
        value = (payload or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def progress_line(view: JobView | WorkerView) -> str:
    """The progress line of DESIGN §6 for this view's kind (see the module docstring)."""
    parts: list[str] = []
    workers = getattr(view, "workers", None)
    if view.done is None and workers is not None and all(worker.done is None for worker in workers):
        parts.append("no progress yet")  # not "mixed units": no worker reported any
    elif view.kind == "schema_eval":
        paths = _paths(view.payload)
        if paths is not None:
            parts += [f"{human_count(paths)} paths analysed", amount(view.done, view.total, view.unit)]
        elif view.done is not None and view.unit != "bytes":
            total = f"/{human_count(view.total)}" if view.total is not None else ""
            parts.append(f"{human_count(view.done)}{total} paths analysed")
        else:
            parts.append(amount(view.done, view.total, view.unit))
    else:
        parts.append(amount(view.done, view.total, view.unit))
    if view.kind == "backtest":
        percent = pass_rate(view.done, view.payload)
        if percent is not None:
            parts.append(f"pass {percent:.1f}%")
    if view.status == RUNNING:
        speed = rate(view.throughput, view.unit)
        if speed is not None:
            parts.append(speed)
        if view.eta_seconds is not None:
            parts.append(f"ETA {human_duration(view.eta_seconds)}")
    if view.status == FAILED and view.error:
        error = visible(view.error)
        parts.append(error if len(error) <= _ERROR_IN_LINE else error[: _ERROR_IN_LINE - 1] + "…")
    return " · ".join(parts)


def percent(view: JobView | WorkerView) -> float | None:
    """How far along, 0-100, when the job has a total; None otherwise."""
    if view.done is None or not view.total:
        return None
    return max(0.0, min(100.0, 100.0 * view.done / view.total))
