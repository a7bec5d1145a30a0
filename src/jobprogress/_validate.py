"""Input guards shared by the tracker (at call time) and the envelope models (on read).

Pure Python with no third-party imports, so the tracker can validate without loading pydantic.
Every error names the bad value (or its type, when its repr cannot be trusted) and what is allowed.
"""

from __future__ import annotations

import math

from ._states import (
    DEFAULT_PAYLOAD_LIMIT,
    MAX_COUNT,
    MAX_ERROR_LENGTH,
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    MAX_KIND_LENGTH,
    MAX_STRING_LENGTH,
    PAYLOAD_LIMIT_CEILING,
    STATUSES,
)
from .errors import InvalidProgressError, PayloadTooLargeError

TYPE_CHECKING = False  # not typing's: keeps `import jobprogress` from loading typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

__all__ = [
    "DEFAULT_PAYLOAD_LIMIT",
    "MAX_COUNT",
    "MAX_ERROR_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_KEY_LENGTH",
    "MAX_KIND_LENGTH",
    "MAX_STRING_LENGTH",
    "PAYLOAD_LIMIT_CEILING",
    "STATUSES",
    "UNITS",
]

UNITS: Final = ("files", "rows", "bytes", "records", "chunks", "iterations", "unknown")


def _is_control(char: str) -> bool:
    """C0 and C1 control characters and DEL; ids never hold them."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def has_control(text: str) -> bool:
    # isprintable() is a fast C scan that is True for almost every id; only then look closer.
    return not text.isprintable() and any(map(_is_control, text))


_allowed_starts: list[int] = []
_allowed_ends: list[int] = []

_CATEGORY_WORDS: Final = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Co": "a private-use character",
    "Cs": "a surrogate",
}


def _allowed_table() -> tuple[list[int], list[int]]:
    if not _allowed_starts:
        from ._charset import ALLOWED_RANGES

        starts, ends = [], []
        for item in ALLOWED_RANGES.split():
            first, _, last = item.partition("-")
            starts.append(int(first, 16))
            ends.append(int(last or first, 16))
        _allowed_ends[:] = ends
        _allowed_starts[:] = starts  # last: another thread seeing it set sees a complete table
    return _allowed_starts, _allowed_ends


def refused_character(text: str) -> str | None:
    """The first control, format, private-use, surrogate or unassigned character of ``text``, or None.

    "Assigned" is as of Unicode 13.0 (``_charset``), on every Python, as the JSON Schema states it.
    """
    if text.isascii() and text.isprintable():  # a C scan: almost every id ends here
        return None
    from bisect import bisect_right

    starts, ends = _allowed_table()
    for char in text:
        index = bisect_right(starts, ord(char)) - 1
        if index < 0 or ord(char) > ends[index]:
            return char
    return None


def character_class(*, blank: bool = True) -> str:
    """The allowed characters as a regular-expression class body (literal characters, Unicode-aware).

    ``blank=False`` leaves out the whitespace ``str.strip()`` removes, for "at least one visible one".
    """
    starts, ends = _allowed_table()
    ranges = list(zip(starts, ends, strict=False))
    if not blank:
        spaces = [code for first, last in ranges for code in range(first, last + 1) if chr(code).isspace()]
        for code in spaces:
            for index, (first, last) in enumerate(ranges):
                if first <= code <= last:
                    pieces = [(first, code - 1), (code + 1, last)]
                    ranges[index : index + 1] = [(a, b) for a, b in pieces if a <= b]
                    break

    def literal(code: int) -> str:
        char = chr(code)
        return "\\" + char if char in "\\]^-[" else char

    return "".join(literal(a) if a == b else f"{literal(a)}-{literal(b)}" for a, b in ranges)


def describe_character(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE), a format character``: what an error names."""
    import unicodedata

    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    what = _CATEGORY_WORDS.get(unicodedata.category(char), "an unassigned code point (as of Unicode 13.0)")
    return f"{code} ({name}), {what}" if name else f"{code}, {what}"


if TYPE_CHECKING:
    PayloadValue = str | int | float | bool | None


def _short(value: object) -> str:
    """A repr for an error message that cannot raise and stays short."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(what: str, value: object, max_length: int = MAX_STRING_LENGTH) -> str:
    """A string that any sink and database can store: no NUL, no lone surrogate, bounded."""
    if not isinstance(value, str):
        raise InvalidProgressError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidProgressError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if "\x00" in value:
        raise InvalidProgressError(f"{what} {_short(value)} contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidProgressError(
            f"{what} {_short(value)} contains a lone surrogate, which is not valid Unicode text"
        ) from None
    return value


def check_id(what: str, value: object, max_length: int = MAX_ID_LENGTH) -> str:
    """A job, worker or run id: at most 256 characters, not blank, only assigned visible characters.

    Control (Cc), format (Cf: bidi overrides, zero-width characters), private-use (Co) and unassigned
    code points are refused, naming the first one: they hide or reorder what a person reads, so an id
    holding one could not be typed back from what is shown.
    """
    text = check_text(what, value, max_length)
    refused = refused_character(text)
    if refused is not None:
        raise InvalidProgressError(
            f"{what} {ascii(text) if len(text) <= 60 else ascii(text[:57]) + '...'} contains "
            f"{describe_character(refused)}; ids may hold only assigned, visible characters"
        )
    if not text.strip():
        raise InvalidProgressError(f"{what} must be a non-empty string, got {text!r}")
    return text


def check_count(what: str, value: object, *, allow_none: bool = False) -> int | None:
    """A non-negative integer that fits a signed BIGINT (bools and floats are refused)."""
    if value is None and allow_none:
        return None
    if type(value) is not int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = int(value)  # int subclasses such as IntEnum or numpy-free wrappers
        else:
            raise InvalidProgressError(
                f"{what} must be a non-negative int, not {type(value).__name__} {_short(value)}"
            )
    if value < 0:
        raise InvalidProgressError(f"{what} must be >= 0, got {value}")
    if value > MAX_COUNT:
        raise InvalidProgressError(
            f"{what} is {value}, over the largest storable count {MAX_COUNT} (2**63-1)"
        )
    return value


def check_unit(value: object) -> str:
    """One of the known progress units (writers are strict; readers keep unknown ones)."""
    raw = value.value if isinstance(value, str) and hasattr(value, "value") else value  # ProgressUnit
    if not isinstance(raw, str) or raw not in UNITS:
        raise InvalidProgressError(f"unknown unit {_short(value)}; valid units: {', '.join(UNITS)}")
    return str(raw)


def check_payload_value(key: str, value: object) -> PayloadValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_COUNT - 1 <= value <= MAX_COUNT:
            raise InvalidProgressError(f"payload field {key!r} is {value}, outside the signed 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidProgressError(f"payload field {key!r} is {value}; only finite numbers are allowed")
        if not -MAX_COUNT - 1 <= value <= MAX_COUNT:  # one range for every number, as the schema says
            raise InvalidProgressError(f"payload field {key!r} is {value}, outside the signed 64-bit range")
        return float(value)
    if isinstance(value, str):
        return check_text(f"payload field {key!r}", value)
    raise InvalidProgressError(
        f"payload field {key!r} has a {type(value).__name__}; payload values must be str, int, float, "
        "bool or None (flat metrics only)"
    )


def payload_json(payload: Mapping[str, PayloadValue]) -> str:
    """The canonical JSON text of a payload, as sinks and stores write it."""
    import json

    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_payload(fields: object, limit: int = PAYLOAD_LIMIT_CEILING) -> dict[str, PayloadValue]:
    """A flat mapping of short keys to scalars whose JSON fits ``limit`` bytes.

    Raises:
        InvalidProgressError: a key or value is not allowed.
        PayloadTooLargeError: the JSON form is over ``limit`` bytes.
    """
    from collections.abc import Mapping

    if not isinstance(fields, Mapping):
        raise InvalidProgressError(
            f"payload must be a mapping of str to scalars, not {type(fields).__name__}"
        )
    if len(fields) > limit // 4:  # each field takes at least 4 bytes of JSON: cheap early refusal
        raise PayloadTooLargeError(size=4 * len(fields), limit=limit)
    clean: dict[str, PayloadValue] = {}
    for key, value in fields.items():
        if not isinstance(key, str):
            raise InvalidProgressError(f"payload keys must be strings, not {type(key).__name__}")
        check_id("payload key", key, MAX_KEY_LENGTH)
        clean[key] = check_payload_value(key, value)
    size = len(payload_json(clean).encode("utf-8"))
    if size > limit:
        raise PayloadTooLargeError(size=size, limit=limit)
    return clean


def error_summary(error: BaseException | str) -> str:
    """A bounded, storable one-line summary of a failure: ``Type: message``, at most 256 characters."""
    if isinstance(error, BaseException):
        try:
            message = str(error)
        except Exception:
            message = "<error message unavailable>"
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error)
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if has_control(text):
        text = "".join(char for char in " ".join(text.split()) if not _is_control(char))
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text
