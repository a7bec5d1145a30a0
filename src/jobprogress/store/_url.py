"""Store URLs: which backend a URL names, whether its driver is installed, and its database file.

A URL is parsed and checked once, into a :class:`StoreURL`; writers, stores and the SQL sink hand that
on instead of parsing the string again. ``postgresql://`` means psycopg 3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from jobprogress._log import redact_url
from jobprogress.errors import ConfigurationError, MissingExtraError, StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "Backend",
    "StoreURL",
    "backend_of",
    "check_sqlite_file",
    "database_file",
    "parse_url",
    "require_driver",
    "sqlite_path",
]

Backend = Literal["sqlite", "postgresql", "duckdb"]

SQLITE_HEADER: Final = b"SQLite format 3\x00"

_DRIVERS: Final[dict[Backend, tuple[str, tuple[str, ...]]]] = {
    "sqlite": ("sql", ("sqlite3",)),
    "postgresql": ("postgres", ("psycopg",)),
    "duckdb": ("duckdb", ("duckdb", "duckdb_engine")),
}
"""Per backend: the extra that installs it, and the modules it needs besides SQLAlchemy."""


@dataclass(frozen=True)
class StoreURL:
    """A store URL parsed and checked once: its backend, the URL the driver gets, and how to show it.

    Attributes:
        backend: ``sqlite``, ``postgresql`` or ``duckdb``.
        url: The SQLAlchemy URL, ``postgresql://`` normalised to ``postgresql+psycopg://``.
        shown: The URL with any password hidden, for messages and logs.
    """

    backend: Backend
    url: URL
    shown: str

    @classmethod
    def parse(cls, url: str, feature: str) -> StoreURL:
        """Parse ``url`` and check that its backend's driver is installed.

        Args:
            url: ``sqlite:///PATH``, ``duckdb:///PATH``, ``postgresql://…`` or ``postgresql+psycopg://…``.
            feature: What needs the driver, for the missing-extra message; ``{backend}`` is replaced
                by the backend's name.

        Raises:
            ConfigurationError: the scheme is not supported or the URL cannot be parsed.
            MissingExtraError: the backend's optional dependencies are not installed.
        """
        backend = backend_of(url)
        require_driver(backend, feature.format(backend=backend))
        parsed = parse_url(url)
        return cls(backend, parsed, redact_url(parsed.render_as_string(hide_password=False)))


def _import_sqlalchemy(feature: str, extra: str = "sql") -> None:
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(feature, extra, exc.name or "sqlalchemy") from None


def backend_of(url: str) -> Backend:
    """The backend of a store URL, from its scheme.

    Raises:
        ConfigurationError: the scheme is not one of sqlite, duckdb, postgresql(+psycopg).
    """
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme == "duckdb":
        return "duckdb"
    if scheme in ("postgresql", "postgresql+psycopg"):
        return "postgresql"
    raise ConfigurationError(
        f"store URL {redact_url(str(url))!r} is not supported; use sqlite:///PATH, duckdb:///PATH, "
        "postgresql://... or postgresql+psycopg://..."
    )


def require_driver(backend: Backend, feature: str) -> None:
    """Raise :class:`MissingExtraError` when the backend's optional dependencies are missing."""
    import importlib.util

    extra, modules = _DRIVERS[backend]
    _import_sqlalchemy(feature, extra)  # the backend's extra installs SQLAlchemy too: name it at once
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(feature, extra, module)


def parse_url(url: str) -> URL:
    """Parse and normalise a store URL: ``postgresql://`` becomes ``postgresql+psycopg://``.

    Raises:
        ConfigurationError: the URL cannot be parsed or names another driver.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    backend = backend_of(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"store URL {redact_url(url)!r} cannot be parsed: {exc}") from None
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        return database[5:].split("?", 1)[0]
    return database


def database_file(url: URL) -> str | None:
    """The file of a SQLite or DuckDB URL; None for in-memory databases and servers."""
    if url.drivername.startswith("sqlite"):
        return sqlite_path(url)
    if url.drivername.startswith("duckdb") and url.database and url.database != ":memory:":
        return url.database
    return None


def check_sqlite_file(url: URL, *, must_exist: bool) -> None:
    """Check a SQLite file without opening it: the directory exists, the file is a SQLite database.

    Raises:
        StoreError: the file is missing (when ``must_exist``), its directory is not a directory, or
            the file holds something other than a SQLite database.
    """
    path = sqlite_path(url)
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"cannot use SQLite database {path!r}: {directory!r} is not a directory")
    if not os.path.exists(path):
        if must_exist:
            raise StoreError(f"SQLite database {path!r} does not exist")
        return
    if os.path.isdir(path):
        raise StoreError(f"cannot use SQLite database {path!r}: it is a directory")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read SQLite database {path!r}: {exc.strerror or exc}") from None
    if header and header != SQLITE_HEADER:
        raise StoreError(f"{path!r} is not a SQLite database (its first bytes are not a SQLite header)")
