"""The plugin manager: built-in sinks, entry-point plugins, env toggles, scheme -> sink factory.

Loading is lazy and idempotent: nothing here runs at import, and the manager is built once per
process the first time a sink URL is resolved.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

import pluggy

from . import hookspecs
from ._forklock import ForkSafeLock
from .errors import ConfigurationError, UnknownSchemeError

if TYPE_CHECKING:
    from .sinks import AnySink

__all__ = [
    "BUILTIN_PLUGINS",
    "add_plugin",
    "create_sink",
    "plugin_manager",
    "remove_plugin",
    "reset",
    "sink_factories",
]

BUILTIN_PLUGINS: Final = (
    "jobprogress.sinks.stdout",
    "jobprogress.sinks.memory",
    "jobprogress.sinks.sql",
    "jobprogress.sinks.http",
)
"""Modules registered as plugins before entry points; each is named by its module path."""

ENTRY_POINT_GROUP: Final = hookspecs.PROJECT_NAME

# Schemes whose plugin ships separately: named in the unknown-scheme error so users know what to install.
_SEPARATE_PLUGINS: Final = {
    "otel": "pip install jobprogress-sdk-otel (in a clone of the repository, until it is published: "
    "pip install ./plugins/jobprogress-otel)"
}

_lock = ForkSafeLock()  # built under it for tens of ms: a fork meanwhile must not leave it held
_manager: pluggy.PluginManager | None = None
_factories: dict[str, hookspecs.SinkFactory] | None = None
_added: list[object] = []


def _names(variable: str) -> set[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _build() -> tuple[pluggy.PluginManager, dict[str, hookspecs.SinkFactory]]:
    import importlib

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    disabled = _names("JOBPROGRESS_DISABLED_PLUGINS") or set()
    for name in disabled:
        manager.set_blocked(name)
    for module_name in BUILTIN_PLUGINS:
        if module_name not in disabled:
            manager.register(importlib.import_module(module_name), name=module_name)
    for plugin in _added:
        manager.register(plugin)
    wanted = _names("JOBPROGRESS_LOAD_PLUGINS")
    if wanted is None:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    else:
        for name in sorted(wanted - disabled):
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)

    factories: dict[str, hookspecs.SinkFactory] = {}

    def register(scheme: str, factory: hookspecs.SinkFactory) -> None:
        if not isinstance(scheme, str) or not scheme or not callable(factory):
            raise ConfigurationError(f"register() needs a scheme string and a factory, got {scheme!r}")
        key = scheme.lower()
        if key in factories and factories[key] is not factory:
            raise ConfigurationError(f"sink scheme {key!r} is registered by two plugins")
        factories[key] = factory

    manager.hook.jobprogress_register_sinks(register=register)
    return manager, factories


def plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, built on first use."""
    _ensure()
    assert _manager is not None
    return _manager


def sink_factories() -> dict[str, hookspecs.SinkFactory]:
    """Known schemes and their factories (a copy)."""
    return dict(_ensure())


def _ensure() -> dict[str, hookspecs.SinkFactory]:
    global _manager, _factories
    if _factories is None:
        with _lock:
            if _factories is None:
                _manager, _factories = _build()
    return _factories


def add_plugin(plugin: object) -> None:
    """Register a plugin object in this process (beside built-ins and entry points); takes effect at once."""
    with _lock:
        _added.append(plugin)
    reset()


def remove_plugin(plugin: object) -> None:
    """Undo :func:`add_plugin`."""
    with _lock:
        if plugin in _added:
            _added.remove(plugin)
    reset()


def reset() -> None:
    """Forget loaded plugins, so the next use reloads them (tests, and env toggles changed at run time)."""
    global _manager, _factories
    with _lock:
        _manager, _factories = None, None


def scheme_of(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"sink URL {url!r} has no scheme; expected a URL such as 'stdout://'")
    return url.split(":", 1)[0].lower()


def create_sink(url: str) -> AnySink:
    """Resolve ``url`` to a sink through the registered factories.

    Raises:
        UnknownSchemeError: no plugin registered the scheme (the message lists the known ones).
        MissingExtraError: the scheme's optional dependency is missing.
        ConfigurationError: the factory refused the URL.
    """
    scheme = scheme_of(url)
    factories = _ensure()
    factory = factories.get(scheme)
    if factory is None:
        raise UnknownSchemeError(url, scheme, list(factories), _SEPARATE_PLUGINS.get(scheme))
    return factory(url)
