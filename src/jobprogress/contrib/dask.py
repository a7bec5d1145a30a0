"""Dask integration: a worker plugin that configures jobprogress on every worker, a row per task.

The ``dask`` extra (``pip install 'jobprogress-sdk[dask]'``)::

    from distributed import Client
    import jobprogress as jp
    from jobprogress.contrib.dask import JobprogressPlugin

    def scan_shard(shard):
        with jp.track(job="scan-2024-06-01", unit="files", total=100, kind="scan") as tracker:
            ...

    client = Client(cluster)
    client.register_plugin(JobprogressPlugin(sinks=["postgresql+psycopg://..."]))
    client.gather(client.map(scan_shard, range(6)))

The plugin configures every worker, also those that join later, with the worker id the Dask worker's
name, and flushes when the worker closes. A tracker started inside a task reports on a row of its own,
``<worker name>:<pid>:<task key>``, and joins its job's newest attempt (as ``resume=True`` does, without
reading stored progress), so the tasks of one ``client.map`` show as one job however they interleave.
Give each run of a fan-out a job id of its own: a job id used again joins the attempt still shown.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin
from distributed.utils import thread_state  # type: ignore[attr-defined]  # public, not re-exported
from distributed.worker import get_worker

import jobprogress as jp

from .. import _runtime, _scope
from .._states import MAX_ID_LENGTH

if TYPE_CHECKING:
    from collections.abc import Sequence

    from distributed import Worker

__all__ = ["JobprogressPlugin"]


class JobprogressPlugin(WorkerPlugin):
    """Configures jobprogress on every Dask worker: ``client.register_plugin(JobprogressPlugin(...))``.

    Args:
        sinks: Sink URLs every worker delivers to (as :func:`jobprogress.configure`).
        **configure_kwargs: Any other :func:`jobprogress.configure` argument (``interval``, ...);
            ``worker_id`` defaults to the Dask worker's name.
    """

    name = "jobprogress"

    def __init__(self, sinks: Sequence[str] | str | None = None, **configure_kwargs: Any) -> None:
        self.sinks = sinks
        self.configure_kwargs = configure_kwargs

    def setup(self, worker: Worker) -> None:
        arguments = {"worker_id": _worker_name(worker), **self.configure_kwargs}
        jp.configure(sinks=self.sinks, **arguments)
        _scope.add_provider(_task_scope)

    def teardown(self, worker: Worker) -> None:
        _runtime.flush(_runtime.settings().exit_timeout)


def _worker_name(worker: Worker) -> str:
    return str(worker.name if worker.name is not None else worker.address)


def _task_scope() -> _scope.TaskScope | None:
    """The running task's scope, read in the thread that runs it (distributed's thread state)."""
    key = getattr(thread_state, "key", None)
    if key is None:
        return None
    try:
        worker = get_worker()
    except ValueError:
        return None
    worker_id = f"{_worker_name(worker)}:{os.getpid()}:{key}"
    if len(worker_id) > MAX_ID_LENGTH:
        worker_id = worker_id[:MAX_ID_LENGTH]
    return _scope.TaskScope(worker_id=worker_id, join=True)
