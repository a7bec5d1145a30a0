"""Task scopes: what an engine integration (Celery, Dask) tells the trackers started inside one task.

A scope gives a tracker started in it a default job id (used when ``track()`` names none), a worker id
(one row per task), and whether its run joins the job's newest attempt as a ``resume=True`` run does,
without reading stored progress: the tasks of one fan-out seldom overlap in time on a few workers,
and by the attempt rule each would otherwise begin an attempt of its own. An integration registers a
provider, asked at every tracker start; with none registered (the usual case) a start pays one check.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: keeps `import jobprogress` from loading typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from ._tracker import Tracker

    Provider = Callable[[], "TaskScope | None"]

__all__ = ["TaskScope", "add_provider", "current", "remove_provider"]


class TaskScope:
    """The task a tracker starts in: its default job id, its worker id, and attempt joining.

    Keeps the trackers started in it, so the integration can end those still running when the task
    ends (succeeded, failed, cancelled) and deliver their final states.
    """

    __slots__ = ("job_id", "join", "trackers", "worker_id")

    def __init__(
        self, *, job_id: str | None = None, worker_id: str | None = None, join: bool = False
    ) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self.join = join
        self.trackers: list[Tracker] = []

    def adopt(self, tracker: Tracker) -> None:
        """Called by a tracker's start."""
        self.trackers.append(tracker)


_providers: list[Provider] = []


def add_provider(provider: Provider) -> None:
    """Ask ``provider`` for the current scope at every tracker start (once per provider)."""
    if provider not in _providers:
        _providers.append(provider)


def remove_provider(provider: Provider) -> None:
    """Undo :func:`add_provider`."""
    if provider in _providers:
        _providers.remove(provider)


def current() -> TaskScope | None:
    """The scope of the task running here, from the first provider that knows one."""
    for provider in _providers:
        scope = provider()
        if scope is not None:
            return scope
    return None
