"""The local outbox: what a process could not deliver by its deadline, kept on disk for the next process.

When a flush, a shutdown or the exit of a process ends before a sink took every state, the newest state
of each undelivered (job, worker) is written here instead of being lost, and any later process that
configures the same sink URL (or ``jobprogress outbox deliver``) delivers it. Stores and the collector
guard every row by ``seq``, so a replay is idempotent and never overwrites a newer state.

Layout: one directory per sink URL under the root (the user cache directory by default), named by a
digest of the URL and holding ``sink.json`` (the URL, so ``jobprogress outbox deliver`` can reopen the
sink) and one ``*.jsonl`` file per spool, a line per (job, worker): the JSON array of its messages.
Directories are ``0700`` and files ``0600``; every file is written to a temporary name, fsynced and
renamed, so a crash mid-write leaves the earlier files intact. A file that cannot be read back is moved
aside (``*.corrupt``) with one warning. Each sink's files are bounded (:data:`LIMIT_BYTES`): over it, the
files are merged into one and the oldest progress-only states are dropped first, finals last, counted.
One process at a time replays or compacts a directory (a lock file); spooling needs no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ._log import redact_url, warn_once
from ._states import FINAL_STATUSES

if TYPE_CHECKING:
    from .envelope import Heartbeat, ProgressUpdate

    Message = Heartbeat | ProgressUpdate

__all__ = ["LIMIT_BYTES", "Outbox", "default_root", "outbox_root", "outboxes"]

Key = tuple[str, str]
States = dict[Key, list["Message"]]

LIMIT_BYTES: Final = 64 * 1024 * 1024
"""Most bytes of spooled states kept per sink."""
SUFFIX: Final = ".jsonl"
META: Final = "sink.json"
LOCK: Final = ".lock"
COMPACT_LOCK_TIMEOUT: Final = 1.0
"""Longest wait for another process's replay before spooling over the bound without compacting."""


def default_root() -> Path:
    """``<user cache dir>/jobprogress/outbox`` (platformdirs), e.g. ``~/.cache/jobprogress/outbox``."""
    import platformdirs

    return platformdirs.user_cache_path("jobprogress") / "outbox"


def outbox_root(setting: str | None) -> Path | None:
    """The outbox root for the ``outbox`` setting: None (default location), a path, or ``""`` (off)."""
    if setting == "":
        return None
    return Path(setting).expanduser() if setting else default_root()


def sink_digest(url: str) -> str:
    """The directory name of a sink URL's outbox."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _final(messages: Sequence[Message]) -> bool:
    return any(message.type == "heartbeat" and message.status.value in FINAL_STATUSES for message in messages)


def _top_seq(messages: Sequence[Message]) -> int:
    return max(message.seq for message in messages)


def merge(into: States, states: Mapping[Key, Sequence[Message]]) -> None:
    """Keep, per (job, worker), the newest of the states in ``into`` and ``states`` (by seq)."""
    for key, messages in states.items():
        held = into.get(key)
        if held is None or _top_seq(messages) > _top_seq(held):
            into[key] = list(messages)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that readers see the old file or the whole new one."""
    temporary = path.with_name(f".tmp-{os.getpid()}-{time.time_ns()}-{path.name}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


class Outbox:
    """The spooled states of one sink URL.

    Args:
        root: The outbox root (see :func:`outbox_root`).
        url: The sink URL, exactly as configured.
        limit_bytes: Most bytes kept for this sink.
    """

    def __init__(self, root: Path, url: str, *, limit_bytes: int = LIMIT_BYTES) -> None:
        self.root = root
        self.url = url
        self.directory = root / sink_digest(url)
        self.limit_bytes = limit_bytes
        self.stats: dict[str, int] = dict.fromkeys(
            ("spooled", "replayed", "outbox_dropped", "outbox_corrupt"), 0
        )

    def __repr__(self) -> str:
        return f"Outbox({str(self.directory)!r})"

    # -- reading the directory -------------------------------------------------------------------

    def files(self) -> list[Path]:
        """The spool files, oldest first; none when the directory is missing or unreadable."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [self.directory / name for name in sorted(names) if name.endswith(SUFFIX)]

    def load(self) -> tuple[list[Path], States]:
        """Every spooled state, the newest per (job, worker), and the files read.

        A file that cannot be parsed is moved aside (``*.corrupt``) with one warning and left out.
        """
        from .envelope import parse_messages

        paths: list[Path] = []
        states: States = {}
        for path in self.files():
            try:
                found: States = {}
                with path.open("rb") as stream:
                    for line in stream:
                        if line.strip():
                            messages = parse_messages(line)
                            if not messages:
                                raise ValueError("an empty state")
                            found[(messages[0].job_id, messages[0].worker_id)] = messages
            except FileNotFoundError:  # delivered by another process meanwhile
                continue
            except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                self._set_aside(path, exc)
                continue
            merge(states, found)
            paths.append(path)
        return paths, states

    def _set_aside(self, path: Path, exc: BaseException) -> None:
        self.stats["outbox_corrupt"] += 1
        aside = path.with_name(path.name + ".corrupt")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        warn_once(
            "outbox-corrupt",
            "jobprogress: outbox file %s could not be read (%s); moved aside to %s",
            path,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            aside.name,
        )

    def discard(self, paths: Sequence[Path]) -> None:
        """Remove delivered files (one already removed by another process is fine)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[bool]:
        """Hold this sink's outbox lock (across processes) for the block; yields False if not had in time."""
        import filelock

        try:
            _private_dir(self.directory)
            lock = filelock.FileLock(self.directory / LOCK, mode=0o600)
            lock.acquire(timeout=timeout)
        except (filelock.Timeout, OSError):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def summary(self) -> dict[str, object]:
        """What waits for this sink: ``sink`` (password hidden), ``directory``, ``files``, ``bytes``,
        ``states`` (one per job and worker), ``finals`` and ``oldest`` (the oldest file's time, UTC ISO)."""
        from datetime import datetime, timezone

        files = self.files()
        stamps = []
        size = 0
        for path in files:
            with contextlib.suppress(OSError):
                info = path.stat()
                size += info.st_size
                stamps.append(info.st_mtime)
        _, states = self.load()
        return {
            "sink": redact_url(self.url),
            "directory": str(self.directory),
            "files": len(files),
            "bytes": size,
            "states": len(states),
            "finals": sum(_final(messages) for messages in states.values()),
            "oldest": datetime.fromtimestamp(min(stamps), timezone.utc).isoformat() if stamps else None,
        }

    # -- spooling --------------------------------------------------------------------------------

    def spool(self, states: Mapping[Key, Sequence[Message]]) -> Path | None:
        """Write ``states`` to a new spool file; never raises (one warning when the disk refuses).

        Returns:
            The file written, or None when nothing was (no states, or the outbox is unwritable).
        """
        if not states:
            return None
        try:
            self._prepare()
            lines = [self._line(messages) for messages in states.values()]
            size = sum(map(len, lines))
            path = self._compact(states) if self._stored_bytes() + size > self.limit_bytes else None
            if path is None:
                path = self._new_path()
                _write_atomic(path, b"".join(lines))
        except OSError as exc:
            warn_once(
                "outbox-write",
                "jobprogress: could not write the outbox %s (%s); %d undelivered state(s) of sink %s lost",
                self.directory,
                exc,
                len(states),
                redact_url(self.url),
            )
            return None
        self.stats["spooled"] += len(states)
        return path

    def _prepare(self) -> None:
        _private_dir(self.root)
        _private_dir(self.directory)
        meta = self.directory / META
        if not meta.exists():
            _write_atomic(meta, json.dumps({"url": self.url}).encode())

    def _line(self, messages: Sequence[Message]) -> bytes:
        from .envelope import dump_message

        return ("[" + ",".join(dump_message(message) for message in messages) + "]\n").encode()

    def _new_path(self) -> Path:
        return self.directory / f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"

    def _stored_bytes(self) -> int:
        total = 0
        for path in self.files():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _compact(self, states: Mapping[Key, Sequence[Message]]) -> Path | None:
        """Merge every file with ``states`` into one file within the bound, dropping the least needed.

        Returns None when another process holds the outbox (the caller then writes over the bound).
        """
        with self.locked(COMPACT_LOCK_TIMEOUT) as held:
            if not held:
                return None
            paths, merged = self.load()
            merge(merged, states)
            # Finals first, then progress-only states; newest first within each.
            ranked = sorted(merged.values(), key=lambda messages: (_final(messages), _top_seq(messages)))
            kept: list[bytes] = []
            size = 0
            for messages in reversed(ranked):
                line = self._line(messages)
                if size + len(line) > self.limit_bytes:
                    self.stats["outbox_dropped"] += 1
                    continue
                kept.append(line)
                size += len(line)
            dropped = len(merged) - len(kept)
            if dropped:
                warn_once(
                    "outbox-full",
                    "jobprogress: the outbox of sink %s is full (%d bytes); dropped %d undelivered state(s), "
                    "progress-only ones first",
                    redact_url(self.url),
                    self.limit_bytes,
                    dropped,
                )
            path = self._new_path()
            _write_atomic(path, b"".join(kept))
            self.discard(paths)
            return path

    # -- replay ----------------------------------------------------------------------------------

    def replay(self, send: Callable[[list[Message]], None], max_batch: int) -> int | None:
        """Deliver every spooled state through ``send`` in batches, then remove the files read.

        Returns:
            The number of (job, worker) states handed over, or None when another process holds the
            outbox (it is delivering them).

        Raises:
            Whatever ``send`` raises: the files are kept for the next attempt.
        """
        with self.locked(0.0) as held:
            if not held:
                return None
            paths, states = self.load()
            batch: list[Message] = []
            for messages in states.values():
                batch.extend(messages)
                if len(batch) >= max_batch:
                    send(batch)
                    batch = []
            if batch:
                send(batch)
            self.discard(paths)
            self.stats["replayed"] += len(states)
            return len(states)


def outboxes(root: Path) -> list[Outbox]:
    """The outbox of every sink with a directory under ``root`` (for ``jobprogress outbox``)."""
    found = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    for name in names:
        try:
            url = json.loads((root / name / META).read_text())["url"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(url, str):
            found.append(Outbox(root, url))
    return found
