"""Test sinks for the core fault tests: scripted failures, delays and hangs, and a JSON-lines file sink.

Registered as plugins through the same hook a third party uses, with the public test helper
:func:`jobprogress.testing.registered_sink`: see :func:`fault_sinks`.

* ``scripted://NAME`` - a :class:`ScriptedSink`, one per (process, NAME): a test configures the
  sink, fetches it with :func:`scripted` and scripts it (refuse, raise, sleep, hang). A forked child
  gets a fresh one, so what it records is only what the child itself sent.
* ``jsonl:///PATH`` - appends one JSON message per line to PATH with ``O_APPEND``, opened per send,
  so forked children and their parent can share one file and nothing is lost at ``os._exit``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from jobprogress._counter import CounterBase, PyCounterBase
from jobprogress._tracker import Tracker
from jobprogress.envelope import Heartbeat, ProgressUpdate, parse_message
from jobprogress.testing import registered_sink

Message = Heartbeat | ProgressUpdate


class ScriptedSink:
    """A sink whose failures a test scripts; it records every attempt and every delivered message.

    Attributes:
        errors: Exceptions raised by the next attempts, one per attempt, in order.
        always: When set, called on every attempt (after ``errors`` ran out) for an exception to raise.
        refuse: While set, every attempt raises ConnectionRefusedError.
        delay: Seconds each send takes (cut short by :meth:`release`).
        hang: Every send blocks until :meth:`release`.
        record: False keeps only counts (``sends``), so the sink's own memory does not grow.
        clock: What attempt times are read from (a FakeClock when the mailbox runs on one).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = os.getpid()
        self.attempts: list[tuple[float, list[Message]]] = []
        self.delivered: list[Message] = []
        self.errors: list[BaseException] = []
        self.always: Callable[[], BaseException] | None = None
        self.refuse = threading.Event()
        self.delay = 0.0
        self.hang = False
        self.closed = False
        self.record = True
        self.sends = 0
        self.clock: Callable[[], float] = time.monotonic
        self.sending = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Message]) -> None:
        with self._lock:
            self.sends += 1
            if self.record:
                self.attempts.append((self.clock(), list(messages)))
        self.sending.set()
        if self.hang:
            self._released.wait()
        elif self.delay:
            self._released.wait(self.delay)
        if self.refuse.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        with self._lock:
            error = self.errors.pop(0) if self.errors else None
        if error is None and self.always is not None:
            error = self.always()
        if error is not None:
            raise error
        if self.record:
            with self._lock:
                self.delivered.extend(messages)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        self.closed = True

    def release(self) -> None:
        """Let every hung or sleeping send return now, and every later one at once."""
        self.hang = False
        self.delay = 0.0
        self._released.set()

    def attempt_times(self) -> list[float]:
        with self._lock:
            return [at for at, _ in self.attempts]

    def delivered_for(self, job_id: str) -> list[Message]:
        with self._lock:
            return [message for message in self.delivered if message.job_id == job_id]


_scripted: dict[tuple[int, str], ScriptedSink] = {}


def _scripted_factory(url: str) -> ScriptedSink:
    key = (os.getpid(), url.split("://", 1)[1])
    sink = _scripted.get(key)
    if sink is None:
        sink = _scripted[key] = ScriptedSink(url)
    return sink


def scripted(name: str) -> ScriptedSink:
    """The ``scripted://NAME`` sink of this process (created on first use)."""
    return _scripted_factory(f"scripted://{name}")


class JsonlFileSink:
    """Appends each message as one JSON line to a file (``jsonl:///abs/path``)."""

    def __init__(self, url: str) -> None:
        self.path = url.split("://", 1)[1]

    def send(self, messages: Sequence[Message]) -> None:
        data = "".join(message.model_dump_json() + "\n" for message in messages).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass


@contextmanager
def fault_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``scripted://`` and ``jsonl://`` beside the built-in sinks (and no entry-point plugins)."""
    monkeypatch.setenv("JOBPROGRESS_LOAD_PLUGINS", "")
    with registered_sink("scripted", _scripted_factory), registered_sink("jsonl", JsonlFileSink):
        yield


@pytest.fixture
def fault_sink_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``scripted://`` and ``jsonl://`` registered for the test; hung sinks released and the reporter shut
    down after it. Use with ``pytestmark = pytest.mark.usefixtures("fault_sink_plugins")``."""
    import jobprogress as jp

    with fault_sinks(monkeypatch):
        yield
        release_all()  # a hung sink must not hold shutdown (or a thread) past the test
        jp.shutdown(1.0)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff of 20 ms doubling to 100 ms instead of 1 s to 30 s: the shape is the same, tests stay short."""
    from jobprogress import _mailbox

    monkeypatch.setattr(_mailbox, "BACKOFF_BASE", 0.02)
    monkeypatch.setattr(_mailbox, "BACKOFF_CAP", 0.1)


def sink_stats(name: str) -> dict[str, int]:
    """``jp.stats()`` of the ``scripted://NAME`` sink."""
    import jobprogress as jp

    return jp.stats()["sinks"][f"scripted://{name}"]  # type: ignore[no-any-return]


def release_all() -> None:
    """Unblock every scripted sink of this process and forget them (test teardown)."""
    for sink in list(_scripted.values()):
        sink.release()
    _scripted.clear()


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


def read_jsonl(path: Path) -> list[Message]:
    """Messages a :class:`JsonlFileSink` or the ``stdout://`` sink wrote, one per line."""
    if not path.exists():
        return []
    return [parse_message(line) for line in path.read_text().splitlines() if line.strip()]


def parse_lines(text: str) -> list[Message]:
    """Messages from JSON lines (``stdout://`` output), skipping anything that is not one."""
    messages = []
    for line in text.splitlines():
        if line.startswith("{"):
            messages.append(parse_message(line))
    return messages


def final_heartbeat(messages: Sequence[Message], job_id: str) -> Heartbeat:
    """The heartbeat of ``job_id`` with the highest seq."""
    beats = [m for m in messages if isinstance(m, Heartbeat) and m.job_id == job_id]
    assert beats, f"no heartbeat for {job_id!r} among {len(messages)} message(s)"
    return max(beats, key=lambda m: m.seq)


def progress_of(messages: Sequence[Message], job_id: str) -> list[tuple[int, int | None]]:
    """(seq, items_done) of every envelope delivered for ``job_id``, in seq order."""
    found = [
        (m.seq, m.progress.items_done) for m in messages if m.job_id == job_id and m.progress is not None
    ]
    return sorted(found)


# -- the hot-path counter, C and pure Python, with the tracker's validation --------------------------


class PyCounted(PyCounterBase):
    """The pure-Python counter with Tracker's validation: what runs where the C accelerator is not built."""

    __slots__ = ()
    _advance_slow = Tracker._advance_slow


class CCounted(CounterBase):  # type: ignore[valid-type,misc]
    __slots__ = ()
    _advance_slow = Tracker._advance_slow


C_BUILT = CounterBase is not PyCounterBase
COUNTERS = [
    pytest.param(PyCounted, id="python"),
    pytest.param(CCounted, id="c", marks=pytest.mark.skipif(not C_BUILT, reason="C accelerator not built")),
]
