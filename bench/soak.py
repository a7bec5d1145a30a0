"""Fault-injection soak: many workers, restarted databases and collectors, killed workers, nothing lost.

For ``--duration`` seconds (default 300) worker processes run jobs of every kind (scan, parse, backtest,
schema_eval) with random sizes and speeds through the public API (``jp.configure``, ``jp.track``,
``advance``, ``set_payload``): ``--workers-sqlite`` of them (default 16) into one SQLite file, and
``--workers-postgres`` (default 32) into Postgres, half directly with ``postgresql+psycopg://`` and half
over HTTP through ``jobprogress serve``. Meanwhile a fault injector, in turn:

- SIGSTOPs a worker past ``stall_after``, then SIGCONTs it (it must show ``lost``, then run again);
- SIGKILLs two workers and restarts them with the same worker ids, now at once, now after ``stall_after``;
- opens a window in which a proxy in front of the collector answers half the requests 429 or 503;
- makes a worker hang without progress past ``stall_after`` (it must show ``stalled``);
- holds the SQLite write lock (``BEGIN IMMEDIATE``) longer than ``busy_timeout``;
- SIGKILLs the collector and starts it again on the same port;
- restarts Postgres (``pg_ctl restart -m fast``).

Postgres is a private throwaway cluster (initdb in a temporary directory, a free port), so restarting it
disturbs nobody; that needs root and the server binaries. ``--postgres-url`` uses an existing server
instead: the soak creates and drops a database of its own there and never restarts it (the restart
fault is then skipped and the report says so).

The last part of the run is quiet, then every worker is asked to finish its job and exit. The soak then
checks, and prints: every job's final state present and correct (done equals what the worker journalled),
no double counting at any moment or after restarts, lost and stalled workers flagged within
``stall_after`` + 1 s on the store's clock, no error raised into worker code, delivery latency p50/p99 from
``advance()`` to a visible row, peak memory per worker. It exits 1 on any violation::

    python bench/soak.py                                  # the 5-minute soak (tox -e soak)
    python bench/soak.py --duration 50 --workers-sqlite 4 --workers-postgres 8   # tests/test_soak.py
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _soak_check import Fault, Poller, Verdict, check  # noqa: E402
from _soak_infra import (  # noqa: E402
    Collector,
    FaultProxy,
    PrivatePostgres,
    SharedDatabase,
    hold_sqlite_lock,
    wait_for,
)
from _soak_worker import WorkerSpec, plan, run_worker  # noqa: E402

FAULT_CYCLE = ("sigstop", "sigkill", "http_429_503", "hang", "sqlite_lock", "collector_restart", "pg_restart")
PATHS = ("sqlite", "postgres", "http")
_PRELOAD = (
    "_soak_worker",
    "jobprogress._runtime",
    "jobprogress.envelope",
    "jobprogress.sinks.sql",
    "jobprogress.sinks.http",
    "jobprogress.store.writer",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
    "httpx",
)


def _mid_job(spec: WorkerSpec) -> bool:
    """Whether the worker's journal ends inside a job, past its second item and before its last two.

    Its job's row then surely exists and stays running for a while: a worker caught between two jobs
    has no running row to flag lost, and nothing to resume.
    """
    try:
        with open(spec.journal_path, "rb") as journal:
            journal.seek(max(journal.seek(0, os.SEEK_END) - 200, 0))
            last = journal.read().decode("utf-8", "replace").rstrip("\n").rsplit("\n", 1)[-1].split()
    except OSError:
        return False
    if len(last) != 4 or last[0] != "I":
        return False
    total = plan(spec, int(last[2].rsplit("-", 1)[1])).total
    return 2 <= int(last[3]) <= total - 3


def _await_mid_job(spec: WorkerSpec) -> None:
    wait_for(lambda: _mid_job(spec), timeout=5.0, interval=0.02)


class Fleet:
    """The worker processes: started, SIGKILLed and restarted with the same worker id, stopped at the end."""

    def __init__(self, context: ForkServerContext, specs: list[WorkerSpec]) -> None:
        self._context = context
        self.specs = {spec.worker_id: spec for spec in specs}
        self.processes: dict[str, BaseProcess] = {}
        # Per worker: (spec of the run, exit code, whether the soak SIGKILLed it).
        self.runs: dict[str, list[tuple[WorkerSpec, int | None, bool]]] = {
            spec.worker_id: [] for spec in specs
        }
        self.busy: set[str] = set()  # workers a fault is acting on right now
        self.lock = threading.Lock()

    def start(self, worker_id: str) -> None:
        base = self.specs[worker_id]
        run = len(self.runs[worker_id])
        spec = dataclasses.replace(base, run=run)
        process = self._context.Process(target=run_worker, args=(spec,), name=worker_id)
        process.start()
        self.processes[worker_id] = process
        self.runs[worker_id].append((spec, None, False))

    def pid(self, worker_id: str) -> int:
        pid = self.processes[worker_id].pid
        assert pid is not None
        return pid

    def kill(self, worker_id: str) -> None:
        process = self.processes[worker_id]
        os.kill(self.pid(worker_id), signal.SIGKILL)
        process.join(10)
        spec, _, _ = self.runs[worker_id][-1]
        self.runs[worker_id][-1] = (spec, process.exitcode, True)

    def pick(self, path: str, rng: random.Random) -> str | None:
        """A running worker on ``path`` that no fault is acting on; marked busy."""
        with self.lock:
            free = [
                worker_id
                for worker_id, spec in self.specs.items()
                if spec.path == path and worker_id not in self.busy and self.processes[worker_id].is_alive()
            ]
            if not free:
                return None
            chosen = rng.choice(sorted(free))
            self.busy.add(chosen)
            return chosen

    def release(self, worker_id: str) -> None:
        with self.lock:
            self.busy.discard(worker_id)

    def stop_all(self, timeout: float) -> list[str]:
        """SIGCONT then SIGTERM every worker, wait for all; returns the ids of those that had to be killed."""
        for worker_id, process in self.processes.items():
            if process.is_alive():
                os.kill(self.pid(worker_id), signal.SIGCONT)
                os.kill(self.pid(worker_id), signal.SIGTERM)
        deadline = time.monotonic() + timeout
        stuck = []
        for worker_id, process in self.processes.items():
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                stuck.append(worker_id)
                process.kill()
                process.join(10)
            spec, _, killed = self.runs[worker_id][-1]
            self.runs[worker_id][-1] = (spec, process.exitcode, killed)
        return stuck

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
                process.join(10)


class Injector(threading.Thread):
    """Fires the fault cycle on a schedule; each fault runs in a thread of its own and records its window."""

    def __init__(self, soak: Soak, offsets: list[tuple[float, str]], began: float) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.soak = soak
        self.offsets = offsets
        self.began = began
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._counts: dict[str, int] = {}

    def run(self) -> None:
        for offset, kind in self.offsets:
            if self.stopping.wait(max(self.began + offset - time.time(), 0.0)):
                return
            nth = self._counts.get(kind, 0)
            self._counts[kind] = nth + 1
            thread = threading.Thread(
                target=self._guarded, args=(kind, nth), name=f"fault-{kind}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def _guarded(self, kind: str, nth: int) -> None:
        try:
            getattr(self.soak, f"fault_{kind}")(nth)
        except Exception as exc:  # a fault that could not be injected is a failed soak, not a crash
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")

    def finish(self, timeout: float) -> None:
        self.stopping.set()
        self.join(timeout)
        for thread in self.threads:
            thread.join(max(timeout, 0.1))


class Soak:
    """One soak run: the services, the fleet, the pollers and the faults."""

    def __init__(self, arguments: argparse.Namespace) -> None:
        self.arguments = arguments
        self.stall_after: float = arguments.stall_after
        self.busy_timeout = 5.0  # StoreWriter's default, which the sqlite:/// sink uses
        self.rng = random.Random(arguments.seed)
        self.directory = Path(tempfile.mkdtemp(prefix="jobprogress-soak-"))
        self.journal_dir = self.directory / "workers"
        self.journal_dir.mkdir()
        self.sqlite_file = str(self.directory / "progress.db")
        self.faults: list[Fault] = []
        self.faults_lock = threading.Lock()
        self.postgres: PrivatePostgres | SharedDatabase | None = None
        self.collector: Collector | None = None
        self.proxy: FaultProxy | None = None
        self.fleet: Fleet | None = None
        self.pollers: list[Poller] = []
        self.injector: Injector | None = None
        self.notes: list[str] = []
        self.expected_faults = list(FAULT_CYCLE)

    # -- set-up and tear-down ---------------------------------------------------------------------

    def start_services(self) -> None:
        if self.arguments.postgres_url:
            self.postgres = SharedDatabase(self.arguments.postgres_url)
            self.expected_faults.remove("pg_restart")
            self.notes.append(
                "Postgres: a database of our own on the existing server at --postgres-url; the server is "
                "shared, so the Postgres restart fault was skipped"
            )
        else:
            self.postgres = PrivatePostgres()
            self.notes.append(f"Postgres: private throwaway cluster on port {self.postgres.port}")
        self.postgres.start()
        self.token = secrets.token_urlsafe(24)
        token_file = self.directory / "token"
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(self.token + "\n")
        self.collector = Collector(
            self.postgres.url, token_file, self.stall_after, self.directory / "collector.log"
        )
        self.collector.start()
        self.proxy = FaultProxy(
            self.collector.port,
            window=self.arguments.http_fault_window,
            rate=0.5,
            stats_path=self.directory / "proxy.json",
            log_path=self.directory / "proxy.log",
        )
        self.proxy.start()

    def specs(self) -> list[WorkerSpec]:
        assert self.postgres is not None
        assert self.proxy is not None
        counts = {
            "sqlite": self.arguments.workers_sqlite,
            "postgres": self.arguments.workers_postgres // 2,
            "http": self.arguments.workers_postgres - self.arguments.workers_postgres // 2,
        }
        urls = {
            "sqlite": f"sqlite:///{self.sqlite_file}",
            "postgres": self.postgres.url,
            "http": f"http://127.0.0.1:{self.proxy.port}?timeout=5",
        }
        specs = []
        for path in PATHS:
            for index in range(counts[path]):
                specs.append(
                    WorkerSpec(
                        worker_id=f"{path}-w{index:02d}",
                        path=path,
                        group=f"{path}{index // 2:02d}",  # two workers share each job id
                        sink_url=urls[path],
                        token=self.token,
                        run=0,
                        seed=self.arguments.seed,
                        directory=str(self.journal_dir),
                        interval=self.arguments.interval,
                        keepalive=self.arguments.keepalive,
                        hang_seconds=self.stall_after + 2.5,
                    )
                )
        return specs

    def start_fleet(self) -> None:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported jobprogress, SQLAlchemy, psycopg and httpx once,
        # so 48 starts (and every restart) cost a fork, not a second of imports each.
        context.set_forkserver_preload(list(_PRELOAD))
        self.fleet = Fleet(context, self.specs())
        for worker_id in self.fleet.specs:
            self.fleet.start(worker_id)
        self.pollers = [
            Poller(
                "sqlite",
                f"sqlite:///{self.sqlite_file}",
                self.stall_after,
                self.arguments.poll,
                self.sqlite_file,
            ),
            Poller(
                "postgres",
                self.postgres.url if self.postgres else "",
                self.stall_after,
                self.arguments.poll,
                None,
            ),
        ]
        for poller in self.pollers:
            poller.start()

    def teardown(self) -> None:
        if self.injector is not None:
            # Let running faults end first: a fault thread may still SIGCONT or restart something.
            self.injector.finish(timeout=30.0)
        if self.fleet is not None:
            self.fleet.kill_all()
        for poller in self.pollers:
            poller.stopping.set()
            poller.join(10)
        for service in (self.proxy, self.collector):
            if service is not None:
                service.stop()
        if self.postgres is not None:
            self.postgres.destroy()
        if self.arguments.keep:
            print(f"kept {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- faults -----------------------------------------------------------------------------------

    def _record(self, fault: Fault) -> Fault:
        with self.faults_lock:
            self.faults.append(fault)
        return fault

    def _target(self, nth: int, shift: int) -> str | None:
        assert self.fleet is not None
        for attempt in range(len(PATHS)):
            chosen = self.fleet.pick(PATHS[(nth + shift + attempt) % len(PATHS)], self.rng)
            if chosen is not None:
                return chosen
        return None

    def fault_sigstop(self, nth: int) -> None:
        assert self.fleet is not None
        worker_id = self._target(nth, 0)
        if worker_id is None:
            return
        try:
            pid = self.fleet.pid(worker_id)
            _await_mid_job(self.fleet.specs[worker_id])
            fault = self._record(Fault("sigstop", worker_id, time.time()))
            os.kill(pid, signal.SIGSTOP)
            time.sleep(self.stall_after + 3.0)
            os.kill(pid, signal.SIGCONT)
            fault.end = time.time()
        finally:
            self.fleet.release(worker_id)

    def fault_sigkill(self, nth: int) -> None:
        """SIGKILL two workers on different paths (so both ways of resuming run), then restart them."""
        assert self.fleet is not None
        targets = [worker_id for worker_id in (self._target(nth, 1), self._target(nth, 2)) if worker_id]
        # Every other kill waits past stall_after before the restart, so the row is seen lost first.
        delay = self.stall_after + 2.5 if nth % 2 == 0 else 0.2
        try:
            killed = []
            for worker_id in targets:
                _await_mid_job(self.fleet.specs[worker_id])
                killed.append(
                    self._record(Fault("sigkill", worker_id, time.time(), detail={"restart_delay": delay}))
                )
                self.fleet.kill(worker_id)
            time.sleep(delay)
            for fault in killed:
                fault.end = time.time()
                self.fleet.start(fault.target)
        finally:
            for worker_id in targets:
                self.fleet.release(worker_id)

    def fault_http_429_503(self, _nth: int) -> None:
        assert self.proxy is not None
        fault = self._record(Fault("http_429_503", "collector", time.time()))
        self.proxy.open_fault_window()
        time.sleep(self.arguments.http_fault_window)
        fault.end = time.time()

    def fault_hang(self, nth: int) -> None:
        assert self.fleet is not None
        worker_id = self._target(nth, 2)
        if worker_id is None:
            return
        try:
            fault = self._record(Fault("hang", worker_id, time.time()))
            os.kill(self.fleet.pid(worker_id), signal.SIGUSR1)
            time.sleep(self.stall_after + 2.5)
            fault.end = time.time()
        finally:
            self.fleet.release(worker_id)

    def fault_sqlite_lock(self, _nth: int) -> None:
        fault = self._record(Fault("sqlite_lock", "sqlite", time.time()))
        fault.start, fault.end = hold_sqlite_lock(self.sqlite_file, self.busy_timeout + 1.5)

    def fault_collector_restart(self, _nth: int) -> None:
        assert self.collector is not None
        fault = self._record(Fault("collector_restart", "collector", time.time()))
        fault.detail["down_for"] = round(self.collector.restart(), 2)
        fault.end = time.time()

    def fault_pg_restart(self, _nth: int) -> None:
        if not isinstance(self.postgres, PrivatePostgres):
            return
        fault = self._record(Fault("pg_restart", "postgres", time.time()))
        self.postgres.restart()
        fault.end = time.time()

    def schedule(self, warmup: float, quiet: float) -> list[tuple[float, str]]:
        """Offsets (from the start) of the faults: at least one whole cycle, evenly spaced, then quiet."""
        active = max(self.arguments.duration - warmup - quiet, 1.0)
        spacing = max(min(self.arguments.fault_spacing, active / len(FAULT_CYCLE)), 1.0)
        count = max(len(FAULT_CYCLE), int(active / spacing + 1e-9))
        return [(warmup + index * spacing, FAULT_CYCLE[index % len(FAULT_CYCLE)]) for index in range(count)]

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> Verdict:
        arguments = self.arguments
        self.load_before = os.getloadavg()[0]
        self.start_services()
        began = time.time()
        self.start_fleet()
        assert self.fleet is not None
        assert self.proxy is not None
        warmup = min(10.0, arguments.duration * 0.15)
        quiet = max(12.0, arguments.duration * 0.1)
        injector = self.injector = Injector(self, self.schedule(warmup, quiet), began)
        injector.start()
        print(
            f"soak: {len(self.fleet.specs)} workers ({arguments.workers_sqlite} sqlite, "
            f"{arguments.workers_postgres} postgres: half direct, half via the collector) for "
            f"{arguments.duration:g} s; stall_after {self.stall_after:g} s; files in {self.directory}",
            flush=True,
        )
        while time.time() < began + arguments.duration:
            time.sleep(min(5.0, max(began + arguments.duration - time.time(), 0.0)))
        injector.finish(timeout=30.0)
        stopping = time.time()
        stuck = self.fleet.stop_all(timeout=90.0)
        stopped = time.time() - stopping
        final_rows, final_jobs = self.final_state()
        for poller in self.pollers:
            poller.stopping.set()
            poller.join(10)
        self.proxy.stop()
        proxy_stats: dict[str, int] = {}
        if self.proxy.stats_path.exists():
            import json

            proxy_stats = json.loads(self.proxy.stats_path.read_text(encoding="utf-8"))
        verdict = check(
            specs=self.fleet.specs,
            runs=self.fleet.runs,
            pollers=self.pollers,
            final_rows=final_rows,
            final_jobs=final_jobs,
            faults=self.faults,
            stall_after=self.stall_after,
            directory=self.journal_dir,
            expected_faults=self.expected_faults,
            steady_from=began + warmup,
            proxy_stats=proxy_stats,
        )
        for worker_id in stuck:
            verdict.fail(f"{worker_id} did not exit within 90 s of SIGTERM")
        # Delivery problems are logged once per kind and never raised; a traceback means a crash.
        for log in [*sorted(self.journal_dir.glob("*.log")), self.directory / "collector.log"]:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            if "Traceback" in text or "Exception in ASGI application" in text:
                verdict.fail(f"a traceback in {log.name}: {text[text.find('Traceback') :][:400]}")
        for error in injector.errors:
            verdict.fail(f"fault injection failed: {error}")
        verdict.notes[:0] = self.notes
        verdict.notes.append(
            f"machine: {os.cpu_count()} CPUs, load average {self.load_before:.1f} before the run, "
            f"{os.getloadavg()[0]:.1f} at its end (other processes included)"
        )
        if arguments.keep:
            self.dump()
        verdict.lines.insert(
            0, f"stop: every worker finished its job and exited {stopped:.1f} s after SIGTERM"
        )
        return verdict

    def dump(self) -> None:
        """With --keep: what the pollers saw and the faults, as JSON beside the journals (post-mortems)."""
        import json

        observed = {
            f"{job_id} {worker_id}": seen
            for poller in self.pollers
            for (job_id, worker_id), seen in poller.observations.items()
        }
        flags = [flag.__dict__ for poller in self.pollers for flag in poller.flags]
        faults = [fault.__dict__ for fault in self.faults]
        with open(self.directory / "observed.json", "w", encoding="utf-8") as out:
            json.dump({"observations": observed, "flags": flags, "faults": faults}, out)

    def final_state(self) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
        """Every row and job in both stores, read once all workers have exited."""
        from jobprogress.store import ProgressStore

        assert self.postgres is not None
        rows: dict[tuple[str, str], Any] = {}
        jobs: dict[str, Any] = {}
        for url in (f"sqlite:///{self.sqlite_file}", self.postgres.url):
            with ProgressStore(url, stall_after=self.stall_after) as store:
                for newest in store.jobs():
                    # The workers of a group share job ids without always overlapping in time: one that
                    # starts after the others ended begins a new attempt. The journals hold every
                    # attempt's work, so the check reads them all and sums them.
                    attempts = store.attempts(newest.job_id) or [newest]
                    for attempt in attempts:
                        for worker in attempt.workers:
                            rows[(attempt.job_id, worker.worker_id)] = worker
                    unfinished = [a for a in attempts if a.status != "succeeded" or a.lost or a.stalled]
                    shown = unfinished[0] if unfinished else newest
                    jobs[newest.job_id] = SimpleNamespace(
                        done=sum(a.done or 0 for a in attempts),
                        status=shown.status,
                        state=shown.state,
                        lost=shown.lost,
                        stalled=shown.stalled,
                    )
        return rows, jobs


def report(verdict: Verdict, soak: Soak) -> None:
    print("\n== jobprogress soak report ==")
    for line in verdict.lines:
        print("  " + line)
    for fault in soak.faults:
        extra = " ".join(f"{key}={value}" for key, value in fault.detail.items())
        print(f"  fault {fault.kind:18s} {fault.target:14s} {fault.end - fault.start:5.1f} s  {extra}")
    for note in verdict.notes:
        print("  note: " + note)
    if verdict.violations:
        print(f"\nVIOLATIONS: {len(verdict.violations)}")
        for violation in verdict.violations[:50]:
            print("  - " + violation)
    else:
        print("\nviolations: 0")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--duration", type=float, default=300.0, help="seconds of work before the stop (default 300)"
    )
    parser.add_argument("--workers-sqlite", type=int, default=16)
    parser.add_argument(
        "--workers-postgres", type=int, default=32, help="half direct, half via the collector"
    )
    parser.add_argument("--interval", type=float, default=0.25, help="jp.configure(interval=...)")
    parser.add_argument("--keepalive", type=float, default=1.0, help="jp.configure(keepalive=...)")
    parser.add_argument(
        "--stall-after", type=float, default=3.0, help="the checker's ProgressStore stall_after"
    )
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between store polls")
    parser.add_argument("--fault-spacing", type=float, default=7.0, help="seconds between fault starts")
    parser.add_argument("--http-fault-window", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="use this existing server (a database of our own, never restarted) instead of a private cluster",
    )
    parser.add_argument("--keep", action="store_true", help="keep the journals, logs and SQLite file")
    arguments = parser.parse_args(argv)
    if arguments.workers_sqlite < 1 or arguments.workers_postgres < 2:
        parser.error("need at least 1 sqlite worker and 2 postgres workers")
    return arguments


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a CI timeout, tox) tears down like Ctrl-C: no orphaned workers, cluster or collector.
    signal.signal(signal.SIGTERM, _interrupt)
    soak = Soak(_arguments(argv))
    try:
        verdict = soak.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        soak.teardown()
    report(verdict, soak)
    return 1 if verdict.violations else 0


if __name__ == "__main__":
    sys.exit(main())
