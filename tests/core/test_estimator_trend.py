"""ThroughputEstimator on work whose pace drifts: a trend in the time per item, capped scores (issue 19)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from jobprogress import estimator as estimator_module
from jobprogress.estimator import ThroughputEstimator

TICK = 0.5  # the reporter's sampling period


def completion_times(cost: Callable[[int], float], items: int) -> list[float]:
    """When each item completes, item ``k`` taking ``cost(k)`` seconds."""
    out, now = [], 0.0
    for k in range(items):
        now += cost(k)
        out.append(now)
    return out


def eta_errors(times: list[float], start: float = 0.3, stop: float = 0.9) -> list[float]:
    """Relative ETA error on each tick from ``start`` to ``stop`` of the items, sampled like the reporter."""
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    total, end = len(times), times[-1]
    errors: list[float] = []
    done, now = 0, 0.0
    while now < end:
        now += TICK
        while done < total and times[done] <= now:
            done += 1
        est.observe(now, done)
        if start * total <= done <= stop * total:
            eta = est.eta(total)
            assert eta is not None
            errors.append(abs(eta - (end - now)) / (end - now))
    return errors


def plain_eta_errors(times: list[float], start: float = 0.3, stop: float = 0.9) -> list[float]:
    """The same, with the ETA taken as remaining items over the estimator's rate (no trend)."""
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    total, end = len(times), times[-1]
    errors: list[float] = []
    done, now = 0, 0.0
    while now < end:
        now += TICK
        while done < total and times[done] <= now:
            done += 1
        est.observe(now, done)
        if start * total <= done <= stop * total:
            rate = est.rate()
            assert rate
            errors.append(abs((total - done) / rate - (end - now)) / (end - now))
    return errors


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ------------------------------------------------------------------------------------- drifting pace


@pytest.mark.parametrize(
    ("label", "cost", "within", "share"),
    [
        # item time linear in the work done: the trend's own model, so nearly exact
        ("slowing down: item time grows linearly", lambda k: 0.05 + 0.20 * k / 1000, 0.05, 0.2),
        ("speeding up: item time shrinks linearly", lambda k: 0.25 - 0.20 * k / 1000, 0.15, 0.2),
        # the rate falls linearly with the work done (exponentially in time): item time grows faster
        # than linearly, and 6.7x in all, beyond the 4x the trend may extrapolate; still better
        ("rate decays with the work done", lambda k: 1.0 / (20.0 - 17.0 * k / 1000), 0.35, 0.85),
        (
            "rate steps down by a quarter every 125 items",
            lambda k: 1.0 / (20.0 * 0.75 ** (k // 125)),
            0.2,
            0.6,
        ),
    ],
)
def test_a_steadily_drifting_pace_is_extrapolated(
    label: str, cost: Callable[[int], float], within: float, share: float
) -> None:
    times = completion_times(cost, 1000)
    with_trend = mean(eta_errors(times))
    without = mean(plain_eta_errors(times))
    # The remaining items will not go at today's pace: the ETA that extrapolates the trend has a mean
    # relative error under ``within`` over the scored part of the job, and ``share`` of today's pace's.
    assert with_trend < within, label
    assert with_trend < share * without, label


def test_a_drifting_pace_converges() -> None:
    # item time grows linearly (20 items/s falling to 4): late in the job the ETA is within 5%
    times = completion_times(lambda k: 0.05 + 0.20 * k / 1000, 1000)
    late = eta_errors(times, start=0.6, stop=0.9)
    assert max(late) < 0.05


def test_a_trend_is_not_invented_for_steady_work() -> None:
    rng = random.Random(3)
    times = completion_times(lambda _k: rng.expovariate(10.0), 2000)
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    done, now, weights = 0, 0.0, []
    while done < len(times):
        now += TICK
        while done < len(times) and times[done] <= now:
            done += 1
        est.observe(now, done)
        weights.append(est._sums[estimator_module._TREND_WEIGHT])
    # noisy but steady: the trend carries (almost) no weight, so the ETA stays remaining over rate
    assert mean(weights) < 0.1
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(10.0, rel=0.15)


def test_exact_on_constant_work_with_the_trend_in_place() -> None:
    est = ThroughputEstimator()
    for second in range(2001):
        est.observe(second * TICK, 5 * second)
    assert est.rate() == 10.0
    assert est.eta(10_000 + 5 * 2000) == 1000.0


# --------------------------------------------------------------------------------------- the maths


@pytest.mark.parametrize("slope", [-1e-3, -1e-4, -1e-6, 0.0, 1e-6, 1e-4, 1e-3])
@pytest.mark.parametrize("items", [1.0, 10.0, 100.0, 1000.0, 10_000.0])
def test_trend_items_inverts_trend_stretch(slope: float, items: float) -> None:
    """Items done in the time the stretched ETA allows for ``items`` items are ``items``."""
    rate = 10.0
    seconds = items / rate * estimator_module._trend_stretch(rate, slope, items)
    assert estimator_module._trend_items(1.0 / rate, slope, seconds) == pytest.approx(items, rel=1e-9)


def test_trend_stretch_is_bounded_by_the_limit() -> None:
    limit = estimator_module._TREND_LIMIT
    assert estimator_module._trend_stretch(10.0, 1.0, 1e9) == pytest.approx(limit, rel=1e-6)
    assert estimator_module._trend_stretch(10.0, -1.0, 1e9) == pytest.approx(1.0 / limit, rel=1e-6)
    assert estimator_module._trend_stretch(10.0, 0.0, 1e9) == 1.0
    assert estimator_module._trend_stretch(10.0, 1e-3, 0.0) == 1.0


# ---------------------------------------------------------------------------- one huge item, a stall


def test_one_huge_item_does_not_pin_the_rate_to_the_whole_run() -> None:
    # A scan whose first files are quick, then one file that takes 150 s (a 45 MB archive in a tree
    # of small files), then quick files again, at a pace that rises as the files get smaller: long
    # after the huge item, the rate follows the recent pace, not the whole run's.
    rng = random.Random(5)
    costs = [0.05 for _ in range(200)] + [150.0] + [rng.uniform(0.02, 0.08) for _ in range(4000)]
    times = completion_times(lambda k: costs[k], len(costs))
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    done, now = 0, 0.0
    while now < times[-1]:
        now += TICK
        while done < len(times) and times[done] <= now:
            done += 1
        est.observe(now, done)
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(20.0, rel=0.15)  # recent pace 20/s; the whole run's is about 10/s


def test_scores_are_capped() -> None:
    cap = estimator_module._MAX_ERROR
    assert estimator_module._log_error(1e6, 0.0) == cap
    assert estimator_module._log_error(0.0, 1e6) == cap
    assert estimator_module._log_error(99.0, 99.0) == 0.0
    assert estimator_module._log_error(19.0, 9.0) == pytest.approx(math.log(2.0))


def test_state_stays_under_2_kb_with_the_trend() -> None:
    est = ThroughputEstimator()
    rng = random.Random(1)
    now, done = 0.0, 0
    est.observe(now, done)
    for _ in range(20_000):
        now += TICK
        done += rng.randint(0, 20)
        est.observe(now, done)
        est.eta(done + 1000)
    assert est._predictions.itemsize == 4  # single precision: the predictions ring stays small
    assert len(est._predictions) == estimator_module._SNAPSHOTS * estimator_module._PREDICTION_WIDTH


def test_rates_beyond_single_precision_do_not_break_the_scores() -> None:
    # 10**15 items every 1e-30 s: rates of 1e45/s, stored as inf in the single-precision ring; observe()
    # never raises and the answers stay finite
    est = ThroughputEstimator()
    now, done = 0.0, 0
    est.observe(now, done)
    for _ in range(200):
        now += 1e-30
        done += 10**15
        est.observe(now, done)
        eta = est.eta(10 * done)
        assert eta is not None
        assert math.isfinite(eta)
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(1e45)
