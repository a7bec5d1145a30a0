"""Which attempt of its job a run belongs to, decided by the writer inside the write transaction.

The rule (DESIGN §6, user guide "Attempts"): a run that starts a (job, worker) row anew — no row yet,
or a row holding another run — joins the job's newest attempt when that attempt still has a running
worker other than the starting one, or when the run is a ``resume=True`` continuation; otherwise it
begins attempt newest + 1 (the job's first run is attempt 1). The starting worker's own old row is
never counted as running: a worker restarted under a fixed worker id replaces that row.

Deciding needs the job's stored rows, so it runs in the write transaction (under SQLite's write lock,
a Postgres advisory lock per job, DuckDB's single writer) and holds across processes and hosts. Only
runs this writer has not stored before are looked up: a bounded cache of (job, worker) → (run, attempt)
keeps steady-state batches at one statement. The runs one batch starts count as starting together,
judged against the rows stored before it: workers whose first messages are stored in one transaction
share an attempt, even when a short worker's first stored state is already final.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from jobprogress._states import RUNNING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql import CompoundSelect
    from sqlalchemy.sql.elements import ColumnElement, TextClause

    from .schema import StoreTables

__all__ = ["LOCK_SPACE", "RUN_CACHE_SIZE", "AttemptPlanner", "RunCache"]

RUN_CACHE_SIZE: Final = 65_536
"""(job, worker) pairs a writer remembers the stored run of: a collector serving 10,000 jobs of 4
workers each stays within it; beyond it the oldest are forgotten and cost one lookup when seen again."""

_LOOKUP_CHUNK: Final = 400
"""Keys per lookup statement: both IN lists stay far below SQLite's bound on bound parameters."""

LOCK_SPACE: Final = 0x6A70  # "jp": the first key of the per-job advisory locks on Postgres

Key = tuple[str, str]
Run = tuple[str, int]
"""A run id and the attempt it belongs to."""


class RunCache:
    """The run (and its attempt) this writer last stored per (job, worker); bounded, oldest out first."""

    __slots__ = ("_lock", "_runs", "_size")

    def __init__(self, size: int = RUN_CACHE_SIZE) -> None:
        self._runs: OrderedDict[Key, Run] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # writes of one writer may commit on several threads

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: Key) -> Run | None:
        return self._runs.get(key)

    def remember(self, learned: Iterable[tuple[Key, Run]]) -> None:
        """Record runs a committed transaction stored."""
        runs = self._runs
        with self._lock:
            for key, run in learned:
                runs[key] = run
                runs.move_to_end(key)  # the newest is the last forgotten
            while len(runs) > self._size:
                runs.popitem(last=False)


class _Job:
    __slots__ = ("newest", "running")

    def __init__(self) -> None:
        self.newest = 0  # 0: the job has no row yet
        self.running = 0  # running rows of the newest attempt


class _Row:
    __slots__ = ("attempt", "run_id", "running", "seq")

    def __init__(self, run_id: str, attempt: int, running: bool, seq: int) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.running = running
        self.seq = seq


class AttemptPlanner:
    """Sets ``row["attempt"]`` on the rows of a batch (see the module docstring).

    Args:
        tables: The writer's tables.
        backend: ``sqlite``, ``postgresql`` or ``duckdb``.
    """

    def __init__(self, tables: StoreTables, backend: str) -> None:
        self._tables = tables
        self._backend = backend
        self._lookup = self._build_lookup(single=False)
        # One starting worker of one job, the usual batch of a process: plain parameters, so the
        # compiled statement is reused as it is (expanding IN lists are rendered on every call).
        self._lookup_one = self._build_lookup(single=True)
        self._lock: TextClause | None = None
        if backend == "postgresql":
            from sqlalchemy import text

            self._lock = text(f"SELECT pg_advisory_xact_lock({LOCK_SPACE}, hashtext(:job_id))")

    def _build_lookup(self, *, single: bool) -> CompoundSelect[Any]:
        from sqlalchemy import BigInteger, String, bindparam, case, cast, func, null, select, union_all

        table = self._tables.progress
        if single:

            def among(column: ColumnElement[str], name: str) -> ColumnElement[bool]:
                return column == bindparam(name, type_=String())
        elif self._backend == "postgresql":
            from sqlalchemy import any_
            from sqlalchemy.dialects.postgresql import ARRAY

            # One array parameter: the statement text is the same for every batch, and its
            # prepared plan probes the primary key per job instead of scanning the table.
            def among(column: ColumnElement[str], name: str) -> ColumnElement[bool]:
                return column == any_(bindparam(name, type_=ARRAY(String())))
        else:

            def among(column: ColumnElement[str], name: str) -> ColumnElement[bool]:
                return column.in_(bindparam(name, expanding=True))

        running = case((table.c.status == RUNNING, 1), else_=0)
        # Per job and attempt: how many rows run. Per (job, worker) of the batch: its stored row.
        per_attempt = (
            select(
                table.c.job_id,
                cast(null(), String).label("worker_id"),
                table.c.attempt,
                func.sum(running).label("running"),
                cast(null(), String).label("run_id"),
                cast(null(), BigInteger).label("seq"),
            )
            .where(among(table.c.job_id, "jobs"))
            .group_by(table.c.job_id, table.c.attempt)
        )
        own = select(
            table.c.job_id,
            table.c.worker_id,
            table.c.attempt,
            running.label("running"),
            table.c.run_id,
            table.c.seq,
        ).where(among(table.c.job_id, "jobs"), among(table.c.worker_id, "workers"))
        return union_all(per_attempt, own)

    def prepare(self, dialect: Any) -> None:
        """Compile the lookup for ``dialect`` ahead of the first write."""
        self._lookup.compile(dialect=dialect)
        self._lookup_one.compile(dialect=dialect)

    def assign(
        self, connection: Connection, rows: Sequence[dict[str, Any]], cache: RunCache
    ) -> list[tuple[Key, Run]]:
        """Set the attempt of every row; look up only jobs with a run ``cache`` does not know.

        Returns:
            The runs to remember once the transaction commits.
        """
        unknown: set[str] = set()
        for row in rows:
            known = cache.get((row["job_id"], row["worker_id"]))
            if known is not None and known[0] == row["run_id"]:
                row["attempt"] = known[1]
            else:
                unknown.add(row["job_id"])
        if not unknown:
            return []
        batch = [row for row in rows if row["job_id"] in unknown]
        jobs, stored = self._read(connection, sorted(unknown), batch)
        return _decide(batch, jobs, stored)

    def _read(
        self, connection: Connection, job_ids: list[str], batch: list[dict[str, Any]]
    ) -> tuple[dict[str, _Job], dict[Key, _Row]]:
        if self._lock is not None:
            # Serialize deciding per job: without it two Postgres transactions could each decide
            # from a snapshot that misses the other's start. Sorted, so two batches never deadlock.
            connection.execute(self._lock, [{"job_id": job_id} for job_id in job_ids])
        jobs = {job_id: _Job() for job_id in job_ids}
        stored: dict[Key, _Row] = {}
        keys = sorted({(row["job_id"], row["worker_id"]) for row in batch})
        wanted = set(keys)
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            if len(chunk) == 1:
                statement, params = self._lookup_one, {"jobs": chunk[0][0], "workers": chunk[0][1]}
            else:
                statement = self._lookup
                params = {
                    "jobs": sorted({job_id for job_id, _ in chunk}),
                    "workers": sorted({worker_id for _, worker_id in chunk}),
                }
            for job_id, worker_id, attempt, running, run_id, seq in connection.execute(statement, params):
                attempt = int(attempt)
                if worker_id is None:
                    job = jobs[job_id]
                    if attempt > job.newest:
                        job.newest, job.running = attempt, int(running or 0)
                elif (job_id, worker_id) in wanted:
                    stored[(job_id, worker_id)] = _Row(run_id, attempt, bool(running), int(seq))
        return jobs, stored


def _decide(
    batch: list[dict[str, Any]], jobs: dict[str, _Job], stored: dict[Key, _Row]
) -> list[tuple[Key, Run]]:
    """Decide the attempt of each run the batch starts, against the rows stored before the batch."""
    starts: dict[Key, dict[str, Any]] = {}  # per key, the newest run the batch starts
    resumed: set[Key] = set()
    for row in batch:
        key = (row["job_id"], row["worker_id"])
        state = stored.get(key)
        if state is not None and (state.run_id == row["run_id"] or row["seq"] <= state.seq):
            continue  # the stored run goes on, or an older run's late message the upsert ignores
        start = starts.get(key)
        if start is None or row["seq"] > start["seq"]:
            starts[key] = row
        if row.get("resume"):
            resumed.add(key)
    # The batch's starters begin together: none counts another's (or its own) old row as running.
    replaced: dict[str, int] = {}
    for key in starts:
        state = stored.get(key)
        if state is not None and state.running and state.attempt == jobs[key[0]].newest:
            replaced[key[0]] = replaced.get(key[0], 0) + 1
    attempts: dict[Key, int] = {}
    for key in starts:
        job = jobs[key[0]]
        if job.newest == 0:
            attempts[key] = 1
        elif key in resumed or job.running > replaced.get(key[0], 0):
            attempts[key] = job.newest
        else:
            attempts[key] = job.newest + 1
    for row in batch:
        key = (row["job_id"], row["worker_id"])
        state = stored.get(key)
        if (state is not None and row["run_id"] == state.run_id) or key not in attempts:
            row["attempt"] = stored[key].attempt
        else:
            row["attempt"] = attempts[key]
    learned = [(key, (state.run_id, state.attempt)) for key, state in stored.items() if key not in starts]
    learned.extend((key, (row["run_id"], attempts[key])) for key, row in starts.items())
    return learned
