"""The status vocabulary and the job-state rule (``jobprogress._states``), shared by every room."""

from __future__ import annotations

import pytest

from jobprogress import _states as s


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["succeeded", "failed", "running"], "failed"),
        (["succeeded", "running", "cancelled"], "running"),
        (["succeeded", "cancelled"], "cancelled"),
        (["succeeded", "succeeded"], "succeeded"),
        ([], "succeeded"),
    ],
)
def test_job_status_from_workers(statuses: list[str], expected: str) -> None:
    assert s.job_status(statuses) == expected


def test_lost_and_stalled_only_judge_running() -> None:
    assert s.job_state("running", stalled=True, lost=True) == "lost"
    assert s.job_state("running", stalled=True, lost=False) == "stalled"
    assert s.job_state("running", stalled=False, lost=False) == "running"
    assert s.job_state("failed", stalled=True, lost=True) == "failed"


def test_groups_expand_in_view_order_and_unknown_words_name_the_valid_ones() -> None:
    assert s.expand_states(["ready", "lost"]) == ("lost", "succeeded", "cancelled")
    assert s.expand_states(["actionable"]) == s.ACTIONABLE
    with pytest.raises(ValueError, match="unknown status 'done'; valid: failed, lost, stalled, running"):
        s.expand_states(["done"])


def test_vocabularies_agree() -> None:
    assert set(s.JOB_STATES) == set(s.STATUSES) | {s.LOST, s.STALLED}
    assert s.FINAL_STATUSES == set(s.STATUSES) - {s.RUNNING}
    assert set(s.JOB_STATUS_PRECEDENCE) == set(s.STATUSES)
    assert set(s.STATUS_FILTERS) == set(s.JOB_STATES)


def test_the_wire_models_use_the_same_words_and_limits() -> None:
    from jobprogress.envelope import Heartbeat, JobStatus

    assert tuple(status.value for status in JobStatus) == s.STATUSES
    with pytest.raises(ValueError, match="kind"):
        Heartbeat(
            job_id="j",
            worker_id="w",
            run_id="r",
            seq=1,
            status="running",
            kind="k" * 65,
            updated_at="2026-01-01T00:00:00Z",
        )
