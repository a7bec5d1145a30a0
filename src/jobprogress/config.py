"""Settings from ``configure()`` arguments and ``JOBPROGRESS_*`` environment variables, validated once.

Every ``configure()`` argument can also come from ``JOBPROGRESS_<NAME>`` (upper case); an explicit
argument wins over the environment, and the environment over the default. The environment is read
when configuration is resolved (at ``configure()``, or lazily at the first tracker start), never at
import time. ``configure()`` raises for a bad value; resolved lazily, a bad environment value is logged
and its default used instead (see ``_runtime.settings``).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal, get_args

from ._validate import PAYLOAD_LIMIT_CEILING, check_id
from .errors import ConfigurationError, InvalidProgressError

__all__ = [
    "ENV_PREFIX",
    "EnvErrorHandler",
    "OnOversize",
    "Settings",
    "default_worker_id",
    "resolve_settings",
]

ENV_PREFIX: Final = "JOBPROGRESS_"
OnOversize = Literal["raise", "drop"]


def default_worker_id() -> str:
    """``<hostname>:<pid>``, computed afresh so a forked child gets its own."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of the process. Build it with :func:`resolve_settings`."""

    sinks: tuple[str, ...] = ()
    """Sink URLs; env ``JOBPROGRESS_SINKS`` is comma-separated."""
    worker_id: str | None = None
    """Worker id for trackers that do not name one; None means ``<hostname>:<pid>``."""
    interval: float = 1.0
    """Minimum seconds between progress sends per job (start, status change and finish go at once)."""
    keepalive: float = 10.0
    """A heartbeat without progress after this many seconds without a change."""
    payload_limit: int = 1024
    """Largest payload, in bytes of JSON (hard ceiling 4096)."""
    on_oversize: OnOversize = "raise"
    """``"raise"`` PayloadTooLargeError at the call, or ``"drop"`` the payload, count it and warn once."""
    heartbeat_limit: int = 512
    """Largest heartbeat that still carries the envelope; above it a ProgressUpdate carries it."""
    exit_timeout: float = 2.0
    """Longest wait for delivery at interpreter or multiprocessing-child exit."""
    max_batch: int = 500
    """Most messages handed to a sink in one ``send``."""
    outbox: str | None = None
    """Directory of the on-disk outbox for states not delivered by a deadline; None: the user cache
    directory (``~/.cache/jobprogress/outbox`` on Linux); ``""``: no outbox."""
    handle_sigterm: bool = True
    """Deliver or spool within ``exit_timeout`` on SIGTERM, where its handler is the default one."""

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id if self.worker_id is not None else default_worker_id()


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an integer from {low} to {high}, got {value!r}") from None
    if isinstance(value, (bool, float)) or not low <= number <= high:
        raise ConfigurationError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return number


def _sinks(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise ConfigurationError(
            f"{name} must be a list of sink URLs or a comma-separated string, got {value!r}"
        )
    urls = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{name} entries must be URL strings, got {item!r}")
        if item.strip():
            urls.append(item.strip())
    return tuple(urls)


def _worker_id(name: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        return check_id(name, value)
    except InvalidProgressError as exc:
        raise ConfigurationError(str(exc)) from None


def _outbox(name: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or "\x00" in value:
        raise ConfigurationError(f"{name} must be a directory path, or '' for no outbox, got {value!r}")
    return value


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{name} must be true or false ({', '.join(_TRUE + _FALSE)}), got {value!r}")


def _on_oversize(name: str, value: Any) -> OnOversize:
    choices = get_args(OnOversize)
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[no-any-return]


_CHECKS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "sinks": _sinks,
    "worker_id": _worker_id,
    "interval": _positive_float,
    "keepalive": _positive_float,
    "payload_limit": lambda n, v: _int_in(n, v, 1, PAYLOAD_LIMIT_CEILING),
    "on_oversize": _on_oversize,
    "heartbeat_limit": lambda n, v: _int_in(n, v, 256, 65536),
    "exit_timeout": lambda n, v: _positive_float(n, v, allow_zero=True),
    "max_batch": lambda n, v: _int_in(n, v, 1, 1000),
    "outbox": _outbox,
    "handle_sigterm": _flag,
}
assert set(_CHECKS) == {f.name for f in fields(Settings)}

SETTING_NAMES: Final = tuple(_CHECKS)


EnvErrorHandler = Callable[[str, str, ConfigurationError], None]
"""Called with the variable, its value and the error for an environment value that is not valid."""


def resolve_settings(
    arguments: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    on_env_error: EnvErrorHandler | None = None,
) -> Settings:
    """Combine explicit ``arguments`` (None means "not given"), ``JOBPROGRESS_*`` variables and defaults.

    Args:
        arguments: Explicit values; a bad one always raises.
        environ: The environment to read; default ``os.environ``.
        on_env_error: When given, a bad environment value is handed to it and its setting keeps the
            default, instead of raising (configuration nobody asked for in code must not fail the code
            that tracks progress).

    Raises:
        ConfigurationError: naming the argument or variable and what it accepts.
    """
    environ = os.environ if environ is None else environ
    unknown = set(arguments) - set(_CHECKS)
    if unknown:
        raise ConfigurationError(
            f"unknown configure() argument(s) {', '.join(sorted(unknown))}; valid: {', '.join(SETTING_NAMES)}"
        )
    values: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        given = arguments.get(name)
        if given is not None:
            values[name] = check(name, given)
            continue
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            try:
                values[name] = check(env_name, environ[env_name])
            except ConfigurationError as exc:
                if on_env_error is None:
                    raise
                on_env_error(env_name, environ[env_name], exc)
    settings = Settings(**values)
    if settings.keepalive < settings.interval:
        error = ConfigurationError(
            f"keepalive ({settings.keepalive}) must be at least interval ({settings.interval})"
        )
        from_env = "keepalive" not in arguments and ENV_PREFIX + "KEEPALIVE" in environ
        if on_env_error is None or not from_env:
            raise error
        on_env_error(ENV_PREFIX + "KEEPALIVE", environ[ENV_PREFIX + "KEEPALIVE"], error)
        settings = replace(settings, keepalive=max(Settings.keepalive, settings.interval))
    return settings
