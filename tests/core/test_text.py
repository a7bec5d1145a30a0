"""jobprogress._text: worker text made safe to show, on one line or as a block that keeps its lines."""

from __future__ import annotations

from jobprogress._text import scrub, scrub_block


def test_scrub_puts_a_block_on_one_line_and_escapes_what_hides_or_moves_text() -> None:
    assert scrub("a\r\nb\tc\u2028d") == "a  b c d"
    assert scrub("x\x1b[31m\u202ey") == "x\\x1b[31m\\u202ey"


def test_scrub_block_keeps_lines_and_tabs_but_nothing_that_overwrites_them() -> None:
    traceback = 'Traceback:\r\n  File "x.py"\r\n\tboom\x07\rdone\u2028end'
    assert scrub_block(traceback) == 'Traceback:\n  File "x.py"\n\tboom\\x07\ndone end'
    assert scrub_block("plain text") == "plain text"
    assert "\x1b" not in scrub_block("\x1b]0;title\x07")
