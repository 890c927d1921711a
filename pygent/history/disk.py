"""The history file's format constants and durable file primitives: whole writes, fsync, typed errors, the writer lock."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pygent.errors import SessionError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEADER_KEY = "pygent_history"
META_KEY = "_meta"
#: Metadata keys whose every value is kept, in order (a log, not only the latest):
#: each compaction marker, so a replay shows every compaction where it happened.
LOGGED_META = ("compaction",)
INTERRUPTED_RESULT = "[interrupted: Pygent stopped before this tool call finished]"

# fdatasync persists the data and the new size, all an append changes; macOS lacks it.
datasync = getattr(os, "fdatasync", os.fsync)

HEAD_LIMIT = 64 * 1024  # a header line is small; anything longer is not one
CHUNK = 1024 * 1024

_ERRNO_TEXT = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "I/O error",
    errno.EROFS: "file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


# --- small file helpers ------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(timezone.utc)


def stamp() -> str:
    return now().strftime("%Y%m%dT%H%M%SZ")


def _json_default(value: Any) -> Any:
    # Persisting must not fail on an odd value: an unsaved message is worse than a
    # stringified one.
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def encode_line(obj: Any) -> bytes:
    """One JSONL record. JSON escapes newlines inside strings, so a record never spans lines."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # Lone surrogates (undecodable command output) cannot be UTF-8; \u escapes can.
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=_json_default)
        return text.encode("ascii") + b"\n"


def write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once its directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_fds(fds: dict[str, int | None]) -> None:
    for key in ("data", "lock"):
        fd = fds.get(key)
        fds[key] = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def save_error(exc: OSError, path: Path) -> SessionError:
    what = _ERRNO_TEXT.get(exc.errno or 0, exc.strerror or str(exc))
    return SessionError(
        f"could not save session: {what} ({path}: {exc.strerror or exc})",
        hint="the conversation is kept in memory and the unsaved messages are written "
        "with the next one; free some space (or fix the file system) to save again",
    )


def open_error(exc: OSError, path: Path) -> SessionError:
    if exc.errno == errno.ELOOP:
        return symlink_error(path)
    what = _ERRNO_TEXT.get(exc.errno or 0, exc.strerror or str(exc))
    return SessionError(
        f"cannot use session file {path}: {what}",
        hint="choose a history file in a directory you can write (PYGENT_HISTORY_FILE)",
    )


def symlink_error(path: Path) -> SessionError:
    target = os.readlink(path) if path.is_symlink() else "?"
    return SessionError(
        f"session file {path} is a symbolic link (to {target}); Pygent does not write through links",
        hint="point PYGENT_HISTORY_FILE at the real file, or remove the link",
    )


def newer_error(path: Path, version: object) -> SessionError:
    return SessionError(
        f"session file {path} was written by a newer Pygent (format {version}); upgrade Pygent",
        hint="Pygent did not change the file; open it with the Pygent version that wrote it",
    )


def acquire_lock(path: Path) -> int:
    """Take the exclusive writer lock of ``path`` (a ``<name>.lock`` sidecar); returns its fd.

    The lock lives in a sidecar because :meth:`HistoryFile.rewrite` replaces the history
    file's inode, and a lock on the old inode would not exclude a writer of the new one.
    The kernel drops the lock when the process dies, so a crash never leaves it stale.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_error(lock_path) from None
        what = _ERRNO_TEXT.get(exc.errno or 0, exc.strerror or str(exc))
        raise SessionError(
            f"cannot save session {path}: cannot create its lock file in {path.parent} ({what})",
            hint="choose a history file in a directory you can write (PYGENT_HISTORY_FILE)",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if holder == str(os.getpid()):
            raise SessionError(
                f"session file {path} is already open in this Pygent process (pid {holder})",
                hint="close the other session object first",
            ) from None
        raise SessionError(
            f"session file {path} is in use by another Pygent process (pid {holder})",
            hint="close the other Pygent, or open the session read-only",
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode() + b"\n", 0)
    except OSError as exc:
        # The pid only makes the "in use" message nicer; the flock is what excludes.
        logger.debug("could not record the pid in %s: %s", lock_path, exc)
    return fd
