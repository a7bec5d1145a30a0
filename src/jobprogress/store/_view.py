"""The ``{prefix}jobs`` SQL view: one row per job, as ``jobprogress jobs --json`` shows it, for SQL clients.

Created with the tables and replaced by each schema migration, so its columns follow the schema
version. It aggregates the newest attempt of each job by the rules of DESIGN §6 (those of
:mod:`._aggregate`), judges liveness on the database's own clock with the default ``stall_after`` of
30 seconds (a view takes no parameters), and shows times as ``timestamptz`` on Postgres and DuckDB and
as ISO-8601 UTC text on SQLite. The raw table keeps its POSIX-second columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from jobprogress._states import CANCELLED, FAILED, LOST, MAX_COUNT, RUNNING, STALLED, SUCCEEDED

from ._engine import now_sql
from ._eta import LOST_REASON, STALLED_REASON

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .schema import StoreTables

__all__ = ["VIEW_STALL_AFTER", "create_jobs_view", "jobs_view_sql", "view_name"]

VIEW_STALL_AFTER: Final = 30.0
"""Seconds of silence (lost) or of no progress (stalled) after which the view flags a running worker."""


def view_name(tables: StoreTables) -> str:
    return f"{tables.prefix}jobs"


def _time(dialect: str, column: str) -> str:
    if dialect == "sqlite":
        return f"strftime('%Y-%m-%dT%H:%M:%fZ', {column}, 'unixepoch')"
    return f"to_timestamp({column})"


def jobs_view_sql(tables: StoreTables, dialect: str) -> str:
    """The view's SELECT for ``dialect`` (``sqlite``, ``postgresql`` or ``duckdb``)."""
    from ._url import Backend

    backend: Backend = (
        "sqlite" if dialect == "sqlite" else "postgresql" if dialect == "postgresql" else "duckdb"
    )
    now = str(now_sql(backend))
    table = tables.progress.name
    cutoff = f"(({now}) - {VIEW_STALL_AFTER})"
    running = f"r.status = '{RUNNING}'"
    lost = f"({running} AND r.seen_at < {cutoff})"
    stalled = f"({running} AND r.seen_at >= {cutoff} AND r.progressed_at < {cutoff})"
    # As the read side's flags: a NULL comparison is neither lost nor stalled.
    live = f"({running} AND CASE WHEN {lost} THEN 0 ELSE 1 END = 1)"
    progressing = f"({live} AND CASE WHEN {stalled} THEN 0 ELSE 1 END = 1)"
    payload = "payload_json::jsonb" if dialect == "postgresql" else "payload_json"
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "DOUBLE" if dialect == "duckdb" else "REAL"

    def newest(column: str, where: str, order: str) -> str:
        # The worker whose field the job shows, by the tie-breaks of _aggregate: latest first, then seq,
        # then the first worker id.
        return (
            f"(SELECT w.{column} FROM {table} w WHERE w.job_id = a.job_id AND w.attempt = a.attempt "
            f"AND {where} ORDER BY {order}, COALESCE(w.seq, 0) DESC, w.worker_id LIMIT 1)"
        )

    mixed = "COUNT(DISTINCT r.unit) > 1"
    # The sharded-job ETA of _eta.job_eta: a running worker with a total of its own is a shard,
    # unfinished while done < total; flagged is 1 for a lost or stalled worker (NULLs flag nothing).
    unfinished = f"({running} AND r.total IS NOT NULL AND COALESCE(r.done, 0) < r.total)"
    flagged = f"(CASE WHEN {lost} THEN 1 WHEN {stalled} THEN 1 ELSE 0 END)"
    aggregated = f"""
SELECT r.job_id AS job_id,
       MAX(r.attempt) AS attempt,
       MAX(r.kind) AS kind,
       CASE WHEN {mixed} THEN NULL ELSE MAX(r.unit) END AS unit,
       CASE WHEN {mixed} THEN NULL ELSE SUM(r.done) END AS done,
       CASE WHEN {mixed} OR COUNT(r.total) < COUNT(*) THEN NULL ELSE SUM(r.total) END AS total,
       CASE WHEN {mixed} THEN NULL
            WHEN SUM(CASE WHEN {live} AND r.throughput IS NOT NULL THEN 1 ELSE 0 END) > 0
            THEN CAST(COALESCE(SUM(CASE WHEN {progressing} THEN r.throughput END), 0) AS {real}) END
            AS throughput,
       CASE WHEN SUM(CASE WHEN r.status = '{FAILED}' THEN 1 ELSE 0 END) > 0 THEN '{FAILED}'
            WHEN SUM(CASE WHEN {running} THEN 1 ELSE 0 END) > 0 THEN '{RUNNING}'
            WHEN SUM(CASE WHEN r.status = '{CANCELLED}' THEN 1 ELSE 0 END) > 0 THEN '{CANCELLED}'
            ELSE '{SUCCEEDED}' END AS status,
       SUM(CASE WHEN {running} THEN 1 ELSE 0 END) AS running_workers,
       SUM(CASE WHEN {lost} THEN 1 ELSE 0 END) AS lost_workers,
       SUM(CASE WHEN {stalled} THEN 1 ELSE 0 END) AS stalled_workers,
       CASE WHEN {mixed} THEN 1 ELSE 0 END AS mixed_units,
       SUM(CASE WHEN {running} AND r.total IS NULL THEN 1 ELSE 0 END) AS queue_workers,
       SUM(CASE WHEN {unfinished} THEN 1 ELSE 0 END) AS open_shards,
       SUM(CASE WHEN {unfinished} AND {lost} THEN 1 ELSE 0 END) AS lost_shards,
       SUM(CASE WHEN {unfinished} AND {stalled} THEN 1 ELSE 0 END) AS stalled_shards,
       SUM(CASE WHEN {unfinished} AND {flagged} = 0 AND r.eta_seconds IS NULL
                     AND COALESCE(r.throughput, 0) = 0 THEN 1 ELSE 0 END) AS unrated_shards,
       MAX(CASE WHEN {unfinished} AND r.eta_seconds IS NOT NULL THEN CAST(r.eta_seconds AS {real})
                WHEN {unfinished} AND r.throughput <> 0
                THEN CAST(r.total - COALESCE(r.done, 0) AS {real}) / r.throughput END) AS slowest_shard,
       MAX(r.updated_at) AS updated_at,
       MAX(r.seen_at) AS seen_at,
       COUNT(*) AS workers
FROM {table} r
JOIN (SELECT job_id, MAX(attempt) AS attempt FROM {table} GROUP BY job_id) n
  ON r.job_id = n.job_id AND r.attempt = n.attempt
GROUP BY r.job_id"""
    remaining = "(CASE WHEN a.total > a.done THEN a.total - a.done ELSE 0 END)"
    seconds = f"({remaining} / a.throughput)"
    slowest = "a.slowest_shard"
    judged = "a.running_workers > 0 AND a.lost_workers = a.running_workers"
    stalled_job = (
        "a.running_workers > 0 AND a.stalled_workers > 0 "
        "AND a.lost_workers + a.stalled_workers = a.running_workers"
    )
    return f"""SELECT a.job_id AS job_id,
       CASE WHEN a.status <> '{RUNNING}' THEN a.status
            WHEN {judged} THEN '{LOST}'
            WHEN {stalled_job} THEN '{STALLED}'
            ELSE '{RUNNING}' END AS state,
       a.kind AS kind, a.unit AS unit, a.done AS done, a.total AS total, a.throughput AS throughput,
       CASE WHEN a.mixed_units = 1 THEN NULL
            WHEN a.queue_workers > 0 OR a.open_shards = 0 THEN
              CASE WHEN a.total IS NULL OR a.done IS NULL THEN NULL
                   WHEN {remaining} = 0 THEN 0
                   WHEN a.open_shards = 0 THEN NULL
                   WHEN a.throughput > 0
                   THEN CAST({seconds} AS BIGINT)
                        + CASE WHEN {seconds} > CAST({seconds} AS BIGINT) THEN 1 ELSE 0 END
                   END
            WHEN a.lost_shards + a.stalled_shards + a.unrated_shards > 0 THEN NULL
            WHEN a.slowest_shard > {MAX_COUNT} THEN NULL
            WHEN a.slowest_shard <= 0 THEN 0
            ELSE CAST({slowest} AS BIGINT) + CASE WHEN {slowest} > CAST({slowest} AS BIGINT) THEN 1 ELSE 0 END
            END AS eta_seconds,
       CASE WHEN a.mixed_units = 1 OR a.queue_workers > 0 OR a.open_shards = 0 THEN NULL
            WHEN a.lost_shards > 0 THEN '{LOST_REASON}'
            WHEN a.stalled_shards > 0 THEN '{STALLED_REASON}'
            END AS eta_reason,
       a.status AS status,
       CASE WHEN {stalled_job} THEN TRUE ELSE FALSE END AS stalled,
       CASE WHEN {judged} THEN TRUE ELSE FALSE END AS lost,
       {_time(dialect, "a.updated_at")} AS updated_at,
       {newest("error", f"w.status = '{FAILED}'", "COALESCE(w.progressed_at, 0) DESC")} AS error,
       {newest(payload, "w.payload_json IS NOT NULL", "COALESCE(w.seen_at, 0) DESC")} AS payload,
       a.attempt AS attempt,
       a.workers AS workers,
       {_time(dialect, "a.seen_at")} AS seen_at
FROM ({aggregated}) a"""


def create_jobs_view(connection: Connection, tables: StoreTables) -> None:
    """(Re)create ``{prefix}jobs`` inside the creating or migrating transaction."""
    from sqlalchemy import text

    dialect = connection.dialect.name
    name = connection.dialect.identifier_preparer.quote(view_name(tables))
    connection.execute(text(f"DROP VIEW IF EXISTS {name}"))
    connection.execute(text(f"CREATE VIEW {name} AS {jobs_view_sql(tables, dialect)}"))
