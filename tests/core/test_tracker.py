"""Every form of the public API of DESIGN §2: context managers, decorator, iter(), explicit lifecycle,
current(), configure() and its environment, snapshot(), the message rules of §3."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading

import anyio
import pytest

import jobprogress as jp
from jobprogress.envelope import Heartbeat, ProgressUpdate, parse_message
from jobprogress.errors import (
    ConfigurationError,
    InvalidProgressError,
    MissingExtraError,
    PayloadTooLargeError,
    TrackerStateError,
    UnknownSchemeError,
)
from jobprogress.testing import FakeClock, ProgressCapture, capture_progress, registered_sink


def test_public_names_are_the_documented_ones() -> None:
    assert sorted(jp.__all__) == sorted(
        [
            "ConfigurationError",
            "InvalidProgressError",
            "JobProgressError",
            "PayloadTooLargeError",
            "Tracker",
            "__version__",
            "aflush",
            "configure",
            "current",
            "flush",
            "shutdown",
            "stats",
            "track",
        ]
    )
    for name in jp.__all__:
        assert getattr(jp, name) is not None


def test_import_is_light() -> None:
    heavy = ["pydantic", "sqlalchemy", "httpx", "rich", "textual", "pluggy", "starlette", "uvicorn", "typing"]
    code = f"import sys, jobprogress; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pure_python_fallback_when_the_accelerator_is_missing() -> None:
    code = (
        "import sys; sys.modules['jobprogress._speedups'] = None\n"
        "import jobprogress as jp, jobprogress._counter as c\n"
        "assert jp.Tracker.__mro__[1] is c.PyCounterBase\n"
        "t = jp.track('fallback', total=10)\n"
        "t.advance(); t.advance(4); t.advance(n=2)\n"
        "try:\n    t.advance(-1)\nexcept jp.InvalidProgressError as e:\n    print('refused', e)\n"
        "print(t.done)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["refused advance(n) must be >= 0, got -1", "7"]


# -- with / async with ----------------------------------------------------------------------------


def test_with_block_reports_start_progress_and_success(progress_capture: ProgressCapture) -> None:
    with jp.track("scan-42", unit="files", total=3, kind="scan") as t:
        assert t.status == "running"
        for _ in range(3):
            t.advance()
        t.set_payload(schema_ok=True)
    assert t.status == "succeeded"
    assert progress_capture.statuses("scan-42") == ["running", "succeeded"]
    final = progress_capture.final("scan-42")
    assert final.kind == "scan"
    assert final.progress is not None
    assert (final.progress.items_done, final.progress.items_total, final.progress.unit) == (3, 3, "files")
    assert final.progress.payload == {"schema_ok": True}
    assert final.progress.eta_seconds == 0


def test_exception_marks_failed_with_bounded_summary_and_reraises(progress_capture: ProgressCapture) -> None:
    with pytest.raises(ValueError, match="bad row"), jp.track("parse-1", unit="rows") as t:
        t.advance(2)
        raise ValueError("bad row " + "x" * 1000)
    final = progress_capture.final("parse-1")
    assert final.status.value == "failed"
    assert final.error is not None
    assert final.error.startswith("ValueError: bad row")
    assert len(final.error) <= 256
    assert t.error == final.error


def test_keyboard_interrupt_marks_cancelled(progress_capture: ProgressCapture) -> None:
    with pytest.raises(KeyboardInterrupt), jp.track("job-k"):
        raise KeyboardInterrupt
    assert progress_capture.final("job-k").status.value == "cancelled"


def test_sys_exit_zero_is_success_and_nonzero_is_failure(progress_capture: ProgressCapture) -> None:
    with pytest.raises(SystemExit), jp.track("exit-0"):
        sys.exit(0)
    with pytest.raises(SystemExit), jp.track("exit-3"):
        sys.exit(3)
    assert progress_capture.final("exit-0").status.value == "succeeded"
    assert progress_capture.final("exit-3").status.value == "failed"


@pytest.mark.anyio
async def test_async_with(progress_capture: ProgressCapture) -> None:
    async with jp.track("bt-9", unit="iterations", kind="backtest") as t:
        for _ in range(5):
            t.advance()
            await anyio.sleep(0)
        assert jp.current() is t
    assert progress_capture.final("bt-9").status.value == "succeeded"
    assert progress_capture.last_progress("bt-9").items_done == 5


@pytest.mark.anyio
async def test_async_exception_fails(progress_capture: ProgressCapture) -> None:
    with pytest.raises(RuntimeError):
        async with jp.track("bt-fail"):
            raise RuntimeError("nope")
    assert progress_capture.final("bt-fail").status.value == "failed"


@pytest.mark.anyio
async def test_aflush_does_not_block_the_loop() -> None:
    jp.configure(sinks=["memory://aflush"], interval=0.05)
    async with jp.track("af-1") as t:
        t.advance(3)
    assert await jp.aflush(2.0) is True
    from jobprogress.sinks.memory import MemorySink

    delivered = [m for m in MemorySink.named("aflush") if m.job_id == "af-1"]
    assert isinstance(delivered[-1], Heartbeat)
    assert delivered[-1].status.value == "succeeded"


def test_entering_a_tracker_twice_at_once_is_an_error(progress_capture: ProgressCapture) -> None:
    t = jp.track("twice")
    with t, pytest.raises(TrackerStateError), t:
        pass


# -- decorator ------------------------------------------------------------------------------------


def test_decorator_with_template_over_bound_arguments(progress_capture: ProgressCapture) -> None:
    @jp.track(unit="files", kind="scan", job="scan-{source_id}")
    def scan_source(source_id: int, paths: list[str], mode: str = "fast") -> int:
        jp.current().set_total(len(paths))
        for _ in paths:
            jp.current().advance()
        return len(paths)

    assert scan_source(7, ["a", "b"]) == 2
    assert scan_source(source_id=8, paths=["a"]) == 1
    assert progress_capture.final("scan-7").progress.items_done == 2  # type: ignore[union-attr]
    assert progress_capture.final("scan-8").status.value == "succeeded"


def test_decorator_template_naming_an_unknown_parameter_fails_at_decoration() -> None:
    with pytest.raises(InvalidProgressError, match="source"):

        @jp.track(job="scan-{source}")
        def scan(source_id: int) -> None: ...


def test_decorator_with_callable_and_default_job(progress_capture: ProgressCapture) -> None:
    @jp.track(job=lambda a, b: f"sum-{a}-{b}")
    def add(a: int, b: int) -> int:
        return a + b

    @jp.track(unit="rows")
    def plain() -> str:
        return "ok"

    assert add(1, 2) == 3
    assert plain() == "ok"
    assert "sum-1-2" in progress_capture.job_ids()
    assert any(job.endswith("plain") for job in progress_capture.job_ids())


def test_decorator_failure_marks_failed(progress_capture: ProgressCapture) -> None:
    @jp.track(job="boom-{n}")
    def boom(n: int) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        boom(1)
    assert progress_capture.final("boom-1").error == "OSError: disk gone"


@pytest.mark.anyio
async def test_decorator_on_async_function(progress_capture: ProgressCapture) -> None:
    @jp.track(unit="iterations", kind="backtest", job="bt-{run}")
    async def backtest(run: int) -> int:
        jp.current().set_total(3)
        for _ in range(3):
            jp.current().advance()
            await anyio.sleep(0)
        return run

    assert await backtest(4) == 4
    assert progress_capture.final("bt-4").progress.items_done == 3  # type: ignore[union-attr]


# -- iter -----------------------------------------------------------------------------------------


def test_iter_over_a_list_takes_total_from_len_and_finishes(progress_capture: ProgressCapture) -> None:
    rows = list(range(1000))
    tracker = jp.track("parse-7", unit="rows", kind="parse")
    seen = list(tracker.iter(rows))
    assert seen == rows
    assert tracker.status == "succeeded"
    assert tracker.done == 1000
    progress = progress_capture.last_progress("parse-7")
    assert (progress.items_done, progress.items_total) == (1000, 1000)


def test_iter_over_a_generator_counts_items(progress_capture: ProgressCapture) -> None:
    tracker = jp.track("gen", unit="records")
    assert list(tracker.iter(x * 2 for x in range(10))) == [x * 2 for x in range(10)]
    assert tracker.total is None
    assert tracker.done == 10
    assert progress_capture.final("gen").status.value == "succeeded"


def test_iter_done_counts_completed_items_while_looping(progress_capture: ProgressCapture) -> None:
    tracker = jp.track("live", unit="rows")
    seen = []
    for item in tracker.iter(iter(range(5))):
        seen.append(tracker.done)
        assert item == len(seen) - 1
    assert seen == [0, 1, 2, 3, 4]
    assert tracker.done == 5


def test_iter_abandoned_by_break_is_cancelled(progress_capture: ProgressCapture) -> None:
    tracker = jp.track("partial", unit="rows")
    for item in tracker.iter([1, 2, 3, 4]):
        if item == 3:
            break
    import gc

    gc.collect()
    assert tracker.status == "cancelled"
    assert tracker.done == 2


def test_iter_inside_with_block_leaves_status_to_the_block(progress_capture: ProgressCapture) -> None:
    with jp.track("outer", unit="files") as t:
        for _ in t.iter(["a", "b"]):
            pass
        assert t.status == "running"
        assert t.done == 2
        t.advance()
    assert progress_capture.final("outer").progress.items_done == 3  # type: ignore[union-attr]


def test_with_block_ending_before_its_iter_loop_counts_once(progress_capture: ProgressCapture) -> None:
    with jp.track("early-exit") as t:
        iterator = t.iter(iter(list(range(10))))
        next(iterator), next(iterator), next(iterator)
    assert t.done == 2
    del iterator
    import gc

    gc.collect()
    assert t.done == 2
    assert t.status == "succeeded"


# -- explicit lifecycle ---------------------------------------------------------------------------


def test_explicit_start_finish_fail(progress_capture: ProgressCapture) -> None:
    t = jp.track("manual", unit="chunks", total=2)
    assert t.status == "pending"
    t.start()
    first_run = t.run_id
    t.advance(2)
    t.finish()
    assert t.status == "succeeded"
    t.start()
    assert t.run_id != first_run
    assert t.done == 0
    t.fail("checksum mismatch")
    assert progress_capture.final("manual").error == "checksum mismatch"
    run_ids = {m.run_id for m in progress_capture.for_job("manual")}
    assert run_ids == {first_run, t.run_id}


def test_start_without_job_id_is_an_error() -> None:
    with pytest.raises(InvalidProgressError, match="job id"):
        jp.track().start()


# -- current() ------------------------------------------------------------------------------------


def test_current_follows_nesting(progress_capture: ProgressCapture) -> None:
    with pytest.raises(TrackerStateError):
        jp.current()
    with jp.track("outer") as outer:
        assert jp.current() is outer
        with jp.track("inner") as inner:
            assert jp.current() is inner
        assert jp.current() is outer
    with pytest.raises(TrackerStateError):
        jp.current()


def test_current_is_per_thread(progress_capture: ProgressCapture) -> None:
    seen: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with jp.track(name) as t:
            barrier.wait(timeout=5)
            seen[name] = jp.current() is t

    threads = [threading.Thread(target=worker, args=(f"th-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert seen == {"th-0": True, "th-1": True}


def test_current_is_per_asyncio_task(progress_capture: ProgressCapture) -> None:
    async def task(name: str) -> bool:
        async with jp.track(name) as t:
            await asyncio.sleep(0.01)
            return jp.current() is t

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(task(f"task-{i}") for i in range(5))))

    assert asyncio.run(main()) == [True] * 5


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: jp.track("x", unit="widgets"), "valid units: files, rows, bytes"),
        (lambda: jp.track(""), "non-empty"),
        (lambda: jp.track("a\x00b"), "NUL"),
        (lambda: jp.track("a\ud800b"), "surrogate"),
        (lambda: jp.track("x" * 300), "limit is 256"),
        (lambda: jp.track("x", total=-1), ">= 0"),
        (lambda: jp.track("x", total=1.5), "int"),  # type: ignore[arg-type]
        (lambda: jp.track("x", payload={"k": [1, 2]}), "flat metrics"),
        (lambda: jp.track("x", payload={"k": float("nan")}), "finite"),
        (lambda: jp.track("x", worker_id="w\n1"), "control"),
    ],
)
def test_bad_arguments_raise_at_the_call(call: object, match: str) -> None:
    with pytest.raises(InvalidProgressError, match=match):
        call()  # type: ignore[operator]


def test_payload_over_the_limit_raises_at_set_payload(progress_capture: ProgressCapture) -> None:
    with jp.track("big") as t, pytest.raises(PayloadTooLargeError, match="over the limit of 1024"):
        t.set_payload(blob="x" * 200, other="y" * 200, more="z" * 200, again="w" * 200, last="v" * 200)


def test_set_payload_merges_fields(progress_capture: ProgressCapture) -> None:
    with jp.track("merge") as t:
        t.set_payload(a=1)
        t.set_payload(b="two")
    assert progress_capture.final("merge").progress.payload == {"a": 1, "b": "two"}  # type: ignore[union-attr]


# -- configure and the environment ----------------------------------------------------------------


def test_configure_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROGRESS_SINKS", "memory://env, stdout://")
    monkeypatch.setenv("JOBPROGRESS_WORKER_ID", "ingest-3")
    monkeypatch.setenv("JOBPROGRESS_INTERVAL", "0.25")
    monkeypatch.setenv("JOBPROGRESS_KEEPALIVE", "4")
    from jobprogress import _runtime

    settings = _runtime.settings()
    assert settings.sinks == ("memory://env", "stdout://")
    assert (settings.worker_id, settings.interval, settings.keepalive) == ("ingest-3", 0.25, 4.0)
    jp.configure(interval=0.5)  # an explicit argument wins, the rest still comes from the environment
    assert _runtime.settings().interval == 0.5
    assert _runtime.settings().worker_id == "ingest-3"


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("JOBPROGRESS_INTERVAL", "soon", "JOBPROGRESS_INTERVAL must be a number"),
        ("JOBPROGRESS_KEEPALIVE", "-1", "JOBPROGRESS_KEEPALIVE must be a finite number > 0"),
        ("JOBPROGRESS_ON_OVERSIZE", "truncate", "'raise', 'drop'"),
        ("JOBPROGRESS_PAYLOAD_LIMIT", "9000", "from 1 to 4096"),
    ],
)
def test_bad_environment_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=match):
        jp.configure()


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        jp.configure(sinks=["kafka://broker:9092"])
    message = str(info.value)
    assert "'kafka'" in message
    for scheme in ("stdout", "memory", "sqlite", "postgresql", "http"):
        assert scheme in message


def test_unknown_scheme_of_a_separate_plugin_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROGRESS_DISABLED_PLUGINS", "otel")  # as if jobprogress-otel were not installed
    with pytest.raises(UnknownSchemeError, match="pip install jobprogress-sdk-otel"):
        jp.configure(sinks=["otel://"], worker_id="w")


def test_missing_extra_says_which_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # makes `import sqlalchemy` raise ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'jobprogress-sdk\[sql\]'"):
        jp.configure(sinks=["sqlite:///x.db"])


def test_bad_sink_url_parameters_are_refused_at_configure() -> None:
    with pytest.raises(ConfigurationError, match="valid formats: json, human"):
        jp.configure(sinks=["stdout://?format=xml"])
    with pytest.raises(ConfigurationError, match="unknown configure"):
        from jobprogress import _runtime

        _runtime.configure(colour="blue")


def test_no_sink_configured_still_tracks_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="jobprogress")
    with jp.track("offline", unit="rows", total=4) as t:
        t.advance(4)
        envelope = t.snapshot()
    assert envelope.items_done == 4
    assert envelope.items_total == 4
    assert jp.flush(0.1) is True
    assert [r.message for r in caplog.records].count(
        "jobprogress: no sink configured; progress is tracked but not written anywhere"
    ) == 1


def test_reconfigure_moves_running_trackers_to_the_new_sinks() -> None:
    from jobprogress.sinks.memory import MemorySink

    jp.configure(sinks=["memory://first"], interval=0.05)
    with jp.track("moving") as t:
        t.advance()
        jp.configure(sinks=["memory://second"], interval=0.05)
        t.advance()
    assert jp.flush(2.0)
    assert any(m.job_id == "moving" for m in MemorySink.named("first"))
    final = [m for m in MemorySink.named("second") if isinstance(m, Heartbeat) and m.job_id == "moving"][-1]
    assert final.status.value == "succeeded"


# -- messages -------------------------------------------------------------------------------------


def test_heartbeat_carries_the_envelope_when_it_fits(progress_capture: ProgressCapture) -> None:
    with jp.track("small", unit="rows", payload={"ok": True}):
        pass
    for message in progress_capture.for_job("small"):
        assert isinstance(message, Heartbeat)
        assert message.progress is not None
        assert len(message.model_dump_json().encode()) <= 512


def test_large_payload_goes_in_a_separate_progress_update(progress_capture: ProgressCapture) -> None:
    with jp.track("wide", unit="rows", payload={f"k{i}": "v" * 30 for i in range(20)}):
        pass
    messages = progress_capture.for_job("wide")
    heartbeats = [m for m in messages if isinstance(m, Heartbeat)]
    updates = [m for m in messages if isinstance(m, ProgressUpdate)]
    assert heartbeats
    assert updates
    assert all(h.progress is None for h in heartbeats)
    assert all(len(h.model_dump_json().encode()) <= 512 for h in heartbeats)
    assert updates[-1].progress.payload is not None
    assert len(updates[-1].progress.payload) == 20


def test_seq_rises_strictly_and_messages_round_trip(progress_capture: ProgressCapture) -> None:
    with jp.track("seq", unit="rows") as t:
        t.advance()
        progress_capture.flush()
        t.advance()
        progress_capture.flush()
    messages = progress_capture.for_job("seq")
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    for message in messages:
        assert parse_message(message.model_dump_json()) == parse_message(message.model_dump(mode="json"))
        assert message.v == 1


def test_throttle_sends_at_most_once_per_interval_and_keepalive_proves_liveness() -> None:
    clock = FakeClock()
    jp.configure(interval=1.0, keepalive=10.0)
    with capture_progress(clock=clock) as capture, jp.track("throttle", unit="rows") as t:
        for _ in range(50):  # 5 s of work, sampled every 0.1 s
            t.advance()
            clock.advance(0.1)
            capture.tick()
        sends_while_busy = len(capture.for_job("throttle"))
        capture.clear()
        for _ in range(12):  # 12 s idle
            clock.advance(1.0)
            capture.tick()
        idle = capture.for_job("throttle")
    assert sends_while_busy <= 1 + 5 + 1  # start, at most one per interval, one spare for the boundary
    assert len(idle) == 1
    assert isinstance(idle[0], Heartbeat)
    assert idle[0].progress is None  # a keepalive: liveness without progress


def test_throughput_and_eta_come_from_sampling(progress_capture: ProgressCapture) -> None:
    clock = FakeClock()
    with capture_progress(clock=clock) as capture, jp.track("rate", unit="files", total=100) as t:
        for _ in range(20):
            t.advance(2)
            clock.advance(1.0)
            capture.tick()
        envelope = t.snapshot()
    assert envelope.throughput_per_sec == pytest.approx(2.0, rel=0.05)
    assert envelope.eta_seconds == pytest.approx(30, abs=2)


def test_done_over_total_is_reported_as_is(progress_capture: ProgressCapture) -> None:
    with jp.track("over", total=2) as t:
        t.advance(5)
    progress = progress_capture.last_progress("over")
    assert (progress.items_done, progress.items_total) == (5, 2)


# -- stdout sink ----------------------------------------------------------------------------------


def test_stdout_sink_writes_one_json_message_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    jp.configure(sinks=["stdout://"], worker_id="w1")
    with jp.track("out", unit="rows", total=1) as t:
        t.advance()
    assert jp.flush(2.0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    messages = [parse_message(json.loads(line)) for line in lines]
    assert messages[-1].job_id == "out"
    assert isinstance(messages[-1], Heartbeat)
    assert messages[-1].status.value == "succeeded"


def test_stdout_human_format(capsys: pytest.CaptureFixture[str]) -> None:
    jp.configure(sinks=["stderr://?format=human"], worker_id="w1")
    with jp.track("human", unit="files", total=4) as t:
        t.advance(4)
    assert jp.flush(2.0)
    err = capsys.readouterr().err
    assert "human [w1] succeeded 4/4 files" in err


# -- resume ---------------------------------------------------------------------------------------


class _StoreLikeSink:
    def __init__(self, url: str) -> None:
        self.rows = {("resumable", "w1"): (40, 10**18)}

    def send(self, messages: object) -> None:
        pass

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass

    def stored_done(self, job_id: str, worker_id: str) -> tuple[int, int] | None:
        return self.rows.get((job_id, worker_id))


def test_resume_starts_from_the_stored_row_and_keeps_seq_above_it() -> None:
    from jobprogress.sinks.memory import MemorySink

    with registered_sink("storelike", _StoreLikeSink):
        jp.configure(sinks=["storelike://", "memory://resume"], worker_id="w1", interval=0.05)
        t = jp.track("resumable", resume=True).start()
        assert t.done == 40
        t.advance()
        assert t.done == 41
        t.finish()
        fresh = jp.track("never-stored", resume=True).start()
        assert fresh.done == 0
        fresh.finish()
        assert jp.flush(2.0)
    seqs = [m.seq for m in MemorySink.named("resume") if m.job_id == "resumable"]
    assert seqs
    assert min(seqs) > 10**18


def test_stats_shape() -> None:
    jp.configure(sinks=["memory://stats"], interval=0.05)
    with jp.track("counted") as t:
        t.advance()
    assert jp.flush(2.0)
    stats = jp.stats()
    sink = stats["sinks"]["memory://stats"]
    assert sink["sent"] >= 1  # start and finish may fold into one latest-wins message
    assert sink["batches"] >= 1
    assert sink["pending"] == 0
    assert sink["failing"] is False
    assert stats["payload_dropped"] == 0


# -- review regressions ---------------------------------------------------------------------------


def test_decorated_generator_tracks_while_it_is_consumed(progress_capture: ProgressCapture) -> None:
    @jp.track(job="gen-{n}", unit="rows")
    def produce(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            jp.current().advance()
            yield i

    generator = produce(3)
    assert progress_capture.statuses("gen-3") == []  # nothing ran yet
    assert list(generator) == [0, 1, 2]
    assert progress_capture.statuses("gen-3") == ["running", "succeeded"]
    assert progress_capture.last_progress("gen-3").items_done == 3


def test_a_second_iter_settles_the_first_and_nested_loops_finish(progress_capture: ProgressCapture) -> None:
    first = jp.track("sequential")
    iterator = first.iter([1, 2, 3, 4, 5])
    for item in iterator:
        if item == 3:
            break
    for _ in first.iter([1, 2]):
        pass
    assert first.done == 4  # 2 completed before the break, then 2
    nested = jp.track("nested")
    for _ in nested.iter(range(3)):
        for _ in nested.iter(range(2)):
            pass
    import gc

    gc.collect()
    assert nested.status == "succeeded"


def test_trio_cancellation_is_cancelled_not_failed(progress_capture: ProgressCapture) -> None:
    import trio

    async def main() -> None:
        with trio.move_on_after(0.01):
            async with jp.track("trio-cancel"):
                await trio.sleep(5)

    trio.run(main)
    assert progress_capture.statuses("trio-cancel") == ["running", "cancelled"]


def test_configure_hands_over_a_tracker_whose_start_is_still_queued() -> None:
    from jobprogress.sinks.memory import MemorySink

    jp.configure(sinks=["memory://before"], interval=0.05)
    tracker = jp.track("just-started").start()
    jp.configure(sinks=["memory://after"], interval=0.05)  # at once: the start may not be sampled yet
    tracker.advance(3)
    assert jp.flush(2.0)
    running = [m for m in MemorySink.named("after") if m.job_id == "just-started"]
    assert running
    assert running[-1].status.value == "running"  # type: ignore[union-attr]
    tracker.finish()


def test_invisible_characters_in_ids_are_refused_naming_the_code_point() -> None:
    # Row 40: an id that hides or reorders text could not be typed back from what is shown.
    with pytest.raises(jp.InvalidProgressError, match=r"U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"):
        jp.track("job\u202egnp")
    with pytest.raises(jp.InvalidProgressError, match=r"U\+200B"):
        jp.track("job", worker_id="w\u200b1")
