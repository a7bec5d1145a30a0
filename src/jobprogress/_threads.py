"""Background threads of the library: daemons, named, and never an error at interpreter shutdown."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["start_daemon"]


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread | None:
    """Start ``target`` on a daemon thread named ``name``, SIGTERM blocked in it; None when none can start.

    Python runs signal handlers only in the main thread, and only once it returns to Python code. A
    SIGTERM the kernel delivers to one of our threads would leave a main thread blocked in a wait (a
    multiprocessing pool worker waiting for its next task) asleep, the handler never run and the
    process never ending; delivered to the main thread, it interrupts the wait. So the thread is made
    with SIGTERM already blocked: a new thread inherits its creator's signal mask, and blocking it
    from inside the new thread would leave a window, from its creation to that call, in which a
    SIGTERM could still land on it (a pool's ``terminate()`` sends one just as a worker's last final
    state starts its sender).

    Python refuses new threads while the interpreter shuts down (``RuntimeError``): callers then do
    the work inline instead.
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _sigterm_blocked():
        try:
            thread.start()
        except RuntimeError:
            return None
    return thread


@contextlib.contextmanager
def _sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in the calling thread for the duration; one arriving meanwhile waits, pending."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
