"""The collector's OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from jobprogress._states import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_KIND_LENGTH, STATUS_FILTERS
from jobprogress._version import __version__
from jobprogress._wire_schema import TEXT_PATTERN, wire_definitions
from jobprogress.store.views import JobView

__all__ = ["JOB_FILTERS", "openapi_document"]

JOB_FILTERS: Final = STATUS_FILTERS
"""Values of ``GET /v1/jobs?status=``: a stored status, or a liveness judgement of running jobs."""

_REF: Final = "#/components/schemas/{model}"

_ERROR_SCHEMA: Final = {
    "type": "object",
    "description": "A refused request: what was wrong, and for validation failures each bad field.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["detail"],
}


_STATUS_SCHEMA: Final = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["status"],
}


def _error(description: str, *, retry_after: bool = False, authenticate: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    headers: dict[str, Any] = {}
    if retry_after:
        headers["Retry-After"] = {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    if authenticate:
        headers["WWW-Authenticate"] = {"schema": {"type": "string"}}
    if headers:
        response["headers"] = headers
    return response


def _common_errors() -> dict[str, Any]:
    return {
        "401": _error("Missing or wrong bearer token, or a token in the query string.", authenticate=True),
        "429": _error("Too many requests in flight; retry after the stated time.", retry_after=True),
        "503": _error(
            "Too busy, or the database is unavailable; retry after the stated time.", retry_after=True
        ),
    }


def _write_operation(summary: str, schema: dict[str, Any], max_body: int) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "description": (
            f"The body is JSON (Content-Type: application/json), at most {max_body} bytes; it may be "
            "sent with Content-Encoding: gzip, and is inflated under the same bound."
        ),
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {
                "description": "Accepted (stale or duplicate seq included: it changes nothing).",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"accepted": {"type": "integer", "minimum": 0}},
                            "required": ["accepted"],
                        }
                    }
                },
            },
            "400": _error("The body is not JSON (NaN and Infinity are not JSON), or not valid gzip."),
            "408": _error("The body did not arrive in time."),
            "413": _error(f"The body is over {max_body} bytes, before or after inflation."),
            "415": _error(
                "A Content-Type other than application/json, or a Content-Encoding other than gzip."
            ),
            "422": _error("A field is missing or invalid; `errors` names each one."),
            **_common_errors(),
        },
    }


def _build(max_body: int, max_batch: int) -> dict[str, Any]:
    # The request schemas are the wire's JSON Schema (``jobprogress schema``), the same definitions.
    _, views = models_json_schema([(JobView, "serialization")], ref_template=_REF)
    schemas: dict[str, Any] = {**views["$defs"], **wire_definitions(_REF)}
    batch = schemas["Batch"]
    batch["maxItems"] = max_batch
    batch["x-maxBodyBytes"] = max_body
    batch["description"] = (
        f"Up to {batch['maxItems']} messages, oldest first, in a body of at most {max_body} bytes."
    )
    schemas["Error"] = _ERROR_SCHEMA
    job_id_parameter = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"$ref": _REF.format(model="Id")},  # what the route checks: the wire's id rule
    }
    read_errors = {
        "400": _error("A query parameter is malformed."),
        "422": _error("A query parameter is out of range; `errors` names it."),
        **_common_errors(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobprogress collector",
            "version": __version__,
            "description": (
                "Receives Heartbeat and ProgressUpdate messages from jobprogress workers, writes them "
                "to a progress store, and serves the aggregated Jobs view."
            ),
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness of the collector process (no authentication).",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Up.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "status": {"type": "string"},
                                            "version": {"type": "string"},
                                        },
                                        "required": ["status"],
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: whether the progress store answers a query (no authentication).",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The store answered.",
                            "content": {"application/json": {"schema": _STATUS_SCHEMA}},
                        },
                        "503": {
                            "description": "The store did not answer within 5 s.",
                            "content": {"application/json": {"schema": _STATUS_SCHEMA}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The collector's metrics in the Prometheus text format.",
                    "description": (
                        "Needs the bearer token or the read token (Prometheus: `authorization: "
                        "{credentials_file: …}`), unless the collector runs with --open."
                    ),
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": {
                            "description": "Missing or wrong token.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                        },
                        "503": _error("Too busy; retry after the stated time.", retry_after=True),
                    },
                }
            },
            "/v1/heartbeat": {
                "post": _write_operation(
                    "Store one heartbeat.", {"$ref": _REF.format(model="Heartbeat")}, max_body
                )
            },
            "/v1/progress": {
                "post": _write_operation(
                    "Store one progress update.", {"$ref": _REF.format(model="ProgressUpdate")}, max_body
                )
            },
            "/v1/batch": {
                "post": _write_operation(
                    f"Store up to {batch['maxItems']} messages, oldest first.",
                    {"$ref": _REF.format(model="Batch")},
                    max_body,
                )
            },
            "/v1/jobs": {
                "get": {
                    "summary": "The Jobs view: one aggregate per job, workers included.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(JOB_FILTERS)},
                        },
                        {
                            "name": "kind",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "maxLength": MAX_KIND_LENGTH,
                                "pattern": TEXT_PATTERN,
                            },
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
                        },
                        {
                            "name": "active_within",
                            "in": "query",
                            "description": "Only jobs with a message in the last this many seconds.",
                            "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Jobs, most recently updated first.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {"$ref": _REF.format(model="JobView")},
                                    }
                                }
                            },
                        },
                        **read_errors,
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "summary": "One job, aggregated over its workers.",
                    "security": [{"bearer": []}],
                    "parameters": [job_id_parameter],
                    "responses": {
                        "200": {
                            "description": "The job.",
                            "content": {
                                "application/json": {"schema": {"$ref": _REF.format(model="JobView")}}
                            },
                        },
                        "404": _error("No such job."),
                        **read_errors,
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_cache: dict[tuple[int, int], dict[str, Any]] = {}


def openapi_document(
    *, max_body: int = MAX_BATCH_BYTES, max_batch: int = MAX_BATCH_MESSAGES
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a collector with these limits (a fresh copy each call)."""
    key = (max_body, max_batch)
    if key not in _cache:
        _cache[key] = _build(max_body, max_batch)
    return copy.deepcopy(_cache[key])
