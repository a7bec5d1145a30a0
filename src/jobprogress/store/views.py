"""What the read side returns: one :class:`JobView` per job, with a :class:`WorkerView` per worker.

Aggregation rules (DESIGN §6): done = SUM(done); total = SUM(total) when every worker reports one;
throughput = SUM over live workers; ETA from those; updated_at = MAX. Different units are never
summed: the job's ``unit``, ``done`` and ``total`` are then None. Job status: ``failed`` if any worker
failed, else ``running`` if any runs, else ``cancelled`` if any was cancelled, else ``succeeded``.
Liveness is judged on the store's clock and applies to running workers only: ``lost`` = no message for
``stall_after`` seconds; ``stalled`` = alive but no progress for ``stall_after``. A job is ``lost`` when
all its running workers are lost, and ``stalled`` when all are stalled or lost and at least one is
stalled. Job-level ``kind`` is the workers' kind, ``error`` the most recently failed worker's,
``payload`` the most recently updated worker's.

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

    # Fields with defaults (attempt) are still in every serialized view: the JSON schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    job_id: str
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
