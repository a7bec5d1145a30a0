"""`jobs` without rich: the plain layout equals rich's to the byte, and the command stays light.

``jobprogress jobs`` to a pipe or a file prints the Jobs table laid out by ``_format`` (no rich
import); on a terminal, or wherever rich would judge otherwise, rich draws it. These tests hold the
two layouts to the same bytes and pin what the command path does not import.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone, tzinfo
from io import StringIO
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from _cli_support import heartbeat, invoke
from jobprogress.cli import _commands
from jobprogress.cli._format import _ONE_CELL, JOB_COLUMNS, PIPE_WIDTH, plain_jobs_table, plain_line
from jobprogress.cli._render import _JobsTable, plain_console

_property = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One-cell characters (spaces, the no-break space, the ellipsis and middle dot the views use, Latin
# letters, IPA) and a few whose width only rich knows (wide, combining, emoji): those must fall back.
_ONE_CELL_SAMPLE = " \u00a0abz-_.:/()[]~,0123456789\u00b7\u2026\u00e9\u00ff\u0100\u02b0\u02ff"
_OTHER = "\u4e2d\u0301\U0001f600\u2014"
_text = st.text(alphabet=_ONE_CELL_SAMPLE, max_size=30)
_row = st.tuples(*[_text] * len(JOB_COLUMNS))


def _rich_table(rows: list[tuple[str, ...]], caption: str, width: int) -> str:
    """What ``jobs`` printed before: rich's table on a console that is not a terminal."""
    out = StringIO()
    console = Console(file=out, markup=False, emoji=False, highlight=False, width=width)
    assert not console.is_terminal
    console.print(_JobsTable(rows, None, caption), soft_wrap=True)
    return out.getvalue()


@_property
@given(
    st.lists(_row, max_size=6),
    st.text(alphabet=_ONE_CELL_SAMPLE, max_size=200),
    st.sampled_from([1, 80, 160]),
)
def test_plain_jobs_table_is_rich_to_the_byte(rows: list[tuple[str, ...]], caption: str, width: int) -> None:
    assert plain_jobs_table(rows, caption) == _rich_table(rows, caption, width)


@_property
@given(st.lists(_row, min_size=1, max_size=3), st.sampled_from(_OTHER), st.data())
def test_plain_jobs_table_leaves_other_characters_to_rich(
    rows: list[tuple[str, ...]], other: str, data: st.DataObject
) -> None:
    row = data.draw(st.integers(0, len(rows) - 1))
    cell = data.draw(st.integers(0, len(JOB_COLUMNS) - 1))
    rows[row] = (*rows[row][:cell], rows[row][cell] + other, *rows[row][cell + 1 :])
    assert plain_jobs_table(rows, "1 job") is None
    assert plain_jobs_table([], "1 job " + other) is None


def test_plain_jobs_table_leaves_huge_tables_to_rich() -> None:
    assert plain_jobs_table([("job", "scan", "running", "x" * 20_000, "1", "now")], "1 job") is None


def test_every_one_cell_character_is_one_cell_for_rich() -> None:
    # The plain layout counts one cell per character of this class: rich must measure each so, and none
    # may break a line.
    chars = [chr(code) for code in range(0x10000) if _ONE_CELL.fullmatch(chr(code))]
    assert {"\u00b7", "\u2026", " ", "\u00e9"} <= set(chars)
    assert not {"\u4e2d", "\x1b", "\x7f", "\x85", "\u00ad", "\u0301"} & set(chars)
    assert [char for char in chars if cell_len(char) != 1 or char.splitlines() != [char]] == []


@_property
@given(st.text(alphabet=_ONE_CELL_SAMPLE + _OTHER[0], max_size=120), st.integers(1, 200))
def test_plain_line_is_rich_to_the_byte(text: str, width: int) -> None:
    plain = plain_line(text, width)
    if plain is None:
        assert len(text) > width or _OTHER[0] in text
        return
    out = StringIO()
    Console(file=out, markup=False, emoji=False, highlight=False, width=width).print(text, markup=False)
    assert plain == out.getvalue()


@pytest.mark.parametrize("columns", [None, "80", "20", "200"])
def test_plain_line_width_is_the_printed_consoles(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    # _print_message lays a line out at COLUMNS, else PIPE_WIDTH: what plain_console gives off a terminal.
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert plain_console(StringIO()).width == int(os.environ.get("COLUMNS", PIPE_WIDTH))


@pytest.fixture
def odd_url(tmp_path: Path) -> str:
    """Jobs whose ids and errors hold characters the plain layout leaves to rich, and long values."""
    from jobprogress.store import StoreWriter

    url = f"sqlite:///{tmp_path / 'odd.db'}"
    with StoreWriter(url) as writer:
        writer.write(
            [
                heartbeat("scan-\u4e2d\u6587", "host:1", status="running", done=3, total=10, error="\u2014"),
                heartbeat(
                    "caf\u00e9-parse", "host:2", status="failed", done=1, total=4, error="KeyError: \u00e9"
                ),
                heartbeat("backtest-" + "x" * 300, "host:3", status="succeeded", done=5, total=5),
            ]
        )
    return url


@pytest.mark.parametrize("fixture", ["store_url", "odd_url"])
@pytest.mark.parametrize(
    "args",
    [
        ("jobs",),
        ("jobs", "--limit", "2"),
        ("jobs", "--status", "failed,running"),
        ("jobs", "--status", "failed"),
        ("jobs", "--status", "succeeded"),
        ("jobs", "--status", "cancelled"),  # no job: the one-line message
        ("watch", "--page", "2"),  # off a terminal: one snapshot, as jobs prints it
    ],
)
@pytest.mark.parametrize("columns", [None, "40", "300", "abc"])
def test_jobs_prints_what_rich_prints(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    fixture: str,
    args: tuple[str, ...],
    columns: str | None,
) -> None:
    url = request.getfixturevalue(fixture)
    monkeypatch.setattr(_commands, "datetime", _frozen_clock(datetime.now(timezone.utc)))  # same "ago"
    runner = CliRunner(env={"COLUMNS": columns})
    plain = invoke(runner, *args, "--db", url)
    monkeypatch.setattr(_commands, "_printed_plain", lambda: False)
    drawn = invoke(runner, *args, "--db", url)
    assert plain == drawn
    assert plain[0] == 0
    assert plain[1]


def _frozen_clock(moment: datetime) -> type[datetime]:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(moment.timestamp(), tz)

    return Frozen


def test_rich_draws_where_it_would_judge_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr(sys, "stdout", StringIO())
    assert _commands._printed_plain()
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # whatever the value, rich decides
        with monkeypatch.context() as patch:
            patch.setenv(name, "0")
            assert not _commands._printed_plain()
    monkeypatch.setattr(sys, "stdout", _Latin1())  # rich draws ASCII boxes for such a file
    assert not _commands._printed_plain()
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert not _commands._printed_plain()


class _Latin1(StringIO):
    encoding = "latin-1"


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


_LIGHT_CHECK = textwrap.dedent(
    """
    import sys
    from jobprogress.cli import main

    try:
        main(sys.argv[1:])
    except SystemExit as exit:
        assert not exit.code, exit.code
    heavy = ("rich", "textual", "pluggy", "jobprogress._plugins", "jobprogress.cli._render",
             "jobprogress.cli._outbox", "jobprogress.cli._web", "jobprogress.cli._tui", "difflib")
    loaded = sorted(name for name in heavy if name in sys.modules)
    assert not loaded, f"the command imported {loaded}"
    """
)


@pytest.mark.parametrize(
    "args", [("jobs", "--limit", "20"), ("jobs", "--status", "cancelled"), ("jobs", "--json")]
)
def test_jobs_to_a_pipe_imports_no_rich_nor_plugins(store_url: str, args: tuple[str, ...]) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_CHECK, *args, "--db", store_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_importing_the_commands_imports_no_store_nor_rich() -> None:
    check = (
        "import sys, jobprogress.cli._commands\n"
        "heavy = ('rich', 'pydantic', 'sqlalchemy', 'jobprogress.cli._outbox')\n"
        "loaded = sorted(name for name in heavy if name in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_commands_in_their_own_modules_load_when_asked_for(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "--help")
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(["demo", "jobs", "outbox", "schema", "serve", "show", "watch", "web"])
    code, out, _ = invoke(runner, "schema")
    assert code == 0
    assert '"$schema"' in out
    result = runner.invoke(_commands.cli, ["outbx"])
    assert result.exit_code == 2
    assert "'outbox'" in result.output  # click's "did you mean" sees the lazy commands too


@pytest.mark.parametrize("enabled", [True, False])
def test_opening_a_store_leaves_the_gc_as_it_found_it(store_url: str, enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        _commands._open(store_url, 30.0).close()
        assert gc.isenabled() is enabled
        with pytest.raises(click.ClickException):
            _commands._open("http://collector", 30.0)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
