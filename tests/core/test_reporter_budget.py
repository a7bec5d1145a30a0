"""The reporter's CPU budget: sampling slows down only when passes would take more than 3.5 % of a core."""

from __future__ import annotations

import pytest

from jobprogress._reporter import CPU_BUDGET, Reporter
from jobprogress.config import resolve_settings
from jobprogress.testing import FakeClock


class _NullSink:
    def send(self, messages: object) -> None:
        pass

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass


def _reporter(interval: float = 1.0) -> Reporter:
    settings = resolve_settings({"interval": interval})
    return Reporter(settings, [("null", _NullSink())], clock=FakeClock(), threaded=False)


def test_cheap_passes_keep_the_configured_period() -> None:
    reporter = _reporter()
    for _ in range(20):
        reporter._budget(0.002)  # 2 ms a second: well inside the budget
    assert reporter.stats()["sample_period"] == 1.0


def test_expensive_passes_stretch_the_period_to_the_budget() -> None:
    reporter = _reporter()
    for _ in range(30):
        reporter._budget(0.1)  # 100 ms per pass, e.g. tens of thousands of live trackers
    assert reporter.stats()["sample_period"] == pytest.approx(0.1 / CPU_BUDGET, rel=0.01)
    for _ in range(30):
        reporter._budget(0.001)  # load gone: back to the configured period
    assert reporter.stats()["sample_period"] == 1.0


def test_short_intervals_are_kept_when_cheap() -> None:
    reporter = _reporter(interval=0.2)
    reporter._budget(0.001)
    assert reporter.stats()["sample_period"] == 0.2
