"""Run tqdm's own test suite twice — on tqdm, then with ``tqdm.tqdm`` replaced by jobprogress's bridge.

The tqdm version is the installed one (the test extra pins it); its sdist comes from the package index
through pip. Both runs use tqdm's own pytest configuration and conftest. The bridge run loads the
``jobprogress_tqdm_swap`` plugin beside this file, which swaps the classes before collection, checks
that the test modules got the bridge, and reports how many bridged bars were built and delivered.

Exit status 0 when the bridge passes at least 99% of the tests tqdm passes in the same run (tests in
EXCLUDED count as not passed), the swap took effect, and every job a bridged bar started reached the
sink with a final status.

Run: python tests/tqdm_suite/run.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_FILES = [
    "tests/tests_tqdm.py",
    "tests/tests_asyncio.py",
    "tests/tests_itertools.py",
    "tests/tests_concurrent.py",
    "tests/tests_contrib.py",
    "tests/tests_contrib_logging.py",
]
# tqdm's addopts less -v and --durations (noise here); -W=error and asyncio strict mode stay.
PYTEST_OPTIONS = ["-p", "no:cacheprovider", "-o", "addopts=", "-q", "--tb=short", "-rfE", "-W=error"]
PYTEST_OPTIONS += ["--asyncio-mode=strict"]

# Tests of tqdm's that the bridge is not expected to pass, with the reason. Empty: it passes them all.
EXCLUDED: dict[str, str] = {}

TARGET = 0.99


def fetch_sdist(tqdm_version: str, workdir: Path) -> Path:
    """Download and unpack tqdm's sdist; returns the source tree (reused when already unpacked)."""
    tree = workdir / f"tqdm-{tqdm_version}"
    if (tree / "tests" / "tests_tqdm.py").exists():
        return tree
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
    subprocess.run([*download, "-d", str(workdir), f"tqdm=={tqdm_version}"], check=True)
    with tarfile.open(workdir / f"tqdm-{tqdm_version}.tar.gz") as archive:
        archive.extractall(workdir, filter="data")
    return tree


def run_suite(tree: Path, junit: Path, *, bridged: bool, report: Path) -> dict[str, str]:
    """Run the suite; returns each test's outcome (passed, failed, error or skipped) by id."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, f"--junitxml={junit}"]
    if bridged:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env["JOBPROGRESS_TQDM_SWAP_REPORT"] = str(report)
        command += ["-p", "jobprogress_tqdm_swap"]
    command += [f"--deselect={test}" for test in EXCLUDED]
    print(f"\n== tqdm's tests on {'the jobprogress bridge' if bridged else 'tqdm'}", flush=True)
    subprocess.run([*command, *TEST_FILES], cwd=tree, env=env, check=False)
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        kinds = {child.tag for child in case}
        outcome = next((kind for kind in ("error", "failure", "skipped") if kind in kinds), "passed")
        outcomes[test_id] = "failed" if outcome == "failure" else outcome
    return outcomes


def counts(outcomes: dict[str, str]) -> str:
    def number(*kinds: str) -> int:
        return sum(1 for outcome in outcomes.values() if outcome in kinds)

    return f"{number('passed')} passed, {number('failed', 'error')} failed, {number('skipped')} skipped"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, help="where to unpack tqdm's sdist (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tqdm-suite-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tqdm_version = version("tqdm")
    tree = fetch_sdist(tqdm_version, workdir)

    plain = run_suite(tree, workdir / "plain.xml", bridged=False, report=workdir / "unused.json")
    report_path = workdir / "swap.json"
    report_path.unlink(missing_ok=True)
    bridged = run_suite(tree, workdir / "bridged.xml", bridged=True, report=report_path)

    passed_by_tqdm = {test for test, outcome in plain.items() if outcome == "passed"}
    lost = sorted(test for test in passed_by_tqdm if bridged.get(test) != "passed")
    gained = sorted(test for test, outcome in bridged.items() if outcome == "passed" and test not in plain)
    share = (len(passed_by_tqdm) - len(lost)) / len(passed_by_tqdm) if passed_by_tqdm else 0.0
    swap = json.loads(report_path.read_text()) if report_path.exists() else None

    print(f"\n== tqdm {tqdm_version}: {', '.join(TEST_FILES)}")
    print(f"tqdm alone:        {counts(plain)}")
    print(f"jobprogress bridge: {counts(bridged)}")
    print(f"excluded: {len(EXCLUDED)}" + "".join(f"\n  {test}: {why}" for test, why in EXCLUDED.items()))
    print(f"tests tqdm passes that the bridge passes too: {share:.1%} (target {TARGET:.0%})")
    for test in lost:
        print(f"  not passed on the bridge: {test} ({bridged.get(test, 'not run')})")
    for test in gained:
        print(f"  passed only on the bridge: {test}")
    print(f"swap report: {json.dumps(swap)}")

    problems = []
    if share < TARGET:
        problems.append(f"the bridge passes {share:.1%} of what tqdm passes, below {TARGET:.0%}")
    if swap is None:
        problems.append("the swap plugin wrote no report: did the bridge run at all?")
    elif swap["jobs_started"] < len(passed_by_tqdm) // 2:
        problems.append(f"bridged bars started only {swap['jobs_started']} jobs: did the swap take effect?")
    elif not swap["flushed"] or swap["jobs_ended_in_sink"] < swap["jobs_started"]:
        problems.append(
            f"bridged bars started {swap['jobs_started']} jobs but {swap['jobs_ended_in_sink']} of them"
            " reached the sink with a final status"
        )
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
