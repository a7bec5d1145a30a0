"""What the collector writes through and reads from: two protocols, and a store reader opened on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jobprogress.envelope import Heartbeat, ProgressUpdate
    from jobprogress.store.query import ProgressStore
    from jobprogress.store.views import JobView

__all__ = ["JobReader", "MessageWriter", "StoreReader"]


class MessageWriter(Protocol):
    """What the collector writes through (``jobprogress.store.StoreWriter``)."""

    def write(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None: ...

    def close(self) -> None: ...


class JobReader(Protocol):
    """What the collector reads through (``jobprogress.store.ProgressStore``)."""

    def jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        active_within: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        search: str | None = None,
    ) -> list[JobView]: ...

    def job(self, job_id: str) -> JobView | None: ...

    def counts(self, *, kind: str | None = None) -> dict[str, int]: ...

    def close(self) -> None: ...


def _missing_sqlite_file(db_url: str) -> bool:
    """Whether ``db_url`` names a SQLite file that does not exist yet (the collector creates it on write)."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return False
    if database.startswith("file:"):
        database = database[5:].split("?", 1)[0]
    return not os.path.exists(database)


class StoreReader:
    """A ``ProgressStore`` opened on first use.

    Before the first write a SQLite file may not exist, and ``ProgressStore`` (rightly, for reading
    commands) refuses to create one; until then the collector serves an empty Jobs view.
    """

    def __init__(self, db_url: str, *, stall_after: float, table_prefix: str) -> None:
        self.db_url = db_url
        self.stall_after = stall_after
        self.table_prefix = table_prefix
        self._store: ProgressStore | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> ProgressStore | None:
        with self._lock:
            if self._store is None and not self._closed and not _missing_sqlite_file(self.db_url):
                from jobprogress.store import ProgressStore

                self._store = ProgressStore(
                    self.db_url, stall_after=self.stall_after, table_prefix=self.table_prefix
                )
            return self._store

    def jobs(self, **filters: Any) -> list[JobView]:
        """``ProgressStore.jobs`` with these filters (see :class:`JobReader`); none before the first write."""
        store = self._open()
        return [] if store is None else store.jobs(**filters)

    def job(self, job_id: str) -> JobView | None:
        store = self._open()
        return None if store is None else store.job(job_id)

    def counts(self, *, kind: str | None = None) -> dict[str, int]:
        """Jobs per state (``ProgressStore.counts``); every state 0 before the first write."""
        from jobprogress._states import JOB_STATES

        store = self._open()
        return dict.fromkeys(JOB_STATES, 0) if store is None else store.counts(kind=kind)

    def ping(self) -> None:
        """Raises when the store does not answer (a missing SQLite file answers: it is created on write)."""
        store = self._open()
        if store is not None:
            store.counts()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()
