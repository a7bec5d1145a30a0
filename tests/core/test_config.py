"""Settings resolution (``jobprogress.config``): explicit arguments, ``JOBPROGRESS_*``, defaults, errors."""

from __future__ import annotations

from dataclasses import fields

import pytest

from jobprogress.config import SETTING_NAMES, Settings, default_worker_id, resolve_settings
from jobprogress.errors import ConfigurationError


def test_defaults_without_arguments_or_environment() -> None:
    settings = resolve_settings({}, environ={})
    assert settings == Settings()
    assert (settings.interval, settings.keepalive, settings.exit_timeout) == (1.0, 10.0, 2.0)
    assert (settings.outbox, settings.handle_sigterm) == (None, True)


def test_an_explicit_argument_wins_over_the_environment_which_wins_over_the_default() -> None:
    environ = {"JOBPROGRESS_INTERVAL": "2.5", "JOBPROGRESS_KEEPALIVE": "30", "JOBPROGRESS_OUTBOX": ""}
    settings = resolve_settings({"interval": 3}, environ=environ)
    assert (settings.interval, settings.keepalive, settings.outbox) == (3.0, 30.0, "")


def test_every_setting_has_a_check_and_an_environment_name() -> None:
    assert set(SETTING_NAMES) == {field.name for field in fields(Settings)}


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        ({"interval": "soon"}, {}, "interval must be a number of seconds, got 'soon'"),
        ({"interval": -1}, {}, "interval must be a finite number > 0, got -1"),
        (
            {},
            {"JOBPROGRESS_MAX_BATCH": "0"},
            "JOBPROGRESS_MAX_BATCH must be an integer from 1 to 1000, got '0'",
        ),
        ({"on_oversize": "shout"}, {}, "on_oversize must be one of 'raise', 'drop', got 'shout'"),
        ({}, {"JOBPROGRESS_HANDLE_SIGTERM": "maybe"}, "JOBPROGRESS_HANDLE_SIGTERM must be true or false"),
        ({"outbox": 3}, {}, "outbox must be a directory path, or '' for no outbox, got 3"),
        ({"interval": 5, "keepalive": 2}, {}, "keepalive (2.0) must be at least interval (5.0)"),
        ({"bogus": 1}, {}, "unknown configure() argument(s) bogus; valid: sinks, worker_id"),
    ],
)
def test_bad_values_name_the_setting_the_value_and_what_is_valid(
    arguments: dict[str, object], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_settings(arguments, environ=environ)
    assert message in str(raised.value)


@pytest.mark.parametrize(("word", "value"), [("1", True), ("TRUE", True), (" no ", False), ("off", False)])
def test_flags_accept_the_usual_words(word: str, value: bool) -> None:
    assert resolve_settings({}, environ={"JOBPROGRESS_HANDLE_SIGTERM": word}).handle_sigterm is value


def test_sinks_from_a_comma_separated_variable_and_the_default_worker_id() -> None:
    settings = resolve_settings({}, environ={"JOBPROGRESS_SINKS": " stdout:// , memory://x ,"})
    assert settings.sinks == ("stdout://", "memory://x")
    assert settings.resolved_worker_id == default_worker_id()
    assert default_worker_id().endswith(":" + str(__import__("os").getpid()))
