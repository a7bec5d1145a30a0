"""What the soak saw, and the checks it runs over it: store pollers, fault records and the final verdict.

The pollers read the stores the way a Jobs view does (``ProgressStore.jobs()``), record every change of
each (job, worker) row's ``done`` with the wall time the poll ended, and every first sighting of a row
flagged lost or stalled. The checker then holds those observations against the workers' journals (see
``_soak_worker``), the faults that were injected and the workers' result files.
"""

from __future__ import annotations

import bisect
import json
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _soak_worker import WorkerSpec, plan

Key = tuple[str, str]  # (job_id, worker_id)


@dataclass
class Fault:
    """One injected fault: what, on which worker or service, and its wall-clock window."""

    kind: str
    target: str
    start: float
    end: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Flag:
    """The first poll that showed a row lost (or stalled), and the store-clock time it is judged from."""

    kind: str  # "lost" or "stalled"
    job_id: str
    worker_id: str
    poll_start: float
    poll_end: float
    since: float  # seen_at (lost) or progressed_at (stalled)
    cleared: float | None = None  # end of the first poll that no longer showed it


class Poller(threading.Thread):
    """Polls one store every ``period`` seconds through ``ProgressStore``, as a Jobs view would."""

    def __init__(
        self, name: str, url: str, stall_after: float, period: float, sqlite_file: str | None
    ) -> None:
        super().__init__(name=f"poller-{name}", daemon=True)
        self.url = url
        self.stall_after = stall_after
        self.period = period
        self._sqlite_file = sqlite_file
        self.stopping = threading.Event()
        self.observations: dict[Key, list[tuple[float, int]]] = defaultdict(list)
        self.flags: list[Flag] = []
        self._open: dict[tuple[str, Key], Flag] = {}
        self.polls = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.durations: list[float] = []
        self.inconsistent: list[str] = []

    def run(self) -> None:
        from jobprogress.store import ProgressStore

        while self._sqlite_file and not Path(self._sqlite_file).exists():
            if self.stopping.wait(0.1):
                return
        with ProgressStore(self.url, stall_after=self.stall_after) as store:
            while not self.stopping.is_set():
                began = time.time()
                try:
                    views = store.jobs(active_within=30.0)
                except Exception as exc:  # a restarting database: count it, poll again
                    self.errors[type(exc).__name__] += 1
                    self.stopping.wait(self.period)
                    continue
                ended = time.time()
                self.polls += 1
                self.durations.append(ended - began)
                self._record(views, began, ended)
                self.stopping.wait(max(self.period - (time.time() - began), 0.01))

    def _record(self, views: list[Any], began: float, ended: float) -> None:
        for job in views:
            if job.unit is not None and job.done != sum(worker.done or 0 for worker in job.workers):
                self.inconsistent.append(f"{job.job_id}: job done {job.done} != sum of workers")
            for worker in job.workers:
                key = (job.job_id, worker.worker_id)
                done = worker.done or 0
                seen = self.observations[key]
                if not seen or seen[-1][1] != done:
                    seen.append((ended, done))
                for kind, flagged, since in (
                    ("lost", worker.lost, worker.seen_at),
                    ("stalled", worker.stalled, worker.progressed_at),
                ):
                    episode = (kind, key)
                    if flagged and episode not in self._open and since is not None:
                        flag = Flag(kind, job.job_id, worker.worker_id, began, ended, since.timestamp())
                        self._open[episode] = flag
                        self.flags.append(flag)
                    elif not flagged and episode in self._open:
                        self._open.pop(episode).cleared = ended


# -- ground truth from the journals ------------------------------------------------------------


@dataclass
class JournalTruth:
    """Per (job, worker): the first time each distinct item index was journalled, and whether it finished."""

    first_done: dict[Key, dict[int, float]] = field(default_factory=dict)
    finished: set[Key] = field(default_factory=set)
    numbers: dict[Key, int] = field(default_factory=dict)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    _sorted: dict[Key, list[float]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path, worker_ids: list[str]) -> JournalTruth:
        truth = cls()
        for worker_id in worker_ids:
            path = directory / f"{worker_id}.journal"
            if not path.exists():
                continue
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                if not line.endswith("\n"):
                    continue
                fields = line.split()
                if fields[0] == "S":
                    key = (fields[3], worker_id)
                    truth.first_done.setdefault(key, {})
                    truth.numbers[key] = int(fields[2])
                elif fields[0] == "I":
                    items = truth.first_done.setdefault((fields[2], worker_id), {})
                    items.setdefault(int(fields[3]), float(fields[1]))
                elif fields[0] == "F":
                    truth.finished.add((fields[2], worker_id))
                elif fields[0] == "R":
                    truth.resumes.append(
                        {
                            "worker_id": worker_id,
                            "job_id": fields[2],
                            "stored": None if fields[3] == "-" else int(fields[3]),
                            "journal": int(fields[4]),
                            "direct": fields[5] == "1",
                        }
                    )
        return truth

    def count_at(self, key: Key, moment: float) -> int:
        times = self._sorted.get(key)
        if times is None:
            times = self._sorted[key] = sorted(self.first_done.get(key, {}).values())
        return bisect.bisect_right(times, moment)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


# -- the verdict -------------------------------------------------------------------------------


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations.append(text)

    def show(self, text: str) -> None:
        self.lines.append(text)


PATH_FAULTS = {
    "sqlite": ("sqlite_lock",),
    "postgres": ("pg_restart",),
    "http": ("pg_restart", "collector_restart", "http_429_503"),
}
WORKER_FAULTS = ("sigstop", "sigkill", "hang")


def _affected(fault: Fault, path: str, worker_id: str) -> bool:
    if fault.kind in WORKER_FAULTS:
        return fault.target == worker_id
    return fault.kind in PATH_FAULTS[path]


def check(
    *,
    specs: dict[str, WorkerSpec],
    runs: dict[str, list[tuple[WorkerSpec, int | None, bool]]],
    pollers: list[Poller],
    final_rows: dict[Key, Any],
    final_jobs: dict[str, Any],
    faults: list[Fault],
    stall_after: float,
    directory: Path,
    expected_faults: list[str],
    steady_from: float,
    proxy_stats: dict[str, int],
) -> Verdict:
    """Hold everything the soak recorded against the journals; returns the verdict and the report lines."""
    verdict = Verdict()
    truth = JournalTruth.read(directory, list(specs))
    path_of = {worker_id: spec.path for worker_id, spec in specs.items()}

    # 1. No error raised into worker code; every run that was not SIGKILLed ended cleanly and delivered.
    results: list[dict[str, Any]] = []
    for worker_id, worker_runs in runs.items():
        for spec, exitcode, killed in worker_runs:
            if killed:
                continue
            if not spec.result_path.exists():
                verdict.fail(f"{worker_id} run {spec.run}: no result file (exit code {exitcode})")
                continue
            result = json.loads(spec.result_path.read_text(encoding="utf-8"))
            results.append(result)
            if "error" in result:
                verdict.fail(f"{worker_id} run {spec.run}: error raised into worker code:\n{result['error']}")
            elif exitcode != 0:
                verdict.fail(f"{worker_id} run {spec.run}: exit code {exitcode}")
            elif not result.get("delivered"):
                verdict.fail(
                    f"{worker_id} run {spec.run}: final states not delivered within 60 s of the stop"
                )
    for worker_id, worker_runs in runs.items():
        for spec, _exitcode, _killed in worker_runs:
            if spec.result_path.exists() and not any(
                r["worker_id"] == worker_id and r["run"] == spec.run for r in results
            ):
                result = json.loads(spec.result_path.read_text(encoding="utf-8"))
                if "error" in result:  # a killed run that had already failed
                    verdict.fail(
                        f"{worker_id} run {spec.run}: error raised into worker code:\n{result['error']}"
                    )
    for resume in truth.resumes:
        if resume["stored"] is not None and resume["stored"] > resume["journal"]:
            verdict.fail(
                f"{resume['worker_id']}: resumed {resume['job_id']} at stored done {resume['stored']} "
                f"> {resume['journal']} items journalled (double counting)"
            )

    # 2. Every job's final state present and correct: done equals the journalled work.
    rows_checked = 0
    for key, items in truth.first_done.items():
        job_id, worker_id = key
        expected = plan(specs[worker_id], truth.numbers[key])
        row = final_rows.get(key)
        rows_checked += 1
        if key not in truth.finished:
            verdict.fail(f"{job_id}/{worker_id}: never finished in the journal (worker stopped mid-job)")
            continue
        if set(items) != set(range(expected.total)):
            verdict.fail(
                f"{job_id}/{worker_id}: journal holds {len(items)} of {expected.total} distinct items"
            )
        if row is None:
            verdict.fail(f"{job_id}/{worker_id}: no row in the store")
        elif row.status != "succeeded" or row.done != len(items) or row.total != expected.total:
            verdict.fail(
                f"{job_id}/{worker_id}: stored {row.status} {row.done}/{row.total}, "
                f"journal succeeded {len(items)}/{expected.total}"
            )
    for key in final_rows:
        if key not in truth.first_done:
            verdict.fail(f"{key[0]}/{key[1]}: a row in the store that no worker journalled")
    for job_id, job in final_jobs.items():
        journalled = sum(len(items) for (job, _), items in truth.first_done.items() if job == job_id)
        if job.done != journalled or job.status != "succeeded" or job.lost or job.stalled:
            verdict.fail(
                f"job {job_id}: view shows {job.state} done={job.done}, "
                f"journals sum to {journalled} succeeded"
            )
    verdict.show(
        f"final states: {rows_checked} (job, worker) rows in {len(final_jobs)} jobs "
        "checked against the journals"
    )

    # 3. No double counting at any moment: the store never showed more than had been journalled.
    observations = over = 0
    for poller in pollers:
        for key, seen in poller.observations.items():
            for moment, done in seen:
                observations += 1
                journalled = truth.count_at(key, moment)
                if done > journalled:
                    over += 1
                    verdict.fail(
                        f"{key[0]}/{key[1]}: store showed done={done} at {moment:.3f}, "
                        f"journal had {journalled}"
                    )
        for text in poller.inconsistent[:5]:
            verdict.fail(f"Jobs view inconsistent ({poller.name}): {text}")
    resumes = truth.resumes
    direct = [resume["journal"] - resume["stored"] for resume in resumes if resume["direct"]]
    redone = sum(max(lag, 0) for lag in direct)
    via = [resume["stored"] for resume in resumes if not resume["direct"]]
    via_lag = [
        resume["journal"] - resume["stored"]
        for resume in resumes
        if not resume["direct"] and resume["stored"] is not None
    ]

    def span(values: list[int]) -> str:
        low, high = min(values, default=0), max(values, default=0)
        return f"{low}" if low == high else f"{low}-{high}"

    verdict.show(
        f"double counting: {over or 'none'} in {observations} store observations "
        "(a stored done above what the journal held at that moment)"
    )
    restarts = f"restarts: {len(resumes)} jobs resumed after SIGKILL"
    if direct:
        restarts += (
            f"; {len(direct)} with resume=True, the store {span(direct)} item(s) behind the journal "
            f"(redone: {redone})"
        )
    if via:
        restarts += (
            f"; {len(via)} through the collector from the journal, its read API {span(via_lag)} "
            "item(s) behind"
        )
        restarts += f" ({via.count(None)} unanswered)" if None in via else ""
    verdict.show(restarts)

    # 4. Lost and stalled flagged within stall_after + 1 s of the store clock.
    bound = stall_after + 1.0
    flags = [flag for poller in pollers for flag in poller.flags]
    lost_latencies: list[float] = []
    stalled_latencies: list[float] = []
    for fault in faults:
        if fault.kind in ("sigstop", "sigkill", "hang"):
            if fault.kind == "sigkill" and fault.detail.get("restart_delay", 0.0) < bound + 0.5:
                continue  # restarted before it could be judged lost
            kind = "stalled" if fault.kind == "hang" else "lost"
            window_end = fault.end + 1.0
            found = [
                flag
                for flag in flags
                if flag.kind == kind
                and flag.worker_id == fault.target
                and fault.start <= flag.poll_end <= window_end
            ]
            if not found:
                verdict.fail(f"{fault.kind} of {fault.target} at {fault.start:.1f}: never shown {kind}")
                continue
            first = min(found, key=lambda flag: flag.poll_end)
            latency = first.poll_end - first.since
            (stalled_latencies if kind == "stalled" else lost_latencies).append(latency)
            fault.detail[f"{kind}_after"] = round(latency, 2)
            if latency > bound:
                verdict.fail(
                    f"{fault.kind} of {fault.target}: shown {kind} {latency:.2f} s after its last "
                    f"{'message' if kind == 'lost' else 'progress'} (bound {bound:g} s)"
                )
            if fault.kind == "sigstop":
                if first.cleared is None:
                    verdict.fail(f"sigstop of {fault.target}: still shown lost after SIGCONT")
                else:
                    fault.detail["running_again_after_cont"] = round(first.cleared - fault.end, 2)
    for name, values in (("lost", lost_latencies), ("stalled", stalled_latencies)):
        if values:
            verdict.show(
                f"{name} flagged after (store clock, since the last "
                f"{'message' if name == 'lost' else 'progress'}): "
                f"max {max(values):.2f} s, mean {statistics.fmean(values):.2f} s over {len(values)} "
                f"(bound stall_after + 1 = {bound:g} s)"
            )
    explained = 0
    unexplained: list[str] = []
    for flag in flags:
        path = path_of.get(flag.worker_id, "")
        if any(
            _affected(fault, path, flag.worker_id)
            and fault.start - 1.0 <= flag.poll_end <= fault.end + bound + 3.0
            for fault in faults
        ):
            explained += 1
        else:
            unexplained.append(f"{flag.kind} {flag.job_id}/{flag.worker_id} at {flag.poll_end:.1f}")
    verdict.show(
        f"flags: {len(flags)} lost/stalled sightings, {explained} during a fault on that worker or its path"
    )
    if unexplained:
        verdict.notes.append(
            f"{len(unexplained)} lost/stalled sightings outside any fault window (machine load?): "
            + "; ".join(unexplained[:5])
        )

    # 4b. After each store, collector or HTTP fault, every worker on that path delivers again.
    changes: dict[str, list[float]] = defaultdict(list)
    for poller in pollers:
        for (_job_id, worker_id), seen in poller.observations.items():
            changes[worker_id].extend(moment for moment, _done in seen)
    for moments in changes.values():
        moments.sort()
    recoveries: dict[str, list[float]] = defaultdict(list)
    for fault in faults:
        if fault.kind in WORKER_FAULTS:
            continue
        slowest = 0.0
        for worker_id, path in path_of.items():
            if fault.kind not in PATH_FAULTS[path] or any(
                other.kind in WORKER_FAULTS
                and other.target == worker_id
                and other.start - 10.0 <= fault.end <= other.end + 10.0
                for other in faults
            ):
                continue
            moments = changes.get(worker_id, [])
            index = bisect.bisect_right(moments, fault.end)
            if index == len(moments):
                verdict.fail(f"{fault.kind} at {fault.start:.1f}: {worker_id} never delivered again")
                continue
            slowest = max(slowest, moments[index] - fault.end)
        fault.detail["all_delivering_after"] = round(slowest, 2)
        recoveries[fault.kind].append(slowest)
    if recoveries:
        verdict.show(
            "every affected worker delivering again after the fault ended (worst of each kind): "
            + ", ".join(f"{kind} {max(values):.1f} s" for kind, values in sorted(recoveries.items()))
        )

    # 5. Delivery latency: advance() to the first poll that shows at least that done.
    killed_runs = {
        (spec.worker_id, spec.run)
        for worker_runs in runs.values()
        for spec, _, killed in worker_runs
        if killed
    }
    all_latencies: dict[str, list[float]] = defaultdict(list)
    clean_latencies: dict[str, list[float]] = defaultdict(list)
    observed = {key: seen for poller in pollers for key, seen in poller.observations.items()}
    for worker_runs in runs.values():
        for spec, _exitcode, _killed in worker_runs:
            if (spec.worker_id, spec.run) in killed_runs or not spec.samples_path.exists():
                continue  # a SIGKILLed run's last progress is lost by design and redone after restart
            for line in spec.samples_path.read_text(encoding="utf-8").splitlines():
                moment_text, job_id, done_text = line.split()
                moment, done = float(moment_text), int(done_text)
                seen = observed.get((job_id, spec.worker_id), [])
                index = bisect.bisect_left(seen, (moment, -1))
                shown = next((when for when, value in seen[index:] if value >= done), None)
                if shown is None:
                    continue  # superseded by the final state before a poll saw it
                latency = shown - moment
                all_latencies[spec.path].append(latency)
                if moment >= steady_from and not any(
                    _affected(fault, spec.path, spec.worker_id)
                    and fault.start - 1.0 <= moment <= fault.end + 3.0
                    for fault in faults
                ):
                    clean_latencies[spec.path].append(latency)
    for path in ("sqlite", "postgres", "http"):
        every, clean = all_latencies.get(path, []), clean_latencies.get(path, [])
        if not clean:
            verdict.fail(f"latency: no samples for the {path} path")
            continue
        verdict.show(
            f"latency {path:8s} advance() -> visible row: steady state (after start-up, outside "
            f"fault windows; n={len(clean)}) p50 {percentile(clean, 0.5):.2f} s, "
            f"p99 {percentile(clean, 0.99):.2f} s; all samples p50 {percentile(every, 0.5):.2f} s, "
            f"p99 {percentile(every, 0.99):.2f} s, max {max(every):.2f} s"
        )
        if percentile(clean, 0.5) > 2.0:
            verdict.fail(f"latency: {path} p50 {percentile(clean, 0.5):.2f} s in steady state exceeds 2 s")

    # 6. Peak memory per worker, and delivery counters.
    by_path: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    for result in results:
        by_path[result["path"]].append(result["max_rss_kib"] / 1024)
        for counters in (result.get("stats") or {}).values():
            failures[result["path"]] += int(counters.get("failures", 0))
    for path, values in sorted(by_path.items()):
        verdict.show(
            f"peak RSS per {path} worker: median {statistics.median(values):.0f} MiB, "
            f"max {max(values):.0f} MiB "
            f"({len(values)} runs); failed sends retried: {failures[path]}"
        )

    # 7. Every fault kind was injected.
    counts: dict[str, int] = defaultdict(int)
    for fault in faults:
        counts[fault.kind] += 1
    for kind in expected_faults:
        if counts[kind] == 0:
            verdict.fail(f"fault {kind} was never injected")
    if counts["http_429_503"] and not (proxy_stats.get("429") and proxy_stats.get("503")):
        verdict.fail(f"the fault proxy answered no 429 or no 503: {proxy_stats}")
    verdict.show("faults injected: " + ", ".join(f"{kind} x{counts[kind]}" for kind in sorted(counts)))
    if proxy_stats:
        verdict.show(
            f"fault proxy: {proxy_stats.get('forwarded', 0)} forwarded, {proxy_stats.get('429', 0)} x 429, "
            f"{proxy_stats.get('503', 0)} x 503, {proxy_stats.get('upstream_down', 0)} "
            "connections closed while the collector was down"
        )
    for poller in pollers:
        durations = poller.durations or [0.0]
        verdict.show(
            f"poller {poller.name}: {poller.polls} polls, p50 {percentile(durations, 0.5) * 1000:.0f} ms, "
            f"errors {dict(poller.errors) or 'none'}"
        )
    return verdict
