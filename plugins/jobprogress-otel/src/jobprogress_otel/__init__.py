"""jobprogress-otel: publishes jobprogress progress as OpenTelemetry gauges through the ``otel://`` sink.

Installed beside jobprogress, this package is found through the ``jobprogress`` entry-point group and
registers the ``otel://`` scheme::

    import jobprogress as jp

    jp.configure(sinks=["otel://"])

The sink records through the application's global MeterProvider. This module stays light: the
OpenTelemetry API is imported only when an ``otel://`` sink is created, because jobprogress loads every
installed plugin whenever it resolves any sink URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobprogress.hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from jobprogress.sinks import AnySink

    from ._sink import OtelSink

__all__ = ["OtelSink", "__version__", "jobprogress_register_sinks"]

__version__ = "0.1.0.dev0"


def _create(url: str) -> AnySink:
    from ._sink import OtelSink

    return OtelSink(url)


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    """Register ``otel://``."""
    register("otel", _create)


def __getattr__(name: str) -> Any:
    # Lazy, so that loading the plugin does not import OpenTelemetry (see the module docstring).
    if name == "OtelSink":
        from ._sink import OtelSink

        return OtelSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
