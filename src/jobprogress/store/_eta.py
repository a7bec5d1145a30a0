"""A job's ETA from its workers' rows: the last shard's end for a sharded job, else remaining over rate.

The rule (the Python fold calls :func:`job_eta`; the SQL read side computes the same):

*Shards.* Only workers whose status is ``running`` are shards in progress; a succeeded, failed or
cancelled worker is not. A job is **sharded** when every running worker reports a total of its own
(``total IS NOT NULL`` on each running row; a job with no running worker counts as sharded too, and
there the rule gives what the shared-queue rule gives). A running shard is **unfinished** while
``COALESCE(done, 0) < total``.

*Sharded job.* The job ends when its last shard ends, so, over the unfinished shards, in this order:

1. any unfinished shard whose worker is ``lost`` → ETA None, reason ``"waiting on a lost worker"``;
2. else any whose worker is ``stalled`` → None, reason ``"waiting on a stalled worker"``;
3. else each unfinished shard's remaining time is its worker's own ``eta_seconds`` when it sent one,
   else ``(total - done) / throughput`` when its ``throughput`` is positive; a shard with neither has
   no rate yet → ETA None, reason None (the job has not measured all its shards yet: no ETA, as when a
   single worker has no rate, and nothing needs attention);
4. else ETA = ``CEIL(MAX(remaining time))`` over the unfinished shards, None (no reason) when that is
   beyond :data:`~jobprogress._states.MAX_COUNT` seconds.

With no unfinished shard: 0 when the job's remaining work (``SUM(total) - SUM(done)``, at least 0, over
all the job's workers) is 0, else None (no running worker will do what is left, or the job has no
total). A shard that finishes early leaves the MAX without lowering it: the ETA never jumps earlier
because a fast worker is done.

*Shared queue* (some running worker reports no total of its own): today's rule, the job's remaining
work over its ``throughput`` (the sum of the live, not stalled, workers' rates): 0 when nothing
remains, else ``CEIL(remaining / throughput)`` when the throughput is positive and the result is at
most ``MAX_COUNT``, else None; the reason is always None. (A job's total is ``SUM(total)`` only when
every worker reports one, so the store's own views reach this branch with no total and show no ETA, as
before; the branch serves a caller that knows the job's total otherwise.)

A worker's ``eta_seconds`` is taken as it sent it (the age of its last message is not subtracted), and
``done``, ``total``, ``throughput`` are those of its row: the same staleness as the rates of the
shared-queue rule.

*Mixed units* (the caller's case): no remaining work and no ETA, reason None, whatever the shards say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from jobprogress._states import MAX_COUNT, RUNNING
from jobprogress.store.views import WorkerView

__all__ = ["LOST_REASON", "STALLED_REASON", "job_eta"]

LOST_REASON: Final = "waiting on a lost worker"
"""Why a sharded job has no ETA: an unfinished shard's worker went silent."""
STALLED_REASON: Final = "waiting on a stalled worker"
"""Why a sharded job has no ETA: an unfinished shard's worker is alive but makes no progress."""

_MAX_ETA: Final = float(MAX_COUNT)


def _shared_queue(remaining: int | None, throughput: float | None) -> int | None:
    if remaining is None:
        return None
    if remaining == 0:
        return 0
    if throughput:
        seconds = remaining / throughput  # a tiny rate makes this inf, or too big to count
        return math.ceil(seconds) if seconds <= _MAX_ETA else None
    return None


def job_eta(
    workers: Sequence[WorkerView], remaining: int | None, throughput: float | None
) -> tuple[int | None, str | None]:
    """The job's ETA in seconds and, when it has none because of a worker, why (module docstring).

    Args:
        workers: The job's worker rows (one attempt), with the store's ``lost`` and ``stalled`` flags.
        remaining: The job's remaining work, ``max(SUM(total) - SUM(done), 0)``; None when the job has
            no total or no done, or its workers use different units.
        throughput: The job's rate, the sum of its live workers' rates (None when unknown).

    Returns:
        ``(eta_seconds, eta_reason)``: the reason is :data:`LOST_REASON` or :data:`STALLED_REASON` when
        an unfinished shard waits on such a worker (the ETA is then None), else None.
    """
    slowest = 0.0
    unfinished = lost = stalled = no_rate = False
    for worker in workers:
        # Read through __dict__ (the view's fields, all present): the whole Jobs list folds tens of
        # thousands of workers, and this halves the cost of a pass over them.
        row = worker.__dict__
        if row["status"] != RUNNING:
            continue
        total = row["total"]
        if total is None:
            return _shared_queue(remaining, throughput), None  # not every running worker owns a shard
        left = total - (row["done"] or 0)
        if left <= 0:
            continue  # a finished shard: it no longer bounds the job's end
        unfinished = True
        if row["lost"]:
            lost = True
        elif row["stalled"]:
            stalled = True
        elif (own := row["eta_seconds"]) is not None:
            if own > slowest:
                slowest = own
        elif rate := row["throughput"]:
            seconds = left / rate  # inf when the rate is tiny: no ETA below
            if seconds > slowest:
                slowest = seconds
        else:
            no_rate = True
    if not unfinished:
        return (0 if remaining == 0 else None), None
    if lost:
        return None, LOST_REASON
    if stalled:
        return None, STALLED_REASON
    if no_rate or slowest > _MAX_ETA:
        return None, None
    return math.ceil(slowest), None
