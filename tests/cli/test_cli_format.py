"""The wording of the Jobs view: progress lines per kind (spec §6), sizes, durations, order, filters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from _cli_support import NOW, job, worker
from jobprogress.cli._format import (
    ago,
    human_bytes,
    human_duration,
    job_row,
    parse_states,
    pass_rate,
    progress_line,
    sort_jobs,
    state_of,
    summary_line,
    workers_cell,
)


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        # scan: files done/total, throughput, ETA
        (
            {
                "kind": "scan",
                "unit": "files",
                "done": 120,
                "total": 400,
                "throughput": 35.25,
                "eta_seconds": 65,
            },
            "120/400 files · 35.2 files/s · ETA 1m 05s",
        ),
        # parse by rows, with thousands separators
        (
            {
                "kind": "parse",
                "unit": "rows",
                "done": 1_234_567,
                "total": 5_000_000,
                "throughput": 9000.0,
                "eta_seconds": 7_400,
            },
            "1,234,567/5,000,000 rows · 9,000.0 rows/s · ETA 2h 03m",
        ),
        # parse by bytes: human-sized amounts and rate
        (
            {
                "kind": "parse",
                "unit": "bytes",
                "done": 12 * 1024**2,
                "total": 40 * 1024**2,
                "throughput": 1.5 * 1024**2,
                "eta_seconds": 19,
            },
            "12.0 MiB / 40.0 MiB · 1.5 MiB/s · ETA 19s",
        ),
        (
            {
                "kind": "parse",
                "unit": "bytes",
                "done": 512,
                "total": None,
                "throughput": None,
                "eta_seconds": None,
            },
            "512 B",
        ),
        # backtest: iterations and pass rate from the payload
        (
            {
                "kind": "backtest",
                "unit": "iterations",
                "done": 40,
                "total": 100,
                "payload": {"passed": 30},
                "throughput": None,
                "eta_seconds": None,
            },
            "40/100 iterations · pass 75.0%",
        ),
        (
            {
                "kind": "backtest",
                "unit": "iterations",
                "done": 40,
                "total": 100,
                "payload": {"pass_rate": 0.5},
                "throughput": None,
                "eta_seconds": None,
            },
            "40/100 iterations · pass 50.0%",
        ),
        # schema_eval: paths analysed
        (
            {
                "kind": "schema_eval",
                "unit": "records",
                "done": 12,
                "total": 40,
                "payload": {"paths_analysed": 1234},
                "throughput": None,
                "eta_seconds": None,
            },
            "1,234 paths analysed · 12/40 records",
        ),
        (
            {
                "kind": "schema_eval",
                "unit": "files",
                "done": 12,
                "total": 40,
                "throughput": None,
                "eta_seconds": None,
            },
            "12/40 paths analysed",
        ),
        # any other kind, no total
        (
            {
                "kind": "export",
                "unit": "chunks",
                "done": 7,
                "total": None,
                "throughput": 0.5,
                "eta_seconds": None,
            },
            "7 chunks · 0.5 chunks/s",
        ),
        # workers with different units: the job has no amount
        (
            {
                "kind": "scan",
                "unit": None,
                "done": None,
                "total": None,
                "throughput": None,
                "eta_seconds": None,
                "workers": [worker(unit="files", done=3), worker(worker_id="w2", unit="rows", done=5)],
            },
            "mixed units",
        ),
        # no worker reported progress yet: not "mixed units"
        (
            {"unit": None, "done": None, "total": None, "throughput": None, "eta_seconds": None},
            "no progress yet",
        ),
        # finished: no rate or ETA
        ({"kind": "scan", "status": "succeeded", "done": 400, "total": 400}, "400/400 files"),
    ],
)
def test_progress_line_per_kind(fields: dict[str, object], line: str) -> None:
    assert progress_line(job(**fields)) == line


def test_failed_line_ends_with_a_bounded_error() -> None:
    line = progress_line(job(status="failed", error="ValueError: " + "x" * 300))
    assert line.startswith("10/100 files · ValueError: xxx")
    assert line.endswith("…")
    assert len(line) < 100


@pytest.mark.parametrize(
    ("payload", "done", "percent"),
    [
        ({"pass_rate": 0.25}, 10, 25.0),
        ({"pass_rate": 87.5}, 10, 87.5),  # already a percentage
        ({"passed": 3, "failed": 1}, 10, 75.0),  # passed / (passed + failed)
        ({"passed": 3}, 4, 75.0),  # passed / iterations done
        ({"passed": 3}, 0, None),
        ({"passed": "three"}, 4, None),
        ({"passed": True}, 4, None),  # booleans are not counts
        (None, 4, None),
    ],
)
def test_pass_rate(payload: dict[str, object] | None, done: int, percent: float | None) -> None:
    assert pass_rate(done, payload) == percent


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**3, "5.0 GiB"),
        (2**63 - 1, "8.0 EiB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (90_000, "1d 01h"),
        (-5, "0s"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_ago_uses_the_largest_unit_and_tolerates_clock_skew() -> None:
    assert ago(None, NOW) == "never"
    assert ago(NOW + timedelta(seconds=30), NOW) == "just now"  # another host's clock runs ahead
    assert ago(NOW - timedelta(seconds=5), NOW) == "5s ago"
    assert ago(NOW - timedelta(minutes=3, seconds=5), NOW) == "3m ago"
    assert ago((NOW - timedelta(hours=2)).replace(tzinfo=None), NOW) == "2h ago"  # naive means UTC


def test_states_are_words() -> None:
    assert state_of(job(lost=True)) == "lost"
    assert state_of(job(stalled=True)) == "stalled"
    assert state_of(job(stalled=True, lost=True)) == "lost"
    assert state_of(job(status="failed", lost=True)) == "failed"  # liveness judges running jobs only
    assert state_of(job(status="paused\x1b[2J")) == "paused\\x1b[2J"  # a newer writer's status, escaped


def test_sort_puts_actionable_first_then_running_then_ready() -> None:
    views = [
        job("ok-old", status="succeeded", workers=[worker(seen_at=NOW - timedelta(hours=1))]),
        job("run-b"),
        job("lost", lost=True),
        job("ok-new", status="succeeded", workers=[worker(seen_at=NOW)]),
        job("run-a"),
        job("stalled", stalled=True),
        job("failed", status="failed"),
        job("cancelled", status="cancelled", workers=[worker(seen_at=NOW - timedelta(minutes=1))]),
    ]
    order = [view.job_id for view in sort_jobs(views)]
    assert order == ["failed", "lost", "stalled", "run-a", "run-b", "ok-new", "cancelled", "ok-old"]
    assert summary_line(views) == "8 jobs: 1 failed, 1 lost, 1 stalled, 2 running, 3 ready"


def test_workers_cell_names_trouble() -> None:
    assert workers_cell(job(workers=[worker("a"), worker("b")])) == "2"
    mixed = job(workers=[worker("a", lost=True), worker("b", status="succeeded"), worker("c", lost=True)])
    assert workers_cell(mixed) == "3 (2 lost)"


def test_job_row() -> None:
    assert job_row(job("scan-1", workers=[worker(seen_at=NOW - timedelta(seconds=4))]), NOW) == (
        "scan-1",
        "scan",
        "running",
        "10/100 files · 2.5 files/s · ETA 36s",
        "1",
        "4s ago",
    )


@pytest.mark.parametrize(
    ("values", "states"),
    [
        ((), set()),
        (("failed",), {"failed"}),
        (("lost, stalled", "RUNNING"), {"lost", "stalled", "running"}),
        (("actionable",), {"failed", "lost", "stalled"}),
        (("ready",), {"succeeded", "cancelled"}),
    ],
)
def test_parse_states(values: tuple[str, ...], states: set[str]) -> None:
    assert parse_states(values) == states


def test_parse_states_names_the_valid_words() -> None:
    with pytest.raises(ValueError, match=r"unknown status 'done'.*succeeded.*actionable"):
        parse_states(["done"])
