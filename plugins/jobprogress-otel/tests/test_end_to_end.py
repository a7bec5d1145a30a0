"""jp.configure(sinks=["otel://"]) + jp.track + jp.flush, read back through the global MeterProvider."""

from __future__ import annotations

from collections.abc import Iterator

import jobprogress as jp
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_helpers import Point, collect

WORKER = "otel-e2e-worker"


@pytest.fixture(scope="module")
def global_reader() -> Iterator[InMemoryMetricReader]:
    # The global MeterProvider can be set once per process; this module is the only one that sets it.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    assert metrics.get_meter_provider() is provider, "another test set the global MeterProvider first"
    yield reader
    provider.shutdown()


@pytest.fixture
def otel_configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOBPROGRESS_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("JOBPROGRESS_DISABLED_PLUGINS", raising=False)
    jp.configure(sinks=["otel://"], worker_id=WORKER, interval=0.05, keepalive=1.0)
    yield
    jp.configure(sinks=[])
    jp.shutdown(timeout=5.0)


def points_of(reader: InMemoryMetricReader, job: str) -> dict[str, list[Point]]:
    return {
        name: [p for p in found if p.attributes["job_id"] == job]
        for name, found in collect(reader).items()
        if any(p.attributes["job_id"] == job for p in found)
    }


@pytest.mark.usefixtures("otel_configured")
def test_tracked_job_becomes_metric_points(global_reader: InMemoryMetricReader) -> None:
    with jp.track("e2e-scan", unit="files", total=5, kind="scan") as tracker:
        tracker.advance(2)
        assert jp.flush(timeout=5.0)
        running = points_of(global_reader, "e2e-scan")
        tracker.advance(3)

    assert jp.flush(timeout=5.0)
    final = points_of(global_reader, "e2e-scan")

    attributes = {"job_id": "e2e-scan", "worker_id": WORKER, "kind": "scan", "unit": "files"}
    assert running["jobprogress.items_done"] == [Point(2, {**attributes, "status": "running"})]
    assert running["jobprogress.items_total"] == [Point(5, {**attributes, "status": "running"})]
    assert final["jobprogress.items_done"] == [Point(5, {**attributes, "status": "succeeded"})]
    assert final["jobprogress.items_total"] == [Point(5, {**attributes, "status": "succeeded"})]
    # Reported once with its final state, then forgotten.
    assert points_of(global_reader, "e2e-scan") == {}


@pytest.mark.usefixtures("otel_configured")
def test_failed_job_is_reported_as_failed(global_reader: InMemoryMetricReader) -> None:
    def run() -> None:
        with jp.track("e2e-fail", unit="rows", kind="parse") as tracker:
            tracker.advance(7)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run()

    assert jp.flush(timeout=5.0)
    (point,) = points_of(global_reader, "e2e-fail")["jobprogress.items_done"]
    assert point == Point(
        7, {"job_id": "e2e-fail", "worker_id": WORKER, "kind": "parse", "unit": "rows", "status": "failed"}
    )
