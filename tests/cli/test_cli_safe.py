"""scrub: what a worker sends reaches the terminal without raw control, escape or bidi characters.

Hidden characters are escaped, never removed (RELIABILITY row 40): what is shown can be typed back.
"""

from __future__ import annotations

import codecs

import pytest

from jobprogress.cli._safe import scrub


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("é 中文 🙂 a\u00a0b", "é 中文 🙂 a\u00a0b"),  # printable Unicode and NBSP stay
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # ESC (C0) escaped: the sequence is inert text
        ("a\x1b]0;title\x07b", "a\\x1b]0;title\\x07b"),  # OSC: ESC and BEL escaped
        ("a\x9b2Jb", "a\\x9b2Jb"),  # C1 CSI, a one-byte escape in some terminals
        ("a\x7fb\x00c", "a\\x7fb\\x00c"),  # DEL, NUL
        ("a\rb\nc\td", "a b c d"),  # line and cursor moves become spaces
        ("a\u2028b\u2029c", "a b c"),  # line/paragraph separators
        ("abc\u202edef", "abc\\u202edef"),  # bidi override (Cf): shown, not applied, not dropped
        ("a\u200bb\u2066c\u2069d\ufeffe", "a\\u200bb\\u2066c\\u2069d\\ufeffe"),  # zero-width, isolates, BOM
        ("a\ue000b\U0010fffdc", "a\\ue000b\\U0010fffdc"),  # private use (Co)
        ("a\u0378b", "a\\u0378b"),  # unassigned (Cn)
        ("a\ud800b", "a\\ud800b"),  # a lone surrogate, which no terminal encoding can carry
        (42, "42"),
    ],
)
def test_scrub(raw: object, clean: str) -> None:
    assert scrub(raw) == clean


@pytest.mark.parametrize(
    "job_id", ["scan\u202e42", "a\u200bb", "old\x1b[2Jjob", "w\x9b", "r\ue000", "x\u0378"]
)
def test_row40_what_is_shown_can_be_typed_back(job_id: str) -> None:
    shown = scrub(job_id)
    assert shown.isprintable()
    # Python and bash ($'...') read the escapes back to the very id
    assert codecs.decode(shown, "unicode_escape") == job_id
