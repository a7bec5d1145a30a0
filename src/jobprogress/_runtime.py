"""Process-wide state: the configuration, the reporter, exit and SIGTERM hooks, and fork handling.

Imported on first use (a tracker start or ``configure()``), never by ``import jobprogress``.
In a forked child everything inherited is set aside untouched (its locks may be held, its
connections belong to the parent) and a fresh reporter with fresh sinks starts on first use.

At exit (atexit, or multiprocessing's finalizers in its children) and on SIGTERM the reporter is shut
down within ``exit_timeout``: what is not delivered by then goes to the outbox. SIGTERM's default action
kills a process without running any Python, so where its handler is still the default one (and
``handle_sigterm`` is on) a handler is installed that shuts down the same way, then restores the default
and sends the signal again: the process still ends by SIGTERM, with the same exit status.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._forklock import ForkSafeLock
from ._log import logger, redact_url, warn_once
from ._reporter import Reporter
from ._threads import start_daemon
from ._wakeup import watch_sigterm
from .config import ENV_PREFIX, Settings, resolve_settings
from .errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

    from ._tracker import Tracker
    from .envelope import JobProgressEnvelope
    from .sinks import AnySink

__all__ = [
    "aflush",
    "configure",
    "count_payload_drop",
    "deliver_outbox",
    "ensure_exit_hooks",
    "envelope_of",
    "flush",
    "reporter",
    "reset",
    "settings",
    "shutdown",
    "stats",
]

_SINKS_VARIABLE = ENV_PREFIX + "SINKS"

_lock = ForkSafeLock(threading.RLock)
_settings: Settings | None = None
_configured: Settings | None = None
"""The settings ``configure()`` set explicitly; None while they come from the environment alone."""
_reporter: Reporter | None = None
_closing: Reporter | None = None
"""The reporter a :func:`shutdown` is working on, for a SIGTERM handler that interrupts it."""
_closing_thread: int | None = None
"""The thread running that shutdown."""
_sigterm_deferred = False
"""SIGTERM interrupted a shutdown on the main thread: the process ends by it once that shutdown is done."""
_payload_drops = 0
_exit_hooks_pid: int | None = None
_sigterm_checked = False
"""Whether this process has looked at (and if it could, taken over) SIGTERM's handler."""
_sigterm_started = threading.Event()
"""Set as :func:`_on_sigterm` starts: the watcher of :mod:`._wakeup` stops waking the main thread."""
# Objects inherited across fork are kept alive, unused, so their finalizers never touch the parent's
# connections or locks from the child.
_orphans: list[object] = []


def _env_error(variable: str, value: str, error: ConfigurationError) -> None:
    """Log a bad ``JOBPROGRESS_*`` value once, naming the variable, the value and the fix."""
    warn_once(
        ("env", variable, value),
        "jobprogress: %s=%r is not used: %s. Fix the variable or unset it; tracking continues%s.",
        variable,
        redact_url(value),
        error,
        " without that sink" if variable == _SINKS_VARIABLE else " with the default",
        level=logging.ERROR,
    )


def settings() -> Settings:
    """The process's settings; from ``JOBPROGRESS_*`` on first use if ``configure()`` was not called.

    Nobody asked for this configuration in code, so a bad environment value never raises into the
    code that tracks progress: it is logged once (:func:`_env_error`) and its default used.
    """
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = resolve_settings({}, on_env_error=_env_error)
    return _settings


def _open_sinks(urls: Sequence[str], *, from_env: bool = False) -> list[tuple[str, AnySink]]:
    """Open each sink; with ``from_env``, a URL that cannot be used is logged and left out."""
    from ._plugins import create_sink

    sinks = []
    for url in urls:
        try:
            sinks.append((url, create_sink(url)))
        except ConfigurationError as exc:
            if not from_env:
                raise
            _env_error(_SINKS_VARIABLE, url, exc)
    return sinks


def _new_reporter(resolved: Settings, *, from_env: bool = False) -> Reporter:
    sinks = _open_sinks(resolved.sinks, from_env=from_env)
    if not sinks:
        logger.debug("jobprogress: no sink configured; progress is tracked but not written anywhere")
    else:
        from ._messages import models

        models()  # load pydantic here, in the configuring thread, not in the reporter thread mid-run
        ensure_exit_hooks()
    return Reporter(resolved, sinks)


def reporter() -> Reporter:
    """The process's reporter, built on first use from the settings."""
    global _reporter
    current = _reporter
    if current is None:
        with _lock:
            if _reporter is None:
                # Unless configure() set it, the configuration came from the environment.
                _reporter = _new_reporter(settings(), from_env=_configured is None)
            current = _reporter
    if not _sigterm_checked:
        ensure_sigterm_handler()
    return current


def configure(**arguments: Any) -> None:
    """See :func:`jobprogress.configure`."""
    global _settings, _reporter, _configured
    resolved = resolve_settings({name: value for name, value in arguments.items() if value is not None})
    new = _new_reporter(resolved)  # validates every sink URL before anything changes
    with _lock:
        old, _settings, _reporter = _reporter, resolved, new
        _configured = resolved
    ensure_sigterm_handler()
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
    global _reporter, _closing, _closing_thread
    _closing_thread = threading.get_ident()  # first: a SIGTERM from here on waits for this shutdown
    try:
        with _lock:
            current, _reporter = _reporter, None
        if current is None:
            return True
        _closing = current
        return current.shutdown(timeout, at_exit=at_exit)
    finally:
        _closing = _closing_thread = None
        if _sigterm_deferred and threading.current_thread() is threading.main_thread():
            _die_by_sigterm()


def stats() -> dict[str, Any]:
    """See :func:`jobprogress.stats`."""
    current = _reporter
    base: dict[str, Any] = {"live_trackers": 0, "sample_period": None, "sinks": {}}
    if current is not None:
        base = current.stats()
    base["payload_dropped"] = _payload_drops
    return base


def envelope_of(tracker: Tracker) -> JobProgressEnvelope:
    """The envelope of ``tracker``, with rate and ETA when the process's reporter has sampled it."""
    current = _reporter
    if current is None:
        from ._messages import build_envelope

        return build_envelope(tracker.state(), None, None)
    return current.envelope_of(tracker)


def reset(timeout: float) -> None:
    """Shut the reporter down and forget the settings and counters (``jobprogress.testing.reset``)."""
    global _settings, _configured, _payload_drops
    shutdown(timeout)
    with _lock:
        _settings = _configured = None
        _payload_drops = 0


def count_payload_drop() -> None:
    global _payload_drops
    _payload_drops += 1
    warn_once("payload", "jobprogress: a payload over payload_limit was dropped (on_oversize='drop')")


def stored_progress(job_id: str, worker_id: str) -> tuple[int, int] | None:
    """(done, seq) of the stored row of (job, worker) from the first sink that can read one."""
    from .sinks import ResumableSink

    current = reporter()
    for mailbox in current.mailboxes:
        if not isinstance(mailbox.sink, ResumableSink):
            continue
        try:
            stored = mailbox.sink.stored_done(job_id, worker_id)
        except Exception as exc:
            warn_once(
                "resume", "jobprogress: resume could not read the stored progress (%s); starting at 0", exc
            )
            return None
        return None if stored is None else (int(stored[0]), int(stored[1]))
    return None


def deliver_outbox(url: str, root: Path, timeout: float) -> tuple[bool, int]:
    """Deliver what earlier processes left in the outbox of sink ``url`` under ``root``, now.

    Opens the sink afresh (as a worker configuring it would), retries failed sends soon until ``timeout``
    and closes the sink. Returns whether nothing is left, and how many states were delivered.

    Raises:
        ConfigurationError: the URL is not a usable sink here (unknown scheme, missing extra).
    """
    import time

    from ._mailbox import Mailbox
    from ._outbox import Outbox
    from ._plugins import create_sink

    outbox = Outbox(root, url)
    mailbox = Mailbox(create_sink(url), url, max_batch=settings().max_batch, threaded=False, outbox=outbox)
    try:
        done = mailbox.replay_now(time.monotonic() + max(timeout, 0.0))
    finally:
        mailbox.stop(1.0)
    return done, outbox.stats["replayed"]


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


def _terminated() -> None:
    """Mark this process's running jobs cancelled ("terminated by SIGTERM"), then shut down as at exit.

    The signal may interrupt a shutdown under way on another thread: that shutdown's reporter is
    finished here (one on the main thread is left to finish itself: see :func:`_on_sigterm`).
    """
    global _reporter
    current = _reporter
    if current is not None:
        for tracker in current.live_trackers():
            try:
                tracker.cancel("terminated by SIGTERM")
            except Exception as exc:
                logger.debug("jobprogress: could not mark %r cancelled: %s", tracker.job_id, exc)
    else:
        current = _closing
    if current is None:
        return
    with _lock:
        if _reporter is current:
            _reporter = None
    try:
        current.shutdown(settings().exit_timeout, at_exit=True)
    except Exception as exc:  # never a traceback from a signal
        logger.debug("jobprogress: shutdown on SIGTERM failed: %s", exc)


def _on_sigterm(signum: int, frame: object) -> None:
    """Deliver or spool within ``exit_timeout``, then end the process by SIGTERM as the default would.

    The shutdown runs on a thread of its own, joined with a bound: the interrupted main thread may hold
    a lock the shutdown needs, and a signal handler must never hang the process it was sent to stop.

    When the signal interrupts a shutdown the main thread is running itself (a pool worker's exit
    finalizers, as ``Pool.terminate()`` sends SIGTERM), that shutdown is left to finish: it is bounded
    by ``exit_timeout`` too, and it may hold the very locks a second one would wait for until the bound
    ran out and the process died with the final states neither delivered nor spooled. The process
    ends by SIGTERM as that shutdown returns.
    """
    global _sigterm_deferred
    _sigterm_started.set()
    if _closing_thread == threading.get_ident():
        _sigterm_deferred = True
        return
    try:
        timeout = settings().exit_timeout
        worker = start_daemon(_terminated, "jobprogress-sigterm")
        if worker is not None:
            worker.join(timeout + 0.5)
    except BaseException as exc:  # whatever happens, the process must still end
        logger.debug("jobprogress: delivery on SIGTERM failed: %s", exc)
    finally:
        _die_by_sigterm()


def _die_by_sigterm() -> None:
    """End the process by SIGTERM, as its default action would have (main thread only)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def ensure_sigterm_handler() -> None:
    """Install :func:`_on_sigterm` once per process, where SIGTERM still has its default handler.

    A handler the application set (or SIG_IGN) is never replaced. Python lets only the main thread set
    handlers: called from another thread this does nothing, and the next call from the main thread
    installs it (``configure()`` and the first tracker start both call it). In a multiprocessing
    child with our handler (installed here or inherited), a watcher makes sure it runs: see
    :mod:`jobprogress._wakeup`.
    """
    global _sigterm_checked
    if _sigterm_checked or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_checked = True
    if not settings().handle_sigterm:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            watch_sigterm(_on_sigterm, _sigterm_started)
    except (ValueError, OSError, AttributeError) as exc:  # no SIGTERM here, or not the main interpreter
        logger.debug("jobprogress: no SIGTERM handler installed: %s", exc)


def _after_fork_in_child() -> None:
    global _reporter, _exit_hooks_pid, _sigterm_checked, _sigterm_started, _sigterm_deferred
    if _reporter is not None:
        _orphans.append(_reporter)
        _reporter = None
    _exit_hooks_pid = None
    _sigterm_checked = False  # an inherited handler of ours stays; one the child set stays too
    _sigterm_started = threading.Event()
    _sigterm_deferred = False


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
