"""The otel:// sink against the OpenTelemetry SDK: real metric points read by an in-memory reader."""

from __future__ import annotations

import logging
import math

import pytest
from jobprogress.errors import ConfigurationError, SinkError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from jobprogress_otel import OtelSink, _sink
from jobprogress_otel._sink import INSTRUMENT_NAMES
from otel_helpers import Point, collect, envelope, heartbeat, update

DONE, TOTAL, RATE, ETA = INSTRUMENT_NAMES


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def by_job(points: list[Point]) -> dict[tuple[str, str], Point]:
    keyed = {(p.attributes["job_id"], p.attributes["worker_id"]): p for p in points}
    assert len(keyed) == len(points), f"two points for one (job, worker): {points}"
    return keyed


def test_instrument_names_are_the_documented_ones() -> None:
    assert INSTRUMENT_NAMES == (
        "jobprogress.items_done",
        "jobprogress.items_total",
        "jobprogress.throughput",
        "jobprogress.eta_seconds",
    )


def test_heartbeat_becomes_four_gauges_with_every_attribute(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("scan-42", 1, progress=envelope(5, 20, rate=2.5, eta=6))])

    points = collect(reader)

    attributes = {
        "job_id": "scan-42",
        "worker_id": "w1",
        "kind": "scan",
        "unit": "files",
        "status": "running",
    }
    assert points == {
        DONE: [Point(5, attributes)],
        TOTAL: [Point(20, attributes)],
        RATE: [Point(2.5, attributes)],
        ETA: [Point(6, attributes)],
    }


def test_unknown_values_give_no_point_and_unknown_kind_no_attribute(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    # A progress update alone (its heartbeat did not fit or is still coming): the job is running.
    sink.send([update("parse-7", 3, envelope(41, unit="rows"))])

    points = collect(reader)

    assert points == {
        DONE: [Point(41, {"job_id": "parse-7", "worker_id": "w1", "unit": "rows", "status": "running"})]
    }


def test_heartbeat_without_progress_reports_nothing_until_progress_is_known(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("bt-9", 1, kind="backtest")])
    assert collect(reader) == {}

    sink.send([update("bt-9", 2, envelope(7, unit="iterations"))])
    (point,) = collect(reader)[DONE]
    assert point == Point(
        7,
        {"job_id": "bt-9", "worker_id": "w1", "kind": "backtest", "unit": "iterations", "status": "running"},
    )


def test_running_job_is_reported_at_every_collection_even_when_idle(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("scan-1", 1, progress=envelope(3, 10))])

    for _ in range(3):
        assert [p.value for p in collect(reader)[DONE]] == [3]
    assert sink.job_count == 1


def test_finished_job_is_reported_once_with_final_status_then_forgotten(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("scan-1", 1, progress=envelope(3, 10))])
    collect(reader)
    sink.send([heartbeat("scan-1", 2, "failed", envelope(4, 10))])

    points = collect(reader)

    for name in (DONE, TOTAL):
        (point,) = points[name]
        assert point.attributes["status"] == "failed"
    assert points[DONE][0].value == 4
    assert sink.job_count == 0
    assert collect(reader) == {}


def test_final_state_split_in_two_messages_lands_in_either_order(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("a", 1, progress=envelope(1, 9)), heartbeat("b", 1, progress=envelope(1, 9))])
    # Job a: the progress update (higher seq) arrives before the status heartbeat; job b the other way.
    sink.send([update("a", 11, envelope(9, 9)), heartbeat("a", 10, "succeeded")])
    sink.send([heartbeat("b", 10, "succeeded"), update("b", 11, envelope(9, 9))])

    done = by_job(collect(reader)[DONE])

    for job in ("a", "b"):
        assert done[job, "w1"].value == 9
        assert done[job, "w1"].attributes["status"] == "succeeded"


def test_late_half_of_a_final_state_is_reported_as_final_not_as_a_new_run(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("split", 1, progress=envelope(1, 9))])
    sink.send([heartbeat("split", 10, "succeeded")])
    collect(reader)  # reports the final status and forgets the job
    sink.send([update("split", 11, envelope(9, 9))])  # the progress half arrives after that collection

    (point,) = collect(reader)[DONE]

    assert (point.value, point.attributes["status"], point.attributes["kind"]) == (9, "succeeded", "scan")
    assert collect(reader) == {}
    sink.send([heartbeat("split", 12, progress=envelope(0, 9), run="run-2")])  # a new run is live again
    (point,) = collect(reader)[DONE]
    assert (point.value, point.attributes["status"]) == (0, "running")


def test_stale_and_duplicate_seq_change_nothing(sink: OtelSink, reader: InMemoryMetricReader) -> None:
    sink.send([heartbeat("j", 5, progress=envelope(50, 100))])
    sink.send([update("j", 4, envelope(40, 100)), heartbeat("j", 5, "failed", envelope(0, 100))])

    (point,) = collect(reader)[DONE]

    assert point.value == 50
    assert point.attributes["status"] == "running"


def test_each_worker_of_a_job_is_its_own_point(sink: OtelSink, reader: InMemoryMetricReader) -> None:
    sink.send(
        [
            heartbeat("ingest", 1, progress=envelope(10, 40), worker="host-a:1"),
            heartbeat("ingest", 1, progress=envelope(25, 40), worker="host-b:7"),
        ]
    )

    done = by_job(collect(reader)[DONE])

    assert {key: point.value for key, point in done.items()} == {
        ("ingest", "host-a:1"): 10,
        ("ingest", "host-b:7"): 25,
    }


def test_new_run_after_finish_is_live_again(sink: OtelSink, reader: InMemoryMetricReader) -> None:
    sink.send([heartbeat("nightly", 1, "succeeded", envelope(10, 10))])
    sink.send([heartbeat("nightly", 2, progress=envelope(0, 10), run="run-2")])

    for _ in range(2):
        (point,) = collect(reader)[DONE]
        assert (point.value, point.attributes["status"]) == (0, "running")


def test_keep_final_reports_the_final_state_until_its_time_is_up(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    clock = FakeClock()
    sink = OtelSink("otel://?keep_final=30", meter_provider=provider, clock=clock)
    sink.send([heartbeat("j", 1, "succeeded", envelope(8, 8))])

    assert [p.value for p in collect(reader)[DONE]] == [8]
    clock.now += 29.0
    assert [p.value for p in collect(reader)[DONE]] == [8]
    clock.now += 1.0
    # The collection after the time is up still shows it (with every gauge), then it is gone.
    points = collect(reader)
    assert [p.value for p in points[DONE]] == [8]
    assert [p.value for p in points[TOTAL]] == [8]
    assert collect(reader) == {}
    assert sink.job_count == 0
    sink.close(1.0)


def test_max_jobs_drops_the_least_recently_updated_and_warns_once(
    provider: MeterProvider, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    sink = OtelSink("otel://?max_jobs=2", meter_provider=provider)
    with caplog.at_level(logging.WARNING, logger="jobprogress_otel"):
        sink.send([heartbeat("a", 1, progress=envelope(1)), heartbeat("b", 1, progress=envelope(2))])
        sink.send([heartbeat("a", 2, progress=envelope(3))])  # a is now newer than b
        sink.send([heartbeat("c", 1, progress=envelope(4))])
        sink.send([heartbeat("d", 1, progress=envelope(5))])

    done = by_job(collect(reader)[DONE])

    assert sorted(job for job, _ in done) == ["c", "d"]
    assert sink.evicted == 2
    assert sink.job_count == 2
    warnings = [r for r in caplog.records if r.name == "jobprogress_otel"]
    assert len(warnings) == 1
    assert "max_jobs=2" in warnings[0].getMessage()
    sink.close(1.0)


def test_close_reports_held_states_once_more_then_refuses_sends(
    sink: OtelSink, reader: InMemoryMetricReader
) -> None:
    sink.send([heartbeat("long", 1, progress=envelope(6, 60))])
    assert sink.flush(1.0) is True

    sink.close(1.0)
    sink.close(1.0)  # idempotent

    (point,) = collect(reader)[DONE]
    assert (point.value, point.attributes["status"]) == (6, "running")
    assert collect(reader) == {}
    with pytest.raises(SinkError) as raised:
        sink.send([heartbeat("long", 2, progress=envelope(7, 60))])
    assert raised.value.retryable is False


def test_sinks_sharing_a_provider_are_all_reported(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    # Re-configuring creates a new sink on the same provider: its gauges must not be lost to the
    # SDK's rule that a second instrument of the same name is merged into the first.
    first = OtelSink("otel://", meter_provider=provider)
    first.send([heartbeat("old", 1, progress=envelope(1))])
    first.close(1.0)
    second = OtelSink("otel://", meter_provider=provider)
    second.send([heartbeat("new", 1, progress=envelope(2))])
    third = OtelSink("otel://", meter_provider=provider)
    third.send([heartbeat("other", 1, progress=envelope(3))])

    done = by_job(collect(reader)[DONE])

    assert {job: p.value for (job, _), p in done.items()} == {"old": 1, "new": 2, "other": 3}
    assert {job for (job, _) in by_job(collect(reader)[DONE])} == {"new", "other"}
    second.close(1.0)
    third.close(1.0)


def test_sinks_on_different_providers_do_not_mix() -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    providers = [MeterProvider(metric_readers=[r], shutdown_on_exit=False) for r in readers]
    try:
        sinks = [OtelSink("otel://", meter_provider=p) for p in providers]
        sinks[0].send([heartbeat("zero", 1, progress=envelope(0))])
        sinks[1].send([heartbeat("one", 1, progress=envelope(1))])

        assert [p.attributes["job_id"] for p in collect(readers[0])[DONE]] == ["zero"]
        assert [p.attributes["job_id"] for p in collect(readers[1])[DONE]] == ["one"]
        for sink in sinks:
            sink.close(1.0)
    finally:
        for meter_provider in providers:
            meter_provider.shutdown()


def test_non_finite_throughput_is_not_reported(sink: OtelSink, reader: InMemoryMetricReader) -> None:
    # The strict envelope refuses a non-finite rate; a message built around it must still be safe.
    sink.send([heartbeat("j", 1, progress=envelope(1).model_copy(update={"throughput_per_sec": math.inf}))])

    points = collect(reader)

    assert RATE not in points
    assert [p.value for p in points[DONE]] == [1]
    sink.close(1.0)


@pytest.mark.parametrize(
    "url",
    [
        "otel://collector:4317",
        "otel:///metrics",
        "otel://?interval=5",
        "otel://?max_jobs=0",
        "otel://?max_jobs=many",
        "otel://?keep_final=-1",
        "otel://?keep_final=nan",
        "stdout://",
    ],
)
def test_bad_urls_are_configuration_errors(url: str, provider: MeterProvider) -> None:
    with pytest.raises(ConfigurationError):
        OtelSink(url, meter_provider=provider)


def test_url_options_are_read(provider: MeterProvider) -> None:
    sink = OtelSink("otel://?max_jobs=5&keep_final=2.5", meter_provider=provider)
    assert (sink.max_jobs, sink.keep_final) == (5, 2.5)
    sink.close(1.0)


def test_a_forked_child_does_not_report_the_parents_jobs(
    provider: MeterProvider, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = OtelSink("otel://", meter_provider=provider)
    parent.send([heartbeat("parent-job", 1, progress=envelope(1))])
    monkeypatch.setattr(_sink.os, "getpid", lambda: -1)  # what os.getpid() says after fork()
    child = OtelSink("otel://", meter_provider=provider)  # jobprogress opens new sinks in a child
    child.send([heartbeat("child-job", 1, progress=envelope(2))])

    assert [p.attributes["job_id"] for p in collect(reader)[DONE]] == ["child-job"]
    child.close(1.0)
