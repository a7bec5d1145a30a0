"""The collector's OpenAPI document (``server.openapi``)."""

from __future__ import annotations

from jobprogress.server import openapi_document


def test_openapi_document_shows_resume_and_attempts() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Heartbeat"]["properties"]["resume"] == {
        "default": False,
        "title": "Resume",
        "type": "boolean",
    }
    assert "resume" not in schemas["Heartbeat"]["required"]  # optional: v1 heartbeats stay valid
    for view in ("JobView", "WorkerView"):
        assert schemas[view]["properties"]["attempt"]["type"] == "integer"
        assert "attempt" in schemas[view]["required"]  # always in a response


def test_status_filters_are_the_stores() -> None:
    from jobprogress.server.openapi import JOB_FILTERS
    from jobprogress.store.query import STATUS_FILTERS

    assert tuple(JOB_FILTERS) == tuple(STATUS_FILTERS)
