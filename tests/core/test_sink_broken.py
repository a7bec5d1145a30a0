"""A sink that cannot work fails once and clearly, not by retrying for ever (issue 13, item 4).

A store whose tables cannot be created (a schema nobody made, no right to create) makes the SQL sink
give up after ``SCHEMA_TRIES`` sends with ``SinkError(broken=True)``: one error in the log, the reason
in ``jp.stats()``, ``flush()`` returning False at once, and the newest states kept for the outbox.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import jobprogress as jp
from _core_faults import (  # noqa: F401  (fixtures)
    fault_sink_plugins,
    fault_sinks,
    scripted,
    sink_stats,
    wait_for,
)
from jobprogress.errors import SinkError
from jobprogress.sinks.sql import SCHEMA_TRIES


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jobprogress" and r.levelno >= logging.ERROR]


@pytest.mark.usefixtures("fault_sink_plugins")
def test_a_broken_sink_is_not_retried_and_flush_says_so_at_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobprogress")
    jp.configure(sinks=["scripted://broken"], interval=0.01, outbox=str(tmp_path / "outbox"))
    sink = scripted("broken")
    sink.always = lambda: SinkError("cannot create the progress tables: no schema", broken=True)
    with jp.track("broken-job", unit="files", total=2) as tracker:
        tracker.advance(2)
    wait_for(lambda: sink.attempts, what="a first send")

    started = time.monotonic()
    assert jp.flush(10.0) is False
    assert time.monotonic() - started < 1.0  # nothing to wait for: the sink will not take anything
    stats = sink_stats("broken")
    assert stats["broken"] == "cannot create the progress tables: no schema"
    assert stats["failing"] is True
    assert stats["pending"] >= 1  # the newest state is kept: it goes to the outbox
    assert stats["spooled"] >= 1
    assert len(sink.attempts) == 1  # never sent again
    assert _errors(caplog) == [
        "jobprogress: sink scripted://broken cannot work, nothing more is sent to it: "
        "cannot create the progress tables: no schema"
    ]
    assert jp.shutdown(2.0) is False


@pytest.mark.postgres
def test_postgres_without_the_schema_fails_the_sink_after_bounded_tries(
    postgres_url: str, unique_name: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobprogress")
    url = f"{postgres_url.split('?', 1)[0]}?options=-csearch_path%3D{unique_name}"  # no such schema
    jp.configure(sinks=[url], outbox=str(tmp_path / "outbox"))
    with jp.track("no-schema", unit="files", total=3) as tracker:
        tracker.advance(3)

    started = time.monotonic()
    assert jp.flush(10.0) is False
    assert time.monotonic() - started < 8.0
    (stats,) = jp.stats()["sinks"].values()
    assert stats["broken"] is not None
    assert f"({SCHEMA_TRIES} tries)" in stats["broken"]
    assert "create what is missing" in stats["broken"]
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert "cannot create the progress tables" in errors[0]
