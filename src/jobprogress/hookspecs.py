"""Every hook of jobprogress, and the markers plugins use.

A plugin is a module or object with functions marked by :data:`hookimpl`, found either among the
built-ins or through the ``jobprogress`` entry-point group::

    from jobprogress.hookspecs import hookimpl

    @hookimpl
    def jobprogress_register_sinks(register):
        register("kafka", KafkaSink)

Hooks are synchronous and typed, and none is ever called per item: the plugin manager is set up
once, lazily, the first time a sink URL has to be resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from .sinks import AnySink

__all__ = [
    "PROJECT_NAME",
    "RegisterSink",
    "SinkFactory",
    "hookimpl",
    "hookspec",
    "jobprogress_register_sinks",
]

PROJECT_NAME = "jobprogress"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a hook specification in this module."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's implementation of a hook."""

SinkFactory = Callable[[str], "AnySink"]
"""Called with the whole sink URL string; returns a sink (see :mod:`jobprogress.sinks`)."""


class RegisterSink(Protocol):
    """The ``register`` callback handed to :func:`jobprogress_register_sinks`."""

    def __call__(self, scheme: str, factory: SinkFactory) -> None:
        """Register ``factory`` for URLs whose scheme is ``scheme`` (case-insensitive).

        Raises:
            ConfigurationError: another plugin already registered the scheme.
        """


@hookspec
def jobprogress_register_sinks(register: RegisterSink) -> None:
    """Register the sink schemes this plugin provides.

    Fires once per process, the first time jobprogress resolves a sink URL (at ``configure()``, or at
    the first tracker start when configuration comes from ``JOBPROGRESS_SINKS``). Call
    ``register("scheme", factory)`` once per scheme; the factory is called with the full URL each time
    a sink of that scheme is configured and must raise
    :class:`~jobprogress.errors.ConfigurationError` for a URL it cannot serve, or
    :class:`~jobprogress.errors.MissingExtraError` when an optional dependency is missing.
    A factory should not do I/O: connect lazily, on the first ``send``.

    Returns:
        Nothing; schemes are reported through ``register``.
    """
