"""Wall and CPU time of ``jobprogress jobs --limit 20``, process start included (issue 12's CLI row).

Fills a store of N jobs x W workers and a one-job store on SQLite (and on Postgres when
``JOBPROGRESS_TEST_POSTGRES_URL`` is set) with ``jobs_read_bench``'s fill, then runs the command as a
new process again and again, stdout to /dev/null (the pipe or file case) and, with ``--tty``, on a
pseudo-terminal (what a person at a terminal sees: the rich path). The one-job store shows what
process start and imports cost alone. Runs are interleaved over the stores; each figure is min,
median and max over ``--runs`` runs, wall time and the child's CPU time (user + sys, steadier on a
shared machine). ``python -c pass`` is the interpreter's own start. Prints, asserts nothing.

Byte code is cached (``PYTHONDONTWRITEBYTECODE`` is dropped from the children's environment and one
warm-up run writes the ``.pyc`` files), as it is for an installed package.

Usage::

    JOBPROGRESS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/cli_start_bench.py --jobs 10000 --runs 7 --tty
    python bench/cli_start_bench.py --db sqlite:////tmp/big.db --runs 9   # an existing store, no fill
    python bench/cli_start_bench.py --compare /tmp/before/src   # interleaved with an older src tree
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from collections.abc import Sequence

from jobs_read_bench import _populate  # the same store as the read-side bench

_TARGETS = {10_000: 0.4, 100_000: 0.5}
_TTY_SIZE = (40, 120)  # rows, columns of the pseudo-terminal


def _drain(master: int) -> None:
    while True:
        try:
            if not os.read(master, 65536):
                return
        except OSError:  # EIO once the child's side is closed
            return


def _run(argv: Sequence[str], env: dict[str, str], *, tty: bool) -> tuple[float, float]:
    """One run: (wall seconds, child CPU seconds)."""
    master = slave = -1
    if tty:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *_TTY_SIZE, 0, 0))
        reader = threading.Thread(target=_drain, args=(master,), daemon=True)
        reader.start()
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=slave if tty else subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if tty:
        os.close(slave)
        reader.join(5)
        os.close(master)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _postgres_store(base: str, schemas: list[str]) -> str:
    import sqlalchemy as sa

    schema = f"jp_cli_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    schemas.append(schema)
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def _drop(base: str, schemas: list[str]) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as connection:
        for schema in schemas:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _analyze(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("ANALYZE"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (interleaved)")
    parser.add_argument("--tty", action="store_true", help="also run on a pseudo-terminal (the rich path)")
    parser.add_argument(
        "--db", action="append", default=[], metavar="URL", help="measure this existing store (no fill)"
    )
    parser.add_argument("--args", default="--limit 20", help="arguments after `jobprogress jobs --db URL`")
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also run every command with PYTHONPATH=SRC (an older src tree), interleaved, as 'before'",
    )
    options = parser.parse_args(argv)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    stores: dict[str, str] = {}
    schemas: list[str] = []
    pg = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
    tmp = tempfile.mkdtemp(prefix="jp-cli-bench-")
    try:
        if options.db:
            stores.update({f"store {index}": url for index, url in enumerate(options.db, 1)})
        else:
            backends = {"sqlite": lambda role: f"sqlite:///{tmp}/{role}.db"}
            if pg:
                backends["postgres"] = lambda role: _postgres_store(pg, schemas)
            for backend, make in backends.items():
                started = time.perf_counter()
                full, one = make("jobs"), make("one")
                _populate(full, options.jobs, options.workers)
                _populate(one, 1, 1)
                if backend == "postgres":
                    _analyze(full)
                stores[f"{backend} {options.jobs:,} x {options.workers}"] = full
                stores[f"{backend} 1 job"] = one
                print(f"{backend}: filled in {time.perf_counter() - started:.1f} s", flush=True)
        commands = {"python -c pass": ([sys.executable, "-c", "pass"], False)}
        for name, url in stores.items():
            argv_jobs = [sys.executable, "-m", "jobprogress.cli", "jobs", "--db", url, *options.args.split()]
            commands[f"{name}, to /dev/null"] = (argv_jobs, False)
            if options.tty:
                commands[f"{name}, on a terminal"] = (argv_jobs, True)
        variants = {"": env}
        if options.compare:
            variants = {"before: ": {**env, "PYTHONPATH": options.compare}, "after: ": env}
        runs = {
            f"{label}{name}": (command, tty, variant)
            for name, (command, tty) in commands.items()
            for label, variant in variants.items()
        }
        for command, tty, variant in runs.values():  # warm-up: .pyc files, the database's caches
            _run(command, variant, tty=tty)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(options.runs):
            for name, (command, tty, variant) in runs.items():
                results[name].append(_run(command, variant, tty=tty))
        target = _TARGETS.get(options.jobs)
        print(
            f"\njobprogress jobs --db URL {options.args}: {options.runs} interleaved runs, seconds"
            + (f" (target <= {target} s wall at {options.jobs:,} x {options.workers})" if target else "")
        )
        print(f"  {'':52} {'wall min':>8} {'median':>7} {'max':>7}   {'cpu min':>7} {'median':>7}")
        for name, figures in results.items():
            walls = [wall for wall, _ in figures]
            cpus = [cpu for _, cpu in figures]
            print(
                f"  {name:52} {min(walls):8.3f} {statistics.median(walls):7.3f} {max(walls):7.3f}"
                f"   {min(cpus):7.3f} {statistics.median(cpus):7.3f}"
            )
    finally:
        if schemas and pg:
            _drop(pg, schemas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
