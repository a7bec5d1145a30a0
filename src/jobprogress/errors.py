"""The exception tree of jobprogress.

Everything jobprogress raises into user code derives from one root::

    JobProgressError
    ├── ConfigurationError          bad configure() argument, JOBPROGRESS_* value or sink URL
    │   ├── UnknownSchemeError      no plugin registered the sink URL's scheme
    │   └── MissingExtraError       the scheme's optional dependency is not installed
    ├── InvalidProgressError        bad value at a tracker call (also a ValueError)
    │   └── PayloadTooLargeError    payload over ``payload_limit`` with ``on_oversize="raise"``
    ├── TrackerStateError           a call that the tracker's state does not allow
    ├── SinkError                   raised *by sinks* to tell the reporter how to retry
    └── StoreError                  the read side could not open or query a store
        └── StoreSchemaError        the store's tables could not be created (a missing schema, no rights)

Configuration errors raise at configure time, naming the offending value and the valid choices.
Delivery errors are caught by the reporter, counted and logged once per kind; they never reach the
code that calls ``advance()``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidProgressError",
    "JobProgressError",
    "MissingExtraError",
    "PayloadTooLargeError",
    "SinkError",
    "StoreError",
    "StoreSchemaError",
    "TrackerStateError",
    "UnknownSchemeError",
]


DISTRIBUTION = "jobprogress-sdk"
"""The name pip installs this project by; the import name is ``jobprogress``."""


def install_line(extra: str | None = None) -> str:
    """The pip command that installs this project (with ``extra``), as error messages print it."""
    target = DISTRIBUTION if extra is None else f"'{DISTRIBUTION}[{extra}]'"
    local = "." if extra is None else f"'.[{extra}]'"
    return f"pip install {target} (in a clone of the repository, until it is published: pip install {local})"


class JobProgressError(Exception):
    """Root of every exception jobprogress raises."""


class ConfigurationError(JobProgressError, ValueError):
    """A configuration value is invalid; the message names it and the valid choices."""


class UnknownSchemeError(ConfigurationError):
    """No sink plugin handles the URL's scheme."""

    def __init__(self, url: str, scheme: str, known: list[str], hint: str | None = None) -> None:
        self.url = url
        self.scheme = scheme
        self.known = sorted(known)
        message = f"unknown sink scheme {scheme!r} in {url!r}; known schemes: {', '.join(self.known)}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class MissingExtraError(ConfigurationError, ImportError):
    """A sink or feature needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the {missing!r} package, which is not installed; "
            f"install it with: {install_line(extra)}"
        )


class InvalidProgressError(JobProgressError, ValueError):
    """A tracker call got a value it cannot accept (negative count, NaN, NUL in a string, ...)."""


class PayloadTooLargeError(InvalidProgressError):
    """The payload serializes to more bytes than ``payload_limit`` allows."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"payload is {size} bytes as JSON, over the limit of {limit} bytes; keep payloads to small "
            "metrics, or configure(on_oversize='drop') to drop oversized payloads"
        )


class TrackerStateError(JobProgressError, RuntimeError):
    """The tracker is not in a state that allows the call (e.g. ``current()`` with none active)."""


class SinkError(JobProgressError):
    """Raised by a sink's ``send`` to tell the reporter how to treat a failed delivery.

    Any other exception from a sink counts as a retryable failure.

    Args:
        message: What went wrong; it is logged, so it must never hold a secret.
        retryable: False for failures that repeating cannot fix (HTTP 4xx other than 408/429);
            the messages are then dropped and counted.
        retry_after: Seconds the receiver asked us to wait before the next attempt.
        broken: The sink cannot work at all until something outside the process changes (its tables
            cannot be created): the reporter stops sending to it, logs the message once as an error,
            shows it as ``jp.stats()["sinks"][url]["broken"]``, and ``flush()`` returns False at once;
            the newest states go to the outbox for a later process.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        broken: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.broken = broken


class StoreError(JobProgressError):
    """A store could not be opened or read (missing database file, bad URL, unreachable server)."""


class StoreSchemaError(StoreError):
    """The store's tables could not be created: a schema that does not exist, no right to create."""
