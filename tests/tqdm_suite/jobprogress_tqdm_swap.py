"""pytest plugin (``-p jobprogress_tqdm_swap``): tqdm's own tests, run on jobprogress's tqdm bridge.

Loaded before tqdm's conftest and test modules are imported, it puts the bridge's classes where tqdm
keeps its own (``tqdm.tqdm``, ``tqdm.std``, ``tqdm.auto``, ``tqdm.autonotebook``, ``tqdm.asyncio``), so
``from tqdm import tqdm`` in a test, and ``tqdm.contrib``'s ``tqdm_auto`` default, get the bridge. Every
bar delivers to a ``memory://`` sink through the threaded reporter, as in production.

After collection it checks that the test modules hold the bridge; at the end it writes a JSON report
(path in ``JOBPROGRESS_TQDM_SWAP_REPORT``): what was replaced, how many jobs bridged bars started,
and how many of them reached the sink with a final status as their last message.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

assert "tqdm.contrib" not in sys.modules, "tqdm.contrib binds tqdm.auto.tqdm at import: swap it first"

import tqdm  # noqa: E402
import tqdm.asyncio  # noqa: E402
import tqdm.auto  # noqa: E402
import tqdm.autonotebook  # noqa: E402
import tqdm.std  # noqa: E402

import jobprogress as jp  # noqa: E402
import jobprogress.contrib.tqdm as bridge  # noqa: E402
from jobprogress.contrib.tqdm import asyncio as bridge_asyncio  # noqa: E402
from jobprogress.contrib.tqdm import auto as bridge_auto  # noqa: E402
from jobprogress.sinks.memory import MemorySink  # noqa: E402

SINK = "memory://tqdm-suite"

REPLACEMENTS: dict[tuple[Any, str], Any] = {
    (tqdm, "tqdm"): bridge.tqdm,
    (tqdm, "trange"): bridge.trange,
    (tqdm.std, "tqdm"): bridge.tqdm,
    (tqdm.std, "trange"): bridge.trange,
    (tqdm.autonotebook, "tqdm"): bridge.tqdm,
    (tqdm.autonotebook, "trange"): bridge.trange,
    (tqdm.asyncio, "tqdm_asyncio"): bridge_asyncio.tqdm_asyncio,
    (tqdm.asyncio, "tqdm"): bridge_asyncio.tqdm,
    (tqdm.asyncio, "tarange"): bridge_asyncio.tarange,
    (tqdm.asyncio, "trange"): bridge_asyncio.trange,
    (tqdm.auto, "tqdm"): bridge_auto.tqdm,
    (tqdm.auto, "trange"): bridge_auto.trange,
}
for (module, name), replacement in REPLACEMENTS.items():
    setattr(module, name, replacement)

import tqdm.contrib  # noqa: E402
import tqdm.contrib.concurrent  # noqa: E402
import tqdm.contrib.itertools  # noqa: E402

started_jobs: set[str] = set()


class _RecordingBarTracker(bridge.BarTracker):
    """The bridge's tracker, recording which jobs started (once per run, never per update)."""

    __slots__ = ()

    def start(self) -> bridge.BarTracker:
        started_jobs.add(str(self.job_id))
        return super().start()


bridge.BarTracker = _RecordingBarTracker  # type: ignore[misc]
jp.configure(sinks=[SINK])

# What each test module must hold after collection (module name -> global -> the bridge's object).
EXPECTED_IN_TESTS = {
    "tests.tests_tqdm": {"tqdm": bridge.tqdm, "trange": bridge.trange},
    "tests.tests_contrib": {"tqdm": bridge.tqdm},
}


def _holds(value: Any, expected: Any) -> bool:
    return value is expected or getattr(value, "func", None) is expected  # functools.partial


def pytest_collection_finish(session: pytest.Session) -> None:
    problems = [
        f"{module.__name__}.{name} is not the bridge"
        for (module, name), replacement in REPLACEMENTS.items()
        if getattr(module, name) is not replacement
    ]
    for module_name, names in EXPECTED_IN_TESTS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        problems += [
            f"{module_name}.{name} is {getattr(module, name, None)!r}, not the bridge"
            for name, expected in names.items()
            if not _holds(getattr(module, name, None), expected)
        ]
    asyncio_tests = sys.modules.get("tests.tests_asyncio")
    if asyncio_tests is not None and not _holds(asyncio_tests.tqdm, bridge_asyncio.tqdm_asyncio):
        problems.append("tests.tests_asyncio.tqdm does not build the bridge's tqdm_asyncio")
    for contrib in (tqdm.contrib, tqdm.contrib.itertools, tqdm.contrib.concurrent):
        if contrib.tqdm_auto is not bridge_auto.tqdm:
            problems.append(f"{contrib.__name__}.tqdm_auto is not the bridge")
    if problems:
        raise pytest.UsageError("the bridge did not replace tqdm: " + "; ".join(problems))


def pytest_sessionfinish(session: pytest.Session) -> None:
    delivered = jp.flush(timeout=10.0)
    last_status: dict[str, str] = {}
    for message in MemorySink.named(SINK.split("://", 1)[1]):
        status = getattr(message, "status", None)
        if status is not None:
            last_status[message.job_id] = str(status)
    report = {
        "replaced": sorted(f"{module.__name__}.{name}" for module, name in REPLACEMENTS),
        "jobs_started": len(started_jobs),
        "jobs_ended_in_sink": sum(1 for job in started_jobs if last_status.get(job, "running") != "running"),
        "flushed": delivered,
    }
    path = os.environ.get("JOBPROGRESS_TQDM_SWAP_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
