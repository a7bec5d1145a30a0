"""ThroughputEstimator: rate and ETA from (time, items done) samples, on a clock the caller injects.

The reporter samples every live tracker a couple of times a second and feeds the samples here; the rate
and ETA it reads back travel in progress messages. Throughput in real jobs is rarely steady: jobs warm
up, slow down, stall, finish items in batches, or hit a few very slow items. The estimator is built
from six parts, each answering one question:

1. **How much history describes the current regime?** Samples go into an exponential histogram:
   buckets of 1, 2, 4, ... samples, at most two per size, so the last ~17 minutes of half-second
   samples fit in 21 buckets and everything older is summed into one. The estimator walks them from
   the newest and keeps extending the window while the older data agrees with the newer (change
   detection in the spirit of ADWIN): each longer window's rate must fall inside the confidence
   interval of every shorter one, and each newly added bucket must agree with them too. Agreement is
   judged by a variance-stabilised Poisson test (Anscombe's square root) on effective item counts,
   so a handful of items in a short window cannot fake a change.
2. **How noisy is this job at each time scale?** Items often complete in bursts or batches, or with a
   few slow stragglers, which is far noisier than Poisson. Every time two buckets merge, the squared
   difference of their rates is an Allan-variance sample for that time scale; their running mean
   gives a dispersion index (variance / mean) per scale, and the tests above deflate their evidence
   by it. One outlying sample can raise a scale's index only a bounded amount, so a single genuine
   change in rate cannot hide itself by inflating the noise estimate, while recurring bursts do.
3. **Has following changes actually paid off for this job?** Whether a recent change will persist is
   not knowable from one change alone: a slow-down may last (a job's second half is harder) or revert
   (the rate oscillates, or switches back and forth), and a steady rise calls for shorter windows
   than any single test justifies. So the estimator keeps a few snapshots of what several predictors
   said (the adaptive rate, the whole-run rate, and the rates over the last quarter and sixteenth of
   the run), and scores each prediction once the next half of the run's elapsed time has been
   observed. The adaptive rate stands unless another predictor has predicted better; then that one is
   blended in, with a weight that grows with how many standard errors its advantage amounts to (a
   paired comparison of errors, as in the Diebold-Mariano test), so a lucky score cannot take over.
   Errors are absolute log ratios capped at a 3x miss, so the one horizon in which a stall or a single
   huge item (a 45 MB file in a tree of small ones) made every predictor miss badly does not decide the
   ranking for the many scores after it.
4. **Is the pace itself drifting?** Jobs often slow down or speed up steadily (the files get bigger,
   the cache warms, a queue drains), and then the remaining work will not go at today's pace, however
   well today's pace is measured. At each snapshot the estimator compares the time per item over the
   last quarter of the run with the quarter before it: the difference over the items between them is
   a slope, in seconds per item per item. That trend is scored like the predictors (the adaptive rate
   bent by the slope against the adaptive rate alone), and where it has predicted better, by at least
   _TREND_CONFIDENT standard errors for full weight, :meth:`~ThroughputEstimator.eta` extrapolates the
   time per item linearly over the remaining items (within 4x of today's either way) instead of
   assuming today's. :meth:`~ThroughputEstimator.rate` stays today's throughput.
5. **Do batches now come further apart?** Batched work (40 items every few seconds) is far noisier, counted
   in items, than the test of part 1 allows for, so it needs many batches to trust that a batch interval
   has lengthened for good. Counted in pauses (samples without progress between bursts), it is plain after
   two: a Page-Hinkley test sums each pause's log ratio to the usual pause (capped, less a slack), and when
   the sum passes _SLOWDOWN_ALARM the adaptive window restarts at the first lengthened pause, with the
   item count there known exactly, and the predictors' scores, earned before the change, start afresh.
6. **Does this job's pace keep switching?** Each time the adaptive window is chosen afresh less than half as
   long as before, a regime has ended; it counts if it lasted at least a twentieth of the run. Once three
   have ended, lasting D seconds on average, the ETA over a horizon H blends the run's mean rate into
   today's with weight H / (H + 12 D): a horizon spanning many of this job's regimes will go through
   several of them, at a pace nearer the run's mean than today's. One lasting change (a job's second half
   is slower) ends one regime and leaves the ETA alone.

Finally the ETA is measured from the last completion rather than from the last sample: after a batch
lands, the next one is expected one batch interval later, so the time since the last completion
counts down the ETA, up to the usual gap between completions (beyond that, the job is stalled and the
ETA holds at what the recent rate implies instead of falling to zero).

The reporter calls :meth:`~ThroughputEstimator.observe`, :meth:`~ThroughputEstimator.rate` and
:meth:`~ThroughputEstimator.eta` for every live tracker on every tick, so what they derive is kept
between calls rather than recomputed (``bench/estimator_cost.py`` measures it):

- the dispersion index of each level, recomputed from the finest level a merge changed, when read;
- the predictor to blend in and its weight, which change only when a snapshot is scored;
- the adaptive window, i.e. where the walk of part 1 stopped. Until newer samples amount to an eighth
  of its width it is not walked again but grown by them, for as long as they agree with it: the grown
  window's rate must stay inside the interval of rates its parts allowed, and the block of samples
  since the walk must pass the same test as a bucket the walk adds. A change of regime fails the test
  as soon as the walk itself would see it in the block; a steady job walks its ~20 buckets once every
  few dozen samples. The blended predictor's window grows the same way.

Walked on every read instead (``_REFRESH_SHARE = 0``), the rate is the one computed from scratch, to
the last bit; the tests hold the caches to that.

All state is a few small arrays of bounded size (under 2 KB in all, by ``sys.getsizeof``; the ring of
predictions is single precision to keep it so). ``docs/estimator.md`` describes the method for users, with
its accuracy per workload against tqdm and rich (``bench/eta_general.py``). There is no
clock and no thread here, so it runs the same on a simulated clock.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["ThroughputEstimator"]

_LEVELS: Final = 10
"""Bucket sizes 1, 2, ..., 2**9 samples: at 0.5 s per sample, the last ~17 min stay finely resolved."""
_PER_LEVEL: Final = 2
"""Buckets kept per size before the two oldest merge: the window resolution is about a third of its age."""
_MAX_BUCKETS: Final = _PER_LEVEL * _LEVELS + 1
"""Beyond this, the two oldest buckets merge whatever their size, so the oldest one holds all old history."""

_ANSCOMBE: Final = 0.375
"""2 * sqrt(count + 3/8) has near-unit variance for Poisson counts, down to a few items."""

_MIN_EVIDENCE: Final = 8.0
"""Effective items a window needs before older data may be judged against it."""

_DISPERSION_FLOOR: Final = 0.05
"""Regular arrivals have dispersion near 0; a floor keeps the tests from demanding the impossible."""
_DISPERSION_CEILING: Final = 1e12
_DISPERSION_PRIOR: Final = 2.0
"""Pseudo-samples from the next finer scale: a scale with few merges yet borrows its neighbour's noise."""
_DISPERSION_KEEP: Final = 1.0 - 1.0 / 64
"""Per-merge decay of the Allan sums: each scale remembers its last ~64 merges."""
_DISPERSION_CAP: Final = 5.0
"""One merge may add at most this many times the current dispersion (winsorising a one-off jump)."""

_SNAPSHOTS: Final = 8
"""Predictions are scored when the 9th newer snapshot is taken, i.e. after ~half the elapsed time."""
_SNAPSHOT_SPACING: Final = 1.0 / 16
"""Snapshots are taken every 1/16 of the elapsed time since the first sample."""
_MIN_SNAPSHOT_SAMPLES: Final = 2
"""Samples between snapshots at least (early on, 1/16 of the elapsed time is less than one sample)."""
_SNAPSHOT_WIDTH: Final = 2
"""Per snapshot, in one ring: its time and items done."""
_PREDICTION_WIDTH: Final = 5
"""Per snapshot, in another (single precision: plenty for scoring, and it keeps the state small): the four
predictors' rates and the trend's slope."""
_RECENT_FRACTIONS: Final = (1.0, 0.25, 1.0 / 16)
"""Besides the adaptive rate: the whole run, its last quarter and its last sixteenth."""
_MIN_GAIN: Final = math.log(1.01)
"""An advantage in mean absolute log error below that of a 1% miss is a tie (won by the adaptive rate)."""
_CONFIDENT: Final = 1.0
"""Standard errors of advantage at which another predictor fully replaces the adaptive one."""
_MIN_SCORED: Final = 3.0
"""Scored snapshots needed before another predictor may replace the adaptive one: one lucky score won't."""
_LOSS_KEEP: Final = 1.0 - 1.0 / 8
"""Per-score decay of the predictors' errors: the last ~8 scores (about half an e-fold of elapsed time)."""
_MAX_ERROR: Final = math.log(3.0)
"""A score's error is at most that of a 3x miss: a stall (nothing done in a horizon) or a single huge item
would otherwise outweigh every other score for many scores, and it says little about which predictor is
better, since every predictor missed it."""

_PREDICTORS: Final = 1 + len(_RECENT_FRACTIONS)

_TREND_FRACTION: Final = 0.25
"""The trend compares the time per item over the last quarter of the run with the quarter before it."""
_TREND_CONFIDENT: Final = 3.0
"""Standard errors of advantage at which the trend takes full effect: more than a predictor needs, since a
wrong trend compounds over the remaining work where a wrong rate does not."""
_TREND_LIMIT: Final = 4.0
"""Extrapolated, the time per item stays within this factor of today's either way."""

# Offsets into the running-sums array: Allan sums per level (squared rate differences in items**2,
# mean items per merged bucket, merges), each predictor's decayed error, and the typical-gap sums.
_DEV: Final = 0
_MASS: Final = _LEVELS
_MERGES: Final = 2 * _LEVELS
_LOSS: Final = 3 * _LEVELS
_GAIN2: Final = _LOSS + _PREDICTORS
_SCORED: Final = _GAIN2 + _PREDICTORS - 1
_GAP_SUM: Final = _SCORED + 1
_GAP_WEIGHT: Final = _GAP_SUM + 1
# The trend's scores (the decayed error of the adaptive rate bent by the trend, and the squared differences
# from the adaptive rate's error) and the trend's weight.
_TREND_LOSS: Final = _GAP_WEIGHT + 1
_TREND_GAIN2: Final = _TREND_LOSS + 1
_TREND_WEIGHT: Final = _TREND_GAIN2 + 1
# Then what is derived from the history and kept between calls (in the same array, to keep the object
# small): the dispersion index per level (one more entry for the catch-all bucket, which uses the
# coarsest level's) and how many levels from the finest are current; the predictor blended into the
# rate and its weight; the adaptive window, from its start to the last completion, with the part of it
# observed since it was last chosen (the block), the sample count then and the sample count at which it
# is chosen afresh (0: now); the same for the window of the blended predictor; samples observed so far,
# at the newest snapshot, and that snapshot's time; half the threshold; and the rate last returned
# (NaN: to compute).
_DISPERSION: Final = _TREND_WEIGHT + 1
_DISPERSION_VALID: Final = _DISPERSION + _LEVELS + 1
_BLEND_INDEX: Final = _DISPERSION_VALID + 1
_BLEND_WEIGHT: Final = _BLEND_INDEX + 1
_WINDOW_SECONDS: Final = _BLEND_WEIGHT + 1
_WINDOW_ITEMS: Final = _WINDOW_SECONDS + 1
_WINDOW_LOW: Final = _WINDOW_ITEMS + 1
_WINDOW_HIGH: Final = _WINDOW_LOW + 1
_BLOCK_SECONDS: Final = _WINDOW_HIGH + 1
_BLOCK_ITEMS: Final = _BLOCK_SECONDS + 1
_WINDOW_FROM: Final = _BLOCK_ITEMS + 1
_REFRESH_AT: Final = _WINDOW_FROM + 1
_RECENT_SECONDS: Final = _REFRESH_AT + 1
_RECENT_ITEMS: Final = _RECENT_SECONDS + 1
_RECENT_REFRESH_AT: Final = _RECENT_ITEMS + 1
_SAMPLES: Final = _RECENT_REFRESH_AT + 1
_SNAPSHOT_FROM: Final = _SAMPLES + 1
_SNAPSHOT_NEWEST: Final = _SNAPSHOT_FROM + 1
_HALF_THRESHOLD: Final = _SNAPSHOT_NEWEST + 1
_RATE: Final = _HALF_THRESHOLD + 1
# The slowdown test (see observe): the pauses' sums (as the gaps'), the Page-Hinkley statistic, where the
# pause that began the current excursion started (time and items done then), and where the adaptive window
# may start since the last alarm (NaN: anywhere), with the items done then. Last, the snapshot ring's oldest
# entry and its length. Then the regimes (see _adaptive_rate): the start of the current one, _REGIME_SPAN
# times the mean length of the completed ones, how many there were; and the time of the first sample (NaN:
# none yet).
_PAUSE_SUM: Final = _RATE + 1
_PAUSE_WEIGHT: Final = _PAUSE_SUM + 1
_SLOWDOWN: Final = _PAUSE_WEIGHT + 1
_SLOWDOWN_FROM: Final = _SLOWDOWN + 1
_SLOWDOWN_FROM_DONE: Final = _SLOWDOWN_FROM + 1
_CUT_AT: Final = _SLOWDOWN_FROM_DONE + 1
_CUT_DONE: Final = _CUT_AT + 1
_SNAPSHOT_HEAD: Final = _CUT_DONE + 1
_SNAPSHOT_COUNT: Final = _SNAPSHOT_HEAD + 1
_REGIME_FROM: Final = _SNAPSHOT_COUNT + 1
_REGIME_SCALE: Final = _REGIME_FROM + 1
_REGIMES: Final = _REGIME_SCALE + 1
_START: Final = _REGIMES + 1
_SUMS: Final = _START + 1

_GAP_KEEP: Final = 1.0 - 1.0 / 16
"""Decay of the typical gap between completions, per completion."""
_MIN_ETA_SHARE: Final = 0.5
"""The time since the last completion may take at most half off the rate-based ETA."""

_SLOWDOWN_SLACK: Final = 0.3
"""Per pause, the log ratio to the usual pause that the slowdown test allows before it counts as evidence."""
_SLOWDOWN_STEP: Final = math.log(3.0)
"""One pause adds at most the evidence of a pause 3x the usual: a single stall or straggler is no slowdown."""
_SLOWDOWN_ALARM: Final = 1.0
"""Evidence at which the pauses are taken to have lengthened for good: two pauses 2.5x the usual in a row."""
_SLOWDOWN_MIN_PAUSES: Final = 8.0
"""Seconds of pauses (decayed) seen before the test starts: the usual pause must be known first."""

_REGIME_SHRINK: Final = 0.5
"""A window chosen afresh that is less than this share of the one it replaces starts a new regime..."""
_REGIME_MIN_SHARE: Final = 1.0 / 20
"""...if the regime it ends lasted at least this share of the run so far (not a blip, nor a stall)."""
_REGIME_MIN_COUNT: Final = 3.0
"""Regimes that must have ended before their typical length is trusted."""
_REGIME_SPAN: Final = 12.0
"""The run's mean rate weighs H / (H + _REGIME_SPAN * D) in the ETA, for a horizon H and regimes lasting D:
only when the work ahead spans many of this job's regimes."""

_REFRESH_SHARE: Final = 1.0 / 8
"""The window is chosen afresh once the samples since it was chosen reach this share of its width."""

_NAN: Final = math.nan
_INF: Final = math.inf
_isfinite: Final = math.isfinite
_sqrt: Final = math.sqrt


class ThroughputEstimator:
    """Items-per-second rate and time to completion from periodic ``(now, done)`` samples.

    The caller owns the clock: call :meth:`observe` with the current time and item count (the
    reporter does so on every sampling tick), and :meth:`rate` / :meth:`eta` whenever needed.

    Example:
        >>> est = ThroughputEstimator()
        >>> for second in range(11):
        ...     est.observe(float(second), 10 * second)
        >>> est.rate()
        10.0
        >>> est.eta(200)
        10.0

    Args:
        threshold: how many standard deviations two windows must disagree by before the older data is
            treated as a different regime. Lower reacts faster and is fooled by noise more often.
    """

    __slots__ = (
        "_items",
        "_last_done",
        "_last_now",
        "_last_progress",
        "_levels",
        "_predictions",
        "_snapshots",
        "_spans",
        "_sums",
    )

    def __init__(self, *, threshold: float = 3.5) -> None:
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be a positive number of standard deviations, got {threshold!r}")
        # The exponential histogram, oldest bucket first: seconds and items per bucket, and its level
        # (a level-k bucket holds 2**k samples; the oldest may hold more).
        self._spans = array("d")
        self._items = array("d")
        self._levels = bytearray()
        # Running sums and caches, in one array to keep the object small; see the offsets above.
        sums = self._sums = array("d", (0.0,)) * _SUMS
        for level in range(_LEVELS + 1):
            sums[_DISPERSION + level] = 1.0  # before any evidence, assume Poisson
        sums[_HALF_THRESHOLD] = float(threshold) / 2.0
        sums[_RATE] = _NAN
        sums[_CUT_AT] = _NAN  # no slowdown detected yet
        sums[_START] = _NAN  # no sample yet
        # Snapshot ring, oldest entry at sums[_SNAPSHOT_HEAD]: time, done, then one rate per predictor.
        self._snapshots = array("d", (0.0,)) * (_SNAPSHOTS * _SNAPSHOT_WIDTH)
        self._predictions = array("f", (0.0,)) * (_SNAPSHOTS * _PREDICTION_WIDTH)
        self._last_now = 0.0
        self._last_done = 0
        self._last_progress = 0.0

    # ----------------------------------------------------------------------------------------- input

    def observe(self, now: float, done: int) -> None:
        """Record that ``done`` items were complete at time ``now``.

        Never raises on odd input. A sample at the same time as the previous one adds its progress to
        that sample's interval; time or ``done`` going backwards (a clock change, a counter reset)
        re-anchors without forgetting the rates learned so far; non-finite times are ignored.

        Args:
            now: the caller's monotonic clock, in seconds.
            done: items complete so far.
        """
        # The reporter calls this for every live tracker on every tick, so the merge bookkeeping and
        # the window check are written out here rather than split into methods (a call costs more
        # than most of what they do).
        if not _isfinite(now):
            return
        sums = self._sums
        start = sums[_START]
        if start != start:  # NaN: the first sample
            sums[_START] = sums[_REGIME_FROM] = self._last_now = self._last_progress = now
            self._last_done = done
            return
        seconds = now - self._last_now
        items = done - self._last_done
        self._last_done = done
        if seconds == 0.0:
            if items > 0 and self._items:
                # Done by the same instant as the previous sample: it belongs to that sample's interval.
                self._items[-1] += items
                self._last_progress = now
                sums[_RATE] = _NAN
                # The newest bucket changed under the windows: rare, so they are simply chosen again.
                sums[_REFRESH_AT] = sums[_RECENT_REFRESH_AT] = 0.0
            return
        self._last_now = now
        sums[_RATE] = _NAN
        if seconds < 0.0 or items < 0 or not _isfinite(seconds):
            # The interval means nothing and is left out of the history. Predictions made on the old
            # footing cannot be scored; the silence since the last completion restarts here, since
            # the histogram has no record of the skipped time to measure it against.
            sums[_SNAPSHOT_COUNT] = sums[_SNAPSHOT_HEAD] = 0.0
            self._last_progress = now
            # A slowdown's start, and the current regime's, are on the old footing too (the regimes
            # completed before still say how long this job's regimes last).
            sums[_CUT_AT] = _NAN
            sums[_SLOWDOWN] = 0.0
            sums[_REGIME_FROM] = now
            sums[_REFRESH_AT] = sums[_RECENT_REFRESH_AT] = 0.0
            return

        # Append the sample as a bucket and merge equal-size buckets so at most two of each remain.
        spans, counts, levels = self._spans, self._items, self._levels
        spans.append(seconds)
        counts.append(items)  # stored as a float
        levels.append(0)
        newest = len(levels) - 1
        level = 0  # the level of the bucket at ``newest``
        # Levels never increase from oldest to newest, so a third bucket of a level sits two places
        # before the newest one of that level: merge the two oldest of the three, then look one up.
        while newest >= 2 and levels[newest - 2] == level < _LEVELS:
            older = newest - 2
            newer = newest - 1
            dev_at, mass_at, merges_at = _DEV + level, _MASS + level, _MERGES + level
            older_span = spans[older]
            newer_span = spans[newer]
            older_items = counts[older]
            newer_items = counts[newer]
            # An Allan-variance sample for this level from the two buckets about to merge.
            mean_span = 0.5 * (older_span + newer_span)
            difference = (older_items / older_span - newer_items / newer_span) * mean_span
            mass = 0.5 * (older_items + newer_items)
            deviation = 0.5 * difference * difference
            # Winsorise: one sample may raise this scale's dispersion only so far. A lasting change of
            # rate produces one huge sample per scale, recurring bursts produce many; only the latter
            # is noise.
            valid = sums[_DISPERSION_VALID]
            if level < valid:
                dispersion = sums[_DISPERSION + level]
            else:
                # Bring this level's index up to date from the finest stale one (_dispersion_at,
                # written out: a call costs more than the usual one or two steps).
                finer = int(valid)
                dispersion = sums[_DISPERSION + finer - 1] if finer else 1.0
                while finer <= level:
                    mass_sum = sums[_MASS + finer]
                    if mass_sum > 0.0:  # as _shrunk
                        merges = sums[_MERGES + finer]
                        per_merge = sums[_DEV + finer] / (mass_sum / merges)
                        dispersion = (per_merge + _DISPERSION_PRIOR * dispersion) / (
                            merges + _DISPERSION_PRIOR
                        )
                        if dispersion < _DISPERSION_FLOOR:
                            dispersion = _DISPERSION_FLOOR
                        elif not dispersion < _DISPERSION_CEILING:
                            dispersion = _DISPERSION_CEILING
                    sums[_DISPERSION + finer] = dispersion
                    finer += 1
                if level == _LEVELS - 1:
                    sums[_DISPERSION + _LEVELS] = dispersion
            cap = _DISPERSION_CAP * dispersion * (1.0 if mass < 1.0 else mass)
            if cap < deviation:
                deviation = cap
            sums[dev_at] = sums[dev_at] * _DISPERSION_KEEP + deviation
            sums[mass_at] = sums[mass_at] * _DISPERSION_KEEP + mass
            sums[merges_at] = sums[merges_at] * _DISPERSION_KEEP + 1.0
            sums[_DISPERSION_VALID] = level  # this level's index and every coarser one changed
            spans[older] = older_span + newer_span
            counts[older] = older_items + newer_items
            level += 1
            levels[older] = level
            del spans[newer], counts[newer], levels[newer]
            newest = older
        if len(levels) > _MAX_BUCKETS:
            spans[0] += spans[1]
            counts[0] += counts[1]
            levels[0] = _LEVELS  # the catch-all for everything older than the finest-grained history
            del spans[1], counts[1], levels[1]

        samples = sums[_SAMPLES] + 1.0
        sums[_SAMPLES] = samples
        if items:
            # The gap that just ended, weighted by its own length: the typical length of the gap an
            # observer finds itself in, which is what "is this silence normal?" asks about.
            gap = now - self._last_progress
            if gap > seconds:
                # A pause (samples without progress) just ended: has the work started pausing longer?
                self._pause_ended(gap, done - items)
            sums[_GAP_SUM] = sums[_GAP_SUM] * _GAP_KEEP + gap * gap
            sums[_GAP_WEIGHT] = sums[_GAP_WEIGHT] * _GAP_KEEP + gap
            self._last_progress = now
            # The remembered windows end at the last completion: both grow by the gap that just ended
            # (see _adaptive_rate, _blended_rate).
            sums[_BLOCK_SECONDS] += gap
            sums[_BLOCK_ITEMS] += items
        if not sums[_SNAPSHOT_COUNT] or (
            samples - sums[_SNAPSHOT_FROM] >= _MIN_SNAPSHOT_SAMPLES
            and now - sums[_SNAPSHOT_NEWEST] >= _SNAPSHOT_SPACING * (now - start)
        ):
            self._snapshot(now, done)

    def _pause_ended(self, pause: float, done_before: int) -> None:
        """Page-Hinkley test for lengthening pauses between bursts of completions; on alarm, restart there.

        Batched work (a batch every few seconds) is far noisier, counted in items, than the square-root test
        of part 1 allows for, so a batch interval that lengthens for good takes that test many batches to
        trust; counted in pauses, it is plain after two or three. The statistic sums each pause's log ratio
        to the usual pause (length-weighted, as the gaps'), capped at _SLOWDOWN_STEP, minus _SLOWDOWN_SLACK,
        floored at zero. Past _SLOWDOWN_ALARM, the adaptive window may no longer reach back beyond the start
        of the first lengthened pause, and the predictors' scores, earned before the change, start afresh.
        Steady work, whose every sample shows progress, has no pauses and never gets here.
        """
        sums = self._sums
        weight = sums[_PAUSE_WEIGHT]
        if weight >= _SLOWDOWN_MIN_PAUSES:
            excess = math.log(pause * weight / sums[_PAUSE_SUM])
            before = sums[_SLOWDOWN]
            evidence = before + (excess if excess < _SLOWDOWN_STEP else _SLOWDOWN_STEP) - _SLOWDOWN_SLACK
            if evidence <= 0.0:
                evidence = 0.0
            else:
                if before <= 0.0:  # the excursion starts with this pause
                    sums[_SLOWDOWN_FROM] = self._last_progress
                    sums[_SLOWDOWN_FROM_DONE] = done_before
                if evidence > _SLOWDOWN_ALARM:
                    evidence = 0.0
                    sums[_CUT_AT] = sums[_SLOWDOWN_FROM]
                    sums[_CUT_DONE] = sums[_SLOWDOWN_FROM_DONE]
                    sums[_REFRESH_AT] = sums[_RECENT_REFRESH_AT] = 0.0
                    for index in range(_LOSS, _SCORED + 1):
                        sums[index] = 0.0
                    sums[_TREND_LOSS] = sums[_TREND_GAIN2] = sums[_TREND_WEIGHT] = 0.0
                    sums[_BLEND_INDEX] = sums[_BLEND_WEIGHT] = 0.0
            sums[_SLOWDOWN] = evidence
        sums[_PAUSE_SUM] = sums[_PAUSE_SUM] * _GAP_KEEP + pause * pause
        sums[_PAUSE_WEIGHT] = weight * _GAP_KEEP + pause

    def _dispersion_at(self, level: int) -> float:
        """Dispersion index (variance / mean of item counts) at ``level``; 1.0 means Poisson.

        Each level's index is shrunk towards the next finer level's while its own evidence is thin, so
        a change at one level changes every coarser one: the indices are kept per level and recomputed
        from the finest changed level up, only when asked for.
        """
        sums = self._sums
        valid = int(sums[_DISPERSION_VALID])
        if level < valid:
            return sums[_DISPERSION + level]
        dispersion = sums[_DISPERSION + valid - 1] if valid else 1.0
        for finer in range(valid, level + 1):
            dispersion = _shrunk(sums[_DEV + finer], sums[_MASS + finer], sums[_MERGES + finer], dispersion)
            sums[_DISPERSION + finer] = dispersion
        if level == _LEVELS - 1:
            sums[_DISPERSION + _LEVELS] = dispersion  # the catch-all bucket uses the coarsest level's
        sums[_DISPERSION_VALID] = level + 1
        return dispersion

    def _snapshot(self, now: float, done: int) -> None:
        """Remember what every predictor says now; score the oldest remembered predictions."""
        age = self._silence(now)
        predictions = [self._current_adaptive_rate(self._sums), *self._recent_rates(age)]
        if not all(predictions):
            return  # nothing has completed yet: no predictor has anything to say
        slope = self._trend_slope(age)
        ring, said = self._snapshots, self._predictions
        sums = self._sums
        if sums[_SNAPSHOT_COUNT] == _SNAPSHOTS:
            # The ring is full: score its oldest entry, then overwrite it with this one.
            oldest = int(sums[_SNAPSHOT_HEAD])
            horizon = now - ring[oldest * _SNAPSHOT_WIDTH]
            realised = done - ring[oldest * _SNAPSHOT_WIDTH + 1]
            if horizon > 0.0 and realised >= 0:
                first = oldest * _PREDICTION_WIDTH
                then = said[first]
                adaptive = _log_error(then * horizon, realised)
                sums[_LOSS] = sums[_LOSS] * _LOSS_KEEP + adaptive
                for index in range(1, _PREDICTORS):
                    error = _log_error(said[first + index] * horizon, realised)
                    sums[_LOSS + index] = sums[_LOSS + index] * _LOSS_KEEP + error
                    gain = adaptive - error
                    sums[_GAIN2 + index - 1] = sums[_GAIN2 + index - 1] * _LOSS_KEEP + gain * gain
                # The trend, judged against the rate it bends: did the slope improve on it?
                if 0.0 < then < _INF:  # single precision: a rate beyond 3e38/s is stored as inf
                    bent = _trend_items(1.0 / then, said[first + _PREDICTORS], horizon)
                    error = _log_error(bent, realised)
                else:
                    error = adaptive
                sums[_TREND_LOSS] = sums[_TREND_LOSS] * _LOSS_KEEP + error
                gain = adaptive - error
                sums[_TREND_GAIN2] = sums[_TREND_GAIN2] * _LOSS_KEEP + gain * gain
                sums[_SCORED] = sums[_SCORED] * _LOSS_KEEP + 1.0
                self._choose_blend()
            sums[_SNAPSHOT_HEAD] = (oldest + 1) % _SNAPSHOTS
            sums[_SNAPSHOT_COUNT] -= 1.0
        newest = int(sums[_SNAPSHOT_HEAD] + sums[_SNAPSHOT_COUNT]) % _SNAPSHOTS
        ring[newest * _SNAPSHOT_WIDTH] = now
        ring[newest * _SNAPSHOT_WIDTH + 1] = float(done)
        first = newest * _PREDICTION_WIDTH
        for index, predicted in enumerate(predictions):
            said[first + index] = predicted
        said[first + _PREDICTORS] = slope
        sums[_SNAPSHOT_COUNT] += 1.0
        sums[_SNAPSHOT_FROM] = sums[_SAMPLES]
        sums[_SNAPSHOT_NEWEST] = now

    def _choose_blend(self) -> None:
        """Pick the predictor to blend into the adaptive rate, and its weight, from the scores so far.

        The one that has beaten the adaptive rate by the widest margin, weighted by how sure that is: its
        mean advantage over the scored snapshots in standard errors (a paired comparison of errors, as in
        the Diebold-Mariano test), reaching full weight at _CONFIDENT. Scores change only when a snapshot
        is scored, so this runs then, not on every read.
        """
        sums = self._sums
        scored = sums[_SCORED]
        best, best_gain, weight = 0, _MIN_GAIN, 0.0
        for index in range(1, _PREDICTORS if scored >= _MIN_SCORED else 1):
            gain = (sums[_LOSS] - sums[_LOSS + index]) / scored
            if gain > best_gain:
                spread = math.sqrt(max(sums[_GAIN2 + index - 1] / scored - gain * gain, 0.0))
                confidence = gain * math.sqrt(scored) / spread if spread > 0.0 else math.inf
                best, best_gain, weight = index, gain, min(confidence / _CONFIDENT, 1.0)
        if best != sums[_BLEND_INDEX]:
            sums[_BLEND_INDEX] = best
            sums[_RECENT_REFRESH_AT] = 0.0  # another predictor's window
        sums[_BLEND_WEIGHT] = weight
        # The trend's weight, by the same rule: its advantage over the unbent rate, in standard errors.
        weight = 0.0
        if scored >= _MIN_SCORED:
            gain = (sums[_LOSS] - sums[_TREND_LOSS]) / scored
            if gain > _MIN_GAIN:
                spread = math.sqrt(max(sums[_TREND_GAIN2] / scored - gain * gain, 0.0))
                confidence = gain * math.sqrt(scored) / spread if spread > 0.0 else math.inf
                weight = min(confidence / _TREND_CONFIDENT, 1.0)
        sums[_TREND_WEIGHT] = weight

    # ---------------------------------------------------------------------------------------- output

    def rate(self) -> float | None:
        """Throughput in items per second: the rate the ETA assumes for the work ahead, at today's pace.

        Mostly the current regime's rate; where the job's history shows that another horizon has
        predicted its progress better (say, the whole run, for a rate that keeps swinging back and
        forth), partly or wholly that horizon's rate. (A steady drift of the pace is not in it: see
        :meth:`eta`.)

        Returns:
            ``None`` until two samples with different times have been observed, then the rate
            (``0.0`` while nothing has completed).
        """
        sums = self._sums
        rate = sums[_RATE]
        if rate == rate:  # not NaN: nothing observed since it was computed
            return rate
        if not self._spans:
            return None
        rate = self._current_adaptive_rate(sums)
        best = int(sums[_BLEND_INDEX])
        if best:
            weight = sums[_BLEND_WEIGHT]
            if sums[_SAMPLES] >= sums[_RECENT_REFRESH_AT]:
                other = self._blended_rate(_RECENT_FRACTIONS[best - 1])
            else:
                # that window, grown by the block observed since
                other = (sums[_RECENT_ITEMS] + sums[_BLOCK_ITEMS]) / (
                    sums[_RECENT_SECONDS] + sums[_BLOCK_SECONDS]
                )
            if weight >= 1.0 or not rate:
                rate = other
            elif other > 0.0:
                # geometric blend: a rate half-way between 5/s and 20/s is 10/s, symmetric in ratio
                rate = math.exp((1.0 - weight) * math.log(rate) + weight * math.log(other))
        if not _isfinite(rate):
            return None
        sums[_RATE] = rate
        return rate

    def eta(self, total: int) -> float | None:
        """Seconds until ``total`` items are complete, at the current rate.

        Args:
            total: the item count at which the work is complete.

        Where the time per item has been drifting steadily and saying so has predicted this job's
        progress better than the rate alone, the drift is extrapolated over the remaining items; and where
        the pace has switched regime several times, the run's mean rate is blended in for a horizon that
        spans many regimes. So the ETA is then not quite ``(total - done) / rate()``.

        Returns:
            ``0.0`` once ``done >= total``; ``None`` while the rate is unknown or zero.
        """
        if self._last_done >= total and self._sums[_START] == self._sums[_START]:
            return 0.0
        rate = self.rate()
        if not rate:
            return None
        remaining = total - self._last_done
        from_last_completion = remaining / rate
        sums = self._sums
        weight = sums[_TREND_WEIGHT]
        if weight:
            # The time per item has been changing steadily, and saying so has predicted this job's
            # progress better than the rate alone: extrapolate it over the remaining items.
            newest = int(sums[_SNAPSHOT_HEAD] + sums[_SNAPSHOT_COUNT] - 1.0) % _SNAPSHOTS
            stretch = _trend_stretch(
                rate, self._predictions[newest * _PREDICTION_WIDTH + _PREDICTORS], remaining
            )
            from_last_completion *= stretch if weight >= 1.0 else stretch**weight
        if sums[_REGIMES] >= _REGIME_MIN_COUNT and sums[_SNAPSHOT_COUNT]:
            # This job's pace has changed regime several times, each lasting D seconds on average. Over
            # a horizon of many such regimes, the work ahead will go through several, and goes at a pace
            # nearer the run's mean than today's: blend that in, the more the longer the horizon.
            # The run's mean rate as of the newest snapshot (at most a sixteenth of the run ago).
            newest = int(sums[_SNAPSHOT_HEAD] + sums[_SNAPSHOT_COUNT] - 1.0) % _SNAPSHOTS
            mean_rate = self._predictions[newest * _PREDICTION_WIDTH + 1]
            if 0.0 < mean_rate < _INF:
                weight = from_last_completion / (from_last_completion + sums[_REGIME_SCALE])
                # time at the blended rate, rate ** (1 - weight) * mean_rate ** weight
                from_last_completion *= (remaining / from_last_completion / mean_rate) ** weight
        # Work resumes from the last completion, not from the last sample; but a silence longer than
        # the usual gap between completions is a stall, and a stall does not bring the end closer.
        weight = sums[_GAP_WEIGHT]
        usual_gap = sums[_GAP_SUM] / weight if weight else 0.0
        silence = self._last_now - self._last_progress
        if silence < 0.0:
            silence = 0.0
        counted_down = min(silence, usual_gap, _MIN_ETA_SHARE * from_last_completion)
        seconds = from_last_completion - counted_down
        return seconds if _isfinite(seconds) and seconds >= 0.0 else None

    # ------------------------------------------------------------------------------------ predictors

    def _silence(self, now: float) -> float:
        """Seconds since the last sample that showed progress (or since the start)."""
        return max(now - self._last_progress, 0.0)

    def _current_adaptive_rate(self, sums: array[float]) -> float:
        """The adaptive rate: the window chosen last, grown, while the newer data agrees with it.

        The window is chosen afresh (:meth:`_adaptive_rate`) once the samples since it was chosen amount
        to a fair share of it, or as soon as the grown window's rate leaves the interval of rates its
        parts allowed, or the block observed since it was chosen is inconsistent with every rate in that
        interval (the square-root test the walk applies to each bucket).
        """
        if sums[_SAMPLES] < sums[_REFRESH_AT]:
            block_seconds, block_items = sums[_BLOCK_SECONDS], sums[_BLOCK_ITEMS]
            rate = (sums[_WINDOW_ITEMS] + block_items) / (sums[_WINDOW_SECONDS] + block_seconds)
            low, high = sums[_WINDOW_LOW], sums[_WINDOW_HIGH]
            if low <= rate <= high:
                if high == _INF or block_seconds <= 0.0:
                    return rate  # no evidence to judge the block by, or nothing new
                if low <= block_items / block_seconds <= high:
                    return rate  # the block's own rate is allowed, so some rate in its interval is
                # The block's scale: the dispersion of a bucket as wide as it. A level changed by a
                # merge since the walk holds its previous value here, as good for a check like this.
                level = int(sums[_SAMPLES] - sums[_WINDOW_FROM]).bit_length() - 1
                dispersion = sums[_DISPERSION + (level if level < _LEVELS else _LEVELS)]
                half = sums[_HALF_THRESHOLD]
                root = _sqrt(block_items / dispersion + _ANSCOMBE)
                scale = block_seconds / dispersion
                above, below = root + half, root - half
                if (above * above - _ANSCOMBE) / scale >= low and (
                    below <= 0.0 or (below * below - _ANSCOMBE) / scale <= high
                ):
                    return rate
        return self._adaptive_rate(max(self._last_now - self._last_progress, 0.0))

    def _adaptive_rate(self, age: float) -> float:
        """Rate over the longest recent window, ending at the last completion, that is one regime.

        Also remembers the window (its seconds, items and the interval of rates its parts allow) for
        :meth:`observe` to grow until newer data disagrees with it.
        """
        spans, counts, levels, sums = self._spans, self._items, self._levels, self._sums
        if sums[_DISPERSION_VALID] < _LEVELS:
            self._dispersion_at(_LEVELS - 1)
        dispersion = sums[_DISPERSION : _DISPERSION + _LEVELS + 1].tolist()
        top = _LEVELS - 1
        half = sums[_HALF_THRESHOLD]
        low, high = 0.0, _INF
        seconds, items, width = -age, 0.0, 0
        chosen = chosen_seconds = chosen_items = 0.0
        chosen_width = 0
        since_cut = self._last_progress - sums[_CUT_AT]  # NaN, which nothing exceeds, if no slowdown
        for index in range(len(spans) - 1, -1, -1):
            bucket_seconds, bucket_items, level = spans[index], counts[index], levels[index]
            if seconds + bucket_seconds > since_cut:
                # The bucket reaches back beyond the start of a detected slowdown: the window starts there,
                # where the items done are known exactly.
                items = self._last_done - sums[_CUT_DONE]
                rate = items / since_cut
                if low <= rate <= high:
                    chosen, chosen_seconds, chosen_items = rate, since_cut, items
                break
            seconds += bucket_seconds
            items += bucket_items
            width += 1 << level
            if seconds <= 0.0:
                continue  # still inside the silence after the last completion
            rate = items / seconds
            if not low <= rate <= high:
                break  # the longer window disagrees with a shorter one
            if high < _INF:
                # Does the bucket just added agree with everything newer: is its count consistent with
                # some rate in [low, high]? (The same square-root interval, around the bucket's count.)
                scale = bucket_seconds / dispersion[level]
                root = _sqrt(bucket_items * scale / bucket_seconds + _ANSCOMBE)
                if ((root + half) ** 2 - _ANSCOMBE) / scale < low:
                    break
                if root > half and ((root - half) ** 2 - _ANSCOMBE) / scale > high:
                    break
            chosen, chosen_seconds, chosen_items, chosen_width = rate, seconds, items, width
            # Narrow the interval of rates consistent with every window so far, once the window holds
            # enough evidence (items deflated by the dispersion) that a disagreement with it means
            # something: two quiet samples in a steady job are luck, not a new regime.
            window_level = width.bit_length() - 1
            scale = seconds / dispersion[window_level if window_level < top else top]
            evidence = rate * scale
            if evidence < _MIN_EVIDENCE:
                continue
            root = _sqrt(evidence + _ANSCOMBE)
            if root > half:
                bound = ((root - half) ** 2 - _ANSCOMBE) / scale
                if bound > low:
                    low = bound
            bound = ((root + half) ** 2 - _ANSCOMBE) / scale
            if bound < high:
                high = bound
        if chosen and chosen_seconds < _REGIME_SHRINK * (sums[_WINDOW_SECONDS] + sums[_BLOCK_SECONDS]):
            # The regime changed: the window that held since the last walk is more than halved.
            window_from = self._last_progress - chosen_seconds
            lasted = window_from - sums[_REGIME_FROM]
            if lasted >= _REGIME_MIN_SHARE * (self._last_progress - sums[_START]):
                regimes = sums[_REGIMES]
                sums[_REGIME_SCALE] = (sums[_REGIME_SCALE] * regimes + _REGIME_SPAN * lasted) / (
                    regimes + 1.0
                )
                sums[_REGIMES] = regimes + 1.0
                sums[_REGIME_FROM] = window_from
        sums[_WINDOW_SECONDS] = chosen_seconds
        sums[_WINDOW_ITEMS] = chosen_items
        sums[_WINDOW_LOW] = low
        sums[_WINDOW_HIGH] = high
        # The blended predictor's window grows by the same block: keep it whole as the block restarts.
        sums[_RECENT_SECONDS] += sums[_BLOCK_SECONDS]
        sums[_RECENT_ITEMS] += sums[_BLOCK_ITEMS]
        sums[_BLOCK_SECONDS] = sums[_BLOCK_ITEMS] = 0.0
        # A window with nothing in it cannot be grown; otherwise it is chosen afresh once the newer
        # samples amount to a fair share of it (a short window, right after a change, on every sample).
        samples = sums[_WINDOW_FROM] = sums[_SAMPLES]
        refresh_in = chosen_width * _REFRESH_SHARE
        sums[_REFRESH_AT] = 0.0 if not chosen else samples + (refresh_in if refresh_in > 1.0 else 1.0)
        return chosen

    def _blended_rate(self, fraction: float) -> float:
        """The recent rate (see :meth:`_recent_rates`) for the blended predictor, remembered to grow.

        The window of the last ``fraction`` of the run slides with the run; grown instead, it stays
        within an eighth of its length of that until it is measured afresh.
        """
        spans, counts, levels, sums = self._spans, self._items, self._levels, self._sums
        age = self._silence(self._last_now)
        want = fraction * (sum(spans) - age)
        seconds, items, width = -age, 0.0, 0
        index = len(spans) - 1
        while index >= 0 and (seconds < want or not items):
            seconds += spans[index]
            items += counts[index]
            width += 1 << levels[index]
            index -= 1
        if seconds <= 0.0:
            sums[_RECENT_REFRESH_AT] = 0.0
            return 0.0
        sums[_RECENT_SECONDS] = seconds - sums[_BLOCK_SECONDS]  # grows by the block, as it grows
        sums[_RECENT_ITEMS] = items - sums[_BLOCK_ITEMS]
        refresh_in = width * _REFRESH_SHARE
        sums[_RECENT_REFRESH_AT] = sums[_SAMPLES] + (refresh_in if refresh_in > 1.0 else 1.0)
        return items / seconds

    def _trend_slope(self, age: float) -> float:
        """How fast the time per item changes, per item: last quarter of the run against the quarter before.

        Seconds per item, per item (positive: slowing down); 0.0 while either quarter is empty.
        """
        spans, counts = self._spans, self._items
        elapsed = sum(spans) - age
        seconds, items = -age, 0.0
        index = len(spans) - 1
        walked = []
        for fraction in (_TREND_FRACTION, 2.0 * _TREND_FRACTION):
            want = fraction * elapsed
            while index >= 0 and seconds < want:
                seconds += spans[index]
                items += counts[index]
                index -= 1
            walked.append((seconds, items))
        (recent_seconds, recent_items), (both_seconds, both_items) = walked
        before_seconds, before_items = both_seconds - recent_seconds, both_items - recent_items
        if recent_seconds <= 0.0 or recent_items <= 0.0 or before_items <= 0.0:
            return 0.0
        apart = 0.5 * (recent_items + before_items)  # items between the two quarters' middles
        return (recent_seconds / recent_items - before_seconds / before_items) / apart

    def _recent_rates(self, age: float) -> list[float]:
        """Rate over roughly the last fraction of the run, ending at the last completion, per fraction.

        For each of _RECENT_FRACTIONS, in that order: the window from the newest bucket back until it
        spans that fraction of the run's recorded time and holds some items.
        """
        spans, counts = self._spans, self._items
        elapsed = sum(spans) - age
        seconds, items = -age, 0.0
        index = len(spans) - 1
        rates = []
        # Each window extends the next shorter one, so one walk serves all, shortest first.
        for fraction in reversed(_RECENT_FRACTIONS):
            want = fraction * elapsed
            while index >= 0 and (seconds < want or not items):
                seconds += spans[index]
                items += counts[index]
                index -= 1
            rates.append(items / seconds if seconds > 0.0 else 0.0)
        rates.reverse()
        return rates


def _shrunk(deviation: float, mass: float, merges: float, finer: float) -> float:
    """One level's dispersion index from its Allan sums, shrunk towards the finer level's ``finer``."""
    if mass <= 0.0:
        return finer  # no items at this scale yet (or nothing merged): nothing to learn from
    per_merge = deviation / (mass / merges)
    estimate = (per_merge + _DISPERSION_PRIOR * finer) / (merges + _DISPERSION_PRIOR)
    if estimate < _DISPERSION_FLOOR:
        return _DISPERSION_FLOOR
    return estimate if estimate < _DISPERSION_CEILING else _DISPERSION_CEILING


def _trend_stretch(rate: float, slope: float, items: float) -> float:
    """Mean time per item over the next ``items`` items over today's, the time per item changing by ``slope``.

    Today's time per item is ``1 / rate``; it changes by ``slope`` seconds per item, until it reaches
    _TREND_LIMIT times today's either way, then stays there.
    """
    if not slope or items <= 0.0:
        return 1.0
    cost = 1.0 / rate
    limit = cost * _TREND_LIMIT if slope > 0.0 else cost / _TREND_LIMIT
    reach = (limit - cost) / slope  # items until the limit (positive either way)
    if items <= reach:
        return 1.0 + 0.5 * slope * items * rate
    return (reach * 0.5 * (cost + limit) + (items - reach) * limit) / items * rate


def _trend_items(cost: float, slope: float, seconds: float) -> float:
    """Items done in ``seconds`` from a time per item of ``cost`` changing by ``slope`` per item (limited)."""
    if not slope:
        return seconds / cost
    limit = cost * _TREND_LIMIT if slope > 0.0 else cost / _TREND_LIMIT
    reach = (limit - cost) / slope
    taking = reach * 0.5 * (cost + limit)  # seconds until the limit
    if seconds <= taking:
        # solve cost * x + slope * x**2 / 2 = seconds, in the form that stays exact as slope -> 0
        return 2.0 * seconds / (cost + _sqrt(cost * cost + 2.0 * slope * seconds))
    return reach + (seconds - taking) / limit


def _log_error(predicted: float, realised: float) -> float:
    """Absolute log ratio of predicted to realised items (+1 each, so empty horizons stay finite), capped.

    Absolute rather than squared, and capped at _MAX_ERROR, so the scores rank predictors by how they do
    on typical horizons rather than by the few that no predictor could foresee.
    """
    error = abs(math.log((predicted + 1.0) / (realised + 1.0)))
    return error if error < _MAX_ERROR else _MAX_ERROR
