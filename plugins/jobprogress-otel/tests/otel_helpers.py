"""Helpers for the otel:// tests: collecting data points, and building wire messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from jobprogress.envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Point:
    value: float
    attributes: dict[str, str]


def collect(reader: InMemoryMetricReader) -> dict[str, list[Point]]:
    """One collection: every data point of every instrument, by instrument name."""
    found: dict[str, list[Point]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(
                    Point(point.value, dict(point.attributes or {})) for point in metric.data.data_points
                )
    return found


def envelope(
    done: int,
    total: int | None = None,
    *,
    unit: str = "files",
    rate: float | None = None,
    eta: int | None = None,
) -> JobProgressEnvelope:
    return JobProgressEnvelope(
        items_done=done,
        items_total=total,
        unit=unit,
        throughput_per_sec=rate,
        eta_seconds=eta,
        updated_at=NOW,
    )


def heartbeat(
    job: str,
    seq: int,
    status: str = "running",
    progress: JobProgressEnvelope | None = None,
    *,
    worker: str = "w1",
    kind: str | None = "scan",
    run: str = "run-1",
) -> Heartbeat:
    return Heartbeat(
        job_id=job,
        worker_id=worker,
        run_id=run,
        seq=seq,
        status=status,
        kind=kind,
        progress=progress,
        updated_at=NOW,
    )


def update(job: str, seq: int, progress: JobProgressEnvelope, *, worker: str = "w1") -> ProgressUpdate:
    return ProgressUpdate(job_id=job, worker_id=worker, run_id="run-1", seq=seq, progress=progress)
