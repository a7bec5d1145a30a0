"""The demo's worker processes: real work (scan, parse, backtest, schema_eval), reported with ``jp.track``.

Each worker gets a picklable :class:`WorkerSpec`, configures jobprogress exactly as an application
would and paces its real work over its time budget, so the run can be watched. On purpose, one
backtest raises :class:`DataGapError` (its job is stored as failed), one byte parser pauses while
staying alive (stalled), and one schema worker waits after a few items to be killed with SIGKILL.
"""

from __future__ import annotations

import ast
import contextlib
import os
import random
import signal
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

__all__ = ["PLANNED_FAILURE_EXIT", "DataGapError", "WorkerSpec", "worker_main"]

PLANNED_FAILURE_EXIT: Final = 3
"""Exit code of the worker that fails on purpose (its job is stored as failed)."""

_INTERVAL: Final = 0.5
_KEEPALIVE: Final = 1.0
_KILL_AFTER_ITEMS: Final = 8


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process does; picklable, so it crosses to spawn/forkserver children."""

    task: str
    job_id: str
    worker_id: str
    db_url: str
    files: tuple[str, ...]
    budget: float
    """Seconds the worker spreads its items over."""
    quiet: bool
    """Send the child's stdout/stderr to /dev/null (while the full-screen view owns the terminal)."""
    seed: int = 0
    fail_at: float | None = None
    """Fraction of the work after which the worker raises on purpose."""
    stall_for: float = 0.0
    """Seconds to pause halfway through, alive but without progress."""
    victim: bool = False
    """Signal ``ready`` after a few items and wait to be killed."""
    ready: Event | None = field(default=None, compare=False)


class DataGapError(ValueError):
    """What the backtest that fails on purpose raises: the kind of data error a real backtest meets."""


class _Pacer:
    """Spreads ``count`` items evenly over ``budget`` seconds: the real work, slowed to be watchable."""

    def __init__(self, count: int, budget: float) -> None:
        self._start = time.monotonic()
        self._step = budget / max(count, 1)

    def wait(self, finished: int) -> None:
        delay = self._start + finished * self._step - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# -- the work ----------------------------------------------------------------------------------


def _scan(spec: WorkerSpec, jp: Any) -> None:
    bytes_seen = 0
    with jp.track(spec.job_id, unit="files", total=len(spec.files), kind="scan") as tracker:
        pacer = _Pacer(len(spec.files), spec.budget)
        for index, path in enumerate(spec.files, 1):
            with contextlib.suppress(OSError):  # a file removed while we scan is simply skipped
                bytes_seen += os.stat(path).st_size
            tracker.advance()
            if index % 25 == 0:
                tracker.set_payload(bytes_seen=bytes_seen)
            pacer.wait(index)
        tracker.set_payload(bytes_seen=bytes_seen)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _parse_rows(spec: WorkerSpec, jp: Any) -> None:
    with jp.track(spec.job_id, unit="rows", kind="parse") as tracker:
        lines = [_read(path).count(b"\n") for path in spec.files]  # first pass: how many rows in all
        tracker.set_total(sum(lines))
        tokens = 0
        pacer = _Pacer(len(spec.files), spec.budget)
        for index, (path, count) in enumerate(zip(spec.files, lines, strict=True), 1):
            tokens += len(_read(path).split())
            tracker.advance(count)
            if index % 10 == 0:
                tracker.set_payload(files_parsed=index, tokens=tokens)
            pacer.wait(index)
        tracker.set_payload(files_parsed=len(spec.files), tokens=tokens)


def _parse_bytes(spec: WorkerSpec, jp: Any) -> None:
    sizes = []
    for path in spec.files:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(0)
    with jp.track(spec.job_id, unit="bytes", total=sum(sizes), kind="parse") as tracker:
        checksum = 0
        pacer = _Pacer(len(spec.files), spec.budget)
        halfway = len(spec.files) // 2
        for index, (path, size) in enumerate(zip(spec.files, sizes, strict=True), 1):
            data = _read(path)[:size]
            checksum = zlib.crc32(data, checksum)
            tracker.advance(size)  # the size counted in the total, even if the file changed since
            if index == halfway and spec.stall_for > 0:
                # Alive (keepalive heartbeats keep coming) but stuck: the view calls this "stalled".
                tracker.set_payload(files_read=index, crc32=f"{checksum:08x}", waiting="slow mount")
                time.sleep(spec.stall_for)
                pacer = _Pacer(len(spec.files) - index, spec.budget / 2)
                halfway = -1
            elif index % 10 == 0:
                tracker.set_payload(files_read=index, crc32=f"{checksum:08x}")
            pacer.wait(index if halfway >= 0 else index - len(spec.files) // 2)
        tracker.set_payload(files_read=len(spec.files), crc32=f"{checksum:08x}")


def _prices(seed: int, bars: int = 1500) -> list[float]:
    rng = random.Random(seed)
    price, prices = 100.0, []
    for _ in range(bars):
        price *= 1 + rng.gauss(0.0002, 0.01)
        prices.append(price)
    return prices


def _crossover_return(prices: Sequence[float], fast: int, slow: int) -> float:
    """Return of a long-only moving-average crossover: in the market while fast MA > slow MA."""
    fast_sum = sum(prices[slow - fast : slow])
    slow_sum = sum(prices[:slow])
    growth = 1.0
    for bar in range(slow, len(prices)):
        if fast_sum / fast > slow_sum / slow:
            growth *= prices[bar] / prices[bar - 1]
        fast_sum += prices[bar] - prices[bar - fast]
        slow_sum += prices[bar] - prices[bar - slow]
    return growth - 1


def _backtest(spec: WorkerSpec, jp: Any) -> None:
    prices = _prices(spec.seed)
    grid = [(fast, slow) for fast in range(2, 40, 3) for slow in range(fast + 5, 200, 11)]
    grid = grid[spec.seed % 2 :: 2]  # two workers split the grid
    fail_at = None if spec.fail_at is None else int(len(grid) * spec.fail_at)
    passed = failed = 0
    best = -1.0
    with jp.track(spec.job_id, unit="iterations", total=len(grid), kind="backtest") as tracker:
        pacer = _Pacer(len(grid), spec.budget)
        for index, (fast, slow) in enumerate(grid, 1):
            if index == fail_at:
                raise DataGapError(
                    f"price series has a gap at bar {slow * 7}: cannot evaluate window {fast}/{slow}"
                )
            result = _crossover_return(prices, fast, slow)
            best = max(best, result)
            if result > 0:
                passed += 1
            else:
                failed += 1
            tracker.advance()
            tracker.set_payload(
                passed=passed, failed=failed, pass_rate=round(passed / index, 4), best_return=round(best, 4)
            )
            pacer.wait(index)


def _public(node: ast.stmt) -> bool:
    return isinstance(
        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ) and not node.name.startswith("_")


def _public_paths(tree: ast.Module) -> tuple[int, int]:
    """Public classes, functions and methods of a module (its dotted paths), and how many are documented."""
    nodes = [node for node in tree.body if _public(node)]
    nodes += [
        member for node in nodes if isinstance(node, ast.ClassDef) for member in node.body if _public(member)
    ]
    documented = sum(ast.get_docstring(node) is not None for node in nodes)  # type: ignore[arg-type]
    return len(nodes), documented


def _schema_eval(spec: WorkerSpec, jp: Any) -> None:
    paths = documented = 0
    with jp.track(spec.job_id, unit="files", total=len(spec.files), kind="schema_eval") as tracker:
        pacer = _Pacer(len(spec.files), spec.budget)
        for index, path in enumerate(spec.files, 1):
            try:
                tree = ast.parse(_read(path), filename=path)
            except (SyntaxError, ValueError):  # a test fixture with deliberately bad syntax
                tree = ast.Module(body=[], type_ignores=[])
            found, with_doc = _public_paths(tree)
            paths += found
            documented += with_doc
            tracker.advance()
            tracker.set_payload(
                paths_analysed=paths, documented_pct=round(100 * documented / paths, 1) if paths else 100.0
            )
            if spec.victim and index == _KILL_AFTER_ITEMS and spec.ready is not None:
                jp.flush(timeout=5.0)  # the store shows this progress before the kill
                spec.ready.set()
                time.sleep(30.0)  # killed here, mid-job, however slow the machine (bounded, just in case)
            pacer.wait(index)


_TASKS: Final[dict[str, Callable[[WorkerSpec, Any], None]]] = {
    "scan": _scan,
    "parse_rows": _parse_rows,
    "parse_bytes": _parse_bytes,
    "backtest": _backtest,
    "schema_eval": _schema_eval,
}


def worker_main(spec: WorkerSpec) -> None:
    """Entry point of one worker process."""
    # Ctrl+C reaches the whole process group: the parent alone handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    # The demo needs only the built-in sinks: skipping the entry-point scan speeds up every worker.
    os.environ.setdefault("JOBPROGRESS_LOAD_PLUGINS", "")
    import jobprogress as jp

    jp.configure(sinks=[spec.db_url], worker_id=spec.worker_id, interval=_INTERVAL, keepalive=_KEEPALIVE)
    try:
        _TASKS[spec.task](spec, jp)
    except DataGapError:
        jp.flush(timeout=5.0)  # the track() block stored the failure; make sure it is delivered
        os._exit(PLANNED_FAILURE_EXIT)
    # Fork/forkserver children skip atexit: deliver the final state before returning.
    jp.shutdown(timeout=5.0)
