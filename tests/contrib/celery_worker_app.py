"""The Celery app of the integration tests: the worker process imports it (``celery -A``), the test too.

Broker, backend and queue come from the environment the test gives the worker; jobprogress is
configured from ``JOBPROGRESS_*`` in it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

import jobprogress as jp
from jobprogress.contrib.celery import install

GATE_WAIT = 60.0  # a gated task waits at most this long for the test to open its gate


def scan_shard(shard: int, items: int = 100) -> int:
    with jp.track(unit="files", total=items, kind="scan") as tracker:
        for _ in range(items):
            tracker.advance()
    return items


def failing_shard(shard: int) -> int:
    with jp.track(unit="files", total=100, kind="scan") as tracker:
        tracker.advance(10)
        raise ValueError(f"shard {shard} is corrupt")


def gated_shard(shard: int, gate: str) -> int:
    """Does half its items, waits for the test to create ``gate`` (or ``release`` beside it), then more."""
    with jp.track(unit="files", total=100, kind="scan") as tracker:
        tracker.set_payload(description=f"shard {shard}")
        tracker.advance(50)
        deadline = time.monotonic() + GATE_WAIT
        opened = (Path(gate), Path(gate).with_name("release"))
        while not any(path.exists() for path in opened) and time.monotonic() < deadline:
            time.sleep(0.02)
        tracker.advance(50)
    return 100


def retried_shard(task: Any, shard: int) -> int:
    tracker = jp.track(unit="files", total=100, kind="scan").start()
    tracker.advance(40)
    if task.request.retries == 0:
        raise task.retry(countdown=0)
    tracker.advance(60)  # left open: the integration finishes it with the task
    return 100


def make_app(broker: str, backend: str, queue: str) -> Celery:
    app = Celery("jp_celery_tests", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
        result_expires=600,
    )
    app.task(name="jp.scan_shard")(scan_shard)
    app.task(name="jp.failing_shard")(failing_shard)
    app.task(name="jp.gated_shard")(gated_shard)
    app.task(name="jp.retried_shard", bind=True, max_retries=1, default_retry_delay=0)(retried_shard)
    install(app, result_meta=True)
    return app


if "JP_TEST_BROKER" in os.environ:
    app = make_app(os.environ["JP_TEST_BROKER"], os.environ["JP_TEST_BACKEND"], os.environ["JP_TEST_QUEUE"])
