"""Schema-driven fuzz of the collector against its own OpenAPI document (schemathesis), no 5xx allowed.

Bounded: 10 examples per operation (plus schemathesis' boundary cases), on one uvicorn server per
backend (SQLite, and Postgres when configured). Request bodies are generated since the OpenAPI document's
references resolve (before, schemathesis skipped them): the id rule's Unicode 13.0 character class makes
each write route cost 5-15 s on a 2-core machine. The thorough run is ``tox -e wire-fuzz``
(tests/server/wire_fuzz/run.py): every check, positive and negative data, against ``jobprogress serve``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

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

# About a minute and a half of generated requests: interpreter-independent, so tox runs it once (py311).
pytestmark = pytest.mark.once


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def collector_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Postgres is the stricter backend (no NUL in text, BIGINT bounds): bad input must stop before it.
    prefix = f"fuzz{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'progress.db'}"
    else:
        db_url = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL", "")
        if not db_url:
            pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to fuzz against Postgres too")
    app = create_app(db_url, token=TOKEN, table_prefix=prefix)
    try:
        with running_app(app) as url:
            yield url
    finally:
        if request.param == "postgres":
            from sqlalchemy import create_engine

            from jobprogress.store.schema import drop_schema

            engine = create_engine(db_url)
            drop_schema(engine, prefix)
            engine.dispose()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@SCHEMA.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure here is reproducible
)
def test_fuzz_collector_api_never_answers_5xx(case, collector_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=collector_url, session=session, headers=auth(), checks=CHECKS)


class _Recorder:
    """A store double that records any access: without a token there must be none."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, messages: object) -> None:
        self.calls.append("write")

    def jobs(self, **_: object) -> list[object]:
        self.calls.append("jobs")
        return []

    def job(self, job_id: str) -> None:
        self.calls.append("job")

    def ping(self) -> None:
        pass  # GET /readyz asks whether the store answers: open by design (probes carry no token)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[str, _Recorder]]:
    store = _Recorder()
    with running_app(create_app(token=TOKEN, writer=store, reader=store)) as url:
        yield url, store
    assert store.calls == []


@QUICK_SCHEMA.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_without_a_token_is_always_401(
    case, guarded: tuple[str, _Recorder], session: requests.Session
) -> None:
    url, _ = guarded
    response = case.call(base_url=url, session=session)
    if case.path.startswith("/v1/"):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"][0].startswith("Bearer")
    else:
        assert response.status_code < 500
