"""The envelope and message models (DESIGN §3): validation, forward compatibility, one JSON form."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from jobprogress.envelope import (
    Heartbeat,
    JobProgressEnvelope,
    JobStatus,
    ProgressUnit,
    ProgressUpdate,
    dump_message,
    parse_message,
    parse_messages,
    trusted,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def envelope(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "items_done": 5,
        "items_total": 10,
        "unit": "files",
        "updated_at": NOW.isoformat(),
    }
    base.update(changes)
    return base


def heartbeat(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "heartbeat",
        "v": 1,
        "job_id": "scan-42",
        "worker_id": "w1",
        "run_id": "r1",
        "seq": 7,
        "status": "running",
        "updated_at": NOW.isoformat(),
        "progress": envelope(),
    }
    base.update(changes)
    return base


def test_trusted_construction_equals_validation() -> None:
    progress = trusted(
        JobProgressEnvelope,
        {
            "items_done": 5,
            "items_total": 10,
            "unit": ProgressUnit.FILES,
            "throughput_per_sec": 2.5,
            "eta_seconds": 2,
            "updated_at": NOW,
            "payload": {"ok": True},
        },
    )
    beat = trusted(
        Heartbeat,
        {
            "v": 1,
            "job_id": "j",
            "worker_id": "w",
            "run_id": "r",
            "seq": 1,
            "type": "heartbeat",
            "status": JobStatus.RUNNING,
            "kind": "scan",
            "error": None,
            "progress": progress,
            "updated_at": NOW,
            "resume": False,
        },
    )
    validated = parse_message(json.loads(dump_message(beat)))
    assert validated == beat
    assert dump_message(validated) == dump_message(beat)
    assert beat.model_fields_set == set(Heartbeat.model_fields)


def test_unknown_unit_from_a_newer_writer_is_kept() -> None:
    message = parse_message(heartbeat(progress=envelope(unit="pages")))
    assert message.progress is not None
    assert message.progress.unit == "pages"
    assert parse_message(heartbeat()).progress.unit is ProgressUnit.FILES  # type: ignore[union-attr]


def test_unknown_fields_are_ignored_and_versions_accepted() -> None:
    message = parse_message(heartbeat(v=2, colour="blue", progress=envelope(flavour="x")))
    assert message.v == 2
    assert not hasattr(message, "colour")


def test_resume_is_optional_and_only_in_the_json_when_set() -> None:
    old = parse_message(heartbeat())  # a v1 heartbeat from before the field existed
    assert isinstance(old, Heartbeat)
    assert old.resume is False
    text = dump_message(old)
    assert "resume" not in text  # the usual heartbeat keeps its size and its old JSON form
    assert parse_message(text) == old
    resumed = parse_message(heartbeat(resume=True, colour="blue"))
    assert isinstance(resumed, Heartbeat)
    assert resumed.resume is True
    text = dump_message(resumed)
    assert text.endswith(',"resume":true}')
    assert len(text) - len(dump_message(old)) == len(',"resume":true')
    assert parse_message(text) == resumed
    with pytest.raises(ValidationError, match="resume"):
        parse_message(heartbeat(resume="perhaps"))


def test_old_heartbeat_without_progress_parses() -> None:
    message = parse_message({k: v for k, v in heartbeat().items() if k != "progress"})
    assert isinstance(message, Heartbeat)
    assert message.progress is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["throughput_per_sec", "eta_seconds"])
def test_row40_non_finite_numbers_are_refused_not_nulled(bad: float, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        JobProgressEnvelope.model_validate(envelope(**{field: bad}))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seq": True}, "seq"),
        ({"seq": "5"}, "seq"),
        ({"seq": 5.5}, "seq"),
        ({"v": "1"}, "v"),
        ({"resume": 1}, "resume"),
        ({"resume": "true"}, "resume"),
        ({"updated_at": 1764417600}, "updated_at"),
        ({"updated_at": "2026-11-29 12:00:00Z"}, "updated_at"),
        ({"updated_at": "1970-01-01T00:00:00Z"}, "updated_at"),
        ({"progress": envelope(items_done=True)}, "items_done"),
        ({"progress": envelope(items_done="5")}, "items_done"),
        ({"progress": envelope(throughput_per_sec="2.5")}, "throughput_per_sec"),
        ({"progress": envelope(throughput_per_sec=False)}, "throughput_per_sec"),
        ({"progress": envelope(payload={"big": 1e19})}, "payload"),
        ({"job_id": "scan\u202e42"}, "U+202E"),
        ({"worker_id": "w\u200b"}, "U+200B"),
        ({"run_id": "r\ue000"}, "U+E000"),
        ({"job_id": "j\x85"}, "U+0085"),
    ],
)
def test_row40_no_coercion_and_no_hidden_characters(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(field)):
        parse_message(json.dumps(heartbeat(**changes)))


def test_a_json_integer_may_be_written_with_a_zero_fraction() -> None:
    # JSON has one number type; JSON Schema's "integer" accepts 5.0, and so does the collector.
    message = parse_message(json.dumps(heartbeat(seq=7.0, progress=envelope(items_done=5.0))))
    assert message.seq == 7
    assert type(message.seq) is int


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"job_id": ""}, "job_id"),
        ({"job_id": "x" * 257}, "job_id"),
        ({"worker_id": "w\x1b[2J"}, "worker_id"),
        ({"seq": 2**63}, "seq"),
        ({"seq": -1}, "seq"),
        ({"status": "paused"}, "status"),
        ({"updated_at": "2026-11-29T12:00:00"}, "updated_at"),
        ({"updated_at": "9999-12-31T23:59:59.999999Z"}, "updated_at"),
        ({"updated_at": "9999-12-31T23:59:59-23:59"}, "updated_at"),
        ({"updated_at": "0001-01-01T00:00:00+23:59"}, "updated_at"),
        ({"progress": envelope(items_done=-1)}, "items_done"),
        ({"progress": envelope(items_done=2**63)}, "items_done"),
        ({"progress": envelope(throughput_per_sec=-1.0)}, "throughput_per_sec"),
        ({"progress": envelope(payload={"k": "\x00"})}, "payload"),
        ({"progress": envelope(payload={"k": {"nested": 1}})}, "payload"),
        ({"progress": envelope(payload={f"k{i}": "v" * 200 for i in range(30)})}, "payload"),
    ],
)
def test_invalid_messages_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_message(heartbeat(**changes))
    assert field in str(info.value)


def test_updated_at_is_normalised_to_utc() -> None:
    local = datetime(2026, 11, 29, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    message = parse_message(heartbeat(updated_at=local.isoformat()))
    assert message.updated_at == NOW
    assert message.updated_at.tzinfo == timezone.utc


def test_batches_parse_both_types() -> None:
    update = {
        "type": "progress",
        "job_id": "j",
        "worker_id": "w",
        "run_id": "r",
        "seq": 8,
        "progress": envelope(),
    }
    messages = parse_messages(json.dumps([heartbeat(), update]))
    assert [type(m) for m in messages] == [Heartbeat, ProgressUpdate]


def test_json_form_is_one_line_and_round_trips() -> None:
    message = parse_message(heartbeat())
    text = dump_message(message)
    assert "\n" not in text
    assert parse_message(text) == message
