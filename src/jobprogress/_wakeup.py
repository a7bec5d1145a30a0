"""Wake a multiprocessing child's main thread for a SIGTERM whose Python handler is due but not run.

Python runs a signal's handler in the main thread: at its next check between bytecodes, or when a
blocking call it is in fails with EINTR. A SIGTERM that lands just before the main thread blocks
interrupts nothing. Say a pool worker's main thread, on its way into the wait for its next task,
is waiting for the GIL that our sender thread holds while it delivers the task's final state. The
signal's C handler runs and marks it due; the thread takes the GIL back and goes into the wait
without another check. The handler then waits for a task that never comes, and ``Pool.terminate()``,
which sent the signal, waits for the worker forever (CPython issue 82408; 1 pool in ~100 here).

So in a multiprocessing child, where our handler is installed, a watcher thread reads the signal
numbers that Python's C handler writes to a wakeup fd (:func:`signal.set_wakeup_fd`). If the handler
has not started shortly after a SIGTERM, the watcher sends SIGTERM again to the main thread itself
(:func:`signal.pthread_kill`). That interrupts the thread's wait, and the handler runs.

Only in multiprocessing children, and only where no wakeup fd is set yet. The wakeup fd is one per
process and belongs to the main thread's event loop when there is one: asyncio and trio set it and
have the loop wake up for signals themselves, and trio warns when it finds one already set. A forked
child drops the inherited fd at once, so that a signal it receives is never read as one for the parent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._log import logger
from ._threads import start_daemon

__all__ = ["watch_sigterm"]

GRACE = 0.2
"""Seconds the main thread gets to start the handler before the watcher sends the signal again."""
RESENDS = 25
"""How many times it is sent again at most (5 s), in case the main thread sits in C code that retries."""

_watched: tuple[int, int, int] | None = None
"""(pid, read fd, write fd) of this process's watcher, if it has one."""


def in_multiprocessing_child() -> bool:
    """Whether this process was started by :mod:`multiprocessing` (fork, forkserver or spawn)."""
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


def watch_sigterm(handler: Callable[[int, Any], None], started: threading.Event) -> bool:
    """In a multiprocessing child, resend SIGTERM to the main thread until ``handler`` has ``started``.

    Call from the main thread, with ``handler`` installed for SIGTERM. Returns whether a watcher runs
    (it already did, or it was started now). Does nothing elsewhere, where a wakeup fd is already set,
    or where signals cannot be sent to one thread.
    """
    global _watched
    if _watched is not None and _watched[0] == os.getpid():
        return True
    if (
        not hasattr(signal, "pthread_kill")
        or threading.current_thread() is not threading.main_thread()
        or not in_multiprocessing_child()
    ):
        return False
    previous = signal.set_wakeup_fd(-1)
    if previous != -1:  # the main thread's event loop wakes it for signals: leave its fd in place
        signal.set_wakeup_fd(previous)
        return False
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    assert main is not None
    if start_daemon(lambda: _watch(read, main, handler, started), "jobprogress-sigterm-watch") is None:
        _release(read, write)  # the interpreter is shutting down
        return False
    _watched = (os.getpid(), read, write)
    return True


def _watch(read: int, main: int, handler: Callable[[int, Any], None], started: threading.Event) -> None:
    sigterm = int(signal.SIGTERM)
    while True:
        try:
            numbers = os.read(read, 64)
        except OSError:  # closed: this watcher is no longer needed
            return
        if not numbers:
            return
        if sigterm not in numbers:
            continue
        for _ in range(RESENDS):
            if started.wait(GRACE) or signal.getsignal(signal.SIGTERM) is not handler:
                break
            logger.debug("jobprogress: SIGTERM handler not started; waking the main thread")
            signal.pthread_kill(main, signal.SIGTERM)


def _release(read: int, write: int) -> None:
    """Unset our wakeup fd (not one the application set since) and close both ends of its pipe."""
    try:
        current = signal.set_wakeup_fd(-1)
        if current not in (write, -1):
            signal.set_wakeup_fd(current)
    except ValueError:  # not the main thread: leave the setting, the fds are closed below
        pass
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def _after_fork_in_child() -> None:
    """Drop the parent's watcher: its fd would hand the child's signals to the parent's watcher."""
    global _watched
    if _watched is not None:
        _, read, write = _watched
        _watched = None
        _release(read, write)


os.register_at_fork(after_in_child=_after_fork_in_child)
