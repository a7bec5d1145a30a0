"""Building the wire messages of a tracker: envelope, heartbeat, progress update, and ``seq``.

Below the reporter and beside the tracker: it reads a tracker only through :class:`TrackerState`, the
one consistent read :meth:`Tracker.state` hands out. pydantic is loaded on the first message built, never
at ``import jobprogress``; the reporter builds messages with :func:`jobprogress.envelope.trusted`, which
skips validation for values the library checked itself.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Final

from ._forklock import ForkSafeLock
from ._states import MAX_COUNT, RUNNING, SUCCEEDED
from ._validate import payload_json

if TYPE_CHECKING:
    from ._tracker import TrackerState
    from .envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
    from .estimator import ThroughputEstimator

    Message = Heartbeat | ProgressUpdate

__all__ = ["MessageBuilder", "build_envelope", "models", "next_seq"]

HEARTBEAT_SKELETON_BYTES: Final = 450
"""Bytes of a heartbeat with progress besides its strings and payload, with every number at its widest."""


class _Models:
    """The pydantic message classes and enum members, loaded once (pydantic is not imported at startup)."""

    def __init__(self) -> None:
        from . import envelope

        self.trusted = envelope.trusted
        self.dump = envelope.dump_message
        self.envelope_class: type[JobProgressEnvelope] = envelope.JobProgressEnvelope
        self.heartbeat_class: type[Heartbeat] = envelope.Heartbeat
        self.update_class: type[ProgressUpdate] = envelope.ProgressUpdate
        self.statuses = {status.value: status for status in envelope.JobStatus}
        self.units = {unit.value: unit for unit in envelope.ProgressUnit}


_models: _Models | None = None


def models() -> _Models:
    """The message classes; the first call imports pydantic (do it in the configuring thread)."""
    global _models
    if _models is None:
        _models = _Models()
    return _models


_seq_lock = ForkSafeLock()  # a fork while the reporter held it must not leave the child stuck
_last_seq = 0


def next_seq(floor: int = 0) -> int:
    """A process-wide strictly increasing sequence: microseconds since the epoch, bumped past the last.

    Time-based so a restarted worker continues above its previous run; strictly increasing within the
    process even when the wall clock steps back; never below ``floor`` (a stored seq, on resume).
    """
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns() // 1000, floor + 1)
        return _last_seq


def build_envelope(
    state: TrackerState, estimator: ThroughputEstimator | None, updated_at: datetime | None
) -> JobProgressEnvelope:
    """The envelope of a tracker's ``state``, with rate and ETA from its estimator when it was sampled."""
    m = _models or models()
    status = state.status
    total = state.total
    rate = eta = None
    if estimator is not None:
        rate = estimator.rate()
        if total is not None and status == RUNNING:
            remaining = estimator.eta(total)
            if remaining is not None:
                eta = min(round(remaining), MAX_COUNT)
    if status == SUCCEEDED:
        eta = 0
    return m.trusted(
        m.envelope_class,
        {
            "items_done": min(state.done, MAX_COUNT),
            "items_total": total,
            "unit": m.units[state.unit],
            "throughput_per_sec": rate,
            "eta_seconds": eta,
            "updated_at": updated_at or datetime.now(timezone.utc),
            "payload": state.payload,
        },
    )


class MessageBuilder:
    """The messages of one tracker run: what the reporter keeps per run to build them cheaply.

    Args:
        state: The run's state at registration (ids, kind and unit do not change within a run).
        heartbeat_limit: Largest heartbeat, in bytes of JSON, that still carries the envelope.
    """

    __slots__ = (
        "fixed_bytes",
        "heartbeat_limit",
        "job_id",
        "payload_bytes",
        "payload_seen",
        "run_id",
        "seq_floor",
        "worker_id",
    )

    def __init__(self, state: TrackerState, heartbeat_limit: int) -> None:
        self.job_id = state.job_id
        self.worker_id = state.worker_id
        self.run_id = state.run_id
        self.heartbeat_limit = heartbeat_limit
        self.seq_floor = 0
        self.payload_seen: object = None
        self.payload_bytes = 0
        strings = (state.job_id, state.worker_id, state.run_id, state.kind, state.unit)
        self.fixed_bytes = sum(len(json.dumps(s, ensure_ascii=False).encode()) for s in strings if s)

    def heartbeat(
        self, state: TrackerState, progress: JobProgressEnvelope | None, stamp: datetime
    ) -> Heartbeat:
        m = _models or models()
        return m.trusted(
            m.heartbeat_class,
            {
                "v": 1,
                "job_id": self.job_id,
                "worker_id": self.worker_id,
                "run_id": self.run_id,
                "seq": next_seq(self.seq_floor),
                "type": "heartbeat",
                "status": m.statuses[state.status],
                "kind": state.kind,
                "error": state.error,
                "resume": state.resume,
                "progress": progress,
                "updated_at": stamp,
            },
        )

    def messages(
        self, state: TrackerState, estimator: ThroughputEstimator | None, stamp: datetime
    ) -> list[Message]:
        """The state as one heartbeat, or a bare heartbeat and a progress update when it is too large."""
        envelope = build_envelope(state, estimator, stamp)
        heartbeat = self.heartbeat(state, envelope, stamp)
        if self._fits(heartbeat):
            return [heartbeat]
        bare = heartbeat.model_copy(update={"progress": None})
        m = _models or models()
        update = m.trusted(
            m.update_class,
            {
                "v": 1,
                "job_id": self.job_id,
                "worker_id": self.worker_id,
                "run_id": self.run_id,
                "seq": next_seq(self.seq_floor),
                "type": "progress",
                "progress": envelope,
            },
        )
        return [bare, update]

    def _fits(self, heartbeat: Heartbeat) -> bool:
        """Whether the heartbeat with its envelope stays within ``heartbeat_limit`` bytes of JSON."""
        payload = heartbeat.progress.payload if heartbeat.progress is not None else None
        if payload is not self.payload_seen:
            self.payload_seen = payload
            self.payload_bytes = len(payload_json(payload).encode()) if payload is not None else 0
        error_bytes = len(json.dumps(heartbeat.error, ensure_ascii=False).encode()) if heartbeat.error else 0
        bound = HEARTBEAT_SKELETON_BYTES + self.fixed_bytes + self.payload_bytes + error_bytes
        if bound <= self.heartbeat_limit:
            return True
        m = _models or models()
        return len(m.dump(heartbeat).encode()) <= self.heartbeat_limit  # serializes under the fork gate
