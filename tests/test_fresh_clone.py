"""A clean clone works on its own: the README's set-up commands in a fresh venv (issue 13, items 7, 8).

The fresh-venv check installs the package from scratch and runs the demo, so it takes about a minute:
it runs once per CI run, in ``tox -e fresh`` (``pytest --fresh-clone``), not in every Python's suite.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_DURATION = "3"

# This machine's pip configuration names local package indexes, some of them absent; pip says so on
# every install. Those lines are about the machine, not the project, and are the only ones let through.
_MACHINE_PIP_NOTICE = re.compile(
    r"^WARNING: Location '[^']+' is ignored: it is neither a file nor a directory\.$"
)


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    text = _readme()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _set_up_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", _section("Two commands on a fresh machine"), re.DOTALL)
    assert block is not None
    return [line.split("#", 1)[0].strip() for line in block[1].splitlines() if line.strip()]


def test_the_readme_names_the_two_set_up_commands() -> None:
    assert _set_up_commands() == ["pip install '.[cli]' && jobprogress demo", "pip install tox && tox"]


def test_bench_and_tox_stay_inside_the_repository() -> None:
    """Item 7: nothing under bench/, in tox.ini or in .ci/ reaches outside the clone."""
    outside = re.compile(r"\.\./|/work/|\bshared/bench\b")
    paths = [ROOT / "tox.ini", *sorted((ROOT / "bench").glob("*.py")), *sorted((ROOT / ".ci").glob("*"))]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in paths
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_development_section_says_how_tox_finds_interpreters() -> None:
    """Item 8: a plain `tox` skips the Pythons it cannot find; the README says so and how to add them."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    assert tox["tox"]["skip_missing_interpreters"].strip() == "true"
    section = _section("Development")
    assert "pyenv" in section
    assert "skipped" in section
    assert "--skip-missing-interpreters false" in section
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert version in section


def _output_problems(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if re.search(r"warn|traceback|^\s*error\b", line, re.IGNORECASE)
        and not _MACHINE_PIP_NOTICE.match(line)
    ]


@pytest.mark.fresh_clone
def test_the_readme_set_up_commands_work_in_a_fresh_venv_in_a_clean_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)  # not the venv tox runs this test in
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("JOBPROGRESS_", "TOX_"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    env.pop("PYTHONPATH", None)
    install_and_demo, tox_line = _set_up_commands()
    commands = [
        install_and_demo + f" --duration {DEMO_DURATION}",  # the demo, short; stdin and stdout no terminal
        # `tox` would run this very check again: run its first env, which needs nothing but the clone.
        tox_line + " -e lint",
    ]
    for command in commands:
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        took = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command} exited {result.returncode} after {took:.0f}s:\n{output}"
        assert not _output_problems(output), f"{command} printed:\n" + "\n".join(_output_problems(output))
        print(f"{command}: exit 0 in {took:.0f}s")
    assert (clone / "jobprogress.db").exists()  # the demo wrote where the README says
