"""The plugin as installed: found through the entry point, light to load, bound to the global provider."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from jobprogress.hookspecs import SinkFactory

import jobprogress_otel
from jobprogress_otel import OtelSink

TESTS = Path(__file__).parent


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=TESTS,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_entry_point_names_the_plugin_module() -> None:
    (entry_point,) = entry_points(group="jobprogress", name="otel")
    assert entry_point.value == "jobprogress_otel"
    assert entry_point.load() is jobprogress_otel


def test_hook_registers_the_otel_scheme() -> None:
    registered: dict[str, SinkFactory] = {}

    def register(scheme: str, factory: SinkFactory) -> None:
        registered[scheme] = factory

    jobprogress_otel.jobprogress_register_sinks(register)

    assert list(registered) == ["otel"]
    sink = registered["otel"]("otel://?max_jobs=3")
    assert isinstance(sink, OtelSink)
    assert sink.max_jobs == 3
    sink.close(1.0)


def test_loading_the_plugin_does_not_import_opentelemetry() -> None:
    # jobprogress loads every installed plugin whenever it resolves any sink URL.
    output = run_python(
        """
        import sys
        import jobprogress_otel
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    assert output.strip() == "[]"


def test_sink_made_before_the_application_sets_its_provider_still_reports() -> None:
    # A fresh interpreter, because the global MeterProvider can be set only once per process.
    output = run_python(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from otel_helpers import collect, envelope, heartbeat
        from jobprogress_otel import OtelSink

        early = OtelSink("otel://")  # binds to the API's proxy provider
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
        late = OtelSink("otel://")  # the real provider: must share the early sink's gauges
        early.send([heartbeat("early", 1, progress=envelope(1, 2))])
        late.send([heartbeat("late", 1, progress=envelope(3, 4))])
        points = collect(reader)
        print(json.dumps({name: sorted((p.attributes["job_id"], p.value) for p in found)
                          for name, found in points.items()}))
        """
    )
    points = json.loads(output)
    assert points["jobprogress.items_done"] == [["early", 1], ["late", 3]]
    assert points["jobprogress.items_total"] == [["early", 2], ["late", 4]]
