"""ThroughputEstimator on batched work whose batches start coming further apart (issue 19's "batch change").

The slowdown test (``ThroughputEstimator._pause_ended``) watches the pauses between bursts of completions;
these tests hold it to following a lasting change within a few batches, and to leaving alone the pauses
that are no change: a single stall, stragglers, random batches, and steady work with no pauses at all.
"""

from __future__ import annotations

import math
import random
from unittest import mock

from jobprogress import estimator as estimator_module
from jobprogress.estimator import ThroughputEstimator

TICK = 0.5  # the reporter's sampling period


def batches(intervals: list[float], size: int = 40) -> list[float]:
    """Completion times of batches of ``size`` items, each ``intervals[k]`` seconds after the one before."""
    out: list[float] = []
    now = 0.0
    for interval in intervals:
        now += interval
        out.extend(now + 0.001 * j for j in range(size))
    return out


def replay(times: list[float], until: float) -> ThroughputEstimator:
    """An estimator fed ``(now, done)`` every tick up to ``until``, as the reporter samples a tracker."""
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    done, now = 0, 0.0
    while now < until:
        now += TICK
        while done < len(times) and times[done] <= now:
            done += 1
        est.observe(now, done)
    return est


def slowdown_detected(est: ThroughputEstimator) -> bool:
    return not math.isnan(est._sums[estimator_module._CUT_AT])


def test_batches_coming_further_apart_are_followed_after_two_slow_batches() -> None:
    # 40 items every 4 s (10/s), then every 10 s (4/s) from t = 48 on: slow batches land at 58, 68, ...
    times = batches([4.0] * 12 + [10.0] * 13)
    before = replay(times, 58.9)  # one slow batch: could be a hiccup
    assert not slowdown_detected(before)
    after = replay(times, 68.9)  # the second one: the batches now come every 10 s
    assert slowdown_detected(after)
    assert after.rate() == 4.0  # exactly 80 items in the 20 s since the last fast batch
    eta = after.eta(len(times))
    assert eta is not None
    true_remaining = times[-1] - 68.9
    assert abs(eta - true_remaining) / true_remaining < 0.05
    # Without the slowdown test, the rate would still be near the fast batches' 10/s.
    with mock.patch.object(estimator_module, "_SLOWDOWN_ALARM", math.inf):
        unaware = replay(times, 68.9).rate()
    assert unaware is not None
    assert unaware > 6.0


def test_the_rate_after_a_slowdown_keeps_following_the_new_batches() -> None:
    times = batches([4.0] * 12 + [10.0] * 13)
    for until in (98.9, 128.9, 158.9):
        rate = replay(times, until).rate()
        assert rate is not None
        assert abs(rate - 4.0) < 0.3, until


def test_a_single_stall_or_a_straggler_now_and_then_is_no_slowdown() -> None:
    # batches every 4 s, one 60 s stall in the middle, then every 4 s again
    stalled = batches([4.0] * 12 + [60.0] + [4.0] * 12)
    assert not slowdown_detected(replay(stalled, stalled[-1] + TICK))
    # fast items (0.05 s), one in fifty taking 4 s: pauses of ~4 s at random, none longer for good
    rng = random.Random(4)
    times, now = [], 0.0
    for _ in range(2000):
        now += 4.0 if rng.random() < 0.02 else 0.05
        times.append(now)
    assert not slowdown_detected(replay(times, times[-1] + TICK))


def test_steady_work_has_no_pauses_to_judge() -> None:
    times = [k / 10.0 for k in range(1, 2001)]
    est = replay(times, times[-1] + TICK)
    assert est._sums[estimator_module._PAUSE_WEIGHT] == 0.0
    assert not slowdown_detected(est)


def test_a_slowdown_restarts_the_predictors_scores_and_time_going_back_forgets_it() -> None:
    times = batches([4.0] * 12 + [10.0] * 13)
    est = replay(times, 68.9)
    sums = est._sums
    assert slowdown_detected(est)
    assert sums[estimator_module._BLEND_WEIGHT] == 0.0  # the whole run's rate, blended before, is off
    assert sums[estimator_module._SCORED] < estimator_module._MIN_SCORED
    est.observe(10.0, 600)  # the clock went back: re-anchored, the slowdown's start means nothing now
    assert not slowdown_detected(est)
    est.observe(10.5, 640)
    rate = est.rate()
    assert rate is not None
    assert math.isfinite(rate)
