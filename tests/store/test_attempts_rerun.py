"""Issue 11, attempts end to end: the same script run twice shows N/N, not 2N/2N.

Real processes with the default worker id (``<hostname>:<pid>``, so every run adds rows of its own),
delivering through the SQL sink into SQLite; the Jobs read side then shows the newest attempt only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jobprogress.store import ProgressStore

SCAN = """
import sys
import jobprogress as jp

url, files, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
jp.configure(sinks=[url])
with jp.track("scan-dir", unit="files", total=files, kind="scan", resume=resume) as tracker:
    for _ in range(files):
        tracker.advance()
print("flushed", jp.flush(timeout=30.0), flush=True)
"""

FILES = 2000


def scan(tmp_path: Path, url: str, *, resume: bool = False) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBPROGRESS_")}
    env["JOBPROGRESS_LOAD_PLUGINS"] = ""  # the built-in sinks only
    env["JOBPROGRESS_OUTBOX"] = str(tmp_path / "outbox")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCAN), url, str(FILES), "resume" if resume else "fresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "flushed True" in result.stdout, result.stderr


def test_running_a_script_twice_shows_one_attempt_not_the_sum(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'progress.db'}"
    scan(tmp_path, url)
    scan(tmp_path, url)
    with ProgressStore(url) as store:
        (job,) = store.jobs()
        attempts = store.attempts("scan-dir")
    assert (job.job_id, job.attempt, job.status) == ("scan-dir", 2, "succeeded")
    assert (job.done, job.total) == (FILES, FILES)  # 2,000/2,000 files, not 4,000/4,000
    assert len(job.workers) == 1
    assert [(view.attempt, view.done, view.total, len(view.workers)) for view in attempts] == [
        (2, FILES, FILES, 1),
        (1, FILES, FILES, 1),
    ]
    assert attempts[0].workers[0].worker_id != attempts[1].workers[0].worker_id  # another pid

    # A resume=True run continues the newest attempt, so its rows add to it (the flag crossed the wire).
    scan(tmp_path, url, resume=True)
    with ProgressStore(url) as store:
        job_after = store.job("scan-dir")
    assert job_after is not None
    assert (job_after.attempt, len(job_after.workers), job_after.done) == (2, 2, 2 * FILES)
