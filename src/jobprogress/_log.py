"""The library's logger, and warnings that are logged once per process per kind."""

from __future__ import annotations

import logging
import re

__all__ = ["logger", "redact_url", "warn_once"]

logger = logging.getLogger("jobprogress")

_PASSWORD = re.compile(r"^(?P<head>[^:/?#]+://[^:/@?#]*:)[^@/?#]*(?P<tail>@)")

_warned: set[object] = set()


def warn_once(
    kind: object, text: str, *args: object, seen: set[object] | None = None, level: int = logging.WARNING
) -> None:
    """Log ``text`` at ``level`` (a warning) the first time ``kind`` comes up, at debug level after.

    Once per process, or once per owner of ``seen`` (a mailbox warns once per kind of failure of its sink).
    """
    seen = _warned if seen is None else seen
    if kind in seen:
        logger.debug(text, *args)
        return
    seen.add(kind)
    logger.log(level, text, *args)


def reset() -> None:
    """Forget which warnings were logged (``jobprogress.testing.reset``)."""
    _warned.clear()


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit to print in a message or a log."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", url)
