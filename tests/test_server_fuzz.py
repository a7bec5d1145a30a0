"""Schema-driven fuzz of the collector against its own OpenAPI document (schemathesis), no 5xx allowed.

Bounded: a fixed number of examples per operation, all on one uvicorn server over a SQLite store;
the whole module takes well under 30 s on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from _http_support import TOKEN, auth, running_app  # noqa: E402
from jobprogress.server import create_app, openapi_document  # noqa: E402

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
# Generated examples only (no coverage phase): enough to show every route asks for the token.
QUICK_SCHEMA = schemathesis.openapi.from_dict(
    openapi_document(), config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def collector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database: Path = tmp_path_factory.mktemp("fuzz") / "progress.db"
    app = create_app(f"sqlite:///{database}", token=TOKEN)
    with running_app(app) as url:
        yield url


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@SCHEMA.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure here is reproducible
)
def test_fuzz_collector_api_never_answers_5xx(case, collector_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=collector_url, session=session, headers=auth(), checks=CHECKS)


@QUICK_SCHEMA.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_without_a_token_is_always_401(case, collector_url: str, session: requests.Session) -> None:
    response = case.call(base_url=collector_url, session=session)
    if case.path.startswith("/v1/"):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"][0].startswith("Bearer")
    else:
        assert response.status_code < 500
