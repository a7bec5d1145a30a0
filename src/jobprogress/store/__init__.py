"""Durable progress: the ``cf_job_progress`` table, idempotent writers, and the Jobs read side.

Public API (SQLAlchemy 2 Core; needs the ``sql`` extra, plus ``postgres`` or ``duckdb`` for those)::

    from jobprogress.store import ProgressStore, StoreWriter, JobView, WorkerView

    StoreWriter(url, *, table_prefix="cf_", history=False, ...)   # .write(messages), .close()
    ProgressStore(url, *, stall_after=30.0, table_prefix="cf_")   # .jobs(...), .job(job_id), .close()

Stores for one URL share one engine, so polling never leaks connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobprogress._lazy import lazy_attributes

if TYPE_CHECKING:
    from .query import ProgressStore
    from .views import JobView, WorkerView
    from .writer import StoreWriter

__all__ = ["JobView", "ProgressStore", "StoreWriter", "WorkerView"]

_LAZY = {
    "ProgressStore": "jobprogress.store.query",
    "StoreWriter": "jobprogress.store.writer",
    "JobView": "jobprogress.store.views",
    "WorkerView": "jobprogress.store.views",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
