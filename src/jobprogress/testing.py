"""Test helpers for code that uses jobprogress: capture messages in memory, synchronously.

::

    from jobprogress.testing import capture_progress

    def test_scan():
        with capture_progress() as capture:
            scan_all(paths)          # code under test uses jp.track(...)
            capture.flush()          # also send progress not yet due
        assert capture.final("scan-42").status == "succeeded"

With pytest, the ``progress_capture`` fixture yields the same capture. Delivery is synchronous: a
tracker's start and finish are in ``capture.messages`` as soon as the call returns, with no sleeps.
Pass a :class:`FakeClock` to drive throttling, keepalives and rates deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate
    from .hookspecs import RegisterSink, SinkFactory

    Message = Heartbeat | ProgressUpdate

__all__ = ["FakeClock", "ProgressCapture", "capture_progress", "registered_sink", "reset"]


class FakeClock:
    """A monotonic clock that moves only when told to: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds})")
        self.now += seconds


class ProgressCapture:
    """Messages delivered while capturing, in delivery order, with helpers to pick them out."""

    def __init__(self, clock: FakeClock | None) -> None:
        self.messages: list[Message] = []
        self.clock = clock

    def flush(self) -> None:
        """Sample every live tracker now and deliver what changed, regardless of ``interval``."""
        from . import _runtime

        _runtime.flush(0.0)

    def tick(self, seconds: float = 0.0) -> None:
        """Advance the fake clock by ``seconds`` and run one reporter pass (throttle and keepalive apply)."""
        from . import _runtime

        if seconds:
            if self.clock is None:
                raise TypeError("tick(seconds) needs capture_progress(clock=FakeClock())")
            self.clock.advance(seconds)
        reporter = _runtime.reporter()
        reporter.run_pass()
        for mailbox in reporter.mailboxes:
            mailbox.wait_empty(0.0)

    def for_job(self, job_id: str) -> list[Message]:
        """Messages of one job, in delivery order."""
        return [message for message in self.messages if message.job_id == job_id]

    def heartbeats(self, job_id: str | None = None) -> list[Heartbeat]:
        from .envelope import Heartbeat

        return [m for m in self.messages if isinstance(m, Heartbeat) and job_id in (None, m.job_id)]

    def progress(self, job_id: str) -> list[JobProgressEnvelope]:
        """Every envelope delivered for the job, inside heartbeats or progress updates."""
        return [m.progress for m in self.for_job(job_id) if m.progress is not None]

    def last_progress(self, job_id: str) -> JobProgressEnvelope:
        envelopes = self.progress(job_id)
        if not envelopes:
            raise LookupError(f"no progress captured for job {job_id!r}")
        return envelopes[-1]

    def statuses(self, job_id: str) -> list[str]:
        """The status of each heartbeat of the job, in order."""
        return [m.status.value for m in self.heartbeats(job_id)]

    def final(self, job_id: str) -> Heartbeat:
        """The last heartbeat of the job (its final state once the job ended)."""
        beats = self.heartbeats(job_id)
        if not beats:
            raise LookupError(f"no heartbeat captured for job {job_id!r}")
        return beats[-1]

    def job_ids(self) -> list[str]:
        return list(dict.fromkeys(message.job_id for message in self.messages))

    def clear(self) -> None:
        self.messages.clear()


@contextmanager
def capture_progress(*, clock: FakeClock | None = None) -> Iterator[ProgressCapture]:
    """Route every tracker's messages to memory, delivered synchronously, for the block's duration.

    The configured sinks are set aside meanwhile and restored afterwards.
    """
    from . import _runtime
    from ._reporter import Reporter
    from .sinks.memory import MemorySink

    capture = ProgressCapture(clock)
    sink = MemorySink()
    sink.messages = capture.messages
    monotonic = clock if clock is not None else time.monotonic
    epoch = time.time() - monotonic()
    reporter = Reporter(
        _runtime.settings(),
        [("capture", sink)],
        clock=monotonic,
        wallclock=lambda: epoch + monotonic(),
        threaded=False,
    )
    with _runtime.use_reporter(reporter):
        yield capture


class _SinkPlugin:
    def __init__(self, scheme: str, factory: SinkFactory) -> None:
        self.scheme = scheme
        self.factory = factory

    @hookimpl
    def jobprogress_register_sinks(self, register: RegisterSink) -> None:
        register(self.scheme, self.factory)


@contextmanager
def registered_sink(scheme: str, factory: SinkFactory) -> Iterator[None]:
    """Make ``scheme://`` URLs resolve to ``factory`` for the block, as a plugin would (tests of sinks).

    ::

        with registered_sink("flaky", FlakySink):
            jp.configure(sinks=["flaky://"])
    """
    from . import _plugins

    plugin = _SinkPlugin(scheme, factory)
    _plugins.add_plugin(plugin)
    try:
        yield
    finally:
        _plugins.remove_plugin(plugin)


def reset(timeout: float = 1.0) -> None:
    """Put jobprogress back as a fresh process has it (as structlog's ``reset_defaults``), between tests.

    Shuts the reporter down (bounded by ``timeout``), forgets the configuration (the next use reads
    ``JOBPROGRESS_*`` again), the loaded plugins, the warnings already logged once and the payload drop
    count. Tests that configure jobprogress call it before and after each test.
    """
    from . import _log, _plugins, _runtime

    _runtime.reset(timeout)
    _plugins.reset()
    _log.reset()
