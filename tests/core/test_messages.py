"""Message building (``jobprogress._messages``): seq, the heartbeat size rule, the one JSON form."""

from __future__ import annotations

from datetime import datetime, timezone

import jobprogress as jp
from jobprogress._messages import MessageBuilder, next_seq
from jobprogress.envelope import Heartbeat, ProgressUpdate, dump_message

STAMP = datetime(2026, 1, 1, tzinfo=timezone.utc)


def started(**fields: object) -> jp.Tracker:
    jp.configure(sinks=[])
    tracker = jp.track("messages", unit="rows", total=10, **fields).start()  # type: ignore[arg-type]
    tracker.advance(3)
    return tracker


def test_seq_increases_strictly_and_respects_a_floor() -> None:
    first = next_seq()
    assert next_seq() > first
    assert next_seq(floor=first + 10**9) == first + 10**9 + 1


def test_a_small_state_is_one_heartbeat_with_its_envelope() -> None:
    tracker = started(kind="scan")
    state = tracker.state()
    (heartbeat,) = MessageBuilder(state, 512).messages(state, None, STAMP)
    assert isinstance(heartbeat, Heartbeat)
    assert heartbeat.progress is not None
    assert (heartbeat.progress.items_done, heartbeat.kind) == (3, "scan")
    assert '"resume"' not in dump_message(heartbeat)  # the default stays off the wire
    assert len(dump_message(heartbeat).encode()) <= 512


def test_a_large_state_splits_into_a_bare_heartbeat_and_a_progress_update() -> None:
    tracker = started(payload={f"k{i}": "x" * 100 for i in range(8)})
    state = tracker.state()
    bare, update = MessageBuilder(state, 256).messages(state, None, STAMP)
    assert isinstance(bare, Heartbeat)
    assert bare.progress is None
    assert isinstance(update, ProgressUpdate)
    assert update.seq > bare.seq
    assert update.progress.items_done == 3


def test_a_resumed_run_says_so() -> None:
    tracker = started(resume=True)
    state = tracker.state()
    heartbeat = MessageBuilder(state, 512).heartbeat(state, None, STAMP)
    assert heartbeat.resume is True
    assert '"resume":true' in dump_message(heartbeat)
