"""Configuration from the environment never raises into worker code (issue 13, item 5)."""

from __future__ import annotations

import logging
import sys

import pytest

import jobprogress as jp
from jobprogress.errors import ConfigurationError, MissingExtraError
from jobprogress.sinks.memory import MemorySink


@pytest.fixture
def no_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A base install: ``import sqlalchemy`` fails as it does without the sql extra."""
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jobprogress" and r.levelno >= logging.ERROR]


def test_a_sink_from_the_environment_that_needs_a_missing_extra_is_logged_once_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_sqlalchemy: None
) -> None:
    monkeypatch.setenv("JOBPROGRESS_SINKS", "sqlite:///x.db,memory://env-item5")
    caplog.set_level(logging.DEBUG, logger="jobprogress")

    with jp.track("env-job", unit="files", total=2) as tracker:  # no exception into worker code
        tracker.advance(2)
    with jp.track("env-job-2", unit="files"):
        pass
    assert jp.flush(5.0)

    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert "JOBPROGRESS_SINKS='sqlite:///x.db'" in errors[0]
    assert "pip install 'jobprogress-sdk[sql]'" in errors[0]
    assert "tracking continues without that sink" in errors[0]
    # The other sink still gets everything.
    finals = {m.job_id for m in MemorySink.named("env-item5") if getattr(m, "status", None) == "succeeded"}
    assert finals == {"env-job", "env-job-2"}
    assert list(jp.stats()["sinks"]) == ["memory://env-item5"]


@pytest.mark.parametrize(
    ("url", "extra"), [("duckdb:///x.duckdb", "duckdb"), ("postgresql://h/db", "postgres")]
)
def test_the_missing_extra_hint_names_the_exact_extra_at_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_sqlalchemy: None,
    url: str,
    extra: str,
) -> None:
    monkeypatch.setenv("JOBPROGRESS_SINKS", url)
    with jp.track("hint-job", unit="files"):
        pass
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert f"pip install 'jobprogress-sdk[{extra}]'" in errors[0]
    assert "[sql]" not in errors[0]


def test_an_explicit_configure_still_raises(monkeypatch: pytest.MonkeyPatch, no_sqlalchemy: None) -> None:
    with pytest.raises(MissingExtraError, match=r"jobprogress-sdk\[sql\]"):
        jp.configure(sinks=["sqlite:///x.db"])
    monkeypatch.setenv("JOBPROGRESS_SINKS", "sqlite:///x.db")
    with pytest.raises(MissingExtraError):  # configure() reads the environment and says what is wrong
        jp.configure()


@pytest.mark.parametrize(
    ("variable", "value", "setting", "default"),
    [
        ("JOBPROGRESS_INTERVAL", "fast", "interval", 1.0),
        ("JOBPROGRESS_MAX_BATCH", "0", "max_batch", 500),
        ("JOBPROGRESS_KEEPALIVE", "0.5", "keepalive", 10.0),
    ],
)
def test_a_bad_environment_value_is_logged_with_the_fix_and_the_default_used(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    setting: str,
    default: object,
) -> None:
    from jobprogress import _runtime

    monkeypatch.setenv(variable, value)
    with jp.track("bad-env", unit="files"):
        pass
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert f"{variable}={value!r} is not used" in errors[0]
    assert "Fix the variable or unset it" in errors[0]
    assert getattr(_runtime.settings(), setting) == default
    with pytest.raises(ConfigurationError):
        jp.configure()
