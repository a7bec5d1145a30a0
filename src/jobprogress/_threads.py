"""Background threads of the library: daemons, named, and never an error at interpreter shutdown."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["start_daemon"]


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread | None:
    """Start ``target`` on a daemon thread named ``name``; None when no thread can be started.

    Python refuses new threads while the interpreter shuts down (``RuntimeError``): callers then do
    the work inline instead.
    """
    thread = threading.Thread(target=_without_sigterm, args=(target,), name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return None
    return thread


def _without_sigterm(target: Callable[[], object]) -> None:
    """Run ``target`` with SIGTERM blocked in this thread, so the kernel hands SIGTERM to the main thread.

    Python runs signal handlers only in the main thread, and only once it returns to Python code. A
    SIGTERM the kernel delivers to one of our threads would leave a main thread blocked in a wait
    (a multiprocessing pool worker waiting for its next task) asleep, the handler never run and the
    process never ending; delivered to the main thread, it interrupts the wait.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    target()
