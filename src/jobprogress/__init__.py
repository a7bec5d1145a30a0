"""jobprogress: live, durable progress for long-running jobs across many workers.

Importing this package is cheap: it loads the tracker and nothing else. Configuration, the background
reporter, pydantic models and sink plugins load on first use.
"""

from __future__ import annotations

from ._tracker import Tracker, current, track
from ._version import __version__
from .errors import ConfigurationError, InvalidProgressError, JobProgressError, PayloadTooLargeError

TYPE_CHECKING = False  # not typing's: keeps this import light
if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "ConfigurationError",
    "InvalidProgressError",
    "JobProgressError",
    "PayloadTooLargeError",
    "Tracker",
    "__version__",
    "aflush",
    "configure",
    "current",
    "flush",
    "shutdown",
    "stats",
    "track",
]


def configure(
    *,
    sinks: Sequence[str] | str | None = None,
    worker_id: str | None = None,
    interval: float | None = None,
    keepalive: float | None = None,
    payload_limit: int | None = None,
    on_oversize: str | None = None,
    heartbeat_limit: int | None = None,
    exit_timeout: float | None = None,
    max_batch: int | None = None,
    outbox: str | os.PathLike[str] | None = None,
    handle_sigterm: bool | None = None,
) -> None:
    """Configure where progress goes. Every argument also comes from ``JOBPROGRESS_<NAME>``.

    An argument left as None falls back to its environment variable, then to its default. Every sink URL
    is validated here (unknown scheme, missing extra, bad parameters). Trackers already running carry
    on, reporting to the new sinks.

    Args:
        sinks: Sink URLs, e.g. ``["sqlite:///progress.db", "stdout://"]`` (env: comma-separated).
        worker_id: This worker's id; default ``"<hostname>:<pid>"``.
        interval: Minimum seconds between progress sends per job (default 1.0).
        keepalive: Heartbeat after this many seconds without a change (default 10.0).
        payload_limit: Largest payload in bytes of JSON (default 1024, ceiling 4096).
        on_oversize: ``"raise"`` (default) or ``"drop"`` an oversized payload.
        heartbeat_limit: Largest heartbeat that carries the envelope inline (default 512 bytes).
        exit_timeout: Longest wait for delivery at process exit or SIGTERM (default 2.0 s); what is
            not delivered by then goes to the outbox.
        max_batch: Most messages per ``send`` (default 500).
        outbox: Directory where states not delivered by a deadline are kept for the next process that
            configures the same sink (default: the user cache directory, e.g.
            ``~/.cache/jobprogress/outbox``); ``""`` turns the outbox off.
        handle_sigterm: On SIGTERM, deliver or spool within ``exit_timeout`` and then still end by
            SIGTERM (default True). Only installed where SIGTERM has its default handler.

    Raises:
        ConfigurationError: naming the bad value and the valid choices.
    """
    from . import _runtime

    _runtime.configure(
        sinks=sinks,
        worker_id=worker_id,
        interval=interval,
        keepalive=keepalive,
        payload_limit=payload_limit,
        on_oversize=on_oversize,
        heartbeat_limit=heartbeat_limit,
        exit_timeout=exit_timeout,
        max_batch=max_batch,
        outbox=outbox,
        handle_sigterm=handle_sigterm,
    )


def flush(timeout: float = 5.0) -> bool:
    """Send the newest state of every live tracker and wait for delivery.

    Until the deadline a failing sink is retried every second or sooner, whatever its backoff, so a
    flush waits through a short outage (a locked database, a restarting collector). It returns early
    only when a sink asked (``Retry-After``) to wait past the deadline.

    Returns:
        True when every sink took every state. False at the deadline: what is still undelivered has
        then been written to the outbox (see ``configure(outbox=...)``) and the reporter keeps retrying
        in the background; if this process ends first, the next one that configures the sink delivers it.
    """
    from . import _runtime

    return _runtime.flush(timeout)


async def aflush(timeout: float = 5.0) -> bool:
    """:func:`flush` for async code (asyncio or trio), without blocking the event loop."""
    from . import _runtime

    return await _runtime.aflush(timeout)


def shutdown(timeout: float = 5.0) -> bool:
    """Flush (bounded by ``timeout``), stop the background threads and close the sinks. Idempotent.

    Runs by itself at interpreter exit, at the exit of multiprocessing children and on SIGTERM, bounded by
    ``exit_timeout`` (a sink whose last send failed is not waited for there). Whatever is undelivered at
    the deadline is written to the outbox, for the next process that configures the sink. A tracker
    started afterwards starts a fresh reporter.

    Returns:
        True when everything was delivered; False when the rest went to the outbox.
    """
    from . import _runtime

    return _runtime.shutdown(timeout)


def stats() -> dict[str, Any]:
    """Delivery counters, for monitoring and tests.

    Returns:
        ``{"live_trackers": n, "sample_period": s, "payload_dropped": n, "sinks": {url: {...}}}``.
        ``sample_period`` is how often trackers are sampled now: it stretches past ``interval`` only when
        sampling would take more than 3.5 % of a core (many thousands of live trackers). Each sink has
        ``sent``, ``batches``, ``failures``, ``retries``, ``dropped``, ``dropped_overflow``, ``replaced``,
        ``pending`` and ``failing``; a sink with an outbox also ``spooled`` and ``replayed`` (states
        written to and delivered from it), ``outbox_dropped`` (dropped at its size bound) and
        ``outbox_corrupt`` (unreadable files set aside).
    """
    from . import _runtime

    return _runtime.stats()
