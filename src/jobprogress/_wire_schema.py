"""The JSON Schema (draft 2020-12) of the wire, built from the envelope models: what a worker may send.

``jobprogress schema`` prints it, docs/wire/v1.schema.json holds it (a test fails when they drift) and
the collector's OpenAPI document embeds the same definitions. Every rule of the models is stated here:
the shared ones (ids, counts, timestamps, texts, the payload) once under ``$defs``, with their bounds
from ``_states``; a message validates against this schema if and only if the collector accepts it.

Two rules are not plain JSON Schema, and are stated so that a validator can check them:

* ``Timestamp`` is a pattern *and* ``format: date-time``: the calendar (no 30 February) is the
  format's, so validate with format assertion on (``jsonschema``'s ``FORMAT_CHECKER``).
* ``Payload`` carries ``x-maxJsonBytes``: the payload's compact JSON (UTF-8, no spaces, as Python's
  ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes it) is at most that many bytes.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from ._states import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_COUNT,
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    MAX_KIND_LENGTH,
    MAX_STRING_LENGTH,
    MAX_UNIT_LENGTH,
    MAX_WIRE_ERROR_LENGTH,
    PAYLOAD_LIMIT_CEILING,
)
from ._validate import UNITS, character_class, refused_character
from .envelope import PROTOCOL_VERSION, TIMESTAMP_PATTERN, Heartbeat, ProgressUpdate

__all__ = ["SCHEMA_ID", "TEXT_PATTERN", "id_pattern", "wire_definitions", "wire_schema"]

SCHEMA_ID: Final = f"https://jobprogress.dev/wire/v{PROTOCOL_VERSION}.schema.json"
TEXT_PATTERN: Final = "^[^\\x00]*$"
"""Free text (kind, unit, error, payload strings): anything but NUL. (Lone surrogates are not I-JSON, so
no body holds one; a pattern naming them is one that generators such as schemathesis cannot use.)"""

_REF: Final = "#/$defs/{model}"


def id_pattern() -> str:
    """Assigned, visible characters only (Unicode 13.0); ``blank_pattern`` says they are not all blank."""
    return f"^[{character_class()}]+$"


def blank_pattern() -> str:
    """Only allowed whitespace (what ``str.strip()`` removes; none is above U+3000): an id is not that."""
    blanks = [char for char in map(chr, range(0x3001)) if char.isspace() and refused_character(char) is None]
    return "^[" + "".join(blanks) + "]*$"


def _text(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": TEXT_PATTERN, "description": description}


def _shared(id_rule: str) -> dict[str, Any]:
    number = {"type": "number", "minimum": -MAX_COUNT - 1, "maximum": MAX_COUNT}
    return {
        "Id": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "pattern": id_rule,
            "not": {"pattern": blank_pattern()},
            "description": (
                f"A job, worker or run id: 1-{MAX_ID_LENGTH} characters, not all whitespace; no control "
                "(Cc), format (Cf), private-use (Co), surrogate or unassigned code point (Unicode 13.0). "
                "The pattern holds literal characters: evaluate it Unicode-aware (JavaScript: the u flag)."
            ),
        },
        "Count": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_COUNT,
            "description": 'A JSON integer (5 or 5.0; never true or "5") within a signed 64-bit BIGINT.',
        },
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "pattern": TIMESTAMP_PATTERN,
            "description": (
                "RFC 3339 with seconds and a zone (Z or +hh:mm), at most 6 fraction digits, "
                "years 1971-8999; stored in UTC."
            ),
        },
        "Unit": {
            **_text(MAX_UNIT_LENGTH, f"What a job counts: {', '.join(UNITS)}; other names are kept."),
            "default": "unknown",
        },
        "Kind": {
            "anyOf": [_text(MAX_KIND_LENGTH, "The job's kind, for filters."), {"type": "null"}],
            "default": None,
        },
        "ErrorText": {
            "anyOf": [_text(MAX_WIRE_ERROR_LENGTH, "Why a run failed."), {"type": "null"}],
            "default": None,
        },
        "Payload": {
            "anyOf": [
                {
                    "type": "object",
                    "description": (
                        "Flat metrics: short keys (the id rule, at most "
                        f"{MAX_KEY_LENGTH} characters) to a string, a finite number within the signed "
                        f"64-bit range, a boolean or null; at most {PAYLOAD_LIMIT_CEILING} bytes of "
                        "compact UTF-8 JSON (x-maxJsonBytes)."
                    ),
                    "propertyNames": {"$ref": "#/$defs/PayloadKey"},
                    "additionalProperties": {
                        "anyOf": [
                            _text(MAX_STRING_LENGTH, "A text metric."),
                            number,
                            {"type": "boolean"},
                            {"type": "null"},
                        ]
                    },
                    "maxProperties": PAYLOAD_LIMIT_CEILING // 4,
                    "x-maxJsonBytes": PAYLOAD_LIMIT_CEILING,
                },
                {"type": "null"},
            ],
            "default": None,
        },
        "PayloadKey": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": id_rule,
            "not": {"pattern": blank_pattern()},
        },
    }


def _strict_numbers(definitions: dict[str, Any]) -> None:
    """Rates are finite numbers (JSON has no NaN); ``v`` an integer from 1."""
    rate = definitions["JobProgressEnvelope"]["properties"]["throughput_per_sec"]
    rate["anyOf"] = [{"type": "number", "minimum": 0}, {"type": "null"}]
    for model in ("Heartbeat", "ProgressUpdate"):
        definitions[model]["properties"]["v"] = {
            "type": "integer",
            "minimum": 1,
            "default": PROTOCOL_VERSION,
            "title": "V",
        }


def wire_definitions(ref_template: str = _REF) -> dict[str, Any]:
    """The models' and the shared rules' schemas, keyed by name, refs written with ``ref_template``."""
    _, generated = models_json_schema(
        [(Heartbeat, "validation"), (ProgressUpdate, "validation")], ref_template=ref_template
    )
    definitions: dict[str, Any] = {**_link(generated["$defs"], ref_template), **_shared(id_pattern())}
    _strict_numbers(definitions)
    definitions["Message"] = {
        "description": "Either message, told apart by `type` (required here).",
        "required": ["type"],
        "oneOf": [
            {"$ref": ref_template.format(model="Heartbeat")},
            {"$ref": ref_template.format(model="ProgressUpdate")},
        ],
    }
    definitions["Batch"] = {
        "description": (
            f"Up to {MAX_BATCH_MESSAGES} messages, oldest first, in a body of at most "
            f"{MAX_BATCH_BYTES} bytes (x-maxBodyBytes)."
        ),
        "type": "array",
        "maxItems": MAX_BATCH_MESSAGES,
        "items": {"$ref": ref_template.format(model="Message")},
        "x-maxBodyBytes": MAX_BATCH_BYTES,
    }
    if ref_template != _REF:
        definitions = _retarget(definitions, ref_template)
    return definitions


def _link(node: Any, ref_template: str) -> Any:
    """Turn the models' ``{"x-wire": name}`` markers into references to the shared rule ``name``."""
    if isinstance(node, dict):
        linked = {key: _link(value, ref_template) for key, value in node.items() if key != "x-wire"}
        if "x-wire" in node:
            linked = {"$ref": ref_template.format(model=node["x-wire"]), **linked}
        return linked
    if isinstance(node, list):
        return [_link(item, ref_template) for item in node]
    return node


def _retarget(node: Any, ref_template: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                # Only the shared rules' own refs: the models' are written with ref_template already.
                ref_template.format(model=value.removeprefix("#/$defs/"))
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _retarget(value, ref_template)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_retarget(item, ref_template) for item in node]
    return node


_cache: list[dict[str, Any]] = []


def wire_schema() -> dict[str, Any]:
    """The wire's JSON Schema: a message (Heartbeat or ProgressUpdate) or a batch of them."""
    if not _cache:
        _cache.append(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": SCHEMA_ID,
                "title": f"jobprogress wire protocol v{PROTOCOL_VERSION}",
                "description": (
                    "What a worker posts to a jobprogress collector: POST /v1/heartbeat takes a Heartbeat, "
                    "POST /v1/progress a ProgressUpdate, POST /v1/batch a Batch. Bodies are I-JSON "
                    "(RFC 7493: no NaN or Infinity, no number a double cannot hold, such as 1e999 or a "
                    "400-digit integer) with Content-Type: application/json, optionally gzip-encoded. "
                    "Unknown properties are ignored, so newer writers can add fields."
                ),
                "x-version": PROTOCOL_VERSION,
                "anyOf": [{"$ref": "#/$defs/Message"}, {"$ref": "#/$defs/Batch"}],
                "$defs": wire_definitions(),
            }
        )
    return copy.deepcopy(_cache[0])
