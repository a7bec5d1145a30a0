"""The library's logger, and warnings that are logged once per process per kind."""

from __future__ import annotations

import logging
import re

__all__ = ["logger", "redact_url", "warn_once"]

logger = logging.getLogger("jobprogress")

_PASSWORD = re.compile(r"^(?P<head>[^:/?#]+://[^:/@?#]*:)[^@/?#]*(?P<tail>@)")

_warned: set[str] = set()


def warn_once(kind: str, text: str, *args: object) -> None:
    """Log ``text`` as a warning the first time ``kind`` comes up in this process, at debug level after."""
    if kind in _warned:
        logger.debug(text, *args)
        return
    _warned.add(kind)
    logger.warning(text, *args)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit to print in a message or a log."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", url)
