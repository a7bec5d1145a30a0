"""Shared fixtures: each test gets a fresh jobprogress runtime and a clean JOBPROGRESS_* environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from jobprogress.testing import reset

POSTGRES_ENV = "JOBPROGRESS_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fresh-clone",
        action="store_true",
        help="run the fresh-venv check of the README's set-up commands (tox -e fresh; about a minute)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--fresh-clone"):
        return
    skip = pytest.mark.skip(reason="the fresh-venv check runs once, in tox -e fresh (pytest --fresh-clone)")
    for item in items:
        if "fresh_clone" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("JOBPROGRESS_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    # The default outbox lives in the user cache directory: give every test (and its children) its own.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    reset()
    yield
    reset()


@pytest.fixture
def postgres_url() -> str:
    """The test Postgres URL; the test is skipped with a reason when none is configured."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (CI sets it; export it to run the Postgres tests)")
    return url


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses (table prefixes, schemas, job ids)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests (``@pytest.mark.anyio``) run on both anyio backends."""
    return str(request.param)
