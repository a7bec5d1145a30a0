"""The on-disk outbox (``jobprogress._outbox``) and the mailbox's use of it (RELIABILITY.md row 39).

Real files in a temporary directory; the two-replayer case runs two real processes.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobprogress as jp
from _store_support import (
    StoreTarget,
    backend_params,
    envelope,
    heartbeat,
    store_target_fixture,  # noqa: F401  (the store_target fixture)
    stored_rows,
    update,
)
from jobprogress._mailbox import Mailbox
from jobprogress._outbox import Outbox, outbox_root, outboxes, sink_digest
from jobprogress.envelope import Heartbeat, ProgressUpdate, parse_messages
from jobprogress.errors import ConfigurationError

Message = Heartbeat | ProgressUpdate
URL = "sqlite:////tmp/never-opened.db"


def state(seq: int, status: str = "running", *, job: str = "job-1", done: int = 1) -> list[Message]:
    return [heartbeat(seq, status, job=job, progress=envelope(done))]


def keyed(*states: list[Message]) -> dict[tuple[str, str], list[Message]]:
    return {(messages[0].job_id, messages[0].worker_id): messages for messages in states}


def test_spool_then_load_round_trips_with_private_modes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "root", URL)
    split = [heartbeat(7, "succeeded", job="big"), update(8, 10, job="big")]
    path = outbox.spool(keyed(state(5), split))
    assert path is not None
    assert path.parent == tmp_path / "root" / sink_digest(URL)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "root").stat().st_mode) == 0o700
    assert json.loads((path.parent / "sink.json").read_text()) == {"url": URL}
    paths, states = outbox.load()
    assert paths == [path]
    assert states == keyed(state(5), split)  # a split final keeps both of its messages
    assert outbox.stats["spooled"] == 2
    assert [o.url for o in outboxes(tmp_path / "root")] == [URL]


def test_load_keeps_the_newest_state_per_job_across_files(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, URL)
    outbox.spool(keyed(state(9, "succeeded", done=10), state(3, job="other")))
    outbox.spool(keyed(state(4, done=4), state(6, job="other", done=6)))  # older for job-1, newer for other
    _, states = outbox.load()
    assert states[("job-1", "w1")][0].status == "succeeded"
    assert states[("other", "w1")][0].seq == 6


def test_row39_corrupt_file_is_moved_aside_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path, URL)
    good = outbox.spool(keyed(state(5)))
    assert good is not None
    bad = good.with_name("00000000000000000001-1-dead.jsonl")
    bad.write_bytes(os.urandom(64) + b"\n")
    worse = good.with_name("00000000000000000002-1-beef.jsonl")
    worse.write_text('[{"type": "heartbeat"}]\n')  # valid JSON, not a message
    with caplog.at_level(logging.WARNING, logger="jobprogress"):
        paths, states = outbox.load()
    assert paths == [good]
    assert list(states) == [("job-1", "w1")]
    assert sorted(p.name for p in tmp_path.glob("*/*.corrupt")) == [
        bad.name + ".corrupt",
        worse.name + ".corrupt",
    ]
    assert outbox.stats["outbox_corrupt"] == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) <= 1  # once per process


def test_row39_unwritable_outbox_warns_once_and_raises_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    outbox = Outbox(
        blocker / "outbox", URL
    )  # root is "under" a regular file: every mkdir fails, even as root
    with caplog.at_level(logging.WARNING, logger="jobprogress"):
        assert outbox.spool(keyed(state(5))) is None
        assert outbox.spool(keyed(state(6))) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1
    assert outbox.files() == []


def test_size_bound_drops_progress_only_states_first(tmp_path: Path) -> None:
    one = len(json.dumps([json.loads(m.model_dump_json()) for m in state(1)]))
    outbox = Outbox(tmp_path, URL, limit_bytes=one * 12)
    outbox.spool(keyed(*(state(10 + i, "succeeded", job=f"final-{i}") for i in range(4))))
    for index in range(20):
        outbox.spool(keyed(state(100 + index, job=f"running-{index}")))
    _, states = outbox.load()
    assert sum(f.stat().st_size for f in outbox.files()) <= one * 12 + 200
    assert {f"final-{i}" for i in range(4)} <= {job for job, _ in states}  # finals kept
    running = sorted(job for job, _ in states if job.startswith("running-"))
    assert "running-19" in running
    assert "running-0" not in running  # the oldest progress went first
    assert outbox.stats["outbox_dropped"] > 0


def test_outbox_setting_resolves_default_path_and_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert outbox_root(None) == tmp_path / "jobprogress" / "outbox"
    assert outbox_root("") is None
    assert outbox_root("~/x") == Path("~/x").expanduser()
    with pytest.raises(ConfigurationError, match="outbox must be a directory path"):
        jp.configure(outbox=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="JOBPROGRESS_HANDLE_SIGTERM must be true or false"):
        monkeypatch.setenv("JOBPROGRESS_HANDLE_SIGTERM", "maybe")
        jp.configure()


class ListSink:
    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.messages: list[Message] = []

    def send(self, messages: list[Message]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionRefusedError(111, "refused")
        self.messages.extend(messages)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass


def test_mailbox_spools_pending_and_in_flight_and_a_new_mailbox_replays(tmp_path: Path) -> None:
    clock = [0.0]
    sink = ListSink(fail=1)
    mailbox = Mailbox(
        sink, URL, max_batch=10, clock=lambda: clock[0], threaded=False, outbox=Outbox(tmp_path, URL)
    )
    mailbox.put(("job-1", "w1"), state(5, "succeeded"))
    assert not mailbox.wait_empty(0.0)  # refused once: backing off
    assert mailbox.spool(keep=False)
    replayed = ListSink()
    second = Mailbox(
        replayed, URL, max_batch=10, clock=lambda: clock[0], threaded=False, outbox=Outbox(tmp_path, URL)
    )
    assert second.wait_empty(0.0)
    assert [m.status for m in replayed.messages if isinstance(m, Heartbeat)] == ["succeeded"]
    assert Outbox(tmp_path, URL).files() == []  # delivered entries are removed


def test_flush_spool_is_removed_once_the_mailbox_delivers(tmp_path: Path) -> None:
    clock = [0.0]
    sink = ListSink(fail=1)
    outbox = Outbox(tmp_path, URL)
    mailbox = Mailbox(sink, URL, max_batch=10, clock=lambda: clock[0], threaded=False, outbox=outbox)
    mailbox.put(("job-1", "w1"), state(5))
    assert not mailbox.wait_empty(0.0)
    assert mailbox.spool(keep=True)
    assert len(outbox.files()) == 1
    assert mailbox.pending == 1  # still queued here
    clock[0] = 100.0
    assert mailbox.wait_empty(100.0)
    assert outbox.files() == []


def test_replay_rejected_by_the_sink_is_dropped_not_retried_forever(tmp_path: Path) -> None:
    from jobprogress.errors import SinkError

    class Rejecting(ListSink):
        def send(self, messages: list[Message]) -> None:
            raise SinkError("422 no", retryable=False)

    Outbox(tmp_path, URL).spool(keyed(state(5)))
    mailbox = Mailbox(Rejecting(), URL, max_batch=10, threaded=False, outbox=Outbox(tmp_path, URL))
    assert mailbox.wait_empty(0.0)
    assert mailbox.stats["dropped"] == 1
    assert Outbox(tmp_path, URL).files() == []


REPLAYER = """
import json, sys
from pathlib import Path
from jobprogress._outbox import Outbox

out = open(sys.argv[3], "a")
def send(messages):
    for message in messages:
        out.write(message.model_dump_json() + "\\n")
    out.flush()
delivered = None
while delivered is None and Outbox(Path(sys.argv[1]), sys.argv[2]).files():
    delivered = Outbox(Path(sys.argv[1]), sys.argv[2]).replay(send, 7)
print(delivered)
"""


def test_row39_two_replayers_at_once_deliver_every_entry_never_losing_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outbox = Outbox(root, URL)
    for batch in range(10):
        outbox.spool(keyed(*(state(1000 + i, "succeeded", job=f"j-{batch}-{i}") for i in range(20))))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(REPLAYER), str(root), URL, str(tmp_path / f"out-{n}")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for process in processes:
        process.communicate(timeout=30)
        assert process.returncode == 0
    delivered = [
        (message.job_id, message.seq)
        for n in range(2)
        if (tmp_path / f"out-{n}").exists()
        for message in parse_messages("[" + ",".join((tmp_path / f"out-{n}").read_text().split()) + "]")
    ]
    assert {job for job, _ in delivered} == {f"j-{b}-{i}" for b in range(10) for i in range(20)}
    assert outbox.files() == []


@pytest.mark.parametrize("store_target", backend_params("sqlite", "postgres"), indirect=True)
def test_row39_replay_older_than_the_stored_row_changes_nothing(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    from jobprogress.store import StoreWriter

    with StoreWriter(store_target.url) as writer:
        writer.write([heartbeat(20, "succeeded", progress=envelope(10))])
        Outbox(tmp_path, store_target.url).spool(keyed(state(5, done=3)))  # an older state, left behind
        mailbox = Mailbox(
            writer_sink(writer),
            store_target.url,
            max_batch=10,
            threaded=False,
            outbox=Outbox(tmp_path, store_target.url),
        )
        assert mailbox.wait_empty(0.0)
    (row,) = stored_rows(store_target)
    assert (row["status"], row["done"], row["seq"]) == ("succeeded", 10, 20)
    assert Outbox(tmp_path, store_target.url).files() == []


def writer_sink(writer: object) -> ListSink:
    sink = ListSink()
    sink.send = writer.write  # type: ignore[attr-defined,method-assign]
    return sink
