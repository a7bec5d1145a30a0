"""The ``otel://`` sink: the latest state of each (job, worker) as four OpenTelemetry observable gauges.

Why observable gauges rather than the synchronous ``Gauge``: the synchronous gauge is still
``_Gauge`` (provisional) in the OpenTelemetry API, and a MeterProvider that does not implement it warns
and drops the values. Observable gauges are stable, and reading the state at collection time gives the
right shape for progress: a running job is reported at every collection, even while it is idle, and a
finished job is reported once more with its final status and then forgotten, which keeps this sink's
memory (and the metric's cardinality) bounded by the jobs that are alive.

Instruments are created once per MeterProvider (a second creation of the same name would be silently
merged into the first, losing its callbacks), so every sink bound to one provider shares one
:class:`_Hub` whose callbacks report the states of all of them.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Final
from urllib.parse import parse_qs, urlsplit

from jobprogress.envelope import Heartbeat, JobStatus, ProgressUpdate
from jobprogress.errors import ConfigurationError, SinkError
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from . import __version__

__all__ = ["DEFAULT_MAX_JOBS", "INSTRUMENT_NAMES", "METER_NAME", "OtelSink"]

_log = logging.getLogger("jobprogress_otel")

METER_NAME: Final = "jobprogress_otel"
"""The instrumentation scope the gauges are recorded under."""

_INSTRUMENTS: Final = (
    ("jobprogress.items_done", "{item}", "Items one job has done on one worker."),
    ("jobprogress.items_total", "{item}", "Items one job expects on one worker, when known."),
    ("jobprogress.throughput", "{item}/s", "Recent items per second of one job on one worker."),
    ("jobprogress.eta_seconds", "s", "Estimated seconds until one job finishes on one worker."),
)
INSTRUMENT_NAMES: Final = tuple(name for name, _, _ in _INSTRUMENTS)
_ALL_REPORTED: Final = (1 << len(_INSTRUMENTS)) - 1

DEFAULT_MAX_JOBS: Final = 10_000
"""Most (job, worker) states one sink keeps; beyond it the least recently updated is dropped."""

_RUNNING: Final = JobStatus.RUNNING.value
_PARAMETERS: Final = ("keep_final", "max_jobs")


class _JobState:
    """What is known about one (job, worker); one lives per key, mutated under the sink's lock."""

    __slots__ = (
        "_attributes",
        "expires_at",
        "kind",
        "progress_seq",
        "reported",
        "status",
        "status_seq",
        "unit",
        "values",
    )

    def __init__(self) -> None:
        # A state first created by a progress update is running, as in the store.
        self.status = _RUNNING
        self.status_seq = -1
        self.kind: str | None = None
        self.progress_seq = -1
        self.unit = "unknown"
        # items_done, items_total, throughput, eta_seconds: the order of _INSTRUMENTS.
        self.values: tuple[int, int | None, float | None, int | None] | None = None
        self.expires_at: float | None = None
        self.reported = 0
        self._attributes: dict[str, str] | None = None

    def attributes(self, job_id: str, worker_id: str) -> dict[str, str]:
        if self._attributes is None:
            attributes = {"job_id": job_id, "worker_id": worker_id, "unit": self.unit, "status": self.status}
            if self.kind is not None:  # OpenTelemetry attributes cannot be null: omit an unknown kind
                attributes["kind"] = self.kind
            self._attributes = attributes
        return self._attributes

    def changed(self) -> None:
        self._attributes = None


class OtelSink:
    """A sink that keeps the latest state of each (job, worker) and reports it as OpenTelemetry gauges.

    ``send`` only updates in-memory state; exporting is the job of the application's metric readers,
    which read the state through the gauges' callbacks at every collection. Every gauge point carries
    the attributes ``job_id``, ``worker_id``, ``unit``, ``status`` and, when the job has one, ``kind``.

    URL parameters: ``otel://?max_jobs=N`` bounds the states kept (default 10,000);
    ``otel://?keep_final=SECONDS`` keeps reporting a finished job's final state for that long before
    forgetting it (default 0: it is reported by the first collection after it finished).

    Args:
        url: The sink URL, ``otel://`` with optional parameters.
        meter_provider: Where to record; None (the default, and what ``otel://`` uses) means the
            application's global MeterProvider, ``opentelemetry.metrics.get_meter_provider()``.
        clock: Monotonic seconds, for ``keep_final``; injectable for tests.

    Raises:
        ConfigurationError: the URL has a host, a path or an unknown or invalid parameter.
    """

    def __init__(
        self,
        url: str = "otel://",
        *,
        meter_provider: MeterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_jobs, self.keep_final = _parse_url(url)
        self.evicted = 0
        """States dropped because more than ``max_jobs`` were alive."""
        self._clock = clock
        self._lock = threading.Lock()
        self._states: OrderedDict[tuple[str, str], _JobState] = OrderedDict()
        # (status_seq, status, kind) of finished states already forgotten, so that the late half of a
        # final state split in two (see _apply) is not mistaken for a new, running job. Bounded like states.
        self._finished: OrderedDict[tuple[str, str], tuple[int, str, str | None]] = OrderedDict()
        self._closed = False
        self._warned_eviction = False
        self._pid = os.getpid()
        self._hub = _hub_for(meter_provider)
        self._hub.attach(self)

    def __repr__(self) -> str:
        return f"OtelSink({self.url!r})"

    @property
    def job_count(self) -> int:
        """How many (job, worker) states the sink holds now."""
        with self._lock:
            return len(self._states)

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Fold ``messages`` into the per-(job, worker) state; older ``seq`` values change nothing.

        Raises:
            SinkError: the sink is closed (not retryable).
        """
        evicted = 0
        with self._lock:
            if self._closed:
                raise SinkError("the otel:// sink is closed", retryable=False)
            for message in messages:
                self._apply(message)
            while len(self._states) > self.max_jobs:
                self._states.popitem(last=False)
                evicted += 1
            self.evicted += evicted
            warn = evicted and not self._warned_eviction
            self._warned_eviction = self._warned_eviction or bool(evicted)
        if warn:
            _log.warning(
                "otel:// sink holds more than max_jobs=%d jobs; dropping the least recently updated "
                "(raise it with otel://?max_jobs=N)",
                self.max_jobs,
            )

    def _apply(self, message: Heartbeat | ProgressUpdate) -> None:
        key = (message.job_id, message.worker_id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _JobState()
            finished = self._finished.pop(key, None)
            if finished is not None:
                # A new run starts with a running heartbeat, whose higher seq replaces this; a progress
                # update alone is the rest of the finished run's final state.
                state.status_seq, state.status, state.kind = finished
        else:
            self._states.move_to_end(key)  # most recently updated last: eviction takes the front
        # Status and progress each have their own seq guard, as in the store: a final state split into
        # a heartbeat and a progress update lands whichever of the two arrives first.
        if isinstance(message, Heartbeat) and message.seq > state.status_seq:
            state.status_seq = message.seq
            state.status = message.status.value
            state.kind = message.kind
            state.changed()
        progress = message.progress
        if progress is not None and message.seq > state.progress_seq:
            state.progress_seq = message.seq
            throughput = progress.throughput_per_sec
            if throughput is not None and not math.isfinite(throughput):
                throughput = None
            state.values = (progress.items_done, progress.items_total, throughput, progress.eta_seconds)
            unit = str(progress.unit)
            if unit != state.unit:
                state.unit = unit
                state.changed()
        if state.status == _RUNNING:
            state.expires_at = None  # a new run of a finished (job, worker) is live again
            state.reported = 0
        elif state.expires_at is None:
            state.expires_at = self._clock() + self.keep_final

    def _observe(self, index: int) -> tuple[list[Observation], bool]:
        """The points of instrument ``index``, and whether this closed sink has nothing left to report."""
        now = self._clock()
        points: list[Observation] = []
        with self._lock:
            expired: list[tuple[str, str]] = []
            for key, state in self._states.items():
                if state.values is not None:
                    value = state.values[index]
                    if value is not None:
                        points.append(Observation(value, state.attributes(*key)))
                # A finished state goes only once every gauge has reported it after its time was up,
                # so each gauge shows the final values at least once.
                if state.expires_at is not None and now >= state.expires_at:
                    state.reported |= 1 << index
                    if state.reported == _ALL_REPORTED:
                        expired.append(key)
            for key in expired:
                state = self._states.pop(key)
                if state.status != _RUNNING:
                    self._finished[key] = (state.status_seq, state.status, state.kind)
                    self._finished.move_to_end(key)
                    if len(self._finished) > self.max_jobs:
                        self._finished.popitem(last=False)
            drained = self._closed and not self._states
        return points, drained

    def flush(self, timeout: float) -> bool:
        """Nothing to push: the state is already recorded, and the application's readers export it.

        Returns:
            Always True.
        """
        return True

    def close(self, timeout: float) -> None:
        """Stop accepting messages; what is held is reported by one more collection, then dropped.

        Jobs still running are reported once more with their last status, so a final collection at
        interpreter exit (the SDK's MeterProvider shuts down after jobprogress) still exports them.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = self._clock()
            for state in self._states.values():
                if state.expires_at is None or state.expires_at > now:
                    state.expires_at = now
                    state.reported = 0
            drained = not self._states
        if drained:
            self._hub.detach(self)


def _parse_url(url: str) -> tuple[int, float]:
    parts = urlsplit(url)
    if parts.scheme.lower() != "otel" or parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(
            f"an OpenTelemetry sink URL is 'otel://' with optional parameters "
            f"({', '.join(_PARAMETERS)}), not {url!r}"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_PARAMETERS))
    if unknown:
        raise ConfigurationError(
            f"unknown parameter(s) {unknown} in {url!r}; valid: {', '.join(_PARAMETERS)}"
        )
    max_jobs = DEFAULT_MAX_JOBS
    if "max_jobs" in query:
        raw = query["max_jobs"][-1]
        try:
            max_jobs = int(raw)
        except ValueError:
            max_jobs = 0
        if max_jobs < 1:
            raise ConfigurationError(f"max_jobs must be a positive integer, got {raw!r} in {url!r}")
    keep_final = 0.0
    if "keep_final" in query:
        raw = query["keep_final"][-1]
        try:
            keep_final = float(raw)
        except ValueError:
            keep_final = -1.0
        if not math.isfinite(keep_final) or keep_final < 0:
            raise ConfigurationError(f"keep_final must be seconds >= 0, got {raw!r} in {url!r}")
    return max_jobs, keep_final


class _Hub:
    """The four gauges of one MeterProvider, reporting the states of every sink bound to it."""

    def __init__(self, provider: MeterProvider) -> None:
        # The hub must not hold the provider: hubs of explicit providers are kept in a
        # WeakKeyDictionary keyed by it. The provider holds the hub, through the callbacks.
        self._lock = threading.Lock()
        self._sinks: list[OtelSink] = []
        meter = provider.get_meter(METER_NAME, __version__)
        for index, (name, unit, description) in enumerate(_INSTRUMENTS):
            meter.create_observable_gauge(
                name, callbacks=[partial(self._callback, index)], unit=unit, description=description
            )

    def attach(self, sink: OtelSink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def detach(self, sink: OtelSink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def _callback(self, index: int, options: CallbackOptions) -> Iterable[Observation]:
        pid = os.getpid()
        with self._lock:
            # A forked child inherits the parent's sinks and their states, but not their jobs: jobprogress
            # builds new sinks in the child, so the inherited ones are dropped instead of reported.
            inherited = [sink for sink in self._sinks if sink._pid != pid]
            for sink in inherited:
                self._sinks.remove(sink)
            sinks = list(self._sinks)
        points: list[Observation] = []
        for sink in sinks:
            sink_points, drained = sink._observe(index)
            points.extend(sink_points)
            if drained:
                self.detach(sink)
        return points


_hubs_lock = threading.Lock()
_hubs: weakref.WeakKeyDictionary[MeterProvider, _Hub] = weakref.WeakKeyDictionary()
_global_hub: _Hub | None = None


def _hub_for(provider: MeterProvider | None) -> _Hub:
    global _global_hub
    with _hubs_lock:
        global_provider = metrics.get_meter_provider()
        # Before the application sets its provider, the global one is the API's proxy, which forwards
        # our instruments to the real provider once it is set. So the global hub is made once and kept:
        # a second hub on the real provider would register the same instrument names again.
        if provider is None or (provider is global_provider and _global_hub is not None):
            if _global_hub is None:
                _global_hub = _hubs.get(global_provider) or _Hub(global_provider)
                _hubs[global_provider] = _global_hub
            return _global_hub
        hub = _hubs.get(provider)
        if hub is None:
            hub = _hubs[provider] = _Hub(provider)
        return hub
