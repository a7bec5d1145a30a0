"""The HTTP collector: ``jobprogress serve`` receives worker messages over HTTP and writes them to a store.

Needs the ``server`` extra (Starlette and uvicorn)::

    from jobprogress.server import create_app, serve

    serve("sqlite:///progress.db", host="127.0.0.1", port=8787, token_file="/etc/jobprogress/token")

Importing this package is cheap; Starlette and uvicorn load when :func:`create_app` or :func:`serve`
is first used, and a missing extra raises :class:`~jobprogress.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobprogress._lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app, create_web_app
    from .openapi import openapi_document
    from .runner import read_token_file, serve, serve_web

__all__ = ["create_app", "create_web_app", "openapi_document", "read_token_file", "serve", "serve_web"]

_LAZY = {
    "create_app": "jobprogress.server.app",
    "create_web_app": "jobprogress.server.app",
    "openapi_document": "jobprogress.server.openapi",
    "read_token_file": "jobprogress.server.runner",
    "serve": "jobprogress.server.runner",
    "serve_web": "jobprogress.server.runner",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
