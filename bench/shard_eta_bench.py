"""A fan-out job's ETA (issue 19): real worker processes, four shards, one SQLite store.

Four worker processes (``multiprocessing``, spawned) each own a shard of one job and report it through
the public API (``jp.configure(sinks=["sqlite:///…"])``, ``jp.track(job, total=shard size)``,
``advance()`` per item) into one SQLite file. The shards differ in size and speed and end at about a
quarter, a half, three quarters and all of the run. Each item costs a random 0.5x to 1.5x of its shard's
mean, paced against the shard's start so the ends do not drift.

While they run, the main process reads ``ProgressStore.job()`` every ``--every`` seconds and, from that
same view, computes two ETAs:

  new    the view's ``eta_seconds``: the job's rule since issue 19 (the last shard's end: per unfinished
         shard, its worker's own ETA, else its remaining work over its own rate; the MAX of those);
  old    the rule before issue 19, recomputed from the view's workers: the job's remaining work
         (SUM(total) - SUM(done)) over the SUM of the live running workers' rates.

After the run, the true end is the moment the last shard's last item was done (each worker reports
when its shard ended). Each sample's error is ``|ETA - true remaining| / true remaining``; the MAPE is
the mean over the samples taken between 10% and 90% of the run (the window of ``bench/eta_accuracy.py``).
A sample where a rule shows no ETA is not scored but counted. The new rule's MAPE must be at most half
the old one's (exit status 1 otherwise).

Run from the project root (about 30 s; absolute times are noisy on a loaded machine, the two rules are
scored on the same samples of the same run)::

    python bench/shard_eta_bench.py
    python bench/shard_eta_bench.py --seconds 40 --interval 1.0   # the reporter's default interval
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobprogress.store import JobView

JOB = "fan-out-scan"
SHARDS = ((600, 0.25), (400, 0.50), (360, 0.75), (240, 1.00))
"""(items, end as a fraction of the run) per shard: 100, 33, 20 and 10 items/s over a 24 s run."""
WINDOW = (0.10, 0.90)


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock, just after the read
    new: int | None
    old: int | None
    reason: str | None
    workers: int


def _shard(
    url: str, index: int, size: int, seconds: float, start_at: float, interval: float, ends: Any
) -> None:
    """One worker process: its shard of the job, ``size`` items over about ``seconds``."""
    import jobprogress as jp

    jp.configure(sinks=[url], worker_id=f"shard-{index}", interval=interval, keepalive=max(interval, 1.0))
    rng = random.Random(f"shard-{index}")
    mean = seconds / size
    while (wait := start_at - time.time()) > 0:
        time.sleep(min(wait, 0.05))
    with jp.track(JOB, unit="files", total=size, kind="scan") as tracker:
        due = time.monotonic()
        for _ in range(size):
            due += mean * rng.uniform(0.5, 1.5)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tracker.advance()
        ends.put((index, time.time()))
    jp.shutdown()


def sum_of_rates(view: JobView) -> int | None:
    """The job ETA before issue 19, from the view's workers: remaining over the summed live rate."""
    workers = view.workers
    if not workers or any(worker.total is None or worker.done is None for worker in workers):
        return None
    remaining = max(
        sum(worker.total or 0 for worker in workers) - sum(worker.done or 0 for worker in workers), 0
    )
    if remaining == 0:
        return 0
    rate = sum(
        worker.throughput or 0.0
        for worker in workers
        if worker.status == "running" and not worker.lost and not worker.stalled
    )
    return math.ceil(remaining / rate) if rate > 0 else None


def _sample_until_done(url: str, processes: list[Any], every: float, deadline: float) -> list[Sample]:
    from jobprogress.store import ProgressStore

    samples: list[Sample] = []
    with ProgressStore(url, stall_after=30.0) as store:
        next_at = time.time()
        while any(process.is_alive() for process in processes) and time.time() < deadline:
            view = store.job(JOB)
            now = time.time()
            if view is not None:
                samples.append(
                    Sample(now, view.eta_seconds, sum_of_rates(view), view.eta_reason, len(view.workers))
                )
            next_at += every
            time.sleep(max(next_at - time.time(), 0.0))
    return samples


def _mape(pairs: list[tuple[int | None, float]]) -> tuple[float, int]:
    errors = [abs(eta - true) / true for eta, true in pairs if eta is not None]
    return (100.0 * statistics.fmean(errors) if errors else math.nan), sum(eta is None for eta, _ in pairs)


def _shown(eta: int | None) -> str:
    return "-" if eta is None else str(eta)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=24.0, help="planned length of the run (default 24)")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="jp.configure(interval=...) (default 0.5)"
    )
    parser.add_argument("--every", type=float, default=0.25, help="seconds between reads of the job (0.25)")
    arguments = parser.parse_args()
    if arguments.seconds <= 0 or arguments.interval <= 0 or arguments.every <= 0:
        parser.error("--seconds, --interval and --every must be positive")

    context = multiprocessing.get_context("spawn")
    ends = context.Queue()
    with tempfile.TemporaryDirectory(prefix="shard-eta-") as directory:
        url = f"sqlite:///{os.path.join(directory, 'progress.db')}"
        start_at = time.time() + 3.0  # room for the spawned workers to import and configure
        processes = [
            context.Process(
                target=_shard,
                args=(url, index, size, end * arguments.seconds, start_at, arguments.interval, ends),
                name=f"shard-{index}",
            )
            for index, (size, end) in enumerate(SHARDS)
        ]
        for process in processes:
            process.start()
        while time.time() < start_at:
            time.sleep(0.05)
        samples = _sample_until_done(url, processes, arguments.every, start_at + 3 * arguments.seconds + 30)
        for process in processes:
            process.join(timeout=30)
        codes = [process.exitcode for process in processes]
        shard_ends = dict(ends.get(timeout=5) for _ in processes) if codes == [0] * len(processes) else {}
    if len(shard_ends) != len(SHARDS):
        print(f"shard-eta: a worker failed (exit codes {codes})", file=sys.stderr)
        return 2

    end = max(shard_ends.values())
    length = end - start_at
    low, high = start_at + WINDOW[0] * length, start_at + WINDOW[1] * length
    scored = [sample for sample in samples if low <= sample.at <= high]
    if not scored:
        print(
            f"shard-eta: no read of the job between 10% and 90% of the run ({len(samples)} reads)",
            file=sys.stderr,
        )
        return 2
    new_mape, new_missing = _mape([(sample.new, end - sample.at) for sample in scored])
    old_mape, old_missing = _mape([(sample.old, end - sample.at) for sample in scored])
    ratio = new_mape / old_mape if old_mape else math.nan

    print(f"shard-eta: 4 worker processes, one SQLite store, interval {arguments.interval} s")
    print(f"  run {length:.1f} s; shards (items, planned end, actual end, as fractions of the run):")
    for index, (size, planned) in enumerate(SHARDS):
        ended = (shard_ends[index] - start_at) / length
        print(f"    shard-{index}: {size:4d} items  planned {planned:.2f}  ended {ended:.2f}")
    print(f"  {len(samples)} reads of ProgressStore.job(), {len(scored)} scored (10%-90% of the run)")
    print("  timeline, seconds left (true / new rule / old rule):")
    for fraction in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        at = start_at + fraction * length
        sample = min(samples, key=lambda s: abs(s.at - at))
        reason = f"  ({sample.reason})" if sample.reason else ""
        etas = f"{_shown(sample.new):>4} / {_shown(sample.old):>4}"
        print(f"    {fraction:4.0%}: {end - sample.at:5.1f} / {etas}{reason}")
    for name, mape, missing in (
        ("new rule (the last shard's end)    ", new_mape, new_missing),
        ("old rule (remaining / summed rate) ", old_mape, old_missing),
    ):
        print(f"  MAPE of the job ETA, {name}{mape:6.1f}%  ({missing} scored samples without an ETA)")
    met = ratio <= 0.5
    print(f"  ratio new/old: {ratio:.3f} (target <= 0.5: {'met' if met else 'NOT met'})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
