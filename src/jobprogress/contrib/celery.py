"""Celery integration: one job per group (or task), one worker row per task, finals delivered per task.

``install(app)`` connects Celery's signals (the ``celery`` extra: ``pip install 'jobprogress-sdk[celery]'``)::

    from celery import Celery
    import jobprogress as jp
    from jobprogress.contrib.celery import install

    app = Celery("scans", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/0")
    jp.configure(sinks=["sqlite:///progress.db"])
    install(app)

    @app.task
    def scan_shard(shard):
        with jp.track(unit="files", total=100, kind="scan") as tracker:   # job: the group's id
            ...

Inside a task, ``track()`` without a job id takes the task's group id (a ``group`` or a chord header),
else the task id; every task is a worker row of its own (``<celery hostname>:<pid>:<task id>``), and
the tasks of one group join one attempt however they interleave. When a task ends, its trackers still
running end as the task did (succeeded; failed with the error summary; cancelled when revoked, rejected
or ignored; a retry leaves them running, and the retry reports on the same row), and the process waits,
bounded by ``exit_timeout``, for their final states to be delivered before it takes the next task.
A task terminated by ``revoke(terminate=True)`` ends cancelled through jobprogress's SIGTERM handling.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

from celery import signals

from .. import _runtime, _scope
from .._states import FINAL_STATUSES, RUNNING
from ..hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Celery, Task

    from .._tracker import Tracker
    from ..envelope import Heartbeat, ProgressUpdate

__all__ = ["PROGRESS_STATE", "RESULT_META_SINK", "install"]

PROGRESS_STATE: Final = "PROGRESS"
"""The task state celery-progress reads (``AsyncResult.state``), with ``info`` its progress meta."""
RESULT_META_SINK: Final = "celery-result-meta://"
"""The sink ``install(app, result_meta=True)`` adds in worker processes; it writes only tasks' meta."""
WORKER_HEADER: Final = "jobprogress_worker_id"
"""A retry's message carries its task's worker id, so the retry reports on the same row."""

_ENDS: Final = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": RUNNING}
"""How a task's state ends its open trackers; any other final state (REVOKED, REJECTED, IGNORED) cancels."""


@dataclass
class _Task:
    """One running task of this process: its scope, and what the result-meta sink needs to write."""

    app: Celery
    task_id: str
    scope: _scope.TaskScope
    request: Any
    result_meta: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False
    wrote: bool = False
    raced: bool = False  # a meta write may have landed after the task's result


_installed: dict[int, tuple[Celery, bool]] = {}
_tasks: dict[str, _Task] = {}  # by task id
_by_worker: dict[str, _Task] = {}  # by worker id, for the result-meta sink
_connected = False
_sigterm_pid = 0  # the process whose SIGTERM handler was chained


def install(app: Celery, *, result_meta: bool = False) -> None:
    """Connect jobprogress to ``app``'s workers; idempotent, call it where the app is defined.

    Args:
        app: The Celery application.
        result_meta: Also write celery-progress-compatible ``PROGRESS`` meta (``current``, ``total``,
            ``percent``, ``description``) to the task's result backend, readable through
            ``AsyncResult.info``; throttled like any sink (at most once per ``interval`` per task).
            ``description`` is the tracker's ``description`` payload field (``set_payload``), else "".
    """
    global _connected
    _installed[id(app)] = (app, bool(result_meta))
    if _connected:
        return
    _connected = True
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)
    signals.before_task_publish.connect(_on_publish, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_shutdown, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    _scope.add_provider(_current_scope)


def _options(task: Task) -> tuple[Celery, bool] | None:
    return _installed.get(id(task.app))


def _current_scope() -> _scope.TaskScope | None:
    if not _tasks:
        return None
    for app, _meta in _installed.values():
        task = app.current_worker_task
        if task is not None:
            entry = _tasks.get(task.request.id)
            if entry is not None:
                return entry.scope
    return None


def _on_prerun(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if sender is None or task_id is None:
        return
    options = _options(sender)
    if options is None:
        return
    app, result_meta = options
    request = sender.request
    group = getattr(request, "group", None)
    worker_id = _header(request) or f"{request.hostname or socket.gethostname()}:{os.getpid()}:{task_id}"
    # A group's tasks, and a retry, join the job's attempt however the tasks interleave in time.
    join = group is not None or bool(getattr(request, "retries", 0))
    scope = _scope.TaskScope(job_id=group or task_id, worker_id=worker_id, join=join)
    entry = _Task(app, task_id, scope, request, result_meta and _has_backend(app))
    _tasks[task_id] = entry
    _chain_sigterm()
    if entry.result_meta:
        _by_worker[worker_id] = entry
        _ensure_meta_sink()


def _has_backend(app: Celery) -> bool:
    from celery.backends.base import DisabledBackend

    return not isinstance(app.backend, DisabledBackend)


def _header(request: Any) -> str | None:
    value = getattr(request, WORKER_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(WORKER_HEADER)
    return value if isinstance(value, str) and value else None


def _on_publish(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A task publishing its own retry: the retry keeps the task's worker row."""
    if headers is None or not _tasks:
        return
    entry = _tasks.get(headers.get("id") or "")
    if entry is not None and entry.scope.worker_id is not None:
        headers[WORKER_HEADER] = entry.scope.worker_id


def _on_postrun(
    sender: Task | None = None,
    task_id: str | None = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    entry = _tasks.pop(task_id or "", None)
    if entry is None:
        return
    with entry.lock:  # no meta write starts after this; one under way has finished
        entry.ended = True
    _by_worker.pop(entry.scope.worker_id or "", None)
    ending = _ENDS.get(state or "", "cancelled")
    left_running = any(tracker.status == RUNNING for tracker in entry.scope.trackers)
    _end(entry.scope.trackers, ending, retval, state)
    if entry.scope.trackers:
        _runtime.flush(_runtime.settings().exit_timeout)
    if (
        (entry.raced or (entry.wrote and left_running))
        and sender is not None
        and state in ("SUCCESS", "FAILURE")
    ):
        # A progress write raced the task's result into the backend: store the result once more.
        sender.backend.store_result(task_id, retval, state, request=entry.request)


def _end(
    trackers: Sequence[Tracker], ending: str, retval: Any, state: str | None, *, reason: str | None = None
) -> None:
    for tracker in trackers:
        if tracker.status in FINAL_STATUSES or ending == RUNNING:
            continue  # ended by the task's own code; or a retry, which runs again on the same row
        if ending == "succeeded":
            tracker.finish()
        elif ending == "failed":
            tracker.fail(retval if isinstance(retval, (BaseException, str)) else f"task {state}")
        else:
            tracker.cancel(reason or f"task {state or 'ended'}")


def _on_worker_shutdown(**_: Any) -> None:
    """The worker (or this pool process) shuts down: cancel what still runs, deliver, bounded."""
    entries = list(_tasks.values())
    _tasks.clear()
    _by_worker.clear()
    for entry in entries:
        _end(entry.scope.trackers, "cancelled", None, None, reason="worker shutdown")
    if entries:
        _runtime.flush(_runtime.settings().exit_timeout)


def _chain_sigterm() -> None:
    """In a pool process whose SIGTERM handler is billiard's, end the open trackers first, as cancelled.

    billiard turns SIGTERM (``revoke(terminate=True)``, a pool shrinking) into ``SystemExit``, which a
    ``with`` block would report as a failure. Where SIGTERM still has its default action, jobprogress's
    own handler (installed at the first tracker start) does the same.
    """
    global _sigterm_pid
    if _sigterm_pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_pid = os.getpid()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or not _runtime.settings().handle_sigterm:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        # On a thread, bounded: the interrupted main thread may hold a lock the delivery needs.
        ending = threading.Thread(target=_terminated, name="jobprogress-celery-sigterm", daemon=True)
        ending.start()
        ending.join(_runtime.settings().exit_timeout + 0.5)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _terminated() -> None:
    try:
        for entry in list(_tasks.values()):
            _end(entry.scope.trackers, "cancelled", None, None, reason="terminated by SIGTERM")
        _runtime.flush(_runtime.settings().exit_timeout)
    except Exception:  # never a traceback from a signal
        return


# -- result meta ---------------------------------------------------------------------------------


def _ensure_meta_sink() -> None:
    """Add the result-meta sink to this process's configuration, once (keeping every other setting)."""
    from .. import _plugins

    settings = _runtime.settings()
    if RESULT_META_SINK in settings.sinks:
        return
    _plugins.add_plugin(_MetaPlugin)
    arguments = {item.name: getattr(settings, item.name) for item in fields(settings)}
    arguments["sinks"] = [*settings.sinks, RESULT_META_SINK]
    _runtime.configure(**arguments)


class _MetaPlugin:
    """Registers the ``celery-result-meta`` scheme (added in worker processes by ``install``)."""

    @staticmethod
    @hookimpl
    def jobprogress_register_sinks(register: RegisterSink) -> None:
        register(RESULT_META_SINK.split(":", 1)[0], _ResultMetaSink)


class _ResultMetaSink:
    """Writes celery-progress ``PROGRESS`` meta of running trackers to their task's result backend."""

    use_outbox = False  # meta only matters while its task runs

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        for message in messages:
            progress = getattr(message, "progress", None)
            if progress is None or getattr(message, "status", RUNNING) != RUNNING:
                continue
            entry = _by_worker.get(message.worker_id)
            if entry is None:
                continue
            self._write(entry, _meta(progress))

    @staticmethod
    def _write(entry: _Task, meta: dict[str, Any]) -> None:
        with entry.lock:
            if entry.ended:
                return
            if not any(tracker.status == RUNNING for tracker in entry.scope.trackers):
                return  # a late state of a tracker that has ended since
            entry.app.backend.store_result(entry.task_id, meta, PROGRESS_STATE, request=entry.request)
            entry.wrote = True
            if not any(tracker.status == RUNNING for tracker in entry.scope.trackers):
                entry.raced = True  # the task's code ended during the write: its result may be older

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        return None


def _meta(progress: Any) -> dict[str, Any]:
    current = int(progress.items_done)
    total = progress.items_total
    percent = round(current / total * 100, 2) if total else 0.0
    payload = progress.payload or {}
    description = payload.get("description")
    return {
        "pending": False,
        "current": current,
        "total": total if total is not None else 0,
        "percent": percent,
        "description": description if isinstance(description, str) else "",
    }
