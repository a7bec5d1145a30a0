"""The core SDK across processes: fork, multiprocessing and interpreter exit (RELIABILITY.md rows 15, 33-35).

A process's memory is gone when it ends, so children deliver through sinks the parent can read after
them: ``stdout://`` (the child's stdout, captured by ``subprocess``) or the test ``jsonl://`` file sink
(``tests/_core_faults.py``), which appends with ``O_APPEND`` and so survives ``os._exit``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobprogress as jp
from _core_faults import (
    fault_sinks,
    final_heartbeat,
    parse_lines,
    progress_of,
    read_jsonl,
    release_all,
    scripted,
)
from jobprogress import _runtime
from jobprogress.envelope import Heartbeat

# Python 3.12+ warns when a process with threads forks; forking under running threads is the point here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This process:DeprecationWarning"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CHILD_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _fault_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fault_sinks(monkeypatch):
        yield
        release_all()  # a hung sink must not hold shutdown (or a thread) past the test
        jp.shutdown(1.0)


def child_env(**settings: str) -> dict[str, str]:
    """The environment of a child Python: this one without JOBPROGRESS_*, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    env["JOBPROGRESS_LOAD_PLUGINS"] = ""  # no entry-point plugins: only the built-ins under test
    if importlib.util.find_spec("jobprogress.sinks.sql") is None:  # a checkout mid-way through its sinks
        env["JOBPROGRESS_DISABLED_PLUGINS"] = "jobprogress.sinks.sql"
    env.update({f"JOBPROGRESS_{name.upper()}": value for name, value in settings.items()})
    return env


def run_python(source: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        env=child_env(**settings),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


# -- row 15: fork while the sender is busy ---------------------------------------------------------


def _forked_child(index: int, parent_reporter: object) -> int:
    """Runs in the forked child: one job through a fresh reporter. Returns the exit code to use."""
    if _runtime._reporter is not None:
        return 3  # the parent's reporter was not set aside
    with jp.track(f"child-{index}", unit="rows") as tracker:
        tracker.advance(5)
    if _runtime.reporter() is parent_reporter:
        return 4
    if not jp.flush(3.0):
        return 5
    mine = scripted("r15")  # this process's own sink, created fresh by the child's reporter
    if {m.job_id for m in mine.delivered} != {f"child-{index}"}:
        return 6  # the child sent something of the parent's
    if final_heartbeat(mine.delivered, f"child-{index}").status != "succeeded":
        return 7
    jp.shutdown(1.0)
    return 0


def test_row15_200_forks_during_sends_no_deadlock_and_no_resend() -> None:
    jp.configure(sinks=["scripted://r15"], interval=0.002, keepalive=0.01)
    parent_sink = scripted("r15")
    parent_sink.delay = 0.0005  # the sender is inside send() most of the time
    parent_sink.record = False
    stop = threading.Event()

    def churn() -> None:  # keeps the reporter building messages and the sender sending
        count = 0
        while not stop.is_set():
            with jp.track(f"parent-{count % 50}", unit="rows") as tracker:
                for _ in range(200):
                    tracker.advance()
            count += 1

    worker = threading.Thread(target=churn)
    worker.start()
    assert parent_sink.sending.wait(5.0)
    parent_reporter = _runtime.reporter()
    outcomes: dict[int, int | str] = {}
    running: dict[int, tuple[int, float]] = {}
    launched = 0
    try:
        while launched < 200 or running:
            while launched < 200 and len(running) < 4:
                pid = os.fork()
                if pid == 0:  # the child: never return into pytest
                    code = 9
                    try:
                        code = _forked_child(launched, parent_reporter)
                    finally:
                        os._exit(code)
                running[pid] = (launched, time.monotonic())
                launched += 1
            for pid, (index, started) in list(running.items()):
                finished, status = os.waitpid(pid, os.WNOHANG)
                if finished:
                    outcomes[index] = os.waitstatus_to_exitcode(status)
                    del running[pid]
                elif time.monotonic() - started > 10.0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    outcomes[index] = "deadlocked"
                    del running[pid]
            time.sleep(0.001)
    finally:
        stop.set()
        worker.join()
        for pid in running:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    failed = {index: outcome for index, outcome in outcomes.items() if outcome != 0}
    assert len(outcomes) == 200
    assert not failed, f"children failed (3 reporter kept, 5 flush, 6 resent the parent's): {failed}"
    assert parent_sink.sends > 0
    assert jp.flush(5.0)  # the parent carries on unharmed


# -- row 33: a subprocess ends normally, by sys.exit, or by an uncaught exception ------------------

EXITS = {
    "normal": ("pass", 0, "succeeded", None),
    "sys-exit-0": ("sys.exit(0)", 0, "succeeded", None),
    "sys-exit-3": ("sys.exit(3)", 3, "failed", "SystemExit: 3"),
    "uncaught": ("raise ValueError('boom in the child')", 1, "failed", "ValueError: boom in the child"),
    "ctrl-c": ("raise KeyboardInterrupt", -signal.SIGINT, "cancelled", "KeyboardInterrupt"),
}


@pytest.mark.parametrize(("action", "exit_code", "status", "error"), EXITS.values(), ids=EXITS.keys())
def test_row33_subprocess_final_status_is_delivered_at_exit(
    action: str, exit_code: int, status: str, error: str | None
) -> None:
    started = time.monotonic()
    result = run_python(
        f"""
        import sys
        import jobprogress as jp

        with jp.track("sub-job", unit="rows", total=3, kind="parse") as tracker:
            tracker.advance(3)
            {action}
        """,
        sinks="stdout://",
        interval="60",  # nothing is due before exit: only the exit path can deliver the final state
        keepalive="60",
    )
    assert time.monotonic() - started < 15.0
    assert result.returncode == exit_code, result.stderr
    messages = parse_lines(result.stdout)
    final = final_heartbeat(messages, "sub-job")
    assert final.status == status
    assert final.error == error
    assert final.kind == "parse"
    assert progress_of(messages, "sub-job")[-1][1] == 3
    if exit_code in (0, 3):
        assert "Traceback" not in result.stderr


def test_row33_open_tracker_at_exit_delivers_its_newest_count() -> None:
    result = run_python(
        """
        import jobprogress as jp

        tracker = jp.track("left-open", unit="files", total=10).start()
        tracker.advance(7)
        """,
        sinks="stdout://",
        interval="60",
        keepalive="60",
    )
    assert result.returncode == 0, result.stderr
    messages = parse_lines(result.stdout)
    assert final_heartbeat(messages, "left-open").status == "running"
    assert progress_of(messages, "left-open")[-1][1] == 7


HUNG_SINK_CHILD = """
import sys, threading, time
import jobprogress as jp
from jobprogress.testing import registered_sink

class HungSink:
    def __init__(self, url):
        pass
    def send(self, messages):
        threading.Event().wait()
    def flush(self, timeout):
        return True
    def close(self, timeout):
        pass

with registered_sink("hung", HungSink):
    jp.configure(sinks=["hung://", "stdout://"], exit_timeout=0.5)
with jp.track("hung-exit") as tracker:
    tracker.advance()
time.sleep(0.2)  # the hung sink is now stuck in send()
print("block-left", time.monotonic(), flush=True)
"""


def test_row33_exit_with_a_hung_sink_is_bounded_by_exit_timeout() -> None:
    result = run_python(HUNG_SINK_CHILD)
    assert result.returncode == 0, result.stderr
    left_at = float(
        next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("block-left"))
    )
    # The exit took at most exit_timeout (plus interpreter teardown) after the block, and the healthy
    # sink still got the final state: a hung sink never delays another.
    assert time.monotonic() - left_at < 0.5 + 1.5
    assert final_heartbeat(parse_lines(result.stdout), "hung-exit").status == "succeeded"


FAILING_SINK_CHILD = """
import time
import jobprogress as jp
from jobprogress.testing import registered_sink

class RefusingSink:
    def __init__(self, url):
        pass
    def send(self, messages):
        raise ConnectionRefusedError(111, "Connection refused")
    def flush(self, timeout):
        return True
    def close(self, timeout):
        pass

with registered_sink("refusing", RefusingSink):
    jp.configure(sinks=["refusing://", "stdout://"], exit_timeout=5.0)
for index in range(100):
    with jp.track(f"refused-{index}") as tracker:
        tracker.advance()
time.sleep(0.2)  # the refusing sink has failed by now
print("block-left", time.monotonic(), flush=True)
"""


def test_row33_exit_is_not_held_up_by_a_failing_sink() -> None:
    result = run_python(FAILING_SINK_CHILD)
    assert result.returncode == 0, result.stderr
    left_at = float(
        next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("block-left"))
    )
    assert time.monotonic() - left_at < 1.5  # exit_timeout is 5 s: none of it is spent on a failing sink
    messages = parse_lines(result.stdout)
    assert all(final_heartbeat(messages, f"refused-{i}").status == "succeeded" for i in range(100))
    assert "Traceback" not in result.stderr


# -- row 34: fork-context multiprocessing children and SIGTERM -------------------------------------


def _pool_job(index: int) -> int:
    with jp.track(f"pool-{index}", unit="rows") as tracker:
        tracker.advance(index)
    return index


@pytest.fixture
def out_file(tmp_path: Path) -> Path:
    path = tmp_path / "progress.jsonl"
    jp.configure(sinks=[f"jsonl://{path}"], interval=60.0, keepalive=60.0)
    return path


FORK_EXIT_PARENT = """
import multiprocessing, sys
import jobprogress as jp

def returns(job):
    with jp.track(job, unit="rows", total=3) as tracker:
        tracker.advance(3)

def raises(job):
    with jp.track(job, unit="rows") as tracker:
        tracker.advance(1)
        raise ValueError("child failed")

def exits(job):
    with jp.track(job, unit="rows") as tracker:
        tracker.advance(2)
        sys.exit(5)

if __name__ == "__main__":
    target = {"returns": returns, "raises": raises, "sys-exit": exits}[sys.argv[1]]
    context = multiprocessing.get_context("fork")
    with jp.track("parent-job", unit="rows") as parent:  # the parent's reporter runs during the fork
        parent.advance(11)
        child = context.Process(target=target, args=("fork-job",))
        child.start()
        child.join(30)
    print("exitcode", child.exitcode, "parent", parent.worker_id, flush=True)
    jp.flush(2.0)
"""

FORK_EXITS = {
    "returns": (0, "succeeded", None, 3),
    "raises": (1, "failed", "ValueError: child failed", 1),
    "sys-exit": (5, "failed", "SystemExit: 5", 2),
}


@pytest.mark.parametrize(("exit_code", "status", "error", "done"), FORK_EXITS.values(), ids=FORK_EXITS.keys())
def test_row34_fork_child_exit_delivers_through_multiprocessing_finalizers(
    request: pytest.FixtureRequest, exit_code: int, status: str, error: str | None, done: int
) -> None:
    # A fresh parent process: forking pytest would also copy locks held by earlier tests' threads.
    variant = request.node.callspec.id
    result = subprocess.run(
        [sys.executable, "-c", FORK_EXIT_PARENT, variant],
        env=child_env(sinks="stdout://", interval="60", keepalive="60"),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stdout.splitlines() if line.startswith("exitcode "))
    _, code, _, parent_worker = summary.split(" ", 3)
    assert int(code) == exit_code
    messages = parse_lines(result.stdout)
    final = final_heartbeat(messages, "fork-job")  # the child never flushed: its finalizer did
    assert final.status == status
    assert final.error == error
    assert progress_of(messages, "fork-job")[-1][1] == done
    # The child never sent the parent's job (inherited as running) under any worker id.
    assert {m.worker_id for m in messages if m.job_id == "parent-job"} == {parent_worker}
    assert final.worker_id != parent_worker


def test_row34_pool_workers_deliver_every_final_state(out_file: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        assert sorted(pool.map(_pool_job, range(10))) == list(range(10))
        pool.close()
        pool.join()  # workers exit normally: their multiprocessing finalizers deliver
    messages = read_jsonl(out_file)
    for index in range(10):
        assert final_heartbeat(messages, f"pool-{index}").status == "succeeded"
        assert progress_of(messages, f"pool-{index}")[-1][1] == index


SIGTERM_PARENT = """
import multiprocessing, signal, sys, time
import jobprogress as jp

def shuts_down_then_waits(job, ready):
    with jp.track(job, unit="rows") as tracker:
        tracker.advance(2)
    jp.shutdown(2.0)
    ready.set()
    time.sleep(60)  # terminated here

def turns_sigterm_into_exit(job, ready):
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with jp.track(job, unit="rows") as tracker:
        tracker.advance(4)
        ready.set()
        time.sleep(60)  # terminated here

if __name__ == "__main__":
    target = {"shutdown": shuts_down_then_waits, "exit": turns_sigterm_into_exit}[sys.argv[1]]
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=target, args=("term-job", ready))
    child.start()
    assert ready.wait(30)
    child.terminate()
    child.join(30)
    if child.is_alive():
        child.kill()
        child.join()
    print("exitcode", child.exitcode, flush=True)
"""


@pytest.mark.parametrize(
    ("variant", "exit_code", "status", "error", "done"),
    [
        pytest.param("shutdown", -signal.SIGTERM, "succeeded", None, 2, id="shutdown-then-sigterm"),
        pytest.param("exit", 143, "failed", "SystemExit: 143", 4, id="sigterm-raises-exit"),
    ],
)
def test_row34_sigterm_after_shutdown_or_handled_keeps_the_final_state(
    variant: str, exit_code: int, status: str, error: str | None, done: int
) -> None:
    # The fork starts from a fresh parent process: forking pytest itself would copy whatever locks the
    # threads of earlier tests happened to hold (stdio buffers among them) into the child.
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_PARENT, variant],
        env=child_env(sinks="stdout://", interval="60", keepalive="60"),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"exitcode {exit_code}" in result.stdout.splitlines()
    messages = parse_lines(result.stdout)
    final = final_heartbeat(messages, "term-job")
    assert final.status == status
    assert final.error == error
    assert progress_of(messages, "term-job")[-1][1] == done


SIGTERM_DUE_WHILE_ASLEEP = """
import multiprocessing, os, signal, sys, threading, time
import jobprogress as jp

def in_read(tid, fd):
    # /proc/<pid>/task/<tid>/syscall: the syscall number and its arguments while blocked in one.
    with open(f"/proc/self/task/{tid}/syscall") as state:
        fields = state.read().split()
    return len(fields) > 1 and fields[1].startswith("0x") and int(fields[1], 16) == fd

def due_while_asleep(main, fd):
    deadline = time.monotonic() + 20
    while not in_read(main, fd) and time.monotonic() < deadline:
        time.sleep(0.01)
    # On this thread, SIGTERM's C handler runs and marks the Python handler due; the main thread's
    # read is not interrupted. A pool worker is left so when the signal lands while its main thread
    # waits for the GIL on the way into its wait for the next task.
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

def asleep_when_sigterm_is_due(job):
    with jp.track(job, unit="rows") as tracker:
        tracker.advance(3)
        asleep, _ = os.pipe()
        threading.Thread(target=due_while_asleep, args=(threading.get_native_id(), asleep)).start()
        os.read(asleep, 1)  # nothing is ever written: only a signal to this thread ends the wait

if __name__ == "__main__":
    child = multiprocessing.get_context("fork").Process(target=asleep_when_sigterm_is_due, args=("due-job",))
    child.start()
    child.join(20)
    if child.is_alive():
        child.kill()
        child.join()
    print("exitcode", child.exitcode, flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc/<pid>/task/<tid>/syscall")
def test_row38_a_due_sigterm_handler_runs_though_the_main_thread_sleeps() -> None:
    """CPython issue 82408: the watcher of jobprogress._wakeup wakes the main thread for its handler."""
    result = run_python(SIGTERM_DUE_WHILE_ASLEEP, sinks="stdout://", interval="60", keepalive="60")
    assert result.returncode == 0, result.stderr
    assert f"exitcode {-signal.SIGTERM}" in result.stdout.splitlines(), result.stdout
    messages = parse_lines(result.stdout)
    final = final_heartbeat(messages, "due-job")
    assert (final.status, final.error) == ("cancelled", "terminated by SIGTERM")
    assert progress_of(messages, "due-job")[-1][1] == 3


SIGTERM_DURING_SHUTDOWN = """
import os, signal, threading
import jobprogress as jp
from jobprogress.testing import registered_sink

class SignalledInFlush:
    # Its flush runs on the thread that shuts down; a SIGTERM lands there, as Pool.terminate() sends
    # one while a worker's exit finalizers deliver.
    signalled = False
    def __init__(self, url):
        pass
    def send(self, messages):
        pass
    def flush(self, timeout):
        if not SignalledInFlush.signalled:
            SignalledInFlush.signalled = True
            os.kill(os.getpid(), signal.SIGTERM)
            print("flush-returned", threading.current_thread().name, flush=True)
        return True
    def close(self, timeout):
        pass

with registered_sink("signalled", SignalledInFlush):
    jp.configure(sinks=["signalled://", "stdout://"], interval=60.0, keepalive=60.0)
with jp.track("interrupted-exit", unit="rows") as tracker:
    tracker.advance(5)
jp.shutdown(5.0)
print("after-shutdown", flush=True)  # never: the process ends by SIGTERM as the shutdown returns
"""


def test_row38_sigterm_during_a_main_thread_shutdown_lets_it_finish_then_dies_by_sigterm() -> None:
    """The interrupted shutdown may hold the locks a second one needs: it finishes, then SIGTERM ends it."""
    result = run_python(SIGTERM_DURING_SHUTDOWN)
    assert result.returncode == -signal.SIGTERM, result.stderr
    lines = result.stdout.splitlines()
    assert "flush-returned MainThread" in lines
    assert "after-shutdown" not in lines
    messages = parse_lines("\n".join(line for line in lines if line.startswith("{")))
    assert final_heartbeat(messages, "interrupted-exit").status == "succeeded"
    assert progress_of(messages, "interrupted-exit")[-1][1] == 5


PLAIN_FORK_CHILD = """
import os, sys
import jobprogress as jp

with jp.track("before-fork", unit="rows") as tracker:
    tracker.advance(1)
    pid = os.fork()  # the reporter and the sender are running in the parent here
    if pid == 0:
        tracker.advance(100)  # the child's copy of the parent's job: never the child's to send
        with jp.track("forked-child", unit="rows") as mine:
            mine.advance(2)
        sys.exit(0)  # a normal interpreter exit: atexit, not multiprocessing, delivers
    os.waitpid(pid, 0)
"""


def test_row34_plain_fork_child_delivers_at_exit_and_never_resends_the_parents_job() -> None:
    result = run_python(PLAIN_FORK_CHILD, sinks="stdout://", interval="60", keepalive="60")
    assert result.returncode == 0, result.stderr
    messages = parse_lines(result.stdout)
    child = final_heartbeat(messages, "forked-child")
    assert child.status == "succeeded"
    assert progress_of(messages, "forked-child")[-1][1] == 2
    parent = [m for m in messages if m.job_id == "before-fork"]
    assert {m.worker_id for m in parent} == {parent[0].worker_id} != {child.worker_id}
    assert final_heartbeat(messages, "before-fork").status == "succeeded"
    # The child's copy of the parent's job (left by its sys.exit, with 100 more items) never went out.
    assert [done for _, done in progress_of(messages, "before-fork")] == [0, 1]


# -- row 35: a custom sink that raises, seen from outside the process ------------------------------

FLAKY_SINK_CHILD = """
import time
import jobprogress as jp
from jobprogress import _mailbox
from jobprogress.testing import registered_sink

class FlakySink:
    def __init__(self, url):
        self.calls = 0
    def send(self, messages):
        self.calls += 1
        if self.calls <= 3:
            raise RuntimeError(f"flaky sink bug #{self.calls}")
        for message in messages:
            print(message.model_dump_json(), flush=True)
    def flush(self, timeout):
        return True
    def close(self, timeout):
        pass

_mailbox.BACKOFF_BASE = 0.01  # three retries in tens of milliseconds instead of seven seconds
with registered_sink("flaky", FlakySink):
    jp.configure(sinks=["flaky://"], interval=0.01)
with jp.track("flaky-a") as tracker:
    tracker.advance(1)
deadline = time.monotonic() + 10
while jp.stats()["sinks"]["flaky://"]["sent"] == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
with jp.track("flaky-b") as tracker:
    tracker.advance(2)
"""


def test_row35_raising_custom_sink_prints_no_traceback_and_keeps_delivering() -> None:
    result = run_python(FLAKY_SINK_CHILD)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # One line for the failure kind (logged once), none for the two repeats.
    assert result.stderr.count("flaky sink bug") == 1, result.stderr
    messages = parse_lines(result.stdout)
    for job, done in (("flaky-a", 1), ("flaky-b", 2)):
        final = final_heartbeat(messages, job)
        assert isinstance(final, Heartbeat)
        assert final.status == "succeeded"
        assert progress_of(messages, job)[-1][1] == done


@pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="reads thread signal masks from /proc (Linux)"
)
def test_row38_library_threads_block_sigterm_so_the_main_thread_gets_it() -> None:
    # The kernel hands a process-directed SIGTERM to any thread that does not block it; Python runs the
    # handler only in the main thread. A pool worker's main thread waits on a semaphore that only a
    # signal delivered to it interrupts, so our threads must leave SIGTERM to it (or Pool.__exit__ hangs).
    jp.configure(sinks=["scripted://r38-mask"], interval=0.01)
    with jp.track("masked", unit="rows") as tracker:
        tracker.advance()
    assert jp.flush(5.0)
    ours = [thread for thread in threading.enumerate() if thread.name.startswith("jobprogress-")]
    assert {thread.name for thread in ours} >= {
        "jobprogress-reporter",
        "jobprogress-sink-scripted://r38-mask",
    }
    for thread in ours:
        status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        assert blocked & (1 << (signal.SIGTERM - 1)), thread.name
    main = Path(f"/proc/self/task/{threading.main_thread().native_id}/status").read_text()
    assert not int(next(line for line in main.splitlines() if line.startswith("SigBlk:")).split()[1], 16) & (
        1 << (signal.SIGTERM - 1)
    )


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signal masks")
def test_row38_library_threads_are_born_with_sigterm_blocked() -> None:
    """No instant in a library thread's life where the kernel could hand it a SIGTERM.

    Blocking SIGTERM from inside the new thread left a window, from its creation to that call, in
    which a pool's ``terminate()`` could land its SIGTERM there: the worker's main thread, asleep
    waiting for a task, never ran the handler and the pool hung on joining it (1 in ~60 pools on
    CPython 3.10). The trace hook runs in the new thread before its target's first line.
    """
    from jobprogress._threads import start_daemon

    masks: list[set[signal.Signals]] = []

    def first_call(frame: object, event: str, arg: object) -> None:
        if not masks:
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, ()))

    threading.settrace(first_call)
    try:
        thread = start_daemon(lambda: None, "jobprogress-test")
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    assert thread is not None
    thread.join(5)
    assert masks
    assert signal.SIGTERM in masks[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, ())  # the caller's mask is back
