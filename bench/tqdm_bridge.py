"""Cost of jobprogress.contrib.tqdm over plain tqdm: iteration and update(1), enabled and disabled.

Prints per-item times and the ratio bridge / tqdm, both measured in the same run, interleaved. No sink
is configured, so this measures the bridge itself, not delivery. The targets: update(1) within 1.1x of
tqdm's (it is tqdm's own method), a disabled bar's update(1) within 1.2x (the tracker's C advance).
Run: python bench/tqdm_bridge.py [items]
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable

import tqdm as upstream

from jobprogress.contrib.tqdm import tqdm as bridge


def best_of(runs: int, body: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    data = range(items)
    cases: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "iterate": (
            lambda: sum(upstream.tqdm(data, file=io.StringIO())),
            lambda: sum(bridge(data, file=io.StringIO())),
        ),
        "update(1)": (
            lambda: _updates(upstream.tqdm(total=items // 10, file=io.StringIO()), items // 10),
            lambda: _updates(bridge(total=items // 10, file=io.StringIO()), items // 10),
        ),
        "iterate, disabled": (
            lambda: sum(upstream.tqdm(data, disable=True)),
            lambda: sum(bridge(data, disable=True)),
        ),
        "update(1), disabled": (
            lambda: _updates(upstream.tqdm(total=items // 10, disable=True), items // 10),
            lambda: _updates(bridge(total=items // 10, disable=True), items // 10),
        ),
    }
    print(f"{'case':<20}{'tqdm ns/item':>14}{'bridge ns/item':>16}{'ratio':>8}")
    for name, (plain, bridged) in cases.items():
        count = items // 10 if name.startswith("update") else items
        plain_s = bridged_s = float("inf")
        for _ in range(5):  # interleaved, so drift in the machine's speed hits both alike
            plain_s = min(plain_s, best_of(1, plain))
            bridged_s = min(bridged_s, best_of(1, bridged))
        print(
            f"{name:<20}{plain_s / count * 1e9:>14.1f}{bridged_s / count * 1e9:>16.1f}"
            f"{bridged_s / plain_s:>8.2f}"
        )


def _updates(bar: upstream.tqdm, count: int) -> None:
    with bar:
        for _ in range(count):
            bar.update(1)


if __name__ == "__main__":
    main()
