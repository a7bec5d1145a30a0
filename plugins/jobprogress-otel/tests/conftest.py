"""Fixtures: a private MeterProvider with an in-memory reader for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from jobprogress_otel import OtelSink


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield meter_provider
    meter_provider.shutdown()


@pytest.fixture
def sink(provider: MeterProvider) -> Iterator[OtelSink]:
    """An ``otel://`` sink recording into this test's provider; closed afterwards."""
    otel_sink = OtelSink("otel://", meter_provider=provider)
    yield otel_sink
    otel_sink.close(1.0)
