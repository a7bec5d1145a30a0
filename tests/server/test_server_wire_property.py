"""RELIABILITY row 40, as a property: the collector accepts a body if and only if the JSON Schema does.

For generated bodies, valid and invalid (wrong types, booleans and strings for counts, non-finite
numbers, ids with Cc/Cf/Co/unassigned characters, oversize payloads, missing and extra fields, bad
timestamps), the real collector's verdict (uvicorn on loopback, store doubles) equals the verdict of
``jsonschema`` on docs/wire/v1.schema.json, with format assertion on (``date-time``) and the schema's
two byte keywords implemented as custom validators:

* ``x-maxJsonBytes``: the instance's compact JSON (UTF-8, ``ensure_ascii=False``) fits that many bytes;
* ``x-maxBodyBytes``: the body that carries the instance fits that many bytes (the bodies here are
  written by :func:`body_of`, so the instance's bytes *are* the body's).

A body that is not I-JSON (RFC 7493: ``NaN``/``Infinity`` literals, a number a double cannot hold such as
``1e999`` or a 400-digit integer, a lone surrogate in any string) is refused by the schema side before
validation, as the contract says.

Deterministic: ``derandomize=True`` and a fixed example count (about 3 s on a 2-core machine).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _http_support import TOKEN, auth, running_app
from _server_support import MemoryWriter, StaticReader
from jobprogress._states import (
    MAX_BATCH_BYTES,
    MAX_COUNT,
    MAX_ID_LENGTH,
    MAX_KIND_LENGTH,
    PAYLOAD_LIMIT_CEILING,
)
from jobprogress.server import create_app

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_FILE: Final = Path(__file__).resolve().parents[2] / "docs" / "wire" / "v1.schema.json"
EXAMPLES: Final = 400
"""Bodies per run; each is one request to the collector and one schema validation."""

ROUTES: Final = {"/v1/heartbeat": "Heartbeat", "/v1/progress": "ProgressUpdate", "/v1/batch": "Batch"}
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def body_of(document: Any) -> bytes:
    """Compact JSON, UTF-8, with lone surrogates written as ``\\uXXXX`` escapes (raw, they are not UTF-8)."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode("utf-8")


def _max_json_bytes(validator: Any, limit: int, instance: Any, schema: Any) -> Iterator[Any]:
    size = len(
        json.dumps(instance, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    if size > limit:
        yield jsonschema.ValidationError(f"{size} bytes of compact JSON, over {limit} (x-maxJsonBytes)")


def _max_body_bytes(validator: Any, limit: int, instance: Any, schema: Any) -> Iterator[Any]:
    size = len(body_of(instance))
    if size > limit:
        yield jsonschema.ValidationError(f"a body of {size} bytes, over {limit} (x-maxBodyBytes)")


def _validators() -> dict[str, Any]:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    base = jsonschema.Draft202012Validator
    checker = base.FORMAT_CHECKER
    # Without rfc3339-validator installed, jsonschema skips date-time silently: that would test nothing.
    assert "date-time" in checker.checkers, "pip install rfc3339-validator (the test extra has it)"
    keywords = {**base.VALIDATORS, "x-maxJsonBytes": _max_json_bytes, "x-maxBodyBytes": _max_body_bytes}
    strict = jsonschema.validators.extend(base, keywords)
    validators = {}
    for route, name in ROUTES.items():
        rooted = {key: value for key, value in schema.items() if key != "anyOf"}
        rooted["$ref"] = f"#/$defs/{name}"
        validators[route] = strict(rooted, format_checker=checker)
    return validators


VALIDATORS: Final = _validators()


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def schema_accepts(route: str, body: bytes) -> bool:
    """The schema's verdict on ``body``: I-JSON first, then the route's definition."""
    try:
        document = json.loads(body, parse_constant=_not_json)
    except ValueError:
        return False
    if _not_i_json(document):
        return False
    return bool(VALIDATORS[route].is_valid(document))


def _not_i_json(node: Any) -> bool:
    """RFC 7493: numbers a double holds, and strings (keys too) without lone surrogates."""
    if isinstance(node, float):
        return not math.isfinite(node)
    if isinstance(node, int) and not isinstance(node, bool):
        try:
            float(node)  # a 400-digit integer is a number no double holds
        except OverflowError:
            return True
    if isinstance(node, str):
        return _LONE_SURROGATE.search(node) is not None  # json.loads joins the pairs
    if isinstance(node, dict):
        return any(_not_i_json(key) or _not_i_json(value) for key, value in node.items())
    if isinstance(node, list):
        return any(_not_i_json(value) for value in node)
    return False


# -- generated messages ------------------------------------------------------------------------------

# Refused in ids: C0/C1 controls (Cc), bidi and zero-width (Cf), private use (Co), unassigned in 13.0,
# surrogates; and blanks, refused only as a whole id.
_HIDDEN: Final = ["\x00", "\x1b", "\x7f", "\x9b", "\u202e", "\u200b", "\ufeff", "\ue000", "\U0010fffd",
                  "\u0378", "\U0001fae0", "\ud800", " ", "\u00a0"]  # fmt: skip
_GOOD_ID = st.text(alphabet="abcxyz-_.:0129", min_size=1, max_size=12)
_ANY_TEXT = st.text(max_size=12)  # any code point but surrogates: Cn, Co, Cf and Cc turn up too
_ID = st.one_of(
    _GOOD_ID,
    _GOOD_ID,
    _ANY_TEXT,
    st.builds(lambda a, c, b: a + c + b, _GOOD_ID, st.sampled_from(_HIDDEN), st.text("ab", max_size=2)),
    st.sampled_from(["", " ", "x" * MAX_ID_LENGTH, "x" * (MAX_ID_LENGTH + 1), "é" * MAX_ID_LENGTH]),
)
_COUNT = st.one_of(
    st.integers(0, 10**6),
    st.sampled_from([0, MAX_COUNT, MAX_COUNT + 1, -1, 2**64, 5.0, 5.5, 1e18, 9.3e18, -0.0]),
    st.sampled_from([True, False, "5", None, [], {}]),
)
_TIMESTAMP = st.one_of(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(8999, 12, 31),
    ).map(lambda moment: moment.isoformat() + "Z"),
    st.sampled_from(
        [
            "2026-01-31T12:00:00.5Z",
            "2026-01-31T12:00:00+05:30",
            "2026-02-30T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31 12:00:00Z",
            "2026-01-31T12:00:00",
            "2026-01-31t12:00:00z",
            "1970-01-01T00:00:00Z",
            "9000-01-01T00:00:00Z",
            "2026-01-31T12:00:00.1234567Z",
            "",
            "2026-01-31T12:00:60Z",
        ]
    ),
    st.integers(0, 2**40),
)
_RATE = st.one_of(
    st.none(),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.sampled_from([-1.0, 0, 10**400, 1.7976931348623157e308, "1.5", True]),
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udc00", "\ud83d\ude00"]),  # lone surrogates; a pair written escaped
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_PAYLOAD = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(_GOOD_ID, _ID), _SCALAR, max_size=5),
    st.dictionaries(_GOOD_ID, _JSON, max_size=3),
    # oversize: just over or under the byte limit, or over the key count
    st.integers(PAYLOAD_LIMIT_CEILING - 40, PAYLOAD_LIMIT_CEILING + 40).map(
        lambda size: {"k": "x" * (size - 8)}
    ),
    st.integers(PAYLOAD_LIMIT_CEILING // 4 - 2, PAYLOAD_LIMIT_CEILING // 4 + 2).map(
        lambda count: {f"{index:x}": 0 for index in range(count)}
    ),
    st.sampled_from([[], "metrics", 1]),
)
_TEXT = st.one_of(
    st.none(), st.text(max_size=20), st.just("k" * (MAX_KIND_LENGTH + 1)), st.just("a\x00b"), st.integers()
)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "items_done": draw(_COUNT),
        "items_total": draw(st.one_of(st.none(), _COUNT)),
        "unit": draw(st.one_of(st.sampled_from(["files", "rows", "parsecs"]), _TEXT)),
        "throughput_per_sec": draw(_RATE),
        "eta_seconds": draw(st.one_of(st.none(), _COUNT)),
        "updated_at": draw(_TIMESTAMP),
        "payload": draw(_PAYLOAD),
    }


@st.composite
def messages(draw: st.DrawFn, kind: str | None = None) -> dict[str, Any]:
    kind = kind or draw(st.sampled_from(["heartbeat", "progress"]))
    message: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 2, 1.0, 0, True, "1"])),
        "type": kind,
        "job_id": draw(_ID),
        "worker_id": draw(_ID),
        "run_id": draw(_ID),
        "seq": draw(_COUNT),
    }
    if kind == "heartbeat":
        message["status"] = draw(st.sampled_from(["running", "succeeded", "failed", "cancelled", "done", 1]))
        message["updated_at"] = draw(_TIMESTAMP)
        message["kind"] = draw(_TEXT)
        message["error"] = draw(_TEXT)
        message["progress"] = draw(st.one_of(st.none(), envelopes()))
        message["resume"] = draw(st.sampled_from([False, True, 0, "yes"]))
    else:
        message["progress"] = draw(envelopes())
    # Leave out optional and required fields alike, and add fields a newer writer might send.
    for key in draw(st.lists(st.sampled_from(sorted(message)), max_size=2, unique=True)):
        del message[key]
    if message.get("progress") and draw(st.booleans()):
        progress = dict(message["progress"])
        for key in draw(st.lists(st.sampled_from(sorted(progress)), max_size=1)):
            progress.pop(key, None)
        message["progress"] = progress
    message.update(draw(st.dictionaries(st.sampled_from(["extra", "trace", "v2_field"]), _JSON, max_size=2)))
    if draw(st.integers(0, 9)) == 0:
        message["type"] = draw(st.sampled_from(["heartbeat", "progress", "Heartbeat", None]))
    return message


_VALID_ENVELOPE = st.fixed_dictionaries(
    {"items_done": st.integers(0, MAX_COUNT), "updated_at": st.just("2026-01-31T12:00:00Z")},
    optional={
        "items_total": st.one_of(st.none(), st.integers(0, MAX_COUNT)),
        "unit": st.sampled_from(["files", "rows", "parsecs"]),
        "throughput_per_sec": st.one_of(st.none(), st.floats(0, 1e12)),
        "payload": st.one_of(st.none(), st.dictionaries(_GOOD_ID, _SCALAR, max_size=3)),
    },
)


@st.composite
def near_valid(draw: st.DrawFn, kind: str | None = None) -> dict[str, Any]:
    """A valid message, then (two times in three) one field of it or of its envelope replaced or removed."""
    kind = kind or draw(st.sampled_from(["heartbeat", "progress"]))
    message: dict[str, Any] = {
        "type": kind,
        "job_id": draw(_GOOD_ID),
        "worker_id": draw(_GOOD_ID),
        "run_id": draw(_GOOD_ID),
        "seq": draw(st.integers(0, MAX_COUNT)),
    }
    if kind == "heartbeat":
        message.update(status="running", updated_at="2026-01-31T12:00:00Z")
        message["progress"] = draw(st.one_of(st.none(), _VALID_ENVELOPE))
    else:
        message["progress"] = draw(_VALID_ENVELOPE)
    if draw(st.integers(0, 2)) == 0:
        return message
    donor = draw(messages(kind))
    envelope = draw(envelopes())
    targets = [*sorted(donor), *(f"progress.{key}" for key in sorted(envelope))]
    target = draw(st.sampled_from(targets))
    remove = draw(st.integers(0, 5)) == 0
    if target.startswith("progress."):
        key = target.removeprefix("progress.")
        progress = dict(message["progress"] or {"items_done": 1, "updated_at": "2026-01-31T12:00:00Z"})
        if remove:
            progress.pop(key, None)
        else:
            progress[key] = envelope[key]
        message["progress"] = progress
    elif remove:
        message.pop(target, None)
    else:
        message[target] = donor[target]
    return message


def _document(draw: st.DrawFn, route: str) -> Any:
    kind = {"/v1/heartbeat": "heartbeat", "/v1/progress": "progress"}.get(route)
    one = st.one_of(near_valid(kind), near_valid(kind), messages(kind))
    if route != "/v1/batch":
        return draw(st.one_of(one, one, one, _JSON))
    return draw(
        st.one_of(
            st.lists(one, max_size=4),
            st.lists(one, max_size=4),
            st.just(None),
            one,  # a lone message where a list belongs
            # near the count and byte limits of a batch: many small messages
            st.integers(380, 420).map(lambda count: [_small(index) for index in range(count)]),
            st.integers(130, 150).map(lambda count: [_small(index, pad=440) for index in range(count)]),
        )
    )


def _small(index: int, pad: int = 0) -> dict[str, Any]:
    return {
        "type": "progress",
        "job_id": f"j{index}" + "x" * pad,
        "worker_id": "w",
        "run_id": "r",
        "seq": index,
        "progress": {"items_done": index, "updated_at": "2026-01-31T12:00:00Z"},
    }


_NON_FINITE: Final = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    body = body_of(_document(draw, route))
    if draw(st.integers(0, 7)) == 0:
        # A number JSON (or a double) cannot carry, where the first number of the body stands.
        first = re.search(rb"(?<=:)-?\d+(\.\d+)?([eE][-+]?\d+)?(?=[,}\]])", body)
        if first is not None:
            token = draw(st.sampled_from(_NON_FINITE)).encode()
            body = body[: first.start()] + token + body[first.end() :]
    return route, body


# -- the property --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[httpx.Client, MemoryWriter]]:
    writer = MemoryWriter()
    app = create_app(token=TOKEN, writer=writer, reader=StaticReader(), max_body=MAX_BATCH_BYTES)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10, headers=auth()) as client:
        yield client, writer


def test_row40_the_collector_accepts_exactly_what_the_schema_accepts(
    collector: tuple[httpx.Client, MemoryWriter],
) -> None:
    client, writer = collector
    verdicts: list[bool] = []

    @given(requests())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def agree(request: tuple[str, bytes]) -> None:
        route, body = request
        stored = len(writer.messages)
        response = client.post(route, content=body)
        expected = schema_accepts(route, body)
        assert response.status_code < 500, response.text
        assert (response.status_code == 200) == expected, (
            f"collector {response.status_code} {response.text[:300]}; schema says "
            f"{'valid' if expected else 'invalid'}: {body[:300]!r}"
        )
        if not expected:
            assert response.status_code in {400, 413, 422}, response.text
            assert len(writer.messages) == stored  # nothing of a refused body is stored
        verdicts.append(expected)

    agree()
    accepted = sum(verdicts)
    # Not a vacuous agreement: both verdicts are common (figures of the fixed run: see the changelog).
    assert accepted >= EXAMPLES // 10, accepted
    assert len(verdicts) - accepted >= EXAMPLES // 10, len(verdicts) - accepted
