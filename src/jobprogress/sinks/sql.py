"""``sqlite:///PATH``, ``duckdb:///PATH``, ``postgresql://…``: progress written straight into a store.

Each sink wraps a :class:`~jobprogress.store.StoreWriter`: one transaction per batch, idempotent
upserts guarded by ``seq``, tables created on first use. The writer connects lazily and builds its own
engine after ``fork``, so creating the sink at ``configure()`` does no I/O. The module itself imports
nothing heavy: SQLAlchemy loads when a sink is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from ..envelope import Heartbeat, ProgressUpdate
    from ..store.writer import StoreWriter

__all__ = ["SqlSink", "jobprogress_register_sinks"]

SCHEMES = ("sqlite", "duckdb", "postgresql", "postgresql+psycopg")


class SqlSink:
    """A sink that writes into a ``cf_job_progress`` store.

    Raises:
        ConfigurationError: the URL is not a supported store URL.
        MissingExtraError: SQLAlchemy or the backend's driver is not installed.
    """

    def __init__(self, url: str) -> None:
        from ..store.writer import StoreWriter

        self.writer: StoreWriter = StoreWriter(url)

    def __repr__(self) -> str:
        return f"SqlSink({self.writer.url!r})"

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        self.writer.write(messages)

    def stored_done(self, job_id: str, worker_id: str) -> tuple[int, int] | None:
        """The stored (done, seq) of a (job, worker), for ``track(..., resume=True)``."""
        return self.writer.stored_done(job_id, worker_id)

    def flush(self, timeout: float) -> bool:
        return True  # every send is its own committed transaction

    def close(self, timeout: float) -> None:
        self.writer.close()


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    for scheme in SCHEMES:
        register(scheme, SqlSink)
