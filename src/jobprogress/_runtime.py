"""Process-wide state: the configuration, the reporter, exit hooks and fork handling.

Imported on first use (a tracker start or ``configure()``), never by ``import jobprogress``.
In a forked child everything inherited is set aside untouched (its locks may be held, its
connections belong to the parent) and a fresh reporter with fresh sinks starts on first use.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._forklock import ForkSafeLock
from ._reporter import Reporter
from .config import Settings, resolve_settings

if TYPE_CHECKING:
    from .sinks import AnySink

__all__ = [
    "aflush",
    "configure",
    "count_payload_drop",
    "ensure_exit_hooks",
    "flush",
    "reporter",
    "settings",
    "shutdown",
    "stats",
]

logger = logging.getLogger("jobprogress")

_lock = ForkSafeLock(threading.RLock)
_settings: Settings | None = None
_reporter: Reporter | None = None
_payload_drops = 0
_exit_hooks_pid: int | None = None
_warned: set[str] = set()
# Objects inherited across fork are kept alive, unused, so their finalizers never touch the parent's
# connections or locks from the child.
_orphans: list[object] = []


def _warn_once(kind: str, text: str, *args: object) -> None:
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(text, *args)


def settings() -> Settings:
    """The process's settings; from ``JOBPROGRESS_*`` on first use if ``configure()`` was not called."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = resolve_settings({})
    return _settings


def _open_sinks(urls: Sequence[str]) -> list[tuple[str, AnySink]]:
    from ._plugins import create_sink

    return [(url, create_sink(url)) for url in urls]


def _new_reporter(resolved: Settings) -> Reporter:
    sinks = _open_sinks(resolved.sinks)
    if not sinks:
        logger.debug("jobprogress: no sink configured; progress is tracked but not written anywhere")
    else:
        from ._reporter import models

        models()  # load pydantic here, in the configuring thread, not in the reporter thread mid-run
    return Reporter(resolved, sinks)


def reporter() -> Reporter:
    """The process's reporter, built on first use from the settings."""
    global _reporter
    current = _reporter
    if current is None:
        with _lock:
            if _reporter is None:
                _reporter = _new_reporter(settings())
            current = _reporter
    return current


def configure(**arguments: Any) -> None:
    """See :func:`jobprogress.configure`."""
    global _settings, _reporter
    resolved = resolve_settings({name: value for name, value in arguments.items() if value is not None})
    new = _new_reporter(resolved)  # validates every sink URL before anything changes
    with _lock:
        old, _settings, _reporter = _reporter, resolved, new
    if old is not None:
        for tracker in old.live_trackers():
            new.register(tracker)
        old.shutdown(resolved.exit_timeout)


def flush(timeout: float = 5.0) -> bool:
    """See :func:`jobprogress.flush`."""
    current = _reporter
    return True if current is None else current.flush(timeout)


async def aflush(timeout: float = 5.0) -> bool:
    """See :func:`jobprogress.aflush`."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(flush, timeout, abandon_on_cancel=True)


def shutdown(timeout: float = 5.0, *, at_exit: bool = False) -> bool:
    """See :func:`jobprogress.shutdown`."""
    global _reporter
    with _lock:
        current, _reporter = _reporter, None
    return True if current is None else current.shutdown(timeout, at_exit=at_exit)


def stats() -> dict[str, Any]:
    """See :func:`jobprogress.stats`."""
    current = _reporter
    base: dict[str, Any] = {"live_trackers": 0, "sample_period": None, "sinks": {}}
    if current is not None:
        base = current.stats()
    base["payload_dropped"] = _payload_drops
    return base


def count_payload_drop() -> None:
    global _payload_drops
    _payload_drops += 1
    _warn_once("payload", "jobprogress: a payload over payload_limit was dropped (on_oversize='drop')")


def stored_progress(job_id: str, worker_id: str) -> tuple[int, int] | None:
    """(done, seq) of the stored row of (job, worker) from the first sink that can read one."""
    current = reporter()
    for mailbox in current.mailboxes:
        read = getattr(mailbox.sink, "stored_done", None)
        if read is None:
            continue
        try:
            stored = read(job_id, worker_id)
        except Exception as exc:
            _warn_once(
                "resume", "jobprogress: resume could not read the stored progress (%s); starting at 0", exc
            )
            return None
        return None if stored is None else (int(stored[0]), int(stored[1]))
    return None


def _at_exit() -> None:
    try:
        shutdown(settings().exit_timeout, at_exit=True)
    except Exception as exc:  # never a traceback at exit
        logger.debug("jobprogress: shutdown at exit failed: %s", exc)


def ensure_exit_hooks() -> None:
    """Register delivery at exit once per process: atexit, and multiprocessing's finalizers.

    atexit never runs in fork- or forkserver-started multiprocessing children; their
    ``multiprocessing.util._exit_function`` runs ``Finalize`` callbacks instead.
    """
    global _exit_hooks_pid
    pid = os.getpid()
    if _exit_hooks_pid == pid:
        return
    _exit_hooks_pid = pid
    atexit.register(_at_exit)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _at_exit, exitpriority=100)


def _after_fork_in_child() -> None:
    global _reporter, _exit_hooks_pid
    if _reporter is not None:
        _orphans.append(_reporter)
        _reporter = None
    _exit_hooks_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def use_reporter(replacement: Reporter) -> Iterator[Reporter]:
    """Route all trackers to ``replacement`` for the duration (test capture); restores the previous one."""
    global _reporter
    with _lock:
        previous, _reporter = _reporter, replacement
    try:
        yield replacement
    finally:
        replacement.shutdown(1.0)
        with _lock:
            _reporter = previous
