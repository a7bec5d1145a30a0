"""Input guards at the call: RELIABILITY.md rows 20-22 (payloads, hostile objects, counts)."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from decimal import Decimal

import pytest

import jobprogress as jp
from _core_faults import (
    COUNTERS,
    fault_sink_plugins,  # noqa: F401  (fixtures)
)
from jobprogress import _log, _runtime
from jobprogress._validate import MAX_COUNT
from jobprogress.envelope import parse_message
from jobprogress.errors import (
    ConfigurationError,
    InvalidProgressError,
    PayloadTooLargeError,
)
from jobprogress.testing import capture_progress

pytestmark = pytest.mark.usefixtures("fault_sink_plugins")


# -- row 20: oversized and nested payloads ---------------------------------------------------------

NESTED: dict[str, object] = {}
_level = NESTED
for _ in range(1000):
    _level["a"] = {}
    _level = _level["a"]  # type: ignore[assignment]

BAD_PAYLOADS = {
    "over-4kb": {f"k{i}": "x" * 200 for i in range(25)},
    "10k-keys": {f"k{i}": i for i in range(10_000)},
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_row20_oversized_payload_is_refused_at_the_call(payload: dict[str, object]) -> None:
    with pytest.raises(PayloadTooLargeError, match=r"over the limit of 1024 bytes"):
        jp.track("row20", payload=payload)
    tracker = jp.track("row20", payload={"ok": 1})
    with pytest.raises(PayloadTooLargeError):
        tracker.set_payload(**payload)
    assert tracker.payload == {"ok": 1}


def test_row20_deeply_nested_payload_is_refused_without_recursing() -> None:
    with pytest.raises(InvalidProgressError, match=r"payload field 'a' has a dict"):
        jp.track("row20", payload=NESTED)
    with pytest.raises(InvalidProgressError, match=r"flat metrics only"):
        jp.track("row20").set_payload(deep=NESTED)


def test_row20_payload_limit_has_a_hard_ceiling_of_4096() -> None:
    with pytest.raises(ConfigurationError, match="payload_limit"):
        jp.configure(payload_limit=4097)
    jp.configure(payload_limit=4096)
    with pytest.raises(PayloadTooLargeError, match="limit of 4096"):
        jp.track("row20", payload=BAD_PAYLOADS["over-4kb"])


def test_row20_drop_mode_drops_counts_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Warn-once and the drop count are per process: start this test afresh and leave them as they were.
    monkeypatch.setattr(_log, "_warned", set())
    monkeypatch.setattr(_runtime, "_payload_drops", 0)
    caplog.set_level(logging.WARNING, logger="jobprogress")
    jp.configure(on_oversize="drop")
    dropped_before = jp.stats()["payload_dropped"]
    with capture_progress() as capture:
        tracker = jp.track("row20-drop", payload=BAD_PAYLOADS["10k-keys"])
        assert tracker.payload is None
        with tracker:
            tracker.set_payload(ok=1)
            tracker.set_payload(**BAD_PAYLOADS["over-4kb"])
            tracker.set_payload(**BAD_PAYLOADS["10k-keys"])
            tracker.advance()
            assert tracker.payload == {"ok": 1}
            with pytest.raises(InvalidProgressError):  # invalid is not oversized: still refused
                tracker.set_payload(deep=NESTED)
    assert jp.stats()["payload_dropped"] - dropped_before == 3
    warnings = [r for r in caplog.records if r.name == "jobprogress" and "payload" in r.getMessage()]
    assert len(warnings) == 1
    final = capture.final("row20-drop")
    assert final.status == "succeeded"
    assert capture.last_progress("row20-drop").payload == {"ok": 1}
    assert len(json.dumps(capture.last_progress("row20-drop").payload)) <= 1024


# -- row 21: unserialisable payload values and hostile objects -------------------------------------


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")

    __str__ = __repr__


class HostileError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


UNSERIALISABLE = {
    "datetime": datetime(2026, 1, 1),
    "set": {1, 2},
    "bytes": b"raw",
    "list": [1, 2],
    "decimal": Decimal("1.5"),
    "hostile": Hostile(),
    "inf": math.inf,
}


@pytest.mark.parametrize("value", UNSERIALISABLE.values(), ids=UNSERIALISABLE.keys())
def test_row21_unserialisable_payload_is_a_clear_error_at_the_call(value: object) -> None:
    with capture_progress() as capture:
        with pytest.raises(InvalidProgressError, match=r"payload field 'metric'") as raised:
            jp.track("row21", payload={"metric": value})
        assert "exploded" not in str(raised.value)
        with jp.track("row21", payload={"ok": True}) as tracker:
            with pytest.raises(InvalidProgressError, match=r"payload field 'metric'"):
                tracker.set_payload(metric=value)
            tracker.advance()  # never affected by a refused payload
            tracker.advance(2)
    assert tracker.payload == {"ok": True}
    assert capture.final("row21").status == "succeeded"
    assert capture.last_progress("row21").items_done == 3
    assert capture.last_progress("row21").payload == {"ok": True}


def test_row21_hostile_exception_fails_the_job_with_a_summary() -> None:
    with capture_progress() as capture:
        with pytest.raises(HostileError), jp.track("row21-exc") as tracker:
            tracker.advance()
            raise HostileError
        jp.track("row21-fail").start().fail(HostileError())
    for job in ("row21-exc", "row21-fail"):
        final = capture.final(job)
        assert final.status == "failed"
        assert final.error is not None
        assert final.error.startswith("HostileError")


def test_row21_hostile_object_as_job_or_unit_is_refused_without_calling_repr() -> None:
    with pytest.raises(InvalidProgressError, match="job must be a string") as raised:
        jp.track(Hostile())  # type: ignore[arg-type]
    assert "exploded" not in str(raised.value)
    with pytest.raises(InvalidProgressError, match="unknown unit") as raised:
        jp.track("row21", unit=Hostile())  # type: ignore[arg-type]
    assert "unrepresentable Hostile" in str(raised.value)


# -- row 22: invalid counts, and counts at the edge ------------------------------------------------


INVALID_ADVANCES = {
    "negative": (-1, "-1"),
    "nan": (math.nan, "nan"),
    "float": (1.0, "1.0"),
    "bool": (True, "True"),
    "2**70": (2**70, str(2**70)),
    "str": ("1", "'1'"),
    "none": (None, "None"),
}


@pytest.mark.parametrize("counter_class", COUNTERS)
@pytest.mark.parametrize(("value", "shown"), INVALID_ADVANCES.values(), ids=INVALID_ADVANCES.keys())
def test_row22_invalid_advance_raises_naming_the_value(
    counter_class: type, value: object, shown: str
) -> None:
    counter = counter_class()
    counter.advance(5)
    with pytest.raises(InvalidProgressError) as raised:
        counter.advance(value)
    assert shown in str(raised.value)
    assert "advance" in str(raised.value)
    assert counter._done == 5


@pytest.mark.parametrize(("value", "shown"), INVALID_ADVANCES.values(), ids=INVALID_ADVANCES.keys())
def test_row22_tracker_refuses_invalid_counts_everywhere(value: object, shown: str) -> None:
    tracker = jp.track("row22", total=10)
    with pytest.raises(InvalidProgressError, match="advance"):
        tracker.advance(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidProgressError, match="set_done"):
        tracker.set_done(value)  # type: ignore[arg-type]
    if value is not None:  # None clears the total
        with pytest.raises(InvalidProgressError, match="set_total"):
            tracker.set_total(value)  # type: ignore[arg-type]
        with pytest.raises(InvalidProgressError, match="total"):
            jp.track("row22", total=value)  # type: ignore[arg-type]
    assert tracker.done == 0
    assert tracker.total == 10


@pytest.mark.parametrize("counter_class", [*COUNTERS, pytest.param(jp.Tracker, id="tracker")])
def test_row22_counts_up_to_2_63_minus_1_fit_and_no_further(counter_class: type) -> None:
    counter = counter_class("row22-max") if counter_class is jp.Tracker else counter_class()
    counter.advance(MAX_COUNT - 1)
    counter.advance()
    assert counter._done == MAX_COUNT
    with pytest.raises(InvalidProgressError, match=r"2\*\*63-1"):
        counter.advance()
    with pytest.raises(InvalidProgressError, match=r"2\*\*63-1"):
        counter.advance(MAX_COUNT)
    assert counter._done == MAX_COUNT


def test_row22_done_over_total_is_reported_as_such_and_max_count_round_trips() -> None:
    with capture_progress() as capture:
        with jp.track("row22-over", unit="files", total=5) as over:
            over.advance(7)
        with jp.track("row22-max", unit="bytes", total=MAX_COUNT) as biggest:
            biggest.set_done(MAX_COUNT)
    assert over.snapshot().items_done == 7
    assert over.snapshot().items_total == 5
    final = capture.last_progress("row22-over")
    assert (final.items_done, final.items_total) == (7, 5)  # not clamped to the total
    delivered = [m for m in capture.for_job("row22-max") if m.progress is not None][-1]
    round_tripped = parse_message(delivered.model_dump_json())
    assert round_tripped.progress is not None
    assert round_tripped.progress.items_done == MAX_COUNT
    assert round_tripped.progress.items_total == MAX_COUNT
