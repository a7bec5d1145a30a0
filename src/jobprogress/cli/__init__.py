"""The ``jobprogress`` command: the Jobs view in a terminal, the collector, and the demo.

``jobprogress jobs|show|watch|serve|demo`` (see ``jobprogress --help``). Needs the ``cli`` extra
(click, rich, Textual, SQLAlchemy); without it, :func:`main` says how to install it instead of failing
with a traceback. Importing this package imports none of them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from jobprogress.errors import MissingExtraError

__all__ = ["main"]

_REQUIRED = ("click", "rich", "textual", "sqlalchemy")


def _missing_module() -> str | None:
    for name in _REQUIRED:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a broken or half-removed installation
            return name
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``jobprogress`` command line.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.
    """
    missing = _missing_module()
    if missing is not None:
        error = MissingExtraError("the jobprogress command", "cli", missing)
        print(f"jobprogress: {error}", file=sys.stderr)
        sys.exit(1)
    from ._commands import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="jobprogress")
