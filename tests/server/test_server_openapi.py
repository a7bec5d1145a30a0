"""The collector's OpenAPI document (``server.openapi``)."""

from __future__ import annotations

from collections.abc import Iterator

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


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves() -> None:
    # The wire's shared rules were once referred to as #/components/schemas/#/components/schemas/Id:
    # unresolvable, so schemathesis skipped the request bodies altogether.
    document = openapi_document()
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_path_and_query_texts_follow_the_routes_rules() -> None:
    # The route checks a job id with the wire's id rule and a kind with the text rule: so does the document.
    paths = openapi_document()["paths"]
    job_parameter = paths["/v1/jobs/{job_id}"]["get"]["parameters"][0]
    assert job_parameter["schema"] == {"$ref": "#/components/schemas/Id"}
    kind = next(item for item in paths["/v1/jobs"]["get"]["parameters"] if item["name"] == "kind")
    assert kind["schema"]["pattern"] == "^[^\\x00]*$"
