"""jobprogress: live, durable progress for long-running jobs across many workers."""

from ._version import __version__

__all__ = ["__version__"]
