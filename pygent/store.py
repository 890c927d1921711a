"""Crash-safe conversation history (append-only JSONL), tool-call repair and the sessions directory."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pygent.errors import SessionError
from pygent.redact import current_redactor, redact_value

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEADER_KEY = "pygent_history"
META_KEY = "_meta"
INTERRUPTED_RESULT = "[interrupted: Pygent stopped before this tool call finished]"

# fdatasync persists the data and the new size, all an append changes; macOS lacks it.
_datasync = getattr(os, "fdatasync", os.fsync)

_HEAD_LIMIT = 64 * 1024  # a header line is small; anything longer is not one
_CHUNK = 1024 * 1024

_ERRNO_TEXT = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "I/O error",
    errno.EROFS: "file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


# --- small file helpers ------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp() -> str:
    return _now().strftime("%Y%m%dT%H%M%SZ")


def _json_default(value: Any) -> Any:
    # Persisting must not fail on an odd value: an unsaved message is worse than a
    # stringified one.
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _encode(obj: Any) -> bytes:
    """One JSONL record. JSON escapes newlines inside strings, so a record never spans lines."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # Lone surrogates (undecodable command output) cannot be UTF-8; \u escapes can.
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=_json_default)
        return text.encode("ascii") + b"\n"


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once its directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_fds(fds: dict[str, int | None]) -> None:
    for key in ("data", "lock"):
        fd = fds.get(key)
        fds[key] = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _save_error(exc: OSError, path: Path) -> SessionError:
    what = _ERRNO_TEXT.get(exc.errno or 0, exc.strerror or str(exc))
    return SessionError(
        f"could not save session: {what} ({path}: {exc.strerror or exc})",
        hint="the conversation is kept in memory and the unsaved messages are written "
        "with the next one; free some space (or fix the file system) to save again",
    )


def _open_error(exc: OSError, path: Path) -> SessionError:
    if exc.errno == errno.ELOOP:
        return _symlink_error(path)
    what = _ERRNO_TEXT.get(exc.errno or 0, exc.strerror or str(exc))
    return SessionError(
        f"cannot use session file {path}: {what}",
        hint="choose a history file in a directory you can write (PYGENT_HISTORY_FILE)",
    )


def _symlink_error(path: Path) -> SessionError:
    target = os.readlink(path) if path.is_symlink() else "?"
    return SessionError(
        f"session file {path} is a symbolic link (to {target}); Pygent does not write through links",
        hint="point PYGENT_HISTORY_FILE at the real file, or remove the link",
    )


def _newer_error(path: Path, version: object) -> SessionError:
    return SessionError(
        f"session file {path} was written by a newer Pygent (format {version}); upgrade Pygent",
        hint="Pygent did not change the file; open it with the Pygent version that wrote it",
    )


def _acquire_lock(path: Path) -> int:
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
            raise _symlink_error(lock_path) from None
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


# --- tool-call integrity -------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def repair_tool_calls(
    messages: Iterable[dict[str, Any]], *, note: str = INTERRUPTED_RESULT
) -> list[dict[str, Any]]:
    """``messages`` with a synthetic tool result for every tool call that has none.

    The chat API rejects a request in which an assistant's ``tool_calls`` are not each
    answered by a ``tool`` message right after it; a crash or a cancel between running
    a tool and recording its result leaves exactly that. Each missing result is added
    after the tool results the assistant message does have, with ``note`` as its content
    (the agent passes its own note after a cancel).
    The input is not modified.
    """
    source = list(messages)
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(source):
        message = source[i]
        out.append(message)
        i += 1
        calls = _get(message, "tool_calls") if _get(message, "role") == "assistant" else None
        if not calls:
            continue
        answered: set[Any] = set()
        while i < len(source) and _get(source[i], "role") == "tool":
            answered.add(_get(source[i], "tool_call_id"))
            out.append(source[i])
            i += 1
        for call in calls:
            call_id = _get(call, "id")
            if call_id and call_id not in answered:
                out.append({"role": "tool", "tool_call_id": call_id, "content": note})
                answered.add(call_id)
    return out


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    """What the last :meth:`HistoryFile.load` found, for front ends and the crash harness.

    ``damaged_lines``: 1-based numbers of lines that could not be read (not counting an
    incomplete last line); ``torn_bytes``: size of an incomplete last record that was
    dropped; ``interrupted_calls``: synthetic results added by :func:`repair_tool_calls`;
    ``backup``: where the damaged or old-format file was copied.
    """

    damaged_lines: tuple[int, ...] = ()
    torn_bytes: int = 0
    interrupted_calls: int = 0
    empty_file: bool = False
    missing_header: bool = False
    migrated: bool = False
    backup: Path | None = None

    @property
    def damaged(self) -> bool:
        """True when records other than an incomplete last line were lost or unreadable."""
        return bool(self.damaged_lines) or self.empty_file or self.missing_header


@dataclass
class _Scan:
    messages: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    has_header: bool = False
    records: int = 0
    damaged: list[int] = field(default_factory=list)
    torn: int = 0
    size: int = 0

    @property
    def missing_header(self) -> bool:
        return bool(self.records) and not self.has_header

    @property
    def needs_repair(self) -> bool:
        return bool(self.damaged) or self.missing_header

    def describe(self, path: Path) -> str:
        parts = []
        if self.damaged:
            shown = ", ".join(map(str, self.damaged[:10])) + (
                " ..." if len(self.damaged) > 10 else ""
            )
            parts.append(
                f"{len(self.damaged)} damaged line(s) in {path} could not be read and were "
                f"skipped (line {shown})"
            )
        if self.missing_header:
            parts.append(f"{path} has lost its header line (it was cut or edited)")
        return "; ".join(parts) + f"; {len(self.messages)} messages were loaded"


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        # Decode strictly first: json.loads(bytes) would guess UTF-16 for some flipped bytes.
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: absurdly nested garbage
        return None
    return obj if isinstance(obj, dict) else None


def _header_version(obj: dict[str, Any] | None) -> int | None:
    if obj is None or HEADER_KEY not in obj:
        return None
    version = obj[HEADER_KEY]
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _scan_lines(lines: Iterable[bytes], path: Path, limit: int | None = None) -> _Scan:
    scan = _Scan()
    first = True
    for lineno, raw in enumerate(lines, 1):
        if limit is not None and scan.size >= limit:
            break
        scan.size += len(raw)
        complete = raw.endswith(b"\n")
        body = raw.strip()
        if not body:
            continue
        obj = _parse(body)
        is_first, first = first, False
        if obj is None:
            if complete:
                scan.damaged.append(lineno)
            else:
                scan.torn = len(raw)
            continue
        if HEADER_KEY in obj:
            version = _header_version(obj)
            if is_first and version is not None and version > FORMAT_VERSION:
                raise _newer_error(path, version)
            if not is_first or version is None or version < 1:
                scan.damaged.append(lineno)
                continue
            scan.has_header = True
            scan.created = obj.get("created") if isinstance(obj.get("created"), str) else None
            if isinstance(obj.get("meta"), dict):
                scan.meta.update(obj["meta"])
        elif isinstance(obj.get(META_KEY), dict) and len(obj) == 1:
            scan.meta.update(obj[META_KEY])
        elif isinstance(obj.get("role"), str):
            scan.messages.append(obj)
        else:
            scan.damaged.append(lineno)
            continue
        scan.records += 1
    return scan


def _salvage_array(text: str) -> tuple[list[dict[str, Any]], bool]:
    """Messages of an old-format JSON array; ``(messages, complete)``.

    The old writer truncated the file and dumped the whole list, so a crash left a
    prefix such as ``[{...}, {"ro``: every element before the cut is recovered.
    """
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list):
        return [m for m in data if isinstance(m, dict)], all(isinstance(m, dict) for m in data)
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out, False
        if isinstance(obj, dict):
            out.append(obj)


def _read_head(fd: int) -> bytes:
    """The first line of the file (up to :data:`_HEAD_LIMIT` bytes)."""
    head = os.pread(fd, _HEAD_LIMIT, 0)
    end = head.find(b"\n")
    return head if end < 0 else head[: end + 1]


# --- the history file --------------------------------------------------------------------------


class HistoryFile:
    """One conversation on disk: a JSONL file, appended one message at a time.

    Line 1 is a header ``{"pygent_history": 1, "created": ..., "meta": {...}}``; each
    further line is a chat message (``role``, ``content``, ``tool_calls``...) or a
    ``{"_meta": {...}}`` update. Opened for writing, the file is locked against other
    Pygent processes; every append is one write and an fsync, so a crash loses at most
    the message being written. See docs/sessions.md.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        redact: Callable[[str], str] | None = None,
        meta: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        """Open ``path``; raise :class:`SessionError` if it cannot be used safely.

        ``redact`` is applied to every string before it is written (default:
        :func:`pygent.redact.redact_secrets`; pass ``str`` to keep text as it is).
        ``meta`` goes into the header when the file is created. ``read_only`` opens
        without the lock and never changes the file (see :meth:`read`).
        """
        # Absolute: a later chdir must not send a rewrite or a backup somewhere else.
        self.path = Path(os.path.abspath(path))
        self.read_only = read_only
        self.meta: dict[str, Any] = {}
        self.created: str | None = None
        self.warnings: list[str] = []
        self.report = LoadReport()
        self._redact = redact  # None: the environment's secrets, looked up per write
        self._open_warnings: list[str] = []
        self._open_report = LoadReport()
        self._fds: dict[str, int | None] = {"data": None, "lock": None}
        self._size = 0
        self._dirty = False  # bytes past _size may exist after a failed roll-back
        self._pending: list[bytes] = []  # records a failed save left unwritten
        self._mutex = threading.RLock()
        self._closed = False
        self._meta_known = True
        self._initial_meta: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)
        if self.path.is_symlink():
            raise _symlink_error(self.path)
        if read_only:
            self._check_readable()
        else:
            self._open_for_writing(redact_value(meta or {}, self._redactor()))

    @classmethod
    def read(cls, path: Path | str) -> HistoryFile:
        """A read-only view of ``path``: no lock, never modified; call :meth:`load`.

        Works while another process has the file open for writing.
        """
        return cls(path, read_only=True)

    # --- opening -----------------------------------------------------------------------------

    def _check_readable(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # nothing saved yet: an empty history
        except OSError as exc:
            raise _open_error(exc, self.path) from None
        try:
            version = _header_version(_parse(_read_head(fd).strip()))
            if version is not None and version > FORMAT_VERSION:
                raise _newer_error(self.path, version)
        finally:
            os.close(fd)

    def _open_for_writing(self, meta: dict[str, Any]) -> None:
        self._initial_meta = meta
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _open_error(exc, parent) from None
        self._fds["lock"] = _acquire_lock(self.path)
        try:
            if not os.access(parent, os.W_OK):
                raise SessionError(
                    f"cannot save sessions in {parent}: the directory is not writable",
                    hint="choose a history file in a directory you can write (PYGENT_HISTORY_FILE)",
                )
            self._remove_stale_temps()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                self.created = _now().isoformat(timespec="seconds")
                self.meta = dict(meta)
                try:
                    self._replace_with([])
                except OSError as exc:
                    raise _open_error(exc, self.path) from None
                return
            except OSError as exc:
                raise _open_error(exc, self.path) from None
            self._fds["data"] = fd
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SessionError(f"session file {self.path} is not a regular file")
            self._size = st.st_size
            self._inspect()
        except BaseException:
            _close_fds(self._fds)
            raise

    def _remove_stale_temps(self) -> None:
        # A crash during rewrite() leaves its temp file; we hold the lock, so none is live.
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _inspect(self) -> None:
        """Check an existing file at open: version, old format, foreign content, torn tail."""
        fd = self._fd
        if self._size == 0:
            self._recover(_Scan(), empty=True)
            return
        head = _read_head(fd)
        if head.lstrip()[:1] == b"[":
            self._migrate_array()
            return
        header = _parse(head.strip())
        version = _header_version(header)
        if version is not None and version > FORMAT_VERSION:
            raise _newer_error(self.path, version)
        if version is None or version < 1:
            # Damaged header or not a history file at all: decide on the whole content.
            scan = self._scan()
            if not scan.records:
                raise SessionError(
                    f"{self.path} is not a Pygent history file (no line of it is a chat message)",
                    hint="Pygent did not change it; move it away or choose another "
                    "history file (PYGENT_HISTORY_FILE)",
                )
            if scan.needs_repair:
                self._recover(scan)
                return
            # Sound, only a header line longer than we peek at: fall through to the tail.
        self.created = header.get("created") if header else None
        self._meta_known = False  # header meta only; later {"_meta"} lines are read on demand
        self._fix_tail()

    def _fix_tail(self) -> None:
        """Make the file end on a newline so the next append never glues onto a torn record."""
        fd, size = self._fd, self._size
        if os.pread(fd, 1, size - 1) == b"\n":
            return
        start = size
        while start > 0:
            chunk_start = max(0, start - _CHUNK)
            found = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
            if found >= 0:
                start = chunk_start + found + 1
                break
            start = chunk_start
        tail = os.pread(fd, size - start, start)
        try:
            if _parse(tail.strip()) is not None:
                # Complete record, only the newline missing: keep it.
                _write_all(fd, b"\n", size)
                self._size = size + 1
            else:
                os.ftruncate(fd, start)
                self._size = start
                self._open_report = dataclasses.replace(self._open_report, torn_bytes=len(tail))
                self._open_warnings.append(
                    f"the last record in {self.path} was incomplete ({len(tail)} bytes; "
                    "Pygent stopped while writing it) and was dropped; earlier messages are intact"
                )
            _datasync(fd)
        except OSError as exc:
            raise _open_error(exc, self.path) from None

    def _migrate_array(self) -> None:
        """Convert an old-format file (one JSON array) to JSONL, keeping the original."""
        raw = os.pread(self._fd, self._size, 0)
        messages, complete = _salvage_array(raw.decode("utf-8", "replace"))
        kind = "upstream" if complete else "corrupt"
        backup = self._backup(kind)
        if backup is None:
            raise SessionError(
                f"{self.path} is in the old Pygent format and could not be backed up before "
                "converting it",
                hint="free some space in its directory; the file was not changed",
            )
        self.created = _now().isoformat(timespec="seconds")
        self.meta = {"migrated_from": "json-array"}
        if complete:
            note = f"{self.path} was in the old format (a JSON array) and was converted"
        else:
            note = (
                f"{self.path} was in the old format and cut short (an earlier crash); "
                f"{len(messages)} messages before the cut were recovered and converted"
            )
        self._open_warnings.append(f"{note}; the original is kept as {backup}")
        self._open_report = LoadReport(
            migrated=True, backup=backup, damaged_lines=() if complete else (1,)
        )
        try:
            self._replace_with(self._records(messages))
        except OSError as exc:
            raise _save_error(exc, self.path) from None

    def _recover(self, scan: _Scan, *, empty: bool = False) -> None:
        """Back the damaged file up, then rewrite it with what could be read.

        Without a backup the damaged file is never replaced: appends go on after it.
        """
        if empty:
            what = f"{self.path} was empty (0 bytes): no earlier conversation could be loaded"
        else:
            what = scan.describe(self.path)
        backup = self._backup("corrupt")
        self._open_report = LoadReport(
            damaged_lines=tuple(scan.damaged),
            empty_file=empty,
            missing_header=scan.missing_header,
            torn_bytes=scan.torn,
            backup=backup,
        )
        if backup is not None:
            self.created = scan.created or self.created or _now().isoformat(timespec="seconds")
            self.meta = dict(self._initial_meta) if empty else dict(scan.meta)
            try:
                self._replace_with([_encode(m) for m in scan.messages])
            except OSError as exc:
                what += f"; it could not be rewritten ({exc.strerror or exc}) and was left as it is"
            else:
                self._open_warnings.append(f"{what}; the damaged file is kept as {backup}")
                return
        else:
            what += "; it could not be backed up, so it was left as it is"
        self._open_warnings.append(what)
        # Appends continue after the last complete line; the next one cuts any torn tail.
        self._size = scan.size - scan.torn
        self._dirty = True

    def _backup(self, kind: str) -> Path | None:
        """Copy the file as it is now to ``<name>.<kind>-<timestamp>``; None if that failed."""
        base = self.path.with_name(f"{self.path.name}.{kind}-{_stamp()}")
        target, n = base, 0
        while True:
            try:
                out = os.open(
                    target,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
                break
            except FileExistsError:
                n += 1
                target = base.with_name(f"{base.name}-{n}")
            except OSError as exc:
                logger.warning("could not back up %s: %s", self.path, exc)
                return None
        try:
            offset = 0
            while chunk := os.pread(self._fd, _CHUNK, offset):
                _write_all(out, chunk, offset)
                offset += len(chunk)
            os.fsync(out)
            os.close(out)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            logger.warning("could not back up %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.close(out)
            with contextlib.suppress(OSError):
                target.unlink()
            return None
        return target

    # --- reading ------------------------------------------------------------------------------

    @property
    def _fd(self) -> int:
        fd = self._fds["data"]
        if fd is None:
            raise SessionError(f"session file {self.path} is closed")
        return fd

    def _scan(self) -> _Scan:
        if self.read_only:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return _Scan(has_header=True)
            except OSError as exc:
                raise _open_error(exc, self.path) from None
            limit = None
        else:
            fd, limit = os.dup(self._fd), self._size
        with open(fd, "rb", buffering=_CHUNK) as fh:
            fh.seek(0)  # a dup shares the offset of the writer's descriptor
            if self.read_only and os.pread(fd, _HEAD_LIMIT, 0).lstrip()[:1] == b"[":
                data = fh.read()
                messages, complete = _salvage_array(data.decode("utf-8", "replace"))
                return _Scan(
                    messages=messages,
                    records=len(messages),
                    has_header=True,
                    damaged=[] if complete else [1],
                    size=len(data),
                )
            return _scan_lines(fh, self.path, limit)

    def load(self, *, repair: bool = True) -> list[dict[str, Any]]:
        """The saved messages, oldest first; sets :attr:`warnings`, :attr:`meta`, :attr:`report`.

        Unreadable lines are skipped and reported; opened for writing, a damaged file
        is first copied to ``<name>.corrupt-<timestamp>`` and then rewritten clean.
        With ``repair`` (default) tool calls that never got a result receive a
        synthetic "interrupted" one (see :func:`repair_tool_calls`).
        """
        with self._mutex:
            warnings = list(self._open_warnings)
            report = self._open_report
            scan = self._scan()
            if self.read_only and scan.size == 0 and self.path.exists():
                warnings.append(f"{self.path} is empty (0 bytes): no conversation could be loaded")
                report = dataclasses.replace(report, empty_file=True)
            elif scan.records == 0 and scan.size > 0:
                raise SessionError(
                    f"{self.path} is not a Pygent history file (no line of it is a chat message)",
                    hint="move it away or choose another history file (PYGENT_HISTORY_FILE)",
                )
            elif scan.needs_repair and not self.read_only:
                self._open_warnings, self._open_report = [], LoadReport()
                self._recover(scan)
                warnings += self._open_warnings
                report = self._open_report
            elif scan.needs_repair or scan.torn:
                if scan.needs_repair:
                    warnings.append(scan.describe(self.path))
                if scan.torn:
                    warnings.append(
                        f"the last record in {self.path} is incomplete ({scan.torn} bytes: "
                        "Pygent stopped, or is still writing it) and was skipped"
                    )
                report = dataclasses.replace(
                    report,
                    damaged_lines=tuple(scan.damaged),
                    missing_header=scan.missing_header,
                    torn_bytes=scan.torn,
                )
            if scan.created:
                self.created = scan.created
            self.meta = scan.meta
            self._meta_known = True
            messages = scan.messages
            for line in self._pending:
                obj = _parse(line.strip()) or {}
                if META_KEY in obj:
                    self.meta.update(obj[META_KEY])
                else:
                    messages.append(obj)
            if repair:
                before = len(messages)
                messages = repair_tool_calls(messages)
                added = len(messages) - before
                if added:
                    report = dataclasses.replace(report, interrupted_calls=added)
                    warnings.append(
                        f"{added} tool call(s) had no recorded result (Pygent stopped while they "
                        "ran); they are marked as interrupted"
                    )
            self.warnings = warnings
            self.report = report
            for text in warnings:
                logger.info("%s", text)  # front ends show .warnings; the log keeps a trace
            return messages

    # --- writing ------------------------------------------------------------------------------

    def _redactor(self) -> Callable[[str], str]:
        return self._redact or current_redactor()

    def _records(self, messages: Iterable[Any]) -> list[bytes]:
        redact = self._redactor()  # one environment lookup per write, not per string
        out = []
        for message in messages:
            if not isinstance(message, dict):
                to_dict = getattr(message, "to_dict", None)
                if to_dict is None:
                    raise TypeError(f"a chat message must be a dict, not {type(message).__name__}")
                message = to_dict()
            out.append(_encode(redact_value(message, redact)))
        return out

    def _check_writable(self) -> None:
        if self.read_only:
            raise SessionError(f"session file {self.path} was opened read-only")
        if self._fds["data"] is None:
            raise SessionError(f"session file {self.path} is closed")

    def append(self, message: dict[str, Any]) -> None:
        """Save one message at the end of the file: one write and an fsync.

        On a disk error the file is cut back to its previous length and
        :class:`SessionError` ("could not save session: disk full ...") is raised; the
        message stays queued (:attr:`pending`) and is written by the next successful
        append or :meth:`flush`, so do not append it again.
        """
        self.append_many([message])

    def append_many(self, messages: Iterable[dict[str, Any]]) -> None:
        """Save several messages with one write and one fsync (see :meth:`append`)."""
        records = self._records(messages)
        with self._mutex:
            self._check_writable()
            self._pending.extend(records)
            self._flush_pending()

    def set_meta(self, key: str, value: Any) -> None:
        """Record a metadata value (title, model...); :meth:`load` merges these into :attr:`meta`."""
        value = redact_value(value, self._redactor())
        with self._mutex:
            self._check_writable()
            self.meta[key] = value
            self._pending.append(_encode({META_KEY: {key: value}}))
            self._flush_pending()

    @property
    def pending(self) -> int:
        """How many records a failed save left unwritten (0 when everything is on disk)."""
        return len(self._pending)

    def flush(self) -> None:
        """Retry writing records a failed save left behind; raises SessionError if it fails again."""
        with self._mutex:
            self._check_writable()
            self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        fd = self._fd
        data = b"".join(self._pending)
        try:
            if self._dirty:
                os.ftruncate(fd, self._size)
                self._dirty = False
            _write_all(fd, data, self._size)
            _datasync(fd)
        except OSError as exc:
            self._roll_back(fd)
            raise _save_error(exc, self.path) from None
        self._size += len(data)
        self._pending.clear()

    def _roll_back(self, fd: int) -> None:
        # A partial record would be a torn line in the middle once the next append lands.
        try:
            os.ftruncate(fd, self._size)
            _datasync(fd)
        except OSError as exc:
            logger.warning("could not cut %s back after a failed save: %s", self.path, exc)
            self._dirty = True

    def rewrite(self, messages: Iterable[dict[str, Any]]) -> None:
        """Replace the whole history atomically (reset, compaction): all or nothing.

        Writes a temp file in the same directory, fsyncs it, renames it over the file
        and fsyncs the directory; a crash at any point leaves the old or the new
        history, never a mix. Metadata and the creation time are kept.
        """
        records = self._records(messages)
        with self._mutex:
            self._check_writable()
            if not self._meta_known:
                self._read_meta()
            try:
                self._replace_with(records)
            except OSError as exc:
                raise _save_error(exc, self.path) from None
            self._pending.clear()

    def _read_meta(self) -> None:
        """Fill :attr:`meta` and :attr:`created` from the file without parsing the messages."""
        with open(os.dup(self._fd), "rb", buffering=_CHUNK) as fh:
            fh.seek(0)
            meta: dict[str, Any] = {}
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1 or raw.startswith(b'{"' + META_KEY.encode() + b'":'):
                    obj = _parse(raw.strip()) or {}
                    if _header_version(obj) is not None:
                        self.created = obj.get("created") or self.created
                        meta.update(obj.get("meta") or {})
                    elif isinstance(obj.get(META_KEY), dict):
                        meta.update(obj[META_KEY])
        meta.update(self.meta)  # values set in this process are the newest
        self.meta = meta
        self._meta_known = True

    def _replace_with(self, records: list[bytes]) -> None:
        """Atomically replace the file with a header (current meta) and ``records``."""
        header = {
            HEADER_KEY: FORMAT_VERSION,
            "created": self.created or _now().isoformat(timespec="seconds"),
            "meta": self.meta,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            old = self._fds["data"]
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(os.fstat(old).st_mode))
            with open(os.dup(fd), "wb", buffering=_CHUNK) as out:
                out.write(_encode(header))
                out.writelines(records)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # From the rename on, the path names the new inode: write only to it.
        self._fds["data"], old = fd, self._fds["data"]
        self._size = size
        self._dirty = False
        if old is not None:
            os.close(old)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        """Write anything still pending, then release the file and its lock.

        Raises :class:`SessionError` if pending records still cannot be saved (the file
        is closed anyway and holds everything saved before).
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            error: SessionError | None = None
            if self._pending and not self.read_only and self._fds["data"] is not None:
                try:
                    self._flush_pending()
                except SessionError as exc:
                    error = exc
            _close_fds(self._fds)
            if error is not None:
                raise error

    def __enter__(self) -> HistoryFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "open" if self._fds["data"] else "closed"
        return f"<HistoryFile {str(self.path)!r} {mode}>"


# --- the sessions directory ----------------------------------------------------------------------

HISTORY_NAME = "history.jsonl"
INDEX_NAME = "index.json"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_TITLE_LENGTH = 60


def default_sessions_dir() -> Path:
    """``$XDG_DATA_HOME/pygent/sessions`` (``~/.local/share/pygent/sessions`` by default).

    Settings pass the directory explicitly; this is for API callers that do not.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pygent" / "sessions"


@dataclass(frozen=True)
class SessionInfo:
    """One saved session as the sessions list shows it (read from the file itself)."""

    id: str
    title: str
    created: datetime | None
    updated: datetime
    message_count: int
    workspace: str | None
    model: str | None
    path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings, the path as a string."""
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created.isoformat() if self.created else None,
            "updated": self.updated.isoformat(),
            "message_count": self.message_count,
            "workspace": self.workspace,
            "model": self.model,
            "path": str(self.path),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        """The inverse of :meth:`to_dict`."""
        return cls(
            id=data["id"],
            title=data["title"],
            created=datetime.fromisoformat(data["created"]) if data.get("created") else None,
            updated=datetime.fromisoformat(data["updated"]),
            message_count=int(data["message_count"]),
            workspace=data.get("workspace"),
            model=data.get("model"),
            path=Path(data["path"]),
        )


@dataclass(frozen=True)
class SessionRecord:
    """A newly created session: its id, its history file path and the open history."""

    id: str
    path: Path
    history: HistoryFile

    def __enter__(self) -> SessionRecord:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.history.close()


def _title(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = " ".join(str(content or "").split())
    return text if len(text) <= _TITLE_LENGTH else text[: _TITLE_LENGTH - 1] + "…"


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _summarise(session_id: str, path: Path, st: os.stat_result) -> SessionInfo:
    """Read a session file cheaply: parse the header, meta lines and the first user message."""
    created: datetime | None = None
    meta: dict[str, Any] = {}
    count, title = 0, ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb", buffering=_CHUNK) as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n") or not raw.strip():
                    continue
                if lineno == 1 or raw.startswith(b'{"_meta":'):
                    obj = _parse(raw.strip()) or {}
                    version = _header_version(obj)
                    if version is not None and version > FORMAT_VERSION:
                        title = f"(written by a newer Pygent, format {version})"
                        break
                    if version is not None:
                        created = _parse_time(obj.get("created"))
                        meta.update(obj.get("meta") or {})
                        continue
                    if META_KEY in obj:
                        meta.update(obj[META_KEY])
                        continue
                count += 1
                # Only parse lines until the first user message: counting needs no parse.
                if not title and b'"user"' in raw:
                    obj = _parse(raw.strip()) or {}
                    if obj.get("role") == "user":
                        title = _title(obj)
    except OSError as exc:
        title = f"(unreadable: {exc.strerror or exc})"
    return SessionInfo(
        id=session_id,
        title=str(meta.get("title") or title or "(no messages)"),
        created=created,
        updated=datetime.fromtimestamp(st.st_mtime, timezone.utc),
        message_count=count,
        workspace=meta.get("workspace"),
        model=meta.get("model"),
        path=path,
    )


class SessionStore:
    """The saved sessions: one directory per session under ``root`` holding ``history.jsonl``.

    ``index.json`` in ``root`` is only a cache of :meth:`list`, checked against each
    file's size, mtime and inode and rebuilt whenever it disagrees or is unreadable.
    """

    def __init__(
        self, root: Path | str | None = None, *, redact: Callable[[str], str] | None = None
    ) -> None:
        """``root``: the sessions directory (default :func:`default_sessions_dir`)."""
        self.root = Path(root) if root is not None else default_sessions_dir()
        self._redact = redact

    def new_id(self) -> str:
        """A fresh id: UTC time (sorts by creation) plus random hex, e.g. ``20250101-120000-a1b2c3``."""
        return f"{_now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    def path(self, session_id: str) -> Path:
        """The history file of ``session_id`` (the id is checked: no path tricks)."""
        if not _SESSION_ID.match(session_id):
            raise SessionError(f"invalid session id {session_id!r}")
        return self.root / session_id / HISTORY_NAME

    def create(self, meta: dict[str, Any] | None = None) -> SessionRecord:
        """Create a session (``meta``: workspace, model, title...) and open it for writing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _open_error(exc, self.root) from None
        while True:
            session_id = self.new_id()
            try:
                (self.root / session_id).mkdir(mode=0o700)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise _open_error(exc, self.root) from None
        path = self.path(session_id)
        history = HistoryFile(path, redact=self._redact, meta=meta)
        return SessionRecord(session_id, path, history)

    def open(self, session_id: str) -> HistoryFile:
        """Open a saved session for writing (locked); call ``load()`` to resume it."""
        path = self.path(session_id)
        if not path.parent.is_dir():
            raise SessionError(
                f"no session {session_id!r} in {self.root}",
                hint="list the saved sessions to see their ids",
            )
        return HistoryFile(path, redact=self._redact)

    def read(self, session_id: str) -> HistoryFile:
        """A read-only view of a saved session (works while it is in use)."""
        return HistoryFile.read(self.path(session_id))

    def delete(self, session_id: str) -> None:
        """Delete a session; refused while another process has it open."""
        path = self.path(session_id)
        if not path.parent.is_dir():
            raise SessionError(f"no session {session_id!r} in {self.root}")
        lock = _acquire_lock(path)
        try:
            shutil.rmtree(path.parent)
        finally:
            os.close(lock)

    def _read_index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / INDEX_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.root / f".{INDEX_NAME}.tmp-{secrets.token_hex(4)}"
        try:
            tmp.write_text(json.dumps(index), encoding="utf-8")
            os.replace(tmp, self.root / INDEX_NAME)
        except OSError as exc:
            # Only a cache: the next list() reads the files again.
            logger.debug("could not write the session index: %s", exc)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _entries(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False) or not _SESSION_ID.match(entry.name):
                continue
            path = Path(entry.path) / HISTORY_NAME
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue  # a directory without a history: creation was interrupted
            yield entry.name, path, st

    def list(self) -> builtins.list[SessionInfo]:
        """Saved sessions, most recently updated first, read from the files themselves."""
        index = self._read_index()
        fresh: dict[str, Any] = {}
        infos: builtins.list[SessionInfo] = []
        for session_id, path, st in self._entries():
            stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
            cached = index.get(session_id)
            info = None
            if isinstance(cached, dict) and cached.get("stamp") == stamp:
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    info = SessionInfo.from_dict(cached["info"])
            if info is None:
                info = _summarise(session_id, path, st)
            fresh[session_id] = {"stamp": stamp, "info": info.to_dict()}
            infos.append(info)
        if fresh != index and self.root.is_dir():
            self._write_index(fresh)
        return sorted(infos, key=lambda info: (info.updated, info.id), reverse=True)


__all__ = [
    "FORMAT_VERSION",
    "INTERRUPTED_RESULT",
    "HistoryFile",
    "LoadReport",
    "SessionInfo",
    "SessionRecord",
    "SessionStore",
    "default_sessions_dir",
    "repair_tool_calls",
]
