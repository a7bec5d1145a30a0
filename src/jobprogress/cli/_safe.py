"""Make strings that came from workers safe to show on a terminal (RELIABILITY rows 29 and 40).

The rules live in :mod:`jobprogress._text`, shared with the browser view; the CLI's modules import
:func:`scrub` from here.
"""

from __future__ import annotations

from jobprogress._text import scrub

__all__ = ["scrub"]
