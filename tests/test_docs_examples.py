"""Every example in README.md and docs/ works as written (issue 13, item 6).

Each fenced ``python`` block runs in a fresh interpreter, in a directory of its own, with a clean
``JOBPROGRESS_*`` environment; a block that defines ``test_*`` functions runs under pytest. Shell
blocks (``bash``, ``console``) are run when marked to. An HTML comment on the lines just above a
fence (invisible on GitHub and in rendered docs) says how:

- ``<!-- docs-test: prelude`` … ``-->``: Python run before the block (the ``paths`` and ``scan`` a
  snippet takes as given);
- ``<!-- docs-test: fragment: why -->``: the block is not meant to run as it stands (a signature,
  one module of a package, a deployment's paths); the reason is required;
- ``<!-- docs-test: postgres -->``: ``postgresql+psycopg://app@db:5432/app`` stands for the test
  database (``JOBPROGRESS_TEST_POSTGRES_URL``; skipped without it);
- ``<!-- docs-test: run -->`` on a shell block: every command in it runs (see
  :func:`test_the_readme_commands_run_against_the_demo_database`).

Every other shell block must be marked a fragment, so a new command is a decision, not an oversight.
The README's two set-up commands are run by ``tests/test_fresh_clone.py`` instead.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
POSTGRES_PLACEHOLDER = "postgresql+psycopg://app@db:5432/app"
RUN_TIMEOUT = 60

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!-- docs-test: (?P<kind>[a-z]+)(?P<rest>.*)-->\s*\Z", re.DOTALL)
_SHELL = ("bash", "console", "sh", "shell")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    markers: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _markers(before: str) -> dict[str, str]:
    """The docs-test comments directly above a fence, innermost last."""
    found: dict[str, str] = {}
    text = before.rstrip()
    while True:
        start = text.rfind("<!-- docs-test: ")
        match = _MARKER.match(text, start) if start >= 0 else None
        if match is None:
            return found
        found[match["kind"]] = match["rest"].strip(" :\n")
        text = text[:start].rstrip()


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            language = match[1].strip()
            if language not in ("python", *_SHELL):
                continue
            line = text.count("\n", 0, match.start()) + 1
            name = str(page.relative_to(ROOT))
            found.append(Block(name, line, language, match[2], _markers(text[: match.start()])))
    return found


PYTHON = [block for block in blocks() if block.language == "python"]
SHELL = [block for block in blocks() if block.language in _SHELL]


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")  # the outbox, away from the user's
    env["JOBPROGRESS_LOAD_PLUGINS"] = ""  # the examples use the built-in sinks only
    env["COLUMNS"] = "120"
    return env


def test_every_page_has_examples_to_check() -> None:
    assert len(PYTHON) >= 20
    assert {block.page for block in PYTHON} >= {"README.md", "docs/index.md", "docs/user-guide.md"}


@pytest.mark.parametrize("block", SHELL, ids=lambda block: block.id)
def test_every_shell_block_is_run_or_marked_a_fragment(block: Block) -> None:
    assert "run" in block.markers or block.markers.get("fragment"), (
        f"{block.id}: mark the shell block '<!-- docs-test: run -->' (and run it in this module) or "
        "'<!-- docs-test: fragment: why -->'"
    )


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.id)
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if "fragment" in block.markers:
        assert block.markers["fragment"], f"{block.id}: a fragment marker needs its reason"
        pytest.skip(f"fragment: {block.markers['fragment']}")
    code = block.code
    if "postgres" in block.markers:
        url = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("JOBPROGRESS_TEST_POSTGRES_URL is not set")
        assert POSTGRES_PLACEHOLDER in code, (
            f"{block.id}: no {POSTGRES_PLACEHOLDER} to stand for the test URL"
        )
        code = code.replace(POSTGRES_PLACEHOLDER, url.split("?", 1)[0])
    prelude = block.markers.get("prelude", "")
    script = tmp_path / "example.py"
    script.write_text(f"{prelude}\n{code}", encoding="utf-8")
    if re.search(r"^def test_", code, re.MULTILINE):
        (tmp_path / "example.py").rename(tmp_path / "test_example.py")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"]
    else:
        command = [sys.executable, "example.py"]
    result = subprocess.run(
        command, cwd=tmp_path, env=_environment(tmp_path), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def _quick_start() -> Block:
    return next(block for block in PYTHON if block.page == "README.md" and "jp.configure" in block.code)


def _jobprogress(arguments: list[str], cwd: Path, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobprogress.cli", *arguments],
        cwd=cwd,
        env=_environment(cwd),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        **options,  # type: ignore[call-overload]
    )


def test_the_quick_start_writes_where_the_cli_reads(tmp_path: Path) -> None:
    """Issue 13, item 3: the database the quick start writes is the one `jobprogress jobs` reads."""
    block = _quick_start()
    (tmp_path / "example.py").write_text(
        f"{block.markers.get('prelude', '')}\n{block.code}", encoding="utf-8"
    )
    ran = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=_environment(tmp_path), timeout=RUN_TIMEOUT
    )
    assert ran.returncode == 0

    listed = _jobprogress(["jobs"], tmp_path)  # no --db: the default
    assert listed.returncode == 0, listed.stderr
    assert "scan-42" in listed.stdout
    assert "parse-7" in listed.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _commands(block: Block) -> list[list[str]]:
    commands = []
    for line in block.code.splitlines():
        line = line.removeprefix("$ ").split("  #", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


@pytest.fixture(scope="module")
def demo_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `jobprogress demo --duration 2` (no terminal) has written jobprogress.db."""
    import jobprogress

    directory = tmp_path_factory.mktemp("demo")
    tree = str(Path(jobprogress.__file__).parent)  # a small real tree: the package's own files
    result = _jobprogress(["demo", "--duration", "2", "--path", tree], directory, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return directory


@pytest.mark.slow
def test_the_readme_commands_run_against_the_demo_database(demo_directory: Path) -> None:
    """The README's "Then look at any store" block, line by line, in the directory the demo wrote to."""
    (block,) = [block for block in SHELL if block.page == "README.md" and "run" in block.markers]
    commands = _commands(block)
    assert [command[:2] for command in commands] == [
        ["jobprogress", "jobs"],
        ["jobprogress", "jobs"],
        ["jobprogress", "show"],
        ["jobprogress", "show"],
        ["jobprogress", "watch"],
        ["jobprogress", "serve"],
    ]
    for command in commands[:-1]:
        result = _jobprogress(command[1:], demo_directory, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stdout}\n{result.stderr}"
        assert result.stdout.strip(), shlex.join(command)
        assert "\x1b" not in result.stdout

    serve = commands[-1]
    token = demo_directory / serve[serve.index("--token-file") + 1]
    token.write_text("docs-example-token\n", encoding="utf-8")
    token.chmod(0o600)
    port = _free_port()  # the README's default port may be taken on a shared machine
    with subprocess.Popen(
        [sys.executable, "-m", "jobprogress.cli", *serve[1:], "--port", str(port)],
        cwd=demo_directory,
        env=_environment(demo_directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            import httpx

            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = httpx.get(
                        f"http://127.0.0.1:{port}/v1/jobs",
                        headers={"Authorization": "Bearer docs-example-token"},
                        timeout=2.0,
                    )
                    break
                except httpx.TransportError:
                    assert server.poll() is None, server.communicate()
                    assert time.monotonic() < deadline, "the collector did not start"
                    time.sleep(0.1)
            assert answer.status_code == 200
            assert "backtest-mean-reversion" in {job["job_id"] for job in answer.json()}
        finally:
            server.terminate()
            server.communicate(timeout=10)
