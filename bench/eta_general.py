"""ETA accuracy of ThroughputEstimator on workloads beyond the ETA bench, against tqdm and rich.

The ETA bench (``bench/eta_accuracy.py``) scores five workloads; an estimator tuned to those
five could still be poor elsewhere. This script reuses that bench's harness unchanged (its ``evaluate``,
its tqdm/rich/jobprogress drivers, the 0.5 s tick and the 10%-90% scoring window) and runs it on other
shapes of work: gradual drifts, periodic rates, pauses, heavy tails, outliers, regime switches, and very
slow and very fast jobs. Item counts vary per workload (the harness reads the module-level ``N``), so a
very fast job still spans enough ticks to be scored.

Run from the project root, in the venv (tqdm and rich installed):
    python bench/eta_general.py                # the ETA bench's five workloads, then the extra ones
    python bench/eta_general.py --extra-only   # only the extra workloads
    python bench/eta_general.py --seeds 8      # also the randomised workloads, averaged over 8 seeds

It prints the mean absolute percentage error (MAPE, lower is better) per workload and estimator, the
means, the ratio of jobprogress's mean to tqdm's, and the ticks on which an estimator had no ETA.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, also when imported from elsewhere
import eta_accuracy as harness  # bench/eta_accuracy.py, on the path above

Workload = Callable[[], list[float]]


def from_intervals(intervals: list[float]) -> list[float]:
    """Completion times from per-item durations."""
    out, t = [], 0.0
    for d in intervals:
        t += d
        out.append(t)
    return out


def from_rate(rate: Callable[[float], float], n: int, step: float = 0.001) -> list[float]:
    """Deterministic completion times for a time-varying rate: item k completes when the integral hits k."""
    out, t, area = [], 0.0, 0.0
    while len(out) < n:
        area += rate(t) * step
        t += step
        while area >= len(out) + 1 and len(out) < n:
            out.append(t)
    return out


def poisson_from_rate(rate: Callable[[float], float], n: int, peak: float, seed: int) -> list[float]:
    """Random completion times of an inhomogeneous Poisson process (thinning), for rates below ``peak``."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while len(out) < n:
        t += rng.expovariate(peak)
        if rng.random() * peak <= rate(t):
            out.append(t)
    return out


def wl_slowdown() -> list[float]:
    # item durations grow linearly: 20 items/s at the start, 4 items/s at the end
    return from_intervals([0.05 + 0.20 * k / 1000 for k in range(1000)])


def wl_speedup() -> list[float]:
    # the mirror image: 4 items/s at the start, 20 items/s at the end
    return from_intervals([0.25 - 0.20 * k / 1000 for k in range(1000)])


def wl_sinusoid(seed: int = 2) -> list[float]:
    # Poisson arrivals whose rate swings between 3 and 17 items/s with a 40 s period
    return poisson_from_rate(lambda t: 10.0 + 7.0 * math.sin(2 * math.pi * t / 40.0), 1000, 17.0, seed)


def wl_pause() -> list[float]:
    # 10 items/s, then nothing for 60 s after item 400, then 10 items/s again
    return [k / 10.0 + (60.0 if k > 400 else 0.0) for k in range(1, 1001)]


def wl_pareto(seed: int = 3) -> list[float]:
    # heavy-tailed item durations: Pareto with alpha 1.5 (infinite variance), mean 0.1 s
    rng = random.Random(seed)
    alpha, mean = 1.5, 0.1
    scale = mean * (alpha - 1) / alpha
    return from_intervals([scale * rng.paretovariate(alpha) for _ in range(1000)])


def wl_stragglers(seed: int = 4) -> list[float]:
    # fast 0.05 s items, but one in fifty takes 4 s
    rng = random.Random(seed)
    return from_intervals([4.0 if rng.random() < 0.02 else 0.05 for _ in range(1000)])


def wl_switching() -> list[float]:
    # the rate switches every 150 items between very different levels
    rates = [8.0, 25.0, 4.0, 15.0, 6.0, 30.0, 10.0]
    return from_intervals([1.0 / rates[min(k // 150, len(rates) - 1)] for k in range(1000)])


def wl_very_slow(seed: int = 5) -> list[float]:
    # 1 item per 10 s on average (exponential durations), 300 items: 50 min of work
    rng = random.Random(seed)
    return from_intervals([rng.expovariate(0.1) for _ in range(300)])


def wl_very_fast(seed: int = 6) -> list[float]:
    # 10,000 items/s Poisson, 300,000 items: 30 s of work, thousands of items per tick
    rng = random.Random(seed)
    return from_intervals([rng.expovariate(10_000.0) for _ in range(300_000)])


def wl_batches_change() -> list[float]:
    # batches of 40 items landing together every 4 s, then every 10 s from item 480 on
    out, t = [], 0.0
    for b in range(25):
        t += 4.0 if b < 12 else 10.0
        out.extend(t + 0.001 * j for j in range(40))
    return out


def wl_ramp_poisson(seed: int = 7) -> list[float]:
    # a slow start that ramps up smoothly: rate 2 -> 20 items/s over the first minute, Poisson
    return poisson_from_rate(lambda t: 2.0 + 18.0 * min(t / 60.0, 1.0), 1000, 20.0, seed)


def wl_stall_tail() -> list[float]:
    # steady 10 items/s, but the last fifth of the items each take 1 s (a slow tail, e.g. retries)
    return from_intervals([0.1 if k < 800 else 1.0 for k in range(1000)])


EXTRA: dict[str, Workload] = {
    "slow-down": wl_slowdown,
    "speed-up": wl_speedup,
    "sinusoid": wl_sinusoid,
    "pause 60s": wl_pause,
    "pareto 1.5": wl_pareto,
    "stragglers": wl_stragglers,
    "switching": wl_switching,
    "very slow": wl_very_slow,
    "very fast": wl_very_fast,
    "batch change": wl_batches_change,
    "ramp poisson": wl_ramp_poisson,
    "slow tail": wl_stall_tail,
}


def wl_poisson(seed: int = 1) -> list[float]:
    # the ETA bench's Poisson workload (10 items/s), with another seed
    rng = random.Random(seed)
    return from_intervals([rng.expovariate(10.0) for _ in range(1000)])


def wl_random_batches(seed: int = 8) -> list[float]:
    # batches of 20-80 items at random (Poisson) times, one every 5 s on average
    rng = random.Random(seed)
    out: list[float] = []
    t = 0.0
    while len(out) < 1000:
        t += rng.expovariate(0.2)
        out.extend(t + 0.001 * j for j in range(rng.randint(20, 80)))
    return out[:1000]


RANDOMISED: dict[str, Callable[[int], list[float]]] = {
    "poisson": wl_poisson,
    "sinusoid": wl_sinusoid,
    "pareto 1.5": wl_pareto,
    "stragglers": wl_stragglers,
    "very slow": wl_very_slow,
    "ramp poisson": wl_ramp_poisson,
    "random batches": wl_random_batches,
}
"""Randomised workloads, re-drawn with other seeds by ``--seeds`` so one lucky draw proves nothing."""


def run(workloads: dict[str, Workload]) -> dict[str, float]:
    """Score every estimator on every workload; print the table; return the mean MAPE per estimator."""
    kinds = [harness.Tqdm, harness.Rich, harness.JobProgress]
    names = [k.name for k in kinds]
    results = {}
    for label, make in workloads.items():
        times = make()
        assert all(a <= b for a, b in itertools.pairwise(times)), label
        harness.N = len(times)  # the harness sizes bars and its scoring window from this global
        results[label] = harness.evaluate(times, kinds)
    print(f"{'workload':14s}" + "".join(f"{n:>14s}" for n in names) + f"{'vs best':>10s}")
    for label, r in results.items():
        best = min(r["tqdm"][0], r["rich"][0])
        print(
            f"{label:14s}"
            + "".join(f"{r[n][0]:14.1f}" for n in names)
            + f"{r['jobprogress'][0] - best:+10.1f}"
        )
    means = {n: sum(r[n][0] for r in results.values()) / len(results) for n in names}
    print(f"{'mean':14s}" + "".join(f"{means[n]:14.1f}" for n in names))
    print(
        f"jobprogress / tqdm = {means['jobprogress'] / means['tqdm']:.2f}, "
        f"jobprogress / rich = {means['jobprogress'] / means['rich']:.2f}"
    )
    gaps = {w: {n: r[n][1] for n in names if r[n][1]} for w, r in results.items()}
    print("ticks with no ETA:", {w: g for w, g in gaps.items() if g} or "none")
    return means


def run_seeds(count: int) -> None:
    """Average each randomised workload's MAPE over ``count`` fresh seeds; print the table."""
    kinds = [harness.Tqdm, harness.Rich, harness.JobProgress]
    names = [k.name for k in kinds]
    means: dict[str, dict[str, float]] = {}
    for label, make in RANDOMISED.items():
        totals = dict.fromkeys(names, 0.0)
        for seed in range(100, 100 + count):
            times = make(seed)
            harness.N = len(times)
            result = harness.evaluate(times, kinds)
            for name in names:
                totals[name] += result[name][0] / count
        means[label] = totals
    print(f"{'workload':14s}" + "".join(f"{n:>14s}" for n in names) + f"{'vs best':>10s}")
    for label, m in means.items():
        best = min(m["tqdm"], m["rich"])
        print(f"{label:14s}" + "".join(f"{m[n]:14.1f}" for n in names) + f"{m['jobprogress'] - best:+10.1f}")
    overall = {n: sum(m[n] for m in means.values()) / len(means) for n in names}
    print(f"{'mean':14s}" + "".join(f"{overall[n]:14.1f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-only", action="store_true", help="skip the ETA bench's workloads")
    parser.add_argument(
        "--seeds", type=int, default=0, metavar="N", help="also average the randomised workloads over N seeds"
    )
    args = parser.parse_args()
    if not args.extra_only:
        print("the ETA bench's workloads (bench/eta_accuracy.py)")
        run(dict(harness.WORKLOADS))
        print()
    print("extra workloads")
    run(EXTRA)
    if args.seeds:
        print()
        print(f"randomised workloads, mean MAPE over seeds 100..{99 + args.seeds}")
        run_seeds(args.seeds)


if __name__ == "__main__":
    main()
