"""ETA accuracy of jobprogress's estimator against tqdm and rich, on a simulated clock.

The project's own copy of the ETA bench the estimator was tuned on (its workloads, drivers, tick and
scoring window reproduced unchanged), so ``tox -e bench`` runs from a clone alone.

A tick where an estimator shows no ETA is not scored but is counted and printed: an estimator should not
show "no ETA" more often than the anchors do.

Run from the project root, in an environment with jobprogress, tqdm and rich installed:
    python bench/eta_accuracy.py

What it measures: for each workload of 1,000 items (item completion times in simulated seconds), the
mean absolute percentage error (MAPE) of each estimator's ETA against the true remaining time, sampled
every 0.5 s of simulated time between 10% and 90% done. Lower is better.

How each estimator is driven:
  tqdm  the real library, its clock patched (tqdm.std.time) before the bar is built; update(1) per item;
        ETA as tqdm's format_meter computes it (EMA, smoothing=0.3, mininterval=0.1).
  rich  the real library with Progress(get_time=clock); advance() per item; task.time_remaining.
  jobprogress  jobprogress.estimator.ThroughputEstimator: observe(now, done) on every 0.5 s sample
        tick, as the reporter samples counters; eta(total) read at the same tick.

``bench/eta_general.py`` imports this module as its harness and sets :data:`N` per workload.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from typing import Any

import tqdm as tqdm_mod
import tqdm.std
from rich.console import Console
from rich.progress import Progress

N = 1000
"""Items per workload; the drivers and the scoring window read it (eta_general.py changes it)."""
TICK = 0.5
DEVNULL = open(os.devnull, "w")  # open for the life of the bench


class Clock:
    """The simulated clock every estimator reads."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def wl_constant() -> list[float]:
    return [k / 10.0 for k in range(1, N + 1)]


def wl_warmup() -> list[float]:
    return [k / 2.0 if k <= 100 else 50.0 + (k - 100) / 20.0 for k in range(1, N + 1)]


def wl_halves() -> list[float]:
    return [k / 10.0 if k <= 500 else 50.0 + (k - 500) / 5.0 for k in range(1, N + 1)]


def wl_bursty() -> list[float]:
    return [5.0 * b + 0.001 * j for b in range(1, N // 50 + 1) for j in range(50)]


def wl_poisson() -> list[float]:
    rng = random.Random(1)
    t, out = 0.0, []
    for _ in range(N):
        t += rng.expovariate(10.0)
        out.append(t)
    return out


WORKLOADS: dict[str, Callable[[], list[float]]] = {
    "i constant": wl_constant,
    "ii warm-up": wl_warmup,
    "iii halves": wl_halves,
    "iv bursts": wl_bursty,
    "v poisson": wl_poisson,
}


class Tqdm:
    name = "tqdm"

    def __init__(self, clock: Clock) -> None:
        tqdm_mod.tqdm.monitor_interval = 0
        saved = tqdm.std.time
        tqdm.std.time = clock
        try:
            self.bar = tqdm_mod.tqdm(total=N, file=DEVNULL)
        finally:
            tqdm.std.time = saved

    def item(self, t: float) -> None:
        self.bar.update(1)

    def tick(self, t: float, done: int) -> None:
        pass

    def eta(self, t: float) -> float | None:
        fd = self.bar.format_dict
        rate = fd["rate"]
        if rate is None and fd["elapsed"]:
            rate = (fd["n"] - fd["initial"]) / fd["elapsed"]
        return (fd["total"] - fd["n"]) / rate if rate else None


class Rich:
    name = "rich"

    def __init__(self, clock: Clock) -> None:
        self.p = Progress(console=Console(file=DEVNULL), get_time=clock, auto_refresh=False)
        self.task = self.p.add_task("x", total=N)

    def item(self, t: float) -> None:
        self.p.advance(self.task, 1)

    def tick(self, t: float, done: int) -> None:
        pass

    def eta(self, t: float) -> float | None:
        return self.p._tasks[self.task].time_remaining


class JobProgress:
    name = "jobprogress"

    def __init__(self, clock: Clock) -> None:
        from jobprogress.estimator import ThroughputEstimator

        self.est = ThroughputEstimator()
        self.est.observe(0.0, 0)

    def item(self, t: float) -> None:
        pass

    def tick(self, t: float, done: int) -> None:
        self.est.observe(t, done)

    def eta(self, t: float) -> float | None:
        return self.est.eta(N)


def evaluate(times: list[float], kinds: list[Any]) -> dict[str, tuple[float, int]]:
    """MAPE (%) and the ticks without an ETA, per estimator, for one workload's completion times."""
    clock = Clock()
    ests = [k(clock) for k in kinds]
    errs: dict[str, list[float]] = {e.name: [] for e in ests}
    missing = {e.name: 0 for e in ests}
    t_end, lo, hi = times[-1], times[int(0.1 * N) - 1], times[int(0.9 * N) - 1]
    g, k = TICK, 0
    while g <= t_end:
        while k < N and times[k] <= g:
            clock.t = times[k]
            for e in ests:
                e.item(times[k])
            k += 1
        clock.t = g
        for e in ests:
            e.tick(g, k)
        if lo <= g <= hi:
            true = t_end - g
            for e in ests:
                v = e.eta(g)
                if v is None:
                    missing[e.name] += 1
                else:
                    errs[e.name].append(abs(v - true) / true)
        g += TICK
    return {n: (100.0 * sum(v) / len(v) if v else math.nan, missing[n]) for n, v in errs.items()}


def main(workloads: dict[str, Callable[[], list[float]]] = WORKLOADS) -> Any:
    kinds = [Tqdm, Rich, JobProgress]
    results = {w: evaluate(fn(), kinds) for w, fn in workloads.items()}
    names = [k.name for k in kinds]
    print(f"{'workload':14s}" + "".join(f"{n:>14s}" for n in names))
    for w, r in results.items():
        print(f"{w:14s}" + "".join(f"{r[n][0]:14.1f}" for n in names))
    means = {n: sum(r[n][0] for r in results.values()) / len(results) for n in names}
    print(f"{'mean':14s}" + "".join(f"{means[n]:14.1f}" for n in names))
    gaps = {w: {n: r[n][1] for n in names if r[n][1]} for w, r in results.items()}
    print("ticks with no ETA:", {w: g for w, g in gaps.items() if g} or "none")
    return results, means


if __name__ == "__main__":
    main()
