"""Fixtures of the CLI tests: a click runner and a store holding one job of each kind and state."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from _cli_support import fill_store


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'jobs.db'}"
    fill_store(url)
    return url
