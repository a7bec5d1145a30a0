"""``sqlite:///PATH``, ``duckdb:///PATH`` and ``postgresql://…`` sinks: messages written into the store.

Registered as a built-in plugin. Importing this module imports nothing heavy: SQLAlchemy and the
drivers are imported by the factory (which only checks them and the URL) and the connection is
opened on the first ``send``, in the process that sends — never carried across ``fork``.

Two query parameters configure the sink itself and are removed before the URL reaches the driver:
``table_prefix`` (default ``cf_``) and ``history`` (``true`` to keep the append-only history table).
Every other parameter, such as Postgres ``options``, passes through untouched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode

from jobprogress.errors import ConfigurationError, SinkError, StoreError, StoreSchemaError
from jobprogress.hookspecs import RegisterSink, hookimpl

if TYPE_CHECKING:
    from jobprogress.envelope import Heartbeat, ProgressUpdate
    from jobprogress.store._url import StoreURL
    from jobprogress.store.writer import StoreWriter

__all__ = ["SCHEMA_TRIES", "SCHEMES", "SqlSink", "jobprogress_register_sinks"]

SCHEMES: Final = ("sqlite", "duckdb", "postgresql", "postgresql+psycopg")
SCHEMA_TRIES: Final = 3
"""Sends in a row that could not create the tables before the sink is given up as broken."""

_SINK_PARAMETERS: Final = ("table_prefix", "history")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off", "")


def split_sink_url(url: str) -> tuple[str, str, bool]:
    """Split the sink's own parameters off ``url``.

    Returns:
        The URL for the driver, the table prefix and whether to keep history.

    Raises:
        ConfigurationError: ``history`` is not a boolean word.
    """
    # Split by hand: urllib would fold sqlite:////abs/path (empty host) into sqlite://abs/path.
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    own = {key: value for key, value in pairs if key in _SINK_PARAMETERS}
    rest = [(key, value) for key, value in pairs if key not in _SINK_PARAMETERS]
    if not own:
        return url, "cf_", False
    history_word = own.get("history", "false").lower()
    if history_word not in _TRUE + _FALSE:
        raise ConfigurationError(f"history={own['history']!r} in a sink URL must be true or false")
    driver_url = f"{base}?{urlencode(rest)}" if rest else base
    return driver_url, own.get("table_prefix", "cf_"), history_word in _TRUE


class SqlSink:
    """A sink writing through a :class:`~jobprogress.store.writer.StoreWriter`, created on first send.

    Args:
        url: The store URL; see the module docstring for the sink's own query parameters.

    Raises:
        ConfigurationError: the URL or its parameters are not valid, or the SQLite file cannot be
            a database (its directory is missing, or it holds something else).
        MissingExtraError: the backend's optional dependencies are not installed.
    """

    def __init__(self, url: str) -> None:
        from jobprogress.store._url import StoreURL, check_sqlite_file

        driver_url, self._table_prefix, self._history = split_sink_url(url)
        # Parsed and checked once, here: every writer of this sink (a forked child's too) takes it as is.
        self._target: StoreURL = StoreURL.parse(driver_url, f"the {url.split('://', 1)[0]}:// sink")
        if self._target.backend == "sqlite":
            try:
                check_sqlite_file(self._target.url, must_exist=False)
            except StoreError as exc:
                raise ConfigurationError(str(exc)) from None
        self.url = self._target.shown
        self._lock = threading.Lock()
        self._closed = False
        self._schema_failures = 0
        # Everything a first send would load lazily is loaded here, in the configuring thread: the
        # writer, its tables and statements, the dialect and its driver. Done on the sender thread, a
        # fork in that window would leave a child an import lock or cache lock held for ever. The
        # writer checks the table prefix.
        self._writer: StoreWriter | None = self._new_writer()
        self._pid = os.getpid()
        dialect_class = self._target.url.get_dialect()
        dialect_class.import_dbapi()
        self._writer.prepare(dialect_class)

    def _new_writer(self) -> StoreWriter:
        from jobprogress.store.writer import StoreWriter

        return StoreWriter(self._target, table_prefix=self._table_prefix, history=self._history)

    def _get_writer(self) -> StoreWriter:
        writer = self._writer
        if writer is not None and self._pid == os.getpid():
            return writer
        with self._lock:
            if self._closed:
                raise SinkError(f"the sink for {self.url} is closed", retryable=False)
            if self._writer is None or self._pid != os.getpid():
                # After fork the inherited writer is left alone: its engine belongs to the parent.
                self._writer = self._new_writer()
                self._pid = os.getpid()
            return self._writer

    def send(self, messages: Sequence[Heartbeat | ProgressUpdate]) -> None:
        """Write ``messages`` in one transaction.

        Raises:
            SinkError: the store could not be written; retryable (the reporter backs off), except
                when its tables could not be created :data:`SCHEMA_TRIES` times in a row: then
                ``broken`` (retrying cannot create a schema nobody made, or grant a right).
        """
        try:
            self._get_writer().write(messages)
        except StoreSchemaError as exc:
            self._schema_failures += 1
            if self._schema_failures < SCHEMA_TRIES:
                raise SinkError(str(exc), retryable=True) from exc
            raise SinkError(
                f"{exc} ({self._schema_failures} tries); create what is missing (the schema the URL's "
                "search_path names, or the right to create tables in it) and run again: the newest "
                "states are spooled to the outbox for the next process, unless the outbox is off",
                broken=True,
            ) from exc
        except StoreError as exc:
            self._schema_failures = 0
            raise SinkError(str(exc), retryable=True) from exc
        self._schema_failures = 0

    def stored_done(self, job_id: str, worker_id: str) -> tuple[int, int] | None:
        """The stored ``(done, seq)`` of (job, worker), for ``track(..., resume=True)``; None if none.

        Raises:
            StoreError: the store could not be read.
        """
        return self._get_writer().stored_done(job_id, worker_id)

    def flush(self, timeout: float) -> bool:
        """Nothing is buffered here: every ``send`` commits before it returns."""
        return True

    def close(self, timeout: float) -> None:
        """Release the connection pool of this process; idempotent."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None and self._pid == os.getpid():
            writer.close()

    def __repr__(self) -> str:
        return f"SqlSink({self.url!r})"


@hookimpl
def jobprogress_register_sinks(register: RegisterSink) -> None:
    for scheme in SCHEMES:
        register(scheme, SqlSink)
