"""ThroughputEstimator on work whose pace keeps switching regime (issue 19's "switching").

Each regime change the adaptive window follows is counted when the regime it ends lasted a fair share of the
run; once three have ended, ``eta()`` blends the run's mean rate into today's, by how many of this job's
regimes the horizon spans. These tests hold it to doing so where regimes are short and many, and to leaving
alone work with one lasting change, or none.
"""

from __future__ import annotations

from unittest import mock

from jobprogress import estimator as estimator_module
from jobprogress.estimator import ThroughputEstimator

TICK = 0.5  # the reporter's sampling period


def completion_times(rates: list[float], per_regime: int) -> list[float]:
    """Items at ``rates[k]`` items/s for ``per_regime`` items each, one regime after another."""
    out, now = [], 0.0
    for rate in rates:
        for _ in range(per_regime):
            now += 1.0 / rate
            out.append(now)
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
        est.rate()
    return est


def regimes(est: ThroughputEstimator) -> float:
    return est._sums[estimator_module._REGIMES]


def test_a_pace_switching_back_and_forth_is_averaged_over_the_horizon() -> None:
    # 150 items at each of 8, 25, 4, 15, 6, 30, 10, 12 items/s: regimes of 5 to 37 s, mean rate ~8.5/s
    times = completion_times([8.0, 25.0, 4.0, 15.0, 6.0, 30.0, 10.0, 12.0], 150)
    until = times[599] + 0.1  # in the 15/s regime, after the 4/s one, with half the items to go
    est = replay(times, until)
    assert regimes(est) >= estimator_module._REGIME_MIN_COUNT
    rate = est.rate()
    eta = est.eta(len(times))
    assert rate is not None
    assert eta is not None
    true_remaining = times[-1] - until
    today = (len(times) - 600) / rate  # at today's pace, too early
    assert abs(eta - true_remaining) < abs(today - true_remaining)
    # Without the blend, eta() is (nearly: the countdown since the last completion) today's pace.
    with mock.patch.object(estimator_module, "_REGIME_MIN_COUNT", 1e9):
        unblended = est.eta(len(times))
    assert unblended is not None
    assert abs(unblended - true_remaining) > abs(eta - true_remaining)


def test_one_lasting_change_is_not_a_switching_pace() -> None:
    # 10 items/s for 500 items, then 5 items/s: one regime ended, the ETA follows today's pace
    times = completion_times([10.0, 5.0], 500)
    est = replay(times, 80.0)
    assert regimes(est) == 1.0
    rate = est.rate()
    eta = est.eta(len(times))
    assert rate is not None
    assert eta is not None
    assert abs(eta - (times[-1] - 80.0)) < 2.0


def test_steady_work_has_one_regime_and_one_stall_ends_at_most_one() -> None:
    steady = replay([k / 10.0 for k in range(1, 2001)], 200.0)
    assert regimes(steady) == 0.0
    # 10 items/s with one 60 s stall after item 400: the samples in and after the stall are no regimes
    times = [k / 10.0 + (60.0 if k > 400 else 0.0) for k in range(1, 1001)]
    assert regimes(replay(times, times[-1])) <= 1.0


def test_the_clock_going_back_keeps_the_regimes_learned() -> None:
    times = completion_times([8.0, 25.0, 4.0, 15.0, 6.0, 30.0], 150)
    est = replay(times, times[599] + 0.1)
    learned = regimes(est)
    assert learned >= estimator_module._REGIME_MIN_COUNT
    est.observe(1.0, 600)  # re-anchored: the current regime restarts here
    assert est._sums[estimator_module._REGIME_FROM] == 1.0
    assert regimes(est) == learned
    est.observe(1.5, 610)
    eta = est.eta(900)
    assert eta is not None
    assert eta >= 0.0
