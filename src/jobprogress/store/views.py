"""What the read side returns: one :class:`JobView` per job, with a :class:`WorkerView` per worker.

Aggregation rules (DESIGN §6): done = SUM(done); total = SUM(total) when every worker reports one;
throughput = SUM over live workers; updated_at = MAX. Different units are never
summed: the job's ``unit``, ``done`` and ``total`` are then None. Job status: ``failed`` if any worker
failed, else ``running`` if any runs, else ``cancelled`` if any was cancelled, else ``succeeded``.
Liveness is judged on the store's clock and applies to running workers only: ``lost`` = no message for
``stall_after`` seconds; ``stalled`` = alive but no progress for ``stall_after``. A job is ``lost`` when
all its running workers are lost, and ``stalled`` when all are stalled or lost and at least one is
stalled. Job-level ``kind`` is the workers' kind, ``error`` the most recently failed worker's,
``payload`` the most recently updated worker's.

ETA (the rule in full: :mod:`jobprogress.store._eta`): when every running worker reports a total of its
own (a sharded job: a Celery group, ``client.map``, a ``Pool.map`` over shards), the job ends when its
last shard ends, so ``eta_seconds`` is the largest remaining time over the running workers whose shard
is unfinished (``done < total``): each one's own ``eta_seconds`` when it sent one, else its remaining
work over its own rate. A shard that finishes early leaves that maximum without lowering it. While an
unfinished shard's worker is lost or stalled the job has no ETA and ``eta_reason`` says why
(``"waiting on a lost worker"``, ``"waiting on a stalled worker"``); while one has no rate yet there is
no ETA and no reason. When some running worker reports no total of its own (workers share one queue)
the ETA is the job's remaining work over its summed live rate, as before. No ETA across mixed units.

A view covers one attempt of its job: the rows whose run belongs to it (see the user guide, "Attempts").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from jobprogress._states import STATUSES, job_state

__all__ = ["JOB_STATUSES", "JobView", "WorkerView"]

JOB_STATUSES = STATUSES
"""Stored statuses; ``stalled`` and ``lost`` are judgements shown beside a running status."""


class WorkerView(BaseModel):
    """One stored row: the state of one job on one worker."""

    # Fields with defaults (attempt) are still in every serialized view: the JSON schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    worker_id: str
    kind: str | None
    unit: str | None
    done: int | None
    total: int | None
    throughput: float | None
    eta_seconds: int | None
    status: str
    stalled: bool
    lost: bool
    updated_at: datetime | None
    """Worker clock, as the worker stamped its last message."""
    error: str | None
    payload: dict[str, Any] | None
    run_id: str | None
    seq: int | None
    started_at: datetime | None
    """Store clock: when the current run was first seen."""
    progressed_at: datetime | None
    """Store clock: last change of done, total or status."""
    seen_at: datetime | None
    """Store clock: last message received."""
    attempt: int = 1
    """The attempt of the job this worker's run belongs to (1, 2, …)."""


class JobView(BaseModel):
    """A job aggregated over its workers."""

    # Fields with defaults (eta_reason, attempt) are still in every serialized view: the JSON schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    job_id: str
    kind: str | None
    unit: str | None
    done: int | None
    total: int | None
    throughput: float | None
    eta_seconds: int | None
    eta_reason: str | None = None
    """Why ``eta_seconds`` is None when a worker is the cause: ``"waiting on a lost worker"`` or
    ``"waiting on a stalled worker"`` (an unfinished shard's worker); None otherwise."""
    status: str
    stalled: bool
    lost: bool
    updated_at: datetime | None
    error: str | None
    payload: dict[str, Any] | None
    workers: list[WorkerView]
    attempt: int = 1
    """The attempt these workers and sums are of: the job's newest (:meth:`ProgressStore.attempts`
    reads the older ones)."""

    @property
    def state(self) -> str:
        """The word a view shows: ``lost`` or ``stalled`` for a running job judged so, else the status."""
        return job_state(self.status, stalled=self.stalled, lost=self.lost)
