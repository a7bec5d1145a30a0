"""The published JSON Schema (``jobprogress schema``, docs/wire/v1.schema.json) and the tracker's id rule."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

import jobprogress as jp
from jobprogress._charset import ALLOWED_RANGES, UNICODE_VERSION
from jobprogress._validate import check_id, refused_character
from jobprogress.errors import InvalidProgressError

jsonschema = pytest.importorskip("jsonschema")

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "wire" / "v1.schema.json"


def test_the_committed_schema_is_what_the_models_say() -> None:
    from jobprogress.cli._schema import schema_text

    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        "docs/wire/v1.schema.json drifted: run `jobprogress schema > docs/wire/v1.schema.json`"
    )


def test_the_schema_is_valid_draft_2020_12_and_states_every_bound() -> None:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    assert defs["Id"]["maxLength"] == 256
    assert defs["Count"] == {**defs["Count"], "type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert defs["Batch"]["maxItems"] == jp._states.MAX_BATCH_MESSAGES
    assert defs["Batch"]["x-maxBodyBytes"] == jp._states.MAX_BATCH_BYTES
    assert defs["Payload"]["anyOf"][0]["x-maxJsonBytes"] == jp._states.PAYLOAD_LIMIT_CEILING


def test_the_frozen_character_table_agrees_with_this_pythons_unicode() -> None:
    # Characters assigned since Unicode 13.0 stay refused; what 13.0 allows, every later version allows.
    for item in ALLOWED_RANGES.split():
        first, _, last = item.partition("-")
        for code in range(int(first, 16), int(last or first, 16) + 1):
            assert unicodedata.category(chr(code)) not in {"Cc", "Cf", "Co", "Cs", "Cn"}, hex(code)
    assert UNICODE_VERSION <= unicodedata.unidata_version or unicodedata.unidata_version.startswith("13")


@pytest.mark.parametrize(
    ("job_id", "names"),
    [
        ("scan\u202e42", "U+202E (RIGHT-TO-LEFT OVERRIDE), a format character"),
        ("scan\u200b42", "U+200B (ZERO WIDTH SPACE), a format character"),
        ("scan\x1b[2J", "U+001B, a control character"),
        ("scan\x85", "U+0085, a control character"),
        ("scan\ue000", "U+E000, a private-use character"),
        ("scan\U0010fffd", "U+10FFFD, a private-use character"),
        ("scan\U0001fae0", "U+1FAE0"),  # assigned in Unicode 14, after the frozen 13.0
        ("scan\u0378", "U+0378, an unassigned code point"),
    ],
)
def test_row40_track_names_the_refused_code_point(job_id: str, names: str) -> None:
    with pytest.raises(InvalidProgressError) as info:
        jp.track(job_id)
    assert names in str(info.value)
    with pytest.raises(InvalidProgressError, match="worker_id"):
        check_id("worker_id", job_id)


@pytest.mark.parametrize("job_id", ["scan-42", "café", "名前", "emoji \U0001f600", "a b", "\u00a0x"])
def test_visible_ids_are_accepted(job_id: str) -> None:
    assert refused_character(job_id) is None
    assert check_id("job id", job_id) == job_id
