"""The Jobs table and the detail panel; RELIABILITY row 29: worker strings render literally."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from rich.console import Console

from _cli_support import FORBIDDEN, HOSTILE, HOSTILE_TEXT, NOW, job, worker
from jobprogress.cli._format import sort_jobs
from jobprogress.cli._render import job_detail, jobs_table
from jobprogress.cli._safe import scrub

# The only escape sequences allowed in the output are the ones rich writes for its own styles.
_SGR = re.compile(r"\x1b\[[0-9;]*m")


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
    for forbidden in FORBIDDEN:
        assert forbidden not in plain, repr(forbidden)
    for literal in ("[/]", "[bold]", ":warning:"):
        if literal in text:
            assert f"job{literal}" in plain or literal in plain
            assert f"value{scrub(text)}" in plain
    assert "\u26a0" not in plain  # :warning: was not turned into an emoji
    if text == "\x1b[2J":
        assert "job\\x1b[2J" in plain  # the escape shows as inert text


def test_row29_markup_in_every_field_does_not_raise() -> None:
    # rich raises MarkupError on a stray "[/]" when text is parsed as markup: nothing here is.
    view = _hostile_job("[/][/bold][link=x]")
    output = _SGR.sub("", _render(jobs_table([view], NOW), job_detail(view, NOW)))
    assert "job[/][/bold][link=x]" in output
    assert "key[/][/bold][link=x]" in output


def test_issue13_item2_terminal_table_ellipsizes_and_never_breaks_an_id() -> None:
    fits = "backtest-mean-reversion"
    too_long = "nightly-" + "-".join(f"segment{n}" for n in range(10))
    views = [job(fits, status="failed", error="DataGapError: " + "gap " * 30), job(too_long)]
    out = StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(jobs_table(views, NOW))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any(line.startswith(f" {fits} ") for line in lines)  # whole, on one line
    shown = [line.split()[0] for line in lines if line.startswith(" nightly-")]
    assert len(shown) == 1
    assert shown[0].endswith("…")
    assert too_long.startswith(shown[0][:-1])
