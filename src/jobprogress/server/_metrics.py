"""The collector's own health as Prometheus metrics (``GET /metrics``), on a registry of its own.

Each app gets a fresh :class:`prometheus_client.CollectorRegistry` (never the global one), so two apps
in one process, or a test suite building dozens, never share or collide on a series. What is counted:

* messages accepted, and requests refused by reason (a refused request is refused whole: its messages
  were never parsed, so the count is of requests);
* request latency per route template (never the raw path: a job id would be a label value), and the
  messages per accepted request;
* store write latency, transactions and failures (the coalesced writes, see ``_coalesce``);
* jobs by state, read from the store at scrape time (``ProgressStore.counts()``, one SQL aggregate);
* live workers: those this collector heard from within ``stall_after`` whose last status was running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobprogress._states import JOB_STATES, RUNNING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from jobprogress.envelope import Heartbeat, ProgressUpdate

__all__ = [
    "METRIC_NAMES",
    "REFUSAL_SCOPE_KEY",
    "REJECT_REASONS",
    "CollectorMetrics",
    "LiveWorkers",
    "MetricsMiddleware",
    "route_of",
]

REJECT_REASONS: Final = {
    400: "bad_request",
    401: "unauthorized",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}
"""The ``reason`` label of a refused write request, by its status code (others: ``other``)."""

REFUSAL_SCOPE_KEY: Final = "jobprogress.refusal"
"""Where a 503 notes why it was answered: ``busy`` (too many in flight) or ``store_unavailable``."""

_WRITE_ROUTES: Final = frozenset({"/v1/heartbeat", "/v1/progress", "/v1/batch"})
_FIXED_ROUTES: Final = frozenset(
    {*_WRITE_ROUTES, "/v1/jobs", "/jobs", "/metrics", "/healthz", "/readyz", "/openapi.json"}
)
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 200, 400, 1000, 5000)

METRIC_NAMES: Final = (
    "jobprogress_messages_accepted_total",
    "jobprogress_requests_rejected_total",
    "jobprogress_request_duration_seconds",
    "jobprogress_batch_messages",
    "jobprogress_store_write_duration_seconds",
    "jobprogress_store_write_failures_total",
    "jobprogress_jobs",
    "jobprogress_live_workers",
    "jobprogress_store_up",
)
"""Every family /metrics exposes (the Grafana dashboard's test checks its queries against these)."""


def route_of(path: str) -> str:
    """The route template a path belongs to: a bounded label value, never a job id."""
    if path in _FIXED_ROUTES:
        return path
    if path.startswith("/v1/jobs/"):
        return "/v1/jobs/{job_id}"
    if path.startswith("/jobs/"):
        return "/jobs/{job_id}"
    if path.startswith("/static/"):
        return "/static"
    return "other"


class _StoreCollector(Collector):
    """Reads jobs by state and live workers when Prometheus scrapes."""

    def __init__(
        self, counts: Callable[[], dict[str, int]] | None, live_workers: Callable[[], int] | None
    ) -> None:
        self._counts = counts
        self._live_workers = live_workers

    def describe(self) -> Iterable[Metric]:
        # Without describe() the registry would call collect() (a store query) at registration.
        yield GaugeMetricFamily("jobprogress_jobs", "Jobs in each state (store, at scrape time).")
        yield GaugeMetricFamily("jobprogress_store_up", "1 when the store answered this scrape, else 0.")
        yield GaugeMetricFamily("jobprogress_live_workers", "Workers running and heard from recently.")

    def collect(self) -> Iterator[Metric]:
        if self._counts is not None:
            jobs = GaugeMetricFamily(
                "jobprogress_jobs", "Jobs in each state (store, at scrape time).", labels=["state"]
            )
            up = 1.0
            try:
                counts = self._counts()
            except Exception:
                counts, up = {}, 0.0
            for state in JOB_STATES:
                if state in counts or up:
                    jobs.add_metric([state], float(counts.get(state, 0)))
            yield jobs
            yield GaugeMetricFamily(
                "jobprogress_store_up", "1 when the store answered this scrape, else 0.", value=up
            )
        if self._live_workers is not None:
            yield GaugeMetricFamily(
                "jobprogress_live_workers",
                "Workers whose last message (within stall_after) said running.",
                value=float(self._live_workers()),
            )


class LiveWorkers:
    """Workers heard from within ``window`` seconds whose last message said they run (in memory)."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def observe(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        now = self._clock()
        with self._lock:
            for message in messages:
                key = (message.job_id, message.worker_id)
                status = getattr(message, "status", RUNNING)  # a progress update means running
                if str(getattr(status, "value", status)) == RUNNING:
                    self._seen[key] = now
                else:
                    self._seen.pop(key, None)
            if len(self._seen) > 100_000:
                self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        for key in [key for key, seen in self._seen.items() if seen < horizon]:
            del self._seen[key]

    def __call__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._seen)


class CollectorMetrics:
    """The metric objects of one app, on their own registry."""

    def __init__(
        self,
        *,
        counts: Callable[[], dict[str, int]] | None = None,
        live_workers: LiveWorkers | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.live_workers = live_workers
        self.accepted = Counter(
            "jobprogress_messages_accepted",
            "Messages written to the store.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "jobprogress_requests_rejected",
            "Write requests refused, by reason (a refused request's messages are not counted).",
            ["reason"],
            registry=self.registry,
        )
        for reason in (*REJECT_REASONS.values(), "busy", "store_unavailable", "other"):
            self.rejected.labels(reason)  # every reason shows, 0 included, so rate() works from the start
        self.latency = Histogram(
            "jobprogress_request_duration_seconds",
            "Time to answer a request, by route template and status code.",
            ["route", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            "jobprogress_batch_messages",
            "Messages per accepted write request.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.write_latency = Histogram(
            "jobprogress_store_write_duration_seconds",
            "Time of one store transaction (concurrent requests merged into one).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_failures = Counter(
            "jobprogress_store_write_failures",
            "Store transactions that failed (their requests were answered 503).",
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(counts, live_workers))

    def timed_write(
        self, write: Callable[[Sequence[Heartbeat | ProgressUpdate]], None]
    ) -> Callable[[Sequence[Heartbeat | ProgressUpdate]], None]:
        """``write`` measured: its duration, its failures, and the workers it heard from."""

        def measured(messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
            started = time.perf_counter()
            try:
                write(messages)
            except Exception:
                self.write_failures.inc()
                raise
            finally:
                self.write_latency.observe(time.perf_counter() - started)
            if self.live_workers is not None:
                self.live_workers.observe(messages)

        return measured

    def accepted_request(self, messages: int) -> None:
        self.accepted.inc(messages)
        self.batch.observe(messages)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Outermost: times every HTTP request and counts refused write requests by reason."""

    def __init__(self, app: ASGIApp, metrics: CollectorMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = route_of(scope["path"])
            code = status[0]
            self.metrics.latency.labels(route, str(code)).observe(time.perf_counter() - started)
            if route in _WRITE_ROUTES and code >= 400:
                reason = scope.get(REFUSAL_SCOPE_KEY) or REJECT_REASONS.get(code, "other")
                self.metrics.rejected.labels(reason).inc()
