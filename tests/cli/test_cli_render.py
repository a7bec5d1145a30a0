"""RELIABILITY row 29: worker strings reach the terminal literally, without markup, emoji or escapes."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from _cli_support import HOSTILE, HOSTILE_ID, HOSTILE_TEXT, NOW, fill_store, job, worker
from jobprogress.cli._commands import cli
from jobprogress.cli._format import sort_jobs
from jobprogress.cli._render import job_detail, jobs_table
from jobprogress.cli._safe import scrub

# The only escape sequences allowed in the output are the ones rich writes for its own styles.
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_FORBIDDEN = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


def _hostile_job(text: str):  # type: ignore[no-untyped-def]
    return job(
        f"job{text}",
        kind=f"kind{text}",
        unit=f"unit{text}",
        status="failed",
        error=f"Error: {text}",
        payload={f"key{text}": f"value{text}", "n": 1},
        workers=[
            worker(
                f"worker{text}",
                status="failed",
                error=f"Error: {text}",
                unit=f"unit{text}",
                run_id=f"r{text}",
            ),
            worker("w2", lost=True, payload={"passed": 3}),
        ],
    )


def _render(*renderables: object) -> str:
    console = Console(file=StringIO(), force_terminal=True, color_system="truecolor", width=160)
    for renderable in renderables:
        console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


@pytest.mark.parametrize("text", [*HOSTILE, HOSTILE_TEXT])
def test_row29_hostile_strings_render_literally(text: str) -> None:
    view = _hostile_job(text)
    output = _render(jobs_table(sort_jobs([view]), NOW), job_detail(view, NOW))
    plain = _SGR.sub("", output)
    for forbidden in _FORBIDDEN:
        assert forbidden not in plain, repr(forbidden)
    for literal in ("[/]", "[bold]", ":warning:"):
        if literal in text:
            assert f"job{literal}" in plain or literal in plain
            assert f"value{scrub(text)}" in plain
    assert "\u26a0" not in plain  # :warning: was not turned into an emoji
    if text == "\x1b[2J":
        assert "job[2J" in plain  # what is left of the escape shows as text


def test_row29_markup_in_every_field_does_not_raise() -> None:
    # rich raises MarkupError on a stray "[/]" when text is parsed as markup: nothing here is.
    view = _hostile_job("[/][/bold][link=x]")
    output = _SGR.sub("", _render(jobs_table([view], NOW), job_detail(view, NOW)))
    assert "job[/][/bold][link=x]" in output
    assert "key[/][/bold][link=x]" in output


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


def test_row29_cli_output_holds_no_escape_from_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    fill_store(url)
    runner = CliRunner(env={"COLUMNS": "200"})
    table = runner.invoke(cli, ["jobs", "--db", url], catch_exceptions=False)
    detail = runner.invoke(cli, ["show", "--db", url, HOSTILE_ID], catch_exceptions=False)
    as_json = runner.invoke(cli, ["jobs", "--db", url, "--json"], catch_exceptions=False)
    for result in (table, detail, as_json):
        assert result.exit_code == 0, result.output
        for forbidden in _FORBIDDEN:
            assert forbidden not in result.stdout, repr(forbidden)
    assert "[/][bold]:warning:id" in table.stdout
    assert "A[/]B[bold]B:warning:B[2JB]0;xB BZ" in detail.stdout
    assert as_json.stdout.isascii()
    decoded = {item["job_id"]: item for item in json.loads(as_json.stdout)}
    assert decoded[HOSTILE_ID]["error"] == HOSTILE_TEXT  # --json keeps the data, escaped
