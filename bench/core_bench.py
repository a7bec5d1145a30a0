"""Core SDK benchmark (issue 2): jobprogress side by side with tqdm and the bare loop, in one process.

Measures, and prints with PASS/FAIL against the targets:

1. ``advance()`` overhead per call against tqdm ``update(1)`` (target <= 0.25x tqdm).
2. ``iter()`` overhead per item against tqdm wrapping an iterable, over a list and over a generator,
   default settings (target <= 0.3x tqdm).
3. Wall time of ``import jobprogress`` against ``import tqdm`` in fresh subprocesses, median of several,
   after byte-compiling the package (target <= 0.25x tqdm): timed around the import statement inside
   the child, and (less precise) as the child's whole run minus ``python -c pass``.
4. ``advance()`` latency while the reporter runs and the sink hangs: mean, p99.9 and max
   (target p99.9 <= 50 us; RELIABILITY.md also holds mean <= 1 us and max <= 10 ms), beside the same
   loop around an empty C call, whose max is what the GIL and the OS cost any code on this machine.
5. 1,000 sequential short jobs (a ``with`` block and 10 ``advance()`` each): wall time added per job
   by a healthy sink that takes 2 ms per send (target <= 0.2 ms) and by a hung sink (target: nothing,
   taken as <= 0.05 ms, the noise of the loop).
6. CPU of the background threads (reporter passes and the sink sender) with 10,000 live trackers all
   advancing, at the default interval, over ~5 s, as % of one core (target < 5 %).

Overheads are the best of several runs minus the bare loop's best. Run from the project root:
``python bench/core_bench.py`` (``tox -e bench`` does). Options: ``--quick`` for a shorter run.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jobprogress as jp
from jobprogress.testing import registered_sink

# -- sinks for the benchmark, registered through the plugin hook like any third-party sink -----------


class NullSink:
    """Accepts and discards: measures jobprogress's own cost, not a sink's."""

    def __init__(self, url: str) -> None:
        self.sent = 0

    def send(self, messages: Sequence[object]) -> None:
        self.sent += len(messages)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass


class SlowSink(NullSink):
    """A healthy sink that takes 2 ms per send (a local database commit, say)."""

    def send(self, messages: Sequence[object]) -> None:
        time.sleep(0.002)
        self.sent += len(messages)


_release = threading.Event()


class HungSink(NullSink):
    """Accepts the connection and never replies: every send blocks (until the benchmark ends)."""

    def send(self, messages: Sequence[object]) -> None:
        _release.wait()


_registrations = contextlib.ExitStack()


def use_bench_sinks() -> None:
    """``null://``, ``slow://`` and ``hung://`` for the rest of the run, registered as plugins are."""
    os.environ["JOBPROGRESS_LOAD_PLUGINS"] = ""  # only the built-ins and these: no entry-point plugins
    for scheme, factory in (("null", NullSink), ("slow", SlowSink), ("hung", HungSink)):
        _registrations.enter_context(registered_sink(scheme, factory))


def reconfigure(*sinks: str, **settings: float) -> None:
    jp.shutdown(0.5)
    jp.configure(sinks=list(sinks), **settings)  # type: ignore[arg-type]


# -- report ------------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str, str, str]] = []
FAILED: list[str] = []


def row(what: str, ours: str, theirs: str, ratio: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    if ok is False:
        FAILED.append(what)
    ROWS.append((what, ours, theirs, ratio, target, verdict))
    print(f"  {what}: {ours} | {theirs} | {ratio} | {target} | {verdict}", file=sys.stderr, flush=True)


def print_table() -> None:
    header = ("measure", "jobprogress", "tqdm / baseline", "ratio", "target", "")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(6)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in ROWS:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(line)


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:.1f} ns"


def best_of(runs: int, bodies: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best wall time of each body over ``runs`` rounds, interleaved so drifting load hits all alike."""
    best = dict.fromkeys(bodies, float("inf"))
    for _ in range(runs):
        for name, body in bodies.items():
            started = time.perf_counter()
            body()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


# -- 1. advance() against update(1) --------------------------------------------------------------------


def bench_advance(calls: int, runs: int) -> None:
    import tqdm

    reconfigure("null://")  # the reporter runs, as in production
    devnull = open(os.devnull, "w")  # tqdm's default stderr, minus the terminal
    loop = range(calls)

    def bare() -> None:
        for _ in loop:
            pass

    def ours() -> None:
        with jp.track("bench-advance", unit="iterations", total=calls) as tracker:
            for _ in loop:
                tracker.advance()

    def theirs() -> None:
        with tqdm.tqdm(total=calls, file=devnull) as bar:
            for _ in loop:
                bar.update(1)

    best = best_of(runs, {"bare": bare, "ours": ours, "theirs": theirs})
    jp_cost = (best["ours"] - best["bare"]) / calls
    tqdm_cost = (best["theirs"] - best["bare"]) / calls
    devnull.close()
    ratio = jp_cost / tqdm_cost
    row(
        "advance() vs update(1), per call",
        ns(jp_cost),
        ns(tqdm_cost),
        f"{ratio:.3f}x",
        "<= 0.25x",
        ratio <= 0.25,
    )


# -- 2. iter() against tqdm(iterable) ------------------------------------------------------------------


def bench_iter(items: int, runs: int) -> None:
    import tqdm

    reconfigure("null://")
    devnull = open(os.devnull, "w")
    data = list(range(items))

    def sources() -> dict[str, Callable[[], Iterator[int] | list[int]]]:
        return {"list": lambda: data, "generator": lambda: (x for x in data)}

    for name, make in sources().items():

        def bare() -> None:
            for _ in make():
                pass

        def ours() -> None:
            for _ in jp.track(f"bench-iter-{name}", unit="rows").iter(make()):
                pass

        def theirs() -> None:
            for _ in tqdm.tqdm(make(), file=devnull):
                pass

        best = best_of(runs, {"bare": bare, "ours": ours, "theirs": theirs})
        jp_cost = max(best["ours"] - best["bare"], 0.0) / items
        tqdm_cost = (best["theirs"] - best["bare"]) / items
        ratio = jp_cost / tqdm_cost
        row(
            f"iter() over a {name}, per item",
            ns(jp_cost),
            ns(tqdm_cost),
            f"{ratio:.3f}x",
            "<= 0.3x",
            ratio <= 0.3,
        )
    devnull.close()


# -- 3. import time ------------------------------------------------------------------------------------


IMPORT_PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def bench_import(runs: int) -> None:
    import jobprogress

    package_dir = Path(jobprogress.__file__).parent
    # pip compiles bytecode at install; this environment may set PYTHONDONTWRITEBYTECODE, so do it here.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROGRESS_")}
    process: dict[str, list[float]] = {"pass": [], "jobprogress": [], "tqdm": []}
    statement: dict[str, list[float]] = {"jobprogress": [], "tqdm": []}
    for attempt in range(runs + 1):
        for name in process:  # interleaved, so drifting machine load hits all three alike
            code = "pass" if name == "pass" else f"import {name}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            elapsed = time.perf_counter() - started
            if name != "pass":
                # The import statement's own wall time in a fresh interpreter: free of the few
                # milliseconds of process start-up noise that the subtraction below carries.
                probe = IMPORT_PROBE.format(module=name)
                result = subprocess.run(
                    [sys.executable, "-c", probe], check=True, env=env, capture_output=True
                )
            if attempt:  # the first round only warms the page cache
                process[name].append(elapsed)
                if name != "pass":
                    statement[name].append(float(result.stdout))
    ours, theirs = statistics.median(statement["jobprogress"]), statistics.median(statement["tqdm"])
    row(
        f"import, fresh process (median of {runs})",
        f"{ours * 1e3:.2f} ms",
        f"{theirs * 1e3:.2f} ms",
        f"{ours / theirs:.3f}x",
        "<= 0.25x",
        ours / theirs <= 0.25,
    )
    base = statistics.median(process["pass"])
    ours, theirs = statistics.median(process["jobprogress"]) - base, statistics.median(process["tqdm"]) - base
    row(
        "  same, whole process minus python -c pass",
        f"{ours * 1e3:.1f} ms",
        f"{theirs * 1e3:.1f} ms",
        f"{ours / theirs:.3f}x",
        "(noisier)",
        None,
    )


# -- 4. advance() latency with a hung sink ----------------------------------------------------------


def advance_latencies(
    seconds: float, call: Callable[[], object] | None = None
) -> tuple[float, float | None, float | None, int]:
    """Time every advance() (or ``call``) for ``seconds``: mean, p99.9 and max in seconds, and the count.

    p99.9 and max are None when under 1 us, the resolution this loop can vouch for.
    """
    clock = time.perf_counter_ns
    chunk = 100_000
    samples = array.array("q", bytes(8 * chunk))
    slow: list[int] = []  # every sample over 1 us: enough to find p99.9 exactly
    total = count = 0
    tracker = jp.track("bench-latency", unit="iterations").start()
    advance = tracker.advance if call is None else call
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i in range(chunk):
            started = clock()
            advance()
            samples[i] = clock() - started
        total += sum(samples)
        count += chunk
        slow.extend(s for s in samples if s > 1000)
    tracker.finish()
    slow.sort(reverse=True)
    rank = count // 1000
    p999 = slow[rank] / 1e9 if rank < len(slow) else None
    return total / count / 1e9, p999, (slow[0] / 1e9 if slow else None), count


def _us(value: float | None) -> str:
    if value is None:
        return "< 1 us"
    return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.1f} us"


def bench_latency(seconds: float) -> None:
    results = {}
    for label, sink in (("healthy sink", "null://"), ("hung sink", "hung://")):
        reconfigure(sink)  # default interval and keepalive
        # 1,000 other live jobs, all changing, keep the reporter sampling and queueing while we measure.
        others = [jp.track(f"bench-other-{i}").start() for i in range(1000)]
        stop = threading.Event()

        def churn(others: list[jp.Tracker] = others, stop: threading.Event = stop) -> None:
            while not stop.wait(0.01):
                for other in others:
                    other.advance()

        churner = threading.Thread(target=churn)
        churner.start()
        try:
            results[label] = advance_latencies(seconds)
            if sink == "hung://":
                # The same loop around an empty C call: what GIL hand-offs and the OS scheduler cost
                # any code on this machine under this load, advance() or not.
                results["control: bool() in its place"] = advance_latencies(seconds / 3, bool)
        finally:
            stop.set()
            churner.join()
            for other in others:
                other.finish()
    for label, (mean, p999, worst, count) in results.items():
        control = label.startswith("control")
        row(
            f"{'  ' if control else 'advance() latency, '}{label}: mean / p99.9 / max",
            f"{mean * 1e9:.0f} ns / {_us(p999)} / {_us(worst)}",
            f"{count / 1e6:.1f}M calls; reporter + 1,000 live jobs",
            "",
            "" if control else "p99.9 <= 50 us",
            None if control else (p999 or 0.0) <= 50e-6,
        )


# -- 5. 1,000 sequential short jobs ------------------------------------------------------------------


def short_jobs(count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        with jp.track(f"short-{index}", unit="rows") as tracker:
            for _ in range(10):
                tracker.advance()
    return time.perf_counter() - started


def bench_short_jobs(runs: int, jobs: int = 1000) -> None:
    timings: dict[str, list[float]] = {"none": [], "slow": [], "hung": []}
    for _ in range(runs):  # interleaved, so drifting load hits every case alike
        for label in timings:
            reconfigure(*([] if label == "none" else [f"{label}://"]))
            short_jobs(50)  # warm up: reporter and sender threads started, models loaded
            timings[label].append(short_jobs(jobs))
            jp.flush(0.0 if label == "hung" else 5.0)
    base = statistics.median(timings["none"])
    for label, target, limit in (("slow", "<= 0.2 ms/job", 0.2e-3), ("hung", "~0 (<= 0.05 ms/job)", 0.05e-3)):
        added = (statistics.median(timings[label]) - base) / jobs
        what = "healthy 2 ms/send sink" if label == "slow" else "hung sink"
        row(
            f"1,000 short jobs, {what}: added per job",
            f"{added * 1e3:+.3f} ms",
            f"no sink: {base / jobs * 1e3:.3f} ms/job",
            "",
            target,
            added <= limit,
        )


# -- 6. reporter CPU with 10,000 live trackers ---------------------------------------------------------


def bench_reporter_cpu(trackers: int, seconds: float) -> None:
    from jobprogress._mailbox import Mailbox
    from jobprogress._reporter import Reporter

    spent = {"reporter": 0.0, "sender": 0.0}
    original_pass, original_deliver = Reporter.run_pass, Mailbox.deliver

    def timed_pass(self: Reporter, *, force: bool = False) -> bool:
        started = time.thread_time()
        try:
            return original_pass(self, force=force)
        finally:
            spent["reporter"] += time.thread_time() - started

    def timed_deliver(self: Mailbox) -> bool:
        started = time.thread_time()
        try:
            return original_deliver(self)
        finally:
            spent["sender"] += time.thread_time() - started

    Reporter.run_pass = timed_pass  # type: ignore[method-assign]
    Mailbox.deliver = timed_deliver  # type: ignore[method-assign]
    try:
        reconfigure("null://")  # the default interval (1 s) and keepalive
        live = [jp.track(f"cpu-{i}", unit="rows", total=1_000_000).start() for i in range(trackers)]
        time.sleep(1.5)  # the start messages of 10,000 jobs are not the steady state
        period_before = jp.stats()["sample_period"]
        spent.update(reporter=0.0, sender=0.0)
        started = time.monotonic()
        while time.monotonic() - started < seconds:  # every tracker changes between any two passes
            for tracker in live:
                tracker.advance()
        elapsed = time.monotonic() - started
        reporter_share, sender_share = spent["reporter"] / elapsed, spent["sender"] / elapsed
        period = jp.stats()["sample_period"]
        for tracker in live:
            tracker.finish()
        jp.flush(10.0)
    finally:
        Reporter.run_pass = original_pass  # type: ignore[method-assign]
        Mailbox.deliver = original_deliver  # type: ignore[method-assign]
    total = reporter_share + sender_share
    row(
        f"background CPU, {trackers:,} live trackers all advancing, interval 1 s",
        f"{total * 100:.1f} % of a core",
        f"reporter {reporter_share * 100:.1f} % + sender {sender_share * 100:.1f} %; "
        f"sampling every {period:.1f} s (from {period_before:.1f} s; budgeted)",
        "",
        "< 5 %",
        total < 0.05,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and runs (a smoke run)")
    parts = ("advance", "iter", "import", "latency", "short-jobs", "reporter-cpu")
    parser.add_argument("--only", choices=parts, action="append", help="run only these parts (repeatable)")
    args = parser.parse_args()
    chosen = set(args.only or parts)
    scale = 0.1 if args.quick else 1.0
    use_bench_sinks()
    print(f"Python {sys.version.split()[0]}, jobprogress {jp.__version__}", file=sys.stderr)
    if "advance" in chosen:
        bench_advance(calls=int(2_000_000 * scale), runs=7)
    if "iter" in chosen:
        bench_iter(items=int(2_000_000 * scale), runs=7)
    if "import" in chosen:
        bench_import(runs=5 if args.quick else 15)
    if "latency" in chosen:
        bench_latency(seconds=1.0 if args.quick else 3.0)
    if "short-jobs" in chosen:
        bench_short_jobs(runs=2 if args.quick else 5)
    if "reporter-cpu" in chosen:
        bench_reporter_cpu(trackers=10_000, seconds=5.0 if args.quick else 20.0)
    _release.set()
    jp.shutdown(1.0)
    print_table()
    judged = [r for r in ROWS if r[5]]
    print(f"{sum(r[5] == 'PASS' for r in judged)} of {len(judged)} targets met")
    if FAILED:
        print("missed: " + "; ".join(FAILED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
