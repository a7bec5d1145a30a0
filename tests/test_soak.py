"""The fault-injection soak (bench/soak.py), short: one full cycle of every fault in well under 2 minutes.

12 worker processes (4 into SQLite, 4 straight into Postgres, 4 through the collector) run jobs of every
kind while the soak SIGSTOPs, SIGKILLs and hangs workers, answers HTTP requests 429/503, holds the SQLite
write lock past busy_timeout, restarts the collector and restarts Postgres. The soak itself checks the
final states against the workers' journals, double counting, lost/stalled flagging within stall_after +
1 s, errors in worker code and delivery latency, and exits non-zero on any violation.

Postgres is a private throwaway cluster when this runs as root beside the server binaries (as in CI);
otherwise the soak uses a database of its own on ``JOBPROGRESS_TEST_POSTGRES_URL`` and skips the
Postgres restart (it never restarts a shared server); with neither the test is skipped.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
DURATION = 50  # seconds of work; with start-up, the drain and the checks the run takes about 55 s


def _soak_command() -> list[str]:
    command = [sys.executable, str(SOAK), "--duration", str(DURATION), "--workers-sqlite", "4"]
    command += ["--workers-postgres", "8"]
    if os.geteuid() == 0 and glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        return command  # private cluster: the Postgres restart fault runs too
    shared = os.environ.get("JOBPROGRESS_TEST_POSTGRES_URL")
    if not shared:
        pytest.skip(
            "the soak needs root and the Postgres server binaries for a private cluster, or "
            "JOBPROGRESS_TEST_POSTGRES_URL for a database of its own"
        )
    return [*command, "--postgres-url", shared]


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(170)
def test_soak_short_variant_has_no_violations() -> None:
    command = _soak_command()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        output, _ = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        # SIGTERM makes the soak tear down (workers, collector, cluster) before it exits.
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        pytest.fail(f"the soak did not finish within 150 s:\n{output}")
    assert "== jobprogress soak report ==" in output, output
    assert "violations: 0" in output, output
    assert process.returncode == 0, output
    for fault in ("sigstop", "sigkill", "http_429_503", "hang", "sqlite_lock", "collector_restart"):
        assert f"{fault} x" in output, output
