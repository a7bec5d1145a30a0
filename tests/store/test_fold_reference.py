"""The fold that builds views without validation gives what validated views of the same rows give.

The oracle is the fold of the previous release, written plainly: each row becomes a validated
:class:`WorkerView` (``json.loads`` for the payload, ``datetime.fromtimestamp`` for each time) and the
job's fields are computed from the views. Randomized rows cover equal and out-of-range times, payloads
with whitespace, ``null`` and nested values, mixed units, missing totals, failed workers tied on time,
rows arriving in any order, and a second attempt.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from jobprogress._states import FAILED, RUNNING, job_status
from jobprogress.store._aggregate import fold, fold_attempts, fold_job, plain_rows
from jobprogress.store._eta import job_eta
from jobprogress.store.views import JobView, WorkerView

_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _time(value: float | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _worker(row: tuple[Any, ...]) -> WorkerView:
    (
        _job, worker_id, kind, status, unit, done, total, throughput, eta_seconds, payload_json, error,
        run_id, seq, started_at, updated_at, progressed_at, seen_at, attempt, lost, stalled,
    ) = row  # fmt: skip
    return WorkerView(
        worker_id=worker_id, kind=kind, unit=unit, done=done, total=total, throughput=throughput,
        eta_seconds=eta_seconds, status=status, stalled=bool(stalled), lost=bool(lost),
        updated_at=_time(updated_at), error=error,
        payload=None if payload_json is None else json.loads(payload_json), run_id=run_id, seq=seq,
        started_at=_time(started_at), progressed_at=_time(progressed_at), seen_at=_time(seen_at),
        attempt=attempt,
    )  # fmt: skip


def _job(job_id: str, workers: list[WorkerView]) -> JobView:
    units = {worker.unit for worker in workers if worker.unit is not None}
    mixed = len(units) > 1
    dones = [worker.done for worker in workers if worker.done is not None]
    total = None if any(worker.total is None for worker in workers) else sum(w.total or 0 for w in workers)
    running = [worker for worker in workers if worker.status == RUNNING]
    live = [worker for worker in running if not worker.lost and worker.throughput is not None]
    rates = [worker.throughput or 0.0 for worker in live if not worker.stalled]
    stalled = [worker for worker in running if not worker.lost and worker.stalled]
    lost = [worker for worker in running if worker.lost]
    failed = [worker for worker in workers if worker.status == FAILED]
    with_payload = [worker for worker in workers if worker.payload is not None]
    first_failed = max(failed, key=lambda w: (w.progressed_at or _EPOCH, w.seq or 0), default=None)
    newest = max(with_payload, key=lambda w: (w.seen_at or _EPOCH, w.seq or 0), default=None)
    updated = [worker.updated_at for worker in workers if worker.updated_at is not None]
    kinds = [worker.kind for worker in workers if worker.kind is not None]
    done = None if mixed or not dones else sum(dones)
    throughput = sum(rates) if live and not mixed else None
    throughput = throughput if throughput is not None and math.isfinite(throughput) else None
    eta, reason = None, None
    if not mixed:
        remaining = max(total - done, 0) if total is not None and done is not None else None
        eta, reason = job_eta(workers, remaining, throughput)
    return JobView(
        job_id=job_id, kind=max(kinds, default=None), unit=None if mixed else next(iter(units), None),
        done=done, total=None if mixed else total, throughput=throughput, eta_seconds=eta,
        eta_reason=reason, status=job_status(worker.status for worker in workers),
        stalled=bool(running) and bool(stalled) and len(lost) + len(stalled) == len(running),
        lost=bool(running) and len(lost) == len(running), updated_at=max(updated, default=None),
        error=None if first_failed is None else first_failed.error,
        payload=None if newest is None else newest.payload, workers=workers,
        attempt=max([1, *(worker.attempt for worker in workers)]),
    )  # fmt: skip


def _oracle(rows: list[tuple[Any, ...]]) -> list[JobView]:
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    ordered = sorted(groups.items(), key=lambda item: item[0])
    ordered.sort(key=lambda item: max(row[16] or 0.0 for row in item[1]), reverse=True)
    return [
        _job(job_id, [_worker(row) for row in sorted(group, key=lambda r: r[1])]) for job_id, group in ordered
    ]


_TIMES = st.sampled_from([None, 0.0, -5.5, 1_700_000_000.0, 1_700_000_000.25, 1_700_000_030.0, 1e300])
_PAYLOADS = st.one_of(
    st.none(),
    st.sampled_from(['{"n": 1}', ' {"n": 2} ', "null", '{"a": [1, 2.5, {"b": null}], "s": "\\u00e9"}']),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.floats(allow_nan=False), st.text())).map(
        json.dumps
    ),
)
_ROW = st.tuples(
    st.sampled_from(["job-a", "job-b", "job-c"]),
    st.sampled_from(["w0", "w1", "w2", "W3", "é"]),
    st.sampled_from([None, "scan", "parse"]),
    st.sampled_from(["running", "running", "failed", "succeeded", "cancelled"]),
    st.sampled_from([None, "files", "rows"]),
    st.one_of(st.none(), st.integers(0, 50)),
    st.one_of(st.none(), st.integers(0, 60)),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0, 1e308])),
    st.one_of(st.none(), st.integers(0, 100)),
    _PAYLOADS,
    st.one_of(st.none(), st.sampled_from(["e1", "e2"])),
    st.one_of(st.none(), st.just("run-1")),
    st.one_of(st.none(), st.integers(0, 3)),
    _TIMES,
    _TIMES,
    _TIMES,
    _TIMES,
    st.sampled_from([1, 2]),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 1]),
)


def _unique(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per (job, worker), as the table's key makes them."""
    return list({(row[0], row[1]): row for row in rows}.values())


def _same(views: list[JobView], expected: list[JobView]) -> None:
    assert views == expected
    assert [view.model_dump_json() for view in views] == [view.model_dump_json() for view in expected]
    for view, wanted in zip(views, expected, strict=True):
        assert view.model_fields_set == wanted.model_fields_set
        assert [w.model_fields_set for w in view.workers] == [w.model_fields_set for w in wanted.workers]
        assert WorkerView.model_validate(view.workers[0].model_dump()) == view.workers[0]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.lists(_ROW, min_size=1, max_size=12).map(_unique))
def test_fold_matches_the_validated_fold(rows: list[tuple[Any, ...]]) -> None:
    expected = _oracle(rows)
    views, cache = fold(rows)
    _same(views, expected)
    again, _ = fold(list(reversed(rows)), cache)
    assert all(new is old for new, old in zip(again, views, strict=True))  # unchanged rows: the same views
    for view in views:
        group = sorted((row for row in rows if row[0] == view.job_id), key=lambda row: row[1])
        _same([fold_job(group)], [view])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rows=st.lists(_ROW, min_size=1, max_size=8).map(_unique))
def test_fold_attempts_matches_the_validated_fold(rows: list[tuple[Any, ...]]) -> None:
    one_job = [("job-a", *row[1:]) for row in _unique([("job-a", *row[1:]) for row in rows])]
    attempts = sorted({row[17] for row in one_job}, reverse=True)
    expected = [_oracle([row for row in one_job if row[17] == attempt])[0] for attempt in attempts]
    _same(fold_attempts(one_job), expected)


def test_a_payload_that_is_not_one_json_document_raises_as_json_loads_does() -> None:
    row = ("job-a", "w0", None, "running", None, 1, 2, None, None, '{"a": 1} x', None, None, 1)
    with pytest.raises(json.JSONDecodeError, match="Extra data"):
        fold([(*row, 1.0, 1.0, 1.0, 1.0, 1, 0, 0)])


class _Doubled(sa.types.TypeDecorator[int]):
    impl = sa.Integer
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else value * 2


@pytest.mark.parametrize("processed", [False, True])
def test_plain_rows_are_the_rows_as_tuples(processed: bool) -> None:
    engine = sa.create_engine("sqlite://")
    number = sa.literal_column("2", _Doubled() if processed else sa.Integer()).label("number")
    statement = sa.select(sa.literal("a").label("text"), sa.literal(1.5).label("real"), number)
    with engine.connect() as connection:
        rows = plain_rows(connection.execute(statement))
        assert rows == [("a", 1.5, 4 if processed else 2)]
        assert all(type(row) is tuple for row in rows)
    engine.dispose()
