"""Per-tick CPU cost of ThroughputEstimator as the background reporter uses it.

The reporter, for every live tracker whose count changed, calls ``observe(now, done)`` once per sample
tick and then ``rate()`` and ``eta(total)`` once when it builds that tracker's message. DESIGN.md §4 keeps
the whole reporter under 5% of one core with 10,000 live trackers at the default interval (1 s), so the
estimator's share is about 2 us per tracker per tick for observe + rate + eta together.

This script warms 1,000 estimators (a few hundred samples of history each, on a mix of steady, noisy,
bursty, slowing and stalled work at rates from 0.2 to 2,000 items/s), then times, over many ticks,

  observe  one ``observe(now, done)`` per estimator, new items on most ticks,
  rate     ``rate()`` right after that observe (the cache the observe invalidated is rebuilt),
  eta      ``eta(1_000_000)`` right after that rate,
  tick     the three in one loop, as the reporter calls them (on a twin population),

and prints microseconds per estimator per tick (best of several rounds, minus an empty loop's cost).
The estimators start at different times, as trackers do, so their histograms merge on different ticks.

Run from the project root, in the venv:
    python bench/estimator_cost.py                    # the working tree's estimator
    python bench/estimator_cost.py --before HEAD~3    # also a committed version, side by side
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ESTIMATORS = 1_000
WARM_SAMPLES = 300
TICK = 1.0
TOTAL = 10**6


def load_committed(revision: str) -> ModuleType:
    """Import ``src/jobprogress/estimator.py`` as it was at ``revision`` (a private copy)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:src/jobprogress/estimator.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    directory = Path(tempfile.mkdtemp(prefix="estimator_before_"))
    path = directory / "estimator_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("estimator_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_working_tree() -> ModuleType:
    from jobprogress import estimator

    return estimator


class Workload:
    """One tracker's item counts per tick: a base rate with a shape, deterministic per seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rate = 10 ** self.rng.uniform(-0.7, 3.3)  # 0.2 .. 2,000 items/s
        self.shape = self.rng.choice(("steady", "poisson", "bursty", "slowing", "stalling"))
        self.done = 0
        self.ticks = 0

    def next(self) -> int:
        self.ticks += 1
        rng, rate = self.rng, self.rate
        if self.shape == "steady":
            mean = rate
        elif self.shape == "poisson":
            mean = rate * rng.expovariate(1.0)
        elif self.shape == "bursty":
            mean = rate * 8.0 if rng.random() < 0.125 else 0.0
        elif self.shape == "slowing":
            mean = rate * (1.0 if self.ticks < 200 else 0.3)
        else:  # stalling: long pauses now and then
            mean = 0.0 if (self.ticks // 40) % 3 == 2 else rate
        whole = int(mean * TICK)
        if rng.random() < mean * TICK - whole:
            whole += 1
        self.done += whole
        return self.done


def build(module: ModuleType) -> tuple[list[Any], list[Workload], float]:
    estimators = [module.ThroughputEstimator() for _ in range(ESTIMATORS)]
    workloads = [Workload(seed) for seed in range(ESTIMATORS)]
    now = 0.0
    for est in estimators:
        est.observe(now, 0)
    # Trackers start at different times, so their histograms merge on different ticks (in lockstep,
    # every other tick would carry all the merges): each gets WARM_SAMPLES plus up to 63 samples.
    for warm in range(WARM_SAMPLES + 64):
        now += TICK
        for index, (est, work) in enumerate(zip(estimators, workloads)):
            if warm >= index % 64:
                est.observe(now, work.next())
                est.eta(TOTAL)  # rate and snapshots as in real use
    return estimators, workloads, now


def measure(module: ModuleType, ticks: int, rounds: int) -> dict[str, float]:
    """Microseconds per estimator per tick for each phase: best of ``rounds`` rounds of ``ticks`` ticks."""
    # Two identical populations on identical counts: one timed phase by phase, one as the reporter
    # calls it, on the same ticks, so both see the same merges, snapshots and stalls.
    apart, apart_work, now = build(module)
    together, together_work, _ = build(module)
    best = {"observe": float("inf"), "rate": float("inf"), "eta": float("inf"), "tick": float("inf")}
    clock = time.perf_counter
    for _ in range(rounds):
        spent = dict.fromkeys(best, 0.0)
        for _ in range(ticks):
            now += TICK
            apart_pairs = [(est, work.next()) for est, work in zip(apart, apart_work)]
            together_pairs = [(est, work.next()) for est, work in zip(together, together_work)]
            gc.disable()
            try:
                started = clock()
                for est, done in apart_pairs:
                    est.observe(now, done)
                spent["observe"] += clock() - started
                started = clock()
                for est in apart:
                    est.rate()
                spent["rate"] += clock() - started
                started = clock()
                for est in apart:
                    est.eta(TOTAL)
                spent["eta"] += clock() - started
                started = clock()
                for est, done in together_pairs:  # in the reporter's order
                    est.observe(now, done)
                    est.rate()
                    est.eta(TOTAL)
                spent["tick"] += clock() - started
            finally:
                gc.enable()
        for phase, seconds in spent.items():
            best[phase] = min(best[phase], seconds / ticks / ESTIMATORS * 1e6)
    loop = empty_loop_cost(apart)
    return {phase: max(cost - loop, 0.0) for phase, cost in best.items()}


def empty_loop_cost(estimators: list[Any]) -> float:
    """Microseconds per item of a bare ``for`` over the estimators, subtracted from every phase."""
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        for est in estimators:
            pass
        best = min(best, (time.perf_counter() - started) / len(estimators) * 1e6)
    return best


def report(rows: list[tuple[str, dict[str, float]]]) -> None:
    phases = ("observe", "rate", "eta", "tick")
    print(f"{'us per estimator per tick':28s}" + "".join(f"{p:>10s}" for p in phases))
    for name, costs in rows:
        print(f"{name:28s}" + "".join(f"{costs[p]:10.2f}" for p in phases))
    if len(rows) == 2:
        (_, before), (_, after) = rows
        print(
            f"{'before / after':28s}"
            + "".join(f"{before[p] / after[p] if after[p] else float('inf'):9.1f}x" for p in phases)
        )
    print(
        f"budget: tick <= 2.00 us (observe + rate + eta); "
        f"{ESTIMATORS} estimators, {WARM_SAMPLES} warm samples"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", metavar="REV", help="also time the estimator committed at REV")
    parser.add_argument("--ticks", type=int, default=32, help="ticks per round (default 32)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds; the best counts (default 6)")
    args = parser.parse_args(argv)
    loaders: list[tuple[str, Callable[[], ModuleType]]] = []
    if args.before:
        loaders.append((f"before ({args.before})", lambda: load_committed(args.before)))
    loaders.append(("after (working tree)" if args.before else "working tree", load_working_tree))
    rows = [(name, measure(load(), args.ticks, args.rounds)) for name, load in loaders]
    report(rows)


if __name__ == "__main__":
    sys.exit(main())
