"""``stdout://`` and ``stderr://``: one JSON message per line, or ``?format=human`` for a short text line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qs, urlsplit

from .._forklock import ForkGate
from ..errors import ConfigurationError
from ..hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from ..envelope import Heartbeat, JobProgressEnvelope, ProgressUpdate

__all__ = ["StreamSink", "format_human", "jobprogress_register_sinks"]

_FORMATS = ("json", "human")

# One gate for every stream sink of the process, held around each write and flush: a child forked while a
# sender was inside sys.stdout's buffer would inherit its internal lock held, and hang at its first write
# or at the flush multiprocessing does on exit.
_write_lock = ForkGate()


def _progress_text(progress: JobProgressEnvelope) -> str:
    done = (
        f"{progress.items_done}/{progress.items_total}"
        if progress.items_total is not None
        else str(progress.items_done)
    )
    text = f"{done} {progress.unit}"
    if progress.throughput_per_sec is not None:
        text += f" {progress.throughput_per_sec:.1f}/s"
    if progress.eta_seconds is not None:
        text += f" ETA {progress.eta_seconds}s"
    return text


def _shown(text: str) -> str:
    # Ids hold no control characters, but may hold bidi overrides or zero-width characters: repr those.
    return text if text.isprintable() else repr(text)


def format_human(message: Heartbeat | ProgressUpdate) -> str:
    """One short line: ``job [worker] status done/total unit rate ETA``; ids are shown as repr when odd."""
    head = f"{_shown(message.job_id)} [{_shown(message.worker_id)}]"
    if message.type == "progress":
        return f"{head} {_progress_text(message.progress)}"
    text = f"{head} {message.status.value}"
    if message.progress is not None:
        text += " " + _progress_text(message.progress)
    if message.error:
        text += f" error={message.error!r}"
    return text


class StreamSink:
    """Writes messages to the process's current ``sys.stdout`` or ``sys.stderr``."""

    use_outbox = False
    """A stream of this process: replaying its lines in another process would mean nothing."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.stream_name = parts.scheme.lower()
        if self.stream_name not in ("stdout", "stderr"):
            raise ConfigurationError(f"StreamSink serves stdout:// and stderr://, not {url!r}")
        query = parse_qs(parts.query)
        unknown = set(query) - {"format"}
        if unknown:
            raise ConfigurationError(f"unknown parameter(s) {sorted(unknown)} in {url!r}; valid: format")
        self.format = query.get("format", ["json"])[-1]
        if self.format not in _FORMATS:
            raise ConfigurationError(
                f"format={self.format!r} in {url!r}; valid formats: {', '.join(_FORMATS)}"
            )

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self.stream_name == "stdout" else sys.stderr

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        render = format_human if self.format == "human" else _json
        text = "".join(render(message) + "\n" for message in messages)
        with _write_lock:
            stream = self.stream
            stream.write(text)
            # Flushed per batch: progress shows at once, and a forked child never inherits (and then
            # writes out again) lines its parent had buffered.
            stream.flush()

    def flush(self, timeout: float) -> bool:
        with _write_lock:
            self.stream.flush()
        return True

    def close(self, timeout: float) -> None:
        try:
            with _write_lock:
                self.stream.flush()
        except (OSError, ValueError):  # closed or broken stream at interpreter exit
            pass


def _json(message: Heartbeat | ProgressUpdate) -> str:
    from ..envelope import dump_message

    return dump_message(message)


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    register("stdout", StreamSink)
    register("stderr", StreamSink)
