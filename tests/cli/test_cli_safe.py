"""scrub: what a worker sends reaches the terminal without control, escape or bidi characters."""

from __future__ import annotations

import pytest

from jobprogress.cli._safe import scrub


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("é 中文 🙂 a\u00a0b", "é 中文 🙂 a\u00a0b"),  # printable Unicode and NBSP stay
        ("a\x1b[2Jb", "a[2Jb"),  # ESC (C0) removed, the rest is shown
        ("a\x1b]0;title\x07b", "a]0;titleb"),  # OSC: ESC and BEL removed
        ("a\x9b2Jb", "a2Jb"),  # C1 CSI, a one-byte escape in some terminals
        ("a\x7fb\x00c", "abc"),  # DEL, NUL
        ("a\rb\nc\td", "a b c d"),  # line and cursor moves become spaces
        ("a\u2028b\u2029c", "a b c"),  # line/paragraph separators
        ("abc\u202edef", "abcdef"),  # bidi override (Cf)
        ("a\u200bb\u2066c\u2069d\ufeffe", "abcde"),  # zero-width space, isolates, BOM (Cf)
        (42, "42"),
    ],
)
def test_scrub(raw: object, clean: str) -> None:
    assert scrub(raw) == clean
