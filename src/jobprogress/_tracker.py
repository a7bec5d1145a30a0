"""Tracker: counters, context manager / decorator / ``iter()``; the hot path.

``advance()`` only adds to a counter (a C method when the accelerator is built). Everything else —
clocks, rates, envelopes, delivery — happens in the background reporter, which samples trackers.
Status changes (start, finish, fail, cancel) are handed to the reporter at once, without waiting for
delivery: a worker running thousands of short jobs never pays a sink round trip per job.
"""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar, Token

from . import _scope
from . import _validate as v
from ._counter import CounterBase
from ._iterate import IterEnd, Probe, counted
from ._states import FINAL_STATUSES, MAX_KIND_LENGTH, RUNNING
from .errors import InvalidProgressError, PayloadTooLargeError, TrackerStateError

# Not typing.TYPE_CHECKING: importing typing (and the re, enum, functools it pulls in) would triple the
# cost of `import jobprogress`. Type checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Any, Final, TypeVar

    from .envelope import JobProgressEnvelope

    T = TypeVar("T")
    F = TypeVar("F", bound=Callable[..., Any])
    JobSpec = str | Callable[..., str] | None
    __all__ = ["Tracker", "TrackerState", "current", "track"]

PENDING: Final = "pending"

# asyncio's CancelledError and trio's Cancelled, matched by name so neither library is imported.
_CANCELLATIONS: Final = frozenset({"CancelledError", "Cancelled"})

_current: ContextVar[Tracker | None] = ContextVar("jobprogress_current", default=None)


def current() -> Tracker:
    """The innermost active tracker of this thread or asyncio task (``with``/``async with``/decorator).

    Raises:
        TrackerStateError: no tracker is active here.
    """
    tracker = _current.get()
    if tracker is None:
        raise TrackerStateError(
            "no active tracker: current() works inside a `with track(...)` block or a function "
            "decorated with @track(...)"
        )
    return tracker


class Tracker(CounterBase):
    """Progress of one job on this worker. Create it with :func:`track`.

    A tracker is a context manager, an async context manager and a decorator, and wraps iterables with
    :meth:`iter`. ``advance()`` is safe to call from many threads at once.
    """

    __slots__ = (
        "__weakref__",
        "_error",
        "_job",
        "_join",
        "_kind",
        "_payload",
        "_pid",
        "_probe",
        "_resume",
        "_run_id",
        "_status",
        "_token",
        "_total",
        "_unit",
        "_version",
        "_worker_id",
        "_worker_id_arg",
    )

    _job: JobSpec
    _probe: Probe | None

    def __init__(
        self,
        job: JobSpec = None,
        *,
        unit: str = "unknown",
        total: int | None = None,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        worker_id: str | None = None,
        resume: bool = False,
    ) -> None:
        if isinstance(job, str):
            v.check_id("job id", job)
        elif job is not None and not callable(job):
            raise InvalidProgressError(f"job must be a string, a callable or None, not {type(job).__name__}")
        self._done = 0  # the C base starts zeroed; its pure-Python twin needs it set
        self._job = job
        self._unit = v.check_unit(unit)
        self._total = v.check_count("total", total, allow_none=True)
        self._kind = None if kind is None else v.check_text("kind", kind, MAX_KIND_LENGTH)
        self._worker_id_arg = None if worker_id is None else v.check_id("worker_id", worker_id)
        self._payload = None if payload is None else self._guard_payload(payload)
        self._resume = bool(resume)
        self._join = False
        self._status = PENDING
        self._error: str | None = None
        self._run_id: str | None = None
        self._worker_id: str | None = None
        self._probe = None
        self._token: Token[Tracker | None] | None = None
        self._version = 0
        self._pid = 0

    # -- read-only state -------------------------------------------------------------------------

    @property
    def job_id(self) -> str | None:
        """The job id (None for a decorator template that has not been called yet)."""
        return self._job if isinstance(self._job, str) else None

    @property
    def worker_id(self) -> str | None:
        """The worker id of the current run (set at start)."""
        return self._worker_id if self._worker_id is not None else self._worker_id_arg

    @property
    def done(self) -> int:
        """Items done so far (including those an active ``iter()`` has completed)."""
        probe = self._probe
        if probe is None:
            return self._done
        return self._done + max(probe.handed_out() - 1, 0)

    @property
    def total(self) -> int | None:
        return self._total

    @property
    def unit(self) -> str:
        return self._unit

    @property
    def kind(self) -> str | None:
        return self._kind

    @property
    def status(self) -> str:
        """``pending`` before start, then ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self._status

    @property
    def error(self) -> str | None:
        """The bounded error summary of a failed run."""
        return self._error

    @property
    def payload(self) -> dict[str, Any] | None:
        return None if self._payload is None else dict(self._payload)

    @property
    def run_id(self) -> str | None:
        """New for every start of the tracker."""
        return self._run_id

    # -- counters --------------------------------------------------------------------------------

    def _advance_slow(self, n: object) -> None:
        count = v.check_count("advance(n)", n)
        assert count is not None
        if self._done + count > v.MAX_COUNT:
            raise InvalidProgressError(
                f"advance({count}) would take done past the largest storable count {v.MAX_COUNT} (2**63-1)"
            )
        self._done += count

    def set_done(self, n: int) -> None:
        """Set the number of items done (e.g. after a checkpoint restore)."""
        count = v.check_count("set_done(n)", n)
        assert count is not None
        probe = self._probe
        self._done = count if probe is None else count - max(probe.handed_out() - 1, 0)

    def set_total(self, n: int | None) -> None:
        """Set or clear the number of items expected. ``done > total`` is allowed and shown as such."""
        self._total = v.check_count("set_total(n)", n, allow_none=True)
        self._version += 1

    def set_payload(self, **fields: Any) -> None:
        """Merge small metrics into the payload; checked against the size limit at this call.

        Raises:
            InvalidProgressError: a key or value is not allowed.
            PayloadTooLargeError: the merged payload is over ``payload_limit`` and ``on_oversize`` is
                ``"raise"``; with ``"drop"`` the update is dropped, counted and warned about once.
        """
        merged = dict(self._payload or {})
        merged.update(fields)
        guarded = self._guard_payload(merged)
        if guarded is not None:
            self._payload = guarded
            self._version += 1

    def _guard_payload(self, payload: dict[str, Any]) -> dict[str, v.PayloadValue] | None:
        from . import _runtime

        settings = _runtime.settings()
        try:
            return v.check_payload(payload, settings.payload_limit)
        except PayloadTooLargeError:
            if settings.on_oversize == "raise":
                raise
            _runtime.count_payload_drop()
            return None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Tracker:
        """Start a run (new ``run_id``) and report it at once. Starting a running tracker does nothing.

        Raises:
            InvalidProgressError: the tracker has no job id.
        """
        if self._status == RUNNING:
            return self
        scope = _scope.current()  # the task of an engine integration (contrib.celery, contrib.dask)
        if scope is not None and self._job is None:
            self._job = scope.job_id
        if not isinstance(self._job, str):
            raise InvalidProgressError(
                "this tracker has no job id: pass track('job-id', ...) or use it as a decorator"
            )
        from . import _runtime

        runtime = _runtime.reporter()
        scoped_worker = None if scope is None else scope.worker_id
        self._worker_id = self._worker_id_arg or scoped_worker or runtime.settings.resolved_worker_id
        self._join = scope is not None and scope.join
        if self._status in FINAL_STATUSES:
            self._done = 0  # a new run counts afresh
        self._run_id = os.urandom(8).hex()
        self._error = None
        seq_floor = 0
        if self._resume:
            stored = _runtime.stored_progress(self._job, self._worker_id)
            if stored is not None:
                self._done, seq_floor = stored
        self._status = RUNNING
        self._version += 1
        self._pid = os.getpid()
        runtime.register(self, seq_floor)
        if scope is not None:
            scope.adopt(self)
        return self

    def _end(self, status: str, error: str | None) -> None:
        if self._status != RUNNING:
            return
        probe = self._probe
        if probe is not None:  # a with-block around iter() ended before the loop did
            self._done += max(probe.handed_out() - 1, 0)
            self._probe = None
        self._error = error
        self._status = status
        self._version += 1
        if self._pid != os.getpid():
            # A forked child's copy of a run its parent started (say, a with-block left by sys.exit in
            # the child): the parent reports that (job, worker); the child sending it would overwrite
            # the parent's state with the child's counts.
            return
        from . import _runtime

        _runtime.reporter().notify(self)

    def finish(self) -> None:
        """Mark the run ``succeeded`` and report it at once (without waiting for delivery)."""
        self._end("succeeded", None)

    def fail(self, exc_or_message: BaseException | str) -> None:
        """Mark the run ``failed`` with a bounded error summary (type and message, at most 256 chars)."""
        self._end("failed", v.error_summary(exc_or_message))

    def cancel(self, reason: str | None = None) -> None:
        """Mark the run ``cancelled``."""
        self._end("cancelled", None if reason is None else v.error_summary(reason))

    def _exit(self, exc: BaseException | None) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than it was entered in
                _current.set(None)
        if exc is None:
            self.finish()
        elif isinstance(exc, (KeyboardInterrupt, GeneratorExit)) or type(exc).__name__ in _CANCELLATIONS:
            self.cancel(type(exc).__name__)
        elif isinstance(exc, SystemExit) and exc.code in (None, 0):
            self.finish()
        else:
            self.fail(exc)

    def __enter__(self) -> Tracker:
        if self._token is not None:
            raise TrackerStateError(f"tracker {self.job_id!r} is already entered; create one per block")
        self.start()
        self._token = _current.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    # -- iterables -------------------------------------------------------------------------------

    def iter(self, iterable: Iterable[T]) -> Iterator[T]:
        """Yield from ``iterable``, counting items; the total comes from ``len()`` when not given.

        A tracker that is not running is started here and finished when the iterable is exhausted
        (cancelled if the loop is abandoned). Counting costs no Python code per item.
        """
        if self._total is None:
            try:
                self.set_total(len(iterable))  # type: ignore[arg-type]
            except TypeError:
                pass
        owns = self._status != RUNNING
        if owns:
            self.start()
        previous = self._probe
        if previous is not None:  # another loop over this tracker is active: settle what it completed
            self._done += max(previous.handed_out() - 1, 0)
            self._probe = None
        core, probe = counted(iterable)
        self._probe = probe
        return itertools.chain(core, IterEnd(self, probe, owns))

    def _iter_ended(self, probe: Probe, owns: bool, *, exhausted: bool) -> None:
        """An ``iter()`` loop ended: add what it completed; finish (or cancel) a run it started."""
        if self._probe is probe:  # else the tracker or a later iter() already counted it
            handed_out = probe.handed_out()
            self._done += handed_out if exhausted else max(handed_out - 1, 0)
            self._probe = None
        if owns and self._status == RUNNING:
            if exhausted:
                self.finish()
            else:
                self.cancel()

    # -- decorator -------------------------------------------------------------------------------

    def _clone(self, job: str) -> Tracker:
        return Tracker(
            job,
            unit=self._unit,
            total=self._total,
            kind=self._kind,
            payload=self._payload,
            worker_id=self._worker_id_arg,
            resume=self._resume,
        )

    def __call__(self, func: F) -> F:
        """Decorate ``func``: each call runs in a fresh tracker whose job id comes from the arguments.

        ``job`` may be a template over the bound arguments (``"scan-{source_id}"``), a callable taking
        the same arguments, a plain string, or None (the function's qualified name).
        """
        from ._decorate import decorate

        return decorate(func, self._job, self._clone)

    # -- snapshot --------------------------------------------------------------------------------

    def snapshot(self) -> JobProgressEnvelope:
        """The current envelope: done, total, unit, throughput and ETA (when sampled), payload."""
        from . import _runtime

        return _runtime.envelope_of(self)

    def state(self) -> TrackerState:
        """One consistent read of the tracker: ids, counters, status and fields (what the reporter reads)."""
        return TrackerState(self)

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"<Tracker {self.job_id!r} {self._status} {self.done}/{total} {self._unit}>"


class TrackerState:
    """One read of a :class:`Tracker`, taken at once: what the reporter samples and builds messages from.

    ``version`` changes whenever anything but ``done`` does (total, payload, status, a new run).
    """

    __slots__ = (
        "done",
        "error",
        "job_id",
        "kind",
        "payload",
        "resume",
        "run_id",
        "status",
        "total",
        "unit",
        "version",
        "worker_id",
    )

    def __init__(self, tracker: Tracker) -> None:
        self.done = tracker.done
        self.status = tracker._status
        self.version = tracker._version
        self.total = tracker._total
        self.unit = tracker._unit
        self.kind = tracker._kind
        self.payload = tracker._payload
        self.error = tracker._error
        self.resume = tracker._resume or tracker._join  # a scope's join goes on the wire as resume does
        self.job_id = tracker.job_id or ""
        self.worker_id = tracker.worker_id or ""
        self.run_id = tracker._run_id or ""

    def __repr__(self) -> str:
        return f"<TrackerState {self.job_id!r} {self.status} {self.done}/{self.total} v{self.version}>"


def track(
    job: JobSpec = None,
    *,
    unit: str = "unknown",
    total: int | None = None,
    kind: str | None = None,
    payload: dict[str, Any] | None = None,
    worker_id: str | None = None,
    resume: bool = False,
) -> Tracker:
    """Track a job: ``with track("scan-42", unit="files", total=n) as t: ... t.advance()``.

    Args:
        job: The job id; as a decorator, a template over the call's arguments or a callable taking them.
        unit: One of files, rows, bytes, records, chunks, iterations, unknown.
        total: Items expected, if known.
        kind: Free text; the Jobs view knows scan, parse, backtest and schema_eval.
        payload: Small flat metrics (see :meth:`Tracker.set_payload`).
        worker_id: Overrides the configured worker id for this tracker.
        resume: Start ``done`` from the stored row of this (job, worker), when a configured sink is a
            store that holds one.

    Raises:
        InvalidProgressError: an argument is invalid; the message names it and the valid choices.
    """
    return Tracker(
        job, unit=unit, total=total, kind=kind, payload=payload, worker_id=worker_id, resume=resume
    )
