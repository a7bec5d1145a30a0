"""Tasks of the Dask integration tests, importable by the cluster's worker processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import jobprogress as jp


def scan_shard(job: str, shard: int, items: int = 100) -> int:
    with jp.track(job, unit="files", total=items, kind="scan") as tracker:
        for _ in range(items):
            tracker.advance()
    return items


def scan_shard_dying_once(job: str, shard: int, marker: str) -> int:
    """Shard 2's first run reports half its items, then its worker process dies (SIGKILL)."""
    with jp.track(job, unit="files", total=100, kind="scan") as tracker:
        tracker.advance(50)
        if shard == 2:
            try:
                Path(marker).open("x").close()
            except FileExistsError:
                pass  # the retry
            else:
                jp.flush(5.0)
                os.kill(os.getpid(), signal.SIGKILL)
        tracker.advance(50)
    return 100
