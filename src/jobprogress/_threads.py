"""Background threads of the library: daemons, named, and never an error at interpreter shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["start_daemon"]


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread | None:
    """Start ``target`` on a daemon thread named ``name``; None when no thread can be started.

    Python refuses new threads while the interpreter shuts down (``RuntimeError``): callers then do
    the work inline instead.
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return None
    return thread
