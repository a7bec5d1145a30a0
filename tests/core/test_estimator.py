"""ThroughputEstimator: exact on steady work, quick on real changes, calm on bursts, never NaN or inf."""

from __future__ import annotations

import doctest
import math
import random
import sys
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobprogress import estimator as estimator_module
from jobprogress.estimator import ThroughputEstimator

MAX_COUNT = 2**63 - 1
TICK = 0.5  # the reporter's sampling period


def feed(
    est: ThroughputEstimator, start: float, ticks: int, per_tick: float, done: int = 0
) -> tuple[float, int]:
    """Observe ``ticks`` samples at a steady ``per_tick`` items; returns the last (time, done)."""
    now = start
    carry = 0.0
    for _ in range(ticks):
        now += TICK
        carry += per_tick
        whole = int(carry)
        carry -= whole
        done += whole
        est.observe(now, done)
    return now, done


def assert_sane(est: ThroughputEstimator, total: int) -> None:
    rate = est.rate()
    if rate is not None:
        assert math.isfinite(rate)
        assert rate >= 0.0
    eta = est.eta(total)
    if eta is not None:
        assert math.isfinite(eta)
        assert eta >= 0.0


def state_bytes(est: ThroughputEstimator) -> int:
    """The estimator's own footprint: the object plus every container and number it holds."""
    size = sys.getsizeof(est)
    for name in type(est).__slots__:
        value = getattr(est, name)
        if value is not None:
            size += sys.getsizeof(value)
    return size


# --------------------------------------------------------------------------------------- steady work


def test_docstring_example_holds() -> None:
    failures, tried = doctest.testmod(estimator_module)
    assert tried > 0
    assert failures == 0


def test_constant_rate_gives_exact_rate_and_eta() -> None:
    est = ThroughputEstimator()
    est.observe(100.0, 0)
    _, done = feed(est, 100.0, 400, per_tick=4)  # 8 items/s for 200 s
    assert done == 1600
    assert est.rate() == 8.0
    assert est.eta(2000) == 50.0
    assert est.eta(1601) == 1 / 8


def test_constant_rate_stays_exact_over_a_long_run() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    feed(est, 0.0, 20_000, per_tick=3)  # 6 items/s for almost three hours: buckets merge many times
    assert est.rate() == 6.0
    assert est.eta(60_000 + 600) == 100.0


def test_slow_steady_items_give_the_right_rate() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    feed(est, 0.0, 2_000, per_tick=0.05)  # one item every 10 s
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(0.1, rel=0.02)


# ------------------------------------------------------------------------------------- None and zero


def test_unknown_before_time_has_passed() -> None:
    est = ThroughputEstimator()
    assert est.rate() is None
    assert est.eta(10) is None
    est.observe(5.0, 0)
    assert est.rate() is None
    assert est.eta(10) is None
    est.observe(5.0, 3)  # the clock has not moved: still no interval to measure over
    assert est.rate() is None
    assert est.eta(10) is None


def test_no_progress_yet_is_rate_zero_and_no_eta() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    feed(est, 0.0, 10, per_tick=0)
    assert est.rate() == 0.0
    assert est.eta(10) is None


def test_eta_is_zero_once_done_reaches_total() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    feed(est, 0.0, 20, per_tick=5)  # done == 100
    assert est.eta(100) == 0.0
    assert est.eta(50) == 0.0  # done > total
    assert est.eta(0) == 0.0
    fresh = ThroughputEstimator()
    fresh.observe(0.0, 7)
    assert fresh.eta(7) == 0.0  # known done, even before any rate


# ---------------------------------------------------------------------------------------- robustness


def test_progress_at_a_repeated_time_is_counted_with_the_next_sample() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    for second in range(1, 21):
        est.observe(float(second), second * 10 - 5)
        est.observe(float(second), second * 10)  # same time again, more progress
    assert est.rate() == 10.0
    assert est.eta(400) == 20.0


def test_time_going_backwards_reanchors_and_keeps_the_rate() -> None:
    est = ThroughputEstimator()
    est.observe(1000.0, 0)
    _, done = feed(est, 1000.0, 100, per_tick=5)  # 10/s
    est.observe(3.0, done)  # the clock jumped back (say, a restored snapshot of a fake clock)
    assert_sane(est, 10_000)
    feed(est, 3.0, 100, per_tick=5, done=done)
    assert est.rate() == 10.0


def test_done_going_backwards_keeps_the_rate_and_uses_the_new_count() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    now, _ = feed(est, 0.0, 100, per_tick=5)  # 10/s, done == 500
    est.observe(now + TICK, 20)  # set_done(20): a reset, not negative throughput
    assert est.rate() == 10.0
    assert est.eta(1020) == 100.0
    feed(est, now + TICK, 40, per_tick=5, done=20)
    assert est.rate() == 10.0
    assert est.eta(1220) == 100.0


def test_counts_near_the_top_of_int64() -> None:
    est = ThroughputEstimator()
    start = MAX_COUNT - 10**12
    est.observe(0.0, start)
    est.observe(1.0, start + 10**9)
    est.observe(2.0, start + 2 * 10**9)
    assert_sane(est, MAX_COUNT)
    assert est.rate() == pytest.approx(1e9)
    eta = est.eta(MAX_COUNT)
    assert eta is not None
    assert eta == pytest.approx((10**12 - 2 * 10**9) / 1e9)
    est.observe(3.0, MAX_COUNT)
    assert est.eta(MAX_COUNT) == 0.0
    # the whole range in one step, and back to zero
    huge = ThroughputEstimator()
    huge.observe(0.0, 0)
    huge.observe(1e-9, MAX_COUNT)
    huge.observe(2e-9, 0)
    assert_sane(huge, MAX_COUNT)


def test_absurd_clock_values_do_not_break_it() -> None:
    est = ThroughputEstimator()
    for now, done in [(0.0, 0), (1e300, 10), (1.7e308, 20), (1.79e308, 30), (5.0, 40), (5.5, 50)]:
        est.observe(now, done)
        assert_sane(est, 100)
    assert est.eta(50) == 0.0


def test_non_finite_times_are_ignored() -> None:
    est = ThroughputEstimator()
    est.observe(math.nan, 5)
    est.observe(math.inf, 5)
    assert est.rate() is None
    est.observe(0.0, 0)
    est.observe(1.0, 10)
    est.observe(math.nan, 1000)
    est.observe(-math.inf, 1000)
    est.observe(2.0, 20)
    assert est.rate() == 10.0


@pytest.mark.parametrize("threshold", [0, -1.0, math.nan, math.inf])
def test_threshold_must_be_a_positive_number(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        ThroughputEstimator(threshold=threshold)


samples = st.lists(
    st.tuples(
        st.one_of(
            st.just(0.0),
            st.floats(-5.0, 50.0),
            st.floats(1e-9, 1e-6),
            st.floats(1e100, 1e308),
            st.just(math.nan),
        ),
        st.one_of(st.integers(-1000, 1000), st.integers(-MAX_COUNT, MAX_COUNT), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    samples=samples,
    start=st.floats(-1e9, 1e9),
    total=st.integers(0, MAX_COUNT),
    threshold=st.floats(0.5, 8.0),
)
def test_never_nan_inf_or_negative(
    samples: list[tuple[float, int]], start: float, total: int, threshold: float
) -> None:
    est = ThroughputEstimator(threshold=threshold)
    now, done = start, 0
    for step, change in samples:
        now = now + step if math.isfinite(step) else step
        done = min(max(done + change, 0), MAX_COUNT)
        est.observe(now, done)
        assert_sane(est, total)
        if not math.isfinite(now):
            now = start


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), total=st.integers(1, 10**7))
def test_random_bursty_runs_stay_sane(seed: int, total: int) -> None:
    rng = random.Random(seed)
    est = ThroughputEstimator()
    now, done = 0.0, 0
    est.observe(now, done)
    for _ in range(600):
        now += rng.choice([TICK, TICK, TICK, 0.0, 2.0, 1e-3])
        roll = rng.random()
        if roll < 0.05:
            done += rng.randint(100, 10_000)  # a batch lands
        elif roll < 0.07:
            done = rng.randint(0, done)  # a reset
        elif roll < 0.5:
            done += rng.randint(0, 5)
        est.observe(now, done)
        assert_sane(est, total)


# ---------------------------------------------------------------------------------------- bounded


@pytest.mark.slow
def test_state_stays_bounded_over_a_million_samples() -> None:
    est = ThroughputEstimator()
    observe = est.observe
    rng = random.Random(9)
    increments = [rng.randint(0, 20) for _ in range(1024)]
    now, done = 0.0, 0
    observe(now, done)
    sizes = []
    for index in range(1_000_000):
        now += TICK
        done += increments[index & 1023]
        observe(now, done)
        if index % 250_000 == 0:
            sizes.append(state_bytes(est))
    sizes.append(state_bytes(est))
    assert len(est._spans) <= estimator_module._MAX_BUCKETS
    assert len(est._items) == len(est._spans) == len(est._levels)
    assert len(est._snapshots) == estimator_module._SNAPSHOTS * estimator_module._SNAPSHOT_WIDTH
    assert max(sizes) < 2048
    assert sizes[-1] <= sizes[1]  # no growth after the first quarter million
    assert not hasattr(est, "__dict__")
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(sum(increments) / 1024 / TICK, rel=0.05)


# ------------------------------------------------------------------------------------- adaptation


@pytest.mark.parametrize(("before", "after"), [(10.0, 40.0), (10.0, 2.5), (2.0, 20.0), (20.0, 5.0)])
def test_adapts_to_a_lasting_change_within_a_few_samples(before: float, after: float) -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    now, done = feed(est, 0.0, 400, per_tick=before * TICK)  # 200 s at the old rate
    assert est.rate() == pytest.approx(before)
    now, done = feed(est, now, 10, per_tick=after * TICK, done=done)  # 5 s at the new rate
    assert est.rate() == pytest.approx(after, rel=0.05)
    eta = est.eta(done + 1000)
    assert eta == pytest.approx(1000 / after, rel=0.05)
    # and it keeps the new regime as more of it arrives
    feed(est, now, 200, per_tick=after * TICK, done=done)
    assert est.rate() == pytest.approx(after, rel=0.02)


def poisson_counts(rng: random.Random, rate: float, ticks: int) -> list[int]:
    out = []
    for _ in range(ticks):
        count, t = 0, rng.expovariate(rate)
        while t < TICK:
            count += 1
            t += rng.expovariate(rate)
        out.append(count)
    return out


def test_adapts_to_a_change_in_noisy_arrivals_within_a_bounded_number_of_samples() -> None:
    rng = random.Random(42)
    est = ThroughputEstimator()
    now, done = 0.0, 0
    est.observe(now, done)
    for count in poisson_counts(rng, 10.0, 240):
        now += TICK
        done += count
        est.observe(now, done)
    for count in poisson_counts(rng, 40.0, 30):  # 15 s at four times the rate
        now += TICK
        done += count
        est.observe(now, done)
    assert est.rate() == pytest.approx(40.0, rel=0.2)


def test_steady_poisson_arrivals_keep_a_long_window() -> None:
    deviations = []
    for seed in range(5):
        rng = random.Random(seed)
        est = ThroughputEstimator()
        now, done = 0.0, 0
        est.observe(now, done)
        for index, count in enumerate(poisson_counts(rng, 10.0, 1200)):
            now += TICK
            done += count
            est.observe(now, done)
            if index > 120:  # after the first minute a short window's noise would show (~15% at 5 s)
                rate = est.rate()
                assert rate is not None
                deviations.append(abs(rate / 10.0 - 1.0))
    assert sum(deviations) / len(deviations) < 0.04
    # a rare freak run of samples may pass for a change, but only rarely
    assert sum(d > 0.15 for d in deviations) < 0.005 * len(deviations)


def test_batches_are_not_mistaken_for_changes() -> None:
    # 50 items land together every 5 s: 10 items/s on average, wildly uneven per sample
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    done = 0
    worst = 0.0
    for tick in range(1, 601):
        now = tick * TICK
        if tick % 10 == 0:
            done += 50
        est.observe(now, done)
        if tick > 120:
            rate = est.rate()
            assert rate is not None
            worst = max(worst, abs(rate / 10.0 - 1.0))
    assert worst < 0.15


def test_eta_counts_down_between_batches_and_holds_in_a_stall() -> None:
    est = ThroughputEstimator()
    est.observe(0.0, 0)
    done = 0
    for tick in range(1, 201):  # batches of 50 every 5 s
        if tick % 10 == 0:
            done += 50
        est.observe(tick * TICK, done)
    right_after = est.eta(2000)
    assert right_after is not None
    for tick in range(201, 209):  # 4 s into the next gap: the next batch is due in 1 s
        est.observe(tick * TICK, done)
    between = est.eta(2000)
    assert between is not None
    assert between == pytest.approx(right_after - 4.0, abs=1.0)
    for tick in range(209, 400):  # a long stall: the ETA neither vanishes nor keeps falling
        est.observe(tick * TICK, done)
    stalled = est.eta(2000)
    assert stalled is not None
    assert stalled >= 0.5 * right_after


# ------------------------------------------------------------------------------------------- caches
#
# The estimator keeps derived state between calls (per-level dispersions, the blended predictor, the
# chosen windows). The reference below computes rate() from the histogram and the running sums alone,
# the way the estimator did before it kept anything: the caches must agree with it.


def reference_dispersions(est: ThroughputEstimator) -> list[float]:
    sums, m = est._sums, estimator_module
    out, dispersion = [], 1.0
    for level in range(m._LEVELS):
        dispersion = m._shrunk(
            sums[m._DEV + level], sums[m._MASS + level], sums[m._MERGES + level], dispersion
        )
        out.append(dispersion)
    return out


def reference_blend(est: ThroughputEstimator) -> tuple[int, float]:
    sums, m = est._sums, estimator_module
    scored = sums[m._SCORED]
    best, best_gain, weight = 0, m._MIN_GAIN, 0.0
    for index in range(1, m._PREDICTORS if scored >= m._MIN_SCORED else 1):
        gain = (sums[m._LOSS] - sums[m._LOSS + index]) / scored
        if gain > best_gain:
            spread = math.sqrt(max(sums[m._GAIN2 + index - 1] / scored - gain * gain, 0.0))
            confidence = gain * math.sqrt(scored) / spread if spread > 0.0 else math.inf
            best, best_gain, weight = index, gain, min(confidence / m._CONFIDENT, 1.0)
    return best, weight


def reference_adaptive_rate(est: ThroughputEstimator, age: float) -> float:
    """The walk over the histogram, from scratch (see the estimator's module docstring, part 1)."""
    m = estimator_module
    dispersion = reference_dispersions(est)
    dispersion.append(dispersion[-1])
    half = est._sums[m._HALF_THRESHOLD]

    def square_root_bound(root: float, scale: float) -> float:
        return (root * root - m._ANSCOMBE) / scale

    low, high = 0.0, math.inf
    seconds, items, width, chosen = -age, 0.0, 0, 0.0
    cut_at = est._sums[m._CUT_AT]
    since_cut = math.inf if math.isnan(cut_at) else est._last_progress - cut_at
    for index in range(len(est._spans) - 1, -1, -1):
        bucket_seconds, bucket_items, level = est._spans[index], est._items[index], est._levels[index]
        if seconds + bucket_seconds > since_cut:
            # a detected slowdown: the window starts where it did, with the items counted since
            rate = (est._last_done - est._sums[m._CUT_DONE]) / since_cut
            if low <= rate <= high:
                chosen = rate
            break
        seconds += bucket_seconds
        items += bucket_items
        width += 1 << level
        if seconds <= 0.0:
            continue
        rate = items / seconds
        if not low <= rate <= high:
            break
        if high < math.inf:
            scale = bucket_seconds / dispersion[level]
            root = math.sqrt(bucket_items * scale / bucket_seconds + m._ANSCOMBE)
            if square_root_bound(root + half, scale) < low:
                break
            if root > half and square_root_bound(root - half, scale) > high:
                break
        chosen = rate
        scale = seconds / dispersion[min(width.bit_length() - 1, m._LEVELS - 1)]
        evidence = rate * scale
        if evidence < m._MIN_EVIDENCE:
            continue
        root = math.sqrt(evidence + m._ANSCOMBE)
        if root > half:
            low = max(low, square_root_bound(root - half, scale))
        high = min(high, square_root_bound(root + half, scale))
    return chosen


def reference_recent_rate(est: ThroughputEstimator, fraction: float, age: float) -> float:
    """Rate over roughly the last ``fraction`` of the run, ending at the last completion."""
    spans, counts = est._spans, est._items
    want = fraction * (sum(spans) - age)
    seconds, items = -age, 0.0
    index = len(spans) - 1
    while index >= 0 and (seconds < want or not items):
        seconds += spans[index]
        items += counts[index]
        index -= 1
    return items / seconds if seconds > 0.0 else 0.0


def reference_rate(est: ThroughputEstimator) -> float | None:
    """rate() with every derived value recomputed: the adaptive walk, then the blend."""
    if not est._spans:
        return None
    age = max(est._last_now - est._last_progress, 0.0)
    rate = reference_adaptive_rate(est, age)
    best, weight = reference_blend(est)
    if best:
        other = reference_recent_rate(est, estimator_module._RECENT_FRACTIONS[best - 1], age)
        if weight >= 1.0 or not rate:
            rate = other
        elif other > 0.0:
            rate = math.exp((1.0 - weight) * math.log(rate) + weight * math.log(other))
    return rate if math.isfinite(rate) else None


def random_run(seed: int, length: int, *, backwards: bool = True) -> list[tuple[float, int]]:
    """``(time step, change in done)`` pairs: a rate that changes now and then, bursts, batches, stalls,
    samples at a repeated time and (with ``backwards``) the clock or the count going back."""
    rng = random.Random(seed)
    rate = 10 ** rng.uniform(-1, 3)
    out = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.01:
            rate = 10 ** rng.uniform(-1, 3)  # a new regime
        step = rng.choice([TICK] * 12 + [0.0, 1e-3, 2.0])
        mean = rate * step
        if roll < 0.05:
            mean *= 20  # a batch lands
        elif roll < 0.1:
            mean = 0.0  # a stall
        change = int(mean * rng.uniform(0.0, 2.0))
        if backwards and roll > 0.995:
            step, change = rng.choice([(-1.0, 0), (TICK, -rng.randint(1, 50))])
        out.append((step, change))
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), length=st.integers(1, 1500), threshold=st.sampled_from([1.0, 3.5, 6.0])
)
def test_cached_dispersions_and_blend_equal_the_uncached_computation(
    seed: int, length: int, threshold: float
) -> None:
    samples = random_run(seed, length)
    est = ThroughputEstimator(threshold=threshold)
    now, done = 1000.0, 0
    est.observe(now, done)
    for step, change in samples:
        now += step
        done = max(done + change, 0)
        est.observe(now, done)
        expected = reference_dispersions(est)
        assert [est._dispersion_at(level) for level in range(estimator_module._LEVELS)] == expected
        best, weight = reference_blend(est)
        assert est._sums[estimator_module._BLEND_INDEX] == best
        assert est._sums[estimator_module._BLEND_WEIGHT] == weight


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), length=st.integers(1, 1500), threshold=st.sampled_from([1.0, 3.5, 6.0])
)
def test_rate_equals_the_uncached_computation_when_the_window_is_chosen_on_every_read(
    seed: int, length: int, threshold: float
) -> None:
    samples = random_run(seed, length)
    # With no share of a window to wait for, every read chooses the window afresh: then nothing kept
    # between calls may change the answer, to the last bit.
    with mock.patch.object(estimator_module, "_REFRESH_SHARE", 0.0):
        est = ThroughputEstimator(threshold=threshold)
        now, done = 1000.0, 0
        est.observe(now, done)
        for step, change in samples:
            now += step
            done = max(done + change, 0)
            est.observe(now, done)
            assert est.rate() == reference_rate(est)
            assert est.rate() == reference_rate(est)  # read twice: the same


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 1500))
def test_a_grown_window_is_a_run_of_whole_samples_up_to_the_last_completion(seed: int, length: int) -> None:
    # Between walks the adaptive rate comes from the window chosen last, grown by the samples since:
    # it must still be the rate over a run of whole samples that ends at the last completion, and
    # inside the interval of rates the walk allowed for it.
    assert grown_window_checks(random_run(seed, length, backwards=False)) >= 0


def test_a_grown_window_stands_most_of_the_time_in_steady_work() -> None:
    rng = random.Random(5)
    samples = [(TICK, count) for count in poisson_counts(rng, 10.0, 1000)]
    assert grown_window_checks(samples) > 700


def grown_window_checks(samples: list[tuple[float, int]]) -> int:
    """Check the standing window after each sample (see above); returns on how many samples it stood."""
    m = estimator_module
    est = ThroughputEstimator()
    now, done = 1000.0, 0
    est.observe(now, done)
    checked = 0
    progress_done = done  # the count at the last completion
    boundaries: dict[int, list[float]] = {done: [now]}  # the sample times at which each count was seen
    for step, change in samples:
        now += step
        done += change
        est.observe(now, done)
        boundaries.setdefault(done, []).append(now)
        if change:
            progress_done = done
        sums = est._sums
        if sums[m._SAMPLES] >= sums[m._REFRESH_AT]:
            continue  # to be chosen afresh: nothing grown to check
        checked += 1
        seconds = sums[m._WINDOW_SECONDS] + sums[m._BLOCK_SECONDS]
        items = sums[m._WINDOW_ITEMS] + sums[m._BLOCK_ITEMS]
        assert seconds > 0.0
        assert items == int(items)
        start_times = boundaries.get(progress_done - int(items), [])
        assert any(
            seconds == pytest.approx(est._last_progress - start, rel=1e-9, abs=1e-9) for start in start_times
        )
        rate = est._current_adaptive_rate(sums)
        if rate == items / seconds:  # the window stood the read-time checks
            assert sums[m._WINDOW_LOW] <= rate <= sums[m._WINDOW_HIGH]
    return checked
