"""Collector ingest throughput: 8 worker processes post batches over loopback into SQLite and Postgres.

Runs ``jobprogress.server.serve`` in a subprocess (uvicorn, as ``jobprogress serve`` does), then starts
the worker processes together; each posts ``--batches`` batches of ``--batch-size`` messages through
the ``http://`` sink (one ``POST /v1/batch`` per send) and times every request. Prints messages
ingested per second (all workers, wall clock from the common start to the last reply) and the p50/p99
request latency, then checks through the read API that every row landed.

    python bench/collector_bench.py                      # SQLite, plus Postgres when configured
    python bench/collector_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Target on a 2-core machine: >= 5,000 messages/s batched.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

from jobprogress.envelope import Heartbeat, JobProgressEnvelope, JobStatus

SERVE = (
    "import sys; from jobprogress.server import serve; "
    "serve(sys.argv[1], port=int(sys.argv[2]), token_file=sys.argv[3], table_prefix=sys.argv[4], "
    "access_log=False, log_level='warning')"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker(
    index: int, url: str, token: str, batches: int, batch_size: int, jobs: int, start: object, results: object
) -> None:
    os.environ["JOBPROGRESS_HTTP_TOKEN"] = token
    from jobprogress.sinks.http import HttpSink

    sink = HttpSink(url)
    now = datetime.now(timezone.utc)
    seq = 0
    prepared = []
    for batch in range(batches):
        messages = []
        for offset in range(batch_size):
            seq += 1
            job = (batch * batch_size + offset) % jobs
            done = seq
            messages.append(
                Heartbeat(
                    job_id=f"bench-{job}",
                    worker_id=f"worker-{index}",
                    run_id="run",
                    seq=seq,
                    status=JobStatus.RUNNING,
                    kind="scan",
                    progress=JobProgressEnvelope(
                        items_done=done, items_total=10**9, unit="files", updated_at=now
                    ),
                    updated_at=now,
                )
            )
        prepared.append(messages)
    sink.send(prepared[0][:1])  # connect (and let the collector create its tables) before the clock starts
    start.wait()  # type: ignore[attr-defined]
    latencies = []
    for messages in prepared:
        began = time.perf_counter()
        sink.send(messages)
        latencies.append(time.perf_counter() - began)
    sink.close(1.0)
    results.put((index, time.perf_counter(), latencies))  # type: ignore[attr-defined]


def run(db_url: str, label: str, args: argparse.Namespace) -> None:
    token = secrets.token_urlsafe(24)
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    with tempfile.TemporaryDirectory() as directory:
        token_file = Path(directory) / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        if db_url == "sqlite":
            db_url = f"sqlite:///{Path(directory) / 'bench.db'}"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        collector = subprocess.Popen(
            [sys.executable, "-c", SERVE, db_url, str(port), str(token_file), prefix]
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or collector.poll() is not None:
                    raise SystemExit("the collector did not start")
                time.sleep(0.05)
            context = multiprocessing.get_context("spawn")
            start, results = context.Event(), context.Queue()
            processes = [
                context.Process(
                    target=worker,
                    args=(i, url, token, args.batches, args.batch_size, args.jobs, start, results),
                )
                for i in range(args.workers)
            ]
            for process in processes:
                process.start()
            time.sleep(1.0)  # let every worker import, build its messages and connect
            began = time.perf_counter()
            start.set()
            finished = [results.get(timeout=300) for _ in processes]
            for process in processes:
                process.join(timeout=30)
            ended = max(end for _, end, _ in finished)
            latencies = sorted(latency for _, _, values in finished for latency in values)
            messages = args.workers * args.batches * args.batch_size
            elapsed = ended - began
            jobs = httpx.get(
                url + "/v1/jobs?limit=10000", headers={"Authorization": f"Bearer {token}"}
            ).json()
            rows = sum(len(job["workers"]) for job in jobs)
            expected_rows = args.workers * min(args.jobs, args.batches * args.batch_size)
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            print(
                f"{label:<9} {args.workers} workers x {args.batches} batches x {args.batch_size} msgs: "
                f"{messages / elapsed:,.0f} messages/s ({messages:,} in {elapsed:.2f} s), "
                f"{len(latencies) / elapsed:,.0f} requests/s, latency p50 {p50:.1f} ms p99 {p99:.1f} ms, "
                f"rows {rows}/{expected_rows}"
            )
            if rows != expected_rows:
                raise SystemExit(f"{label}: {expected_rows - rows} rows missing")
        finally:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=20)
            if db_url.startswith("postgresql"):
                from sqlalchemy import create_engine

                from jobprogress.store.schema import drop_schema

                engine = create_engine(db_url)
                drop_schema(engine, prefix)
                engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=50, help="distinct jobs per worker")
    parser.add_argument("--postgres", default=os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    run("sqlite", "SQLite", args)
    if args.postgres:
        run(args.postgres, "Postgres", args)
    else:
        print("Postgres  skipped: set JOBPROGRESS_TEST_POSTGRES_URL or pass --postgres URL")


if __name__ == "__main__":
    main()
