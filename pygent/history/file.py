"""``HistoryFile``: one conversation on disk, appended a message at a time, crash-safe."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import secrets
import stat
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pygent.errors import SessionError
from pygent.history.disk import (
    CHUNK,
    FORMAT_VERSION,
    HEAD_LIMIT,
    HEADER_KEY,
    LOGGED_META,
    META_KEY,
    acquire_lock,
    close_fds,
    datasync,
    encode_line,
    fsync_dir,
    newer_error,
    now,
    open_error,
    save_error,
    stamp,
    symlink_error,
    write_all,
)
from pygent.history.repair import repair_tool_calls
from pygent.history.scan import (
    LoadReport,
    Scan,
    header_version,
    log_meta,
    parse_line,
    read_head,
    salvage_array,
    scan_lines,
)
from pygent.history.writer import AppendQueue, snapshot
from pygent.redact import current_redactor, redact_value

logger = logging.getLogger(__name__)


# --- the history file --------------------------------------------------------------------------


class HistoryFile:
    """One conversation on disk: a JSONL file, appended one message at a time.

    Line 1 is a header ``{"pygent_history": 1, "created": ..., "meta": {...}}``; each
    further line is a chat message (``role``, ``content``, ``tool_calls``...) or a
    ``{"_meta": {...}}`` update. Opened for writing, the file is locked against other
    Pygent processes; every append is one write and an fsync, so a crash loses at most
    the message being written. :meth:`append_soon` leaves the write and the sync to a
    thread of the file's own (an event loop must not wait for a disk) and
    :meth:`synced` says when they are done. See docs/sessions.md.
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
        #: Every value of a :data:`~pygent.history.disk.LOGGED_META` key (the compaction
        #: markers), oldest first: :attr:`meta` holds only the latest.
        self.meta_log: dict[str, list[Any]] = {}
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
        self._appends: AppendQueue | None = None  # created by the first append_soon()
        self._finalizer = weakref.finalize(self, close_fds, self._fds)
        if self.path.is_symlink():
            raise symlink_error(self.path)
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
            raise open_error(exc, self.path) from None
        try:
            version = header_version(parse_line(read_head(fd).strip()))
            if version is not None and version > FORMAT_VERSION:
                raise newer_error(self.path, version)
        finally:
            os.close(fd)

    def _open_for_writing(self, meta: dict[str, Any]) -> None:
        self._initial_meta = meta
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise open_error(exc, parent) from None
        self._fds["lock"] = acquire_lock(self.path)
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
                self.created = now().isoformat(timespec="seconds")
                self.meta = dict(meta)
                try:
                    self._replace_with([])
                except OSError as exc:
                    raise open_error(exc, self.path) from None
                return
            except OSError as exc:
                raise open_error(exc, self.path) from None
            self._fds["data"] = fd
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SessionError(f"session file {self.path} is not a regular file")
            self._size = st.st_size
            self._inspect()
        except BaseException:
            close_fds(self._fds)
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
            self._recover(Scan(), empty=True)
            return
        head = read_head(fd)
        if head.lstrip()[:1] == b"[":
            self._migrate_array()
            return
        header = parse_line(head.strip())
        version = header_version(header)
        if version is not None and version > FORMAT_VERSION:
            raise newer_error(self.path, version)
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
            chunk_start = max(0, start - CHUNK)
            found = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
            if found >= 0:
                start = chunk_start + found + 1
                break
            start = chunk_start
        tail = os.pread(fd, size - start, start)
        try:
            if parse_line(tail.strip()) is not None:
                # Complete record, only the newline missing: keep it.
                write_all(fd, b"\n", size)
                self._size = size + 1
            else:
                os.ftruncate(fd, start)
                self._size = start
                self._open_report = dataclasses.replace(self._open_report, torn_bytes=len(tail))
                self._open_warnings.append(
                    f"the last record in {self.path} was incomplete ({len(tail)} bytes; "
                    "Pygent stopped while writing it) and was dropped; earlier messages are intact"
                )
            datasync(fd)
        except OSError as exc:
            raise open_error(exc, self.path) from None

    def _migrate_array(self) -> None:
        """Convert an old-format file (one JSON array) to JSONL, keeping the original."""
        raw = os.pread(self._fd, self._size, 0)
        messages, complete = salvage_array(raw.decode("utf-8", "replace"))
        kind = "upstream" if complete else "corrupt"
        backup = self._backup(kind)
        if backup is None:
            raise SessionError(
                f"{self.path} is in the old Pygent format and could not be backed up before "
                "converting it",
                hint="free some space in its directory; the file was not changed",
            )
        self.created = now().isoformat(timespec="seconds")
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
            raise save_error(exc, self.path) from None

    def _recover(self, scan: Scan, *, empty: bool = False) -> None:
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
            self.created = scan.created or self.created or now().isoformat(timespec="seconds")
            self.meta = dict(self._initial_meta) if empty else dict(scan.meta)
            self.meta_log = {} if empty else {k: list(v) for k, v in scan.logged.items()}
            try:
                self._replace_with([encode_line(m) for m in scan.messages])
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
        base = self.path.with_name(f"{self.path.name}.{kind}-{stamp()}")
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
            while chunk := os.pread(self._fd, CHUNK, offset):
                write_all(out, chunk, offset)
                offset += len(chunk)
            os.fsync(out)
            os.close(out)
            fsync_dir(self.path.parent)
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

    def _scan(self) -> Scan:
        if self.read_only:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return Scan(has_header=True)
            except OSError as exc:
                raise open_error(exc, self.path) from None
            limit = None
        else:
            fd, limit = os.dup(self._fd), self._size
        with open(fd, "rb", buffering=CHUNK) as fh:
            fh.seek(0)  # a dup shares the offset of the writer's descriptor
            if self.read_only and os.pread(fd, HEAD_LIMIT, 0).lstrip()[:1] == b"[":
                data = fh.read()
                messages, complete = salvage_array(data.decode("utf-8", "replace"))
                return Scan(
                    messages=messages,
                    records=len(messages),
                    has_header=True,
                    damaged=[] if complete else [1],
                    size=len(data),
                )
            return scan_lines(fh, self.path, limit)

    def load(self, *, repair: bool = True) -> list[dict[str, Any]]:
        """The saved messages, oldest first; sets :attr:`warnings`, :attr:`meta`, :attr:`report`.

        Unreadable lines are skipped and reported; opened for writing, a damaged file
        is first copied to ``<name>.corrupt-<timestamp>`` and then rewritten clean.
        With ``repair`` (default) tool calls that never got a result receive a
        synthetic "interrupted" one (see :func:`repair_tool_calls`).
        """
        self._wait_queued()
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
            self.meta_log = scan.logged
            self._meta_known = True
            messages = scan.messages
            for line in self._pending:
                obj = parse_line(line.strip()) or {}
                if META_KEY in obj:
                    self.meta.update(obj[META_KEY])
                    log_meta(self.meta_log, obj[META_KEY])
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
            out.append(encode_line(redact_value(message, redact)))
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
        self._wait_queued()
        self._write_records(self._records(messages))

    def _write_records(self, records: list[bytes]) -> None:
        with self._mutex:
            self._check_writable()
            self._pending.extend(records)
            self._flush_pending()

    def append_soon(self, message: dict[str, Any]) -> None:
        """Queue one message to be saved after those queued before; returns at once.

        The file's writer thread saves whatever waits with one write and one fsync;
        :meth:`synced` tells when it is on disk (or why it is not). Every other call
        that reads or writes the file first waits for the queue, so the order holds.
        """
        if not isinstance(message, dict):
            to_dict = getattr(message, "to_dict", None)
            if to_dict is None:
                raise TypeError(f"a chat message must be a dict, not {type(message).__name__}")
            message = to_dict()
        self._check_writable()
        if self._appends is None:
            self._appends = AppendQueue(
                self._write_batch, name=f"pygent-history-{self.path.parent.name}"
            )
        self._appends.put(snapshot(message))

    def _write_batch(self, messages: list[dict[str, Any]]) -> None:
        """The writer thread's save: one write and one sync, or (when that fails, a full
        disk) one record at a time up to the first that fails, so that a large message
        costs no smaller one queued before it its place on disk."""
        records = self._records(messages)
        with self._mutex:
            self._check_writable()
            self._pending.extend(records)
            try:
                self._flush_pending()
            except SessionError:
                if len(self._pending) < 2:
                    raise
                while self._pending:
                    rest = self._pending[1:]
                    del self._pending[1:]
                    try:
                        self._flush_pending()
                    finally:
                        self._pending.extend(rest)
                # Each fitted on its own (the failure passed): all of it is saved.

    def synced(self) -> concurrent.futures.Future[None]:
        """A future set once every message :meth:`append_soon` queued so far is on disk.

        It fails with :class:`SessionError` (disk full...) when they could not be saved;
        they stay pending, as after a failed :meth:`append`, and go with the next save.
        """
        if self._appends is None:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        return self._appends.synced()

    def _wait_queued(self) -> None:
        if self._appends is not None:
            self._appends.wait()

    def set_meta(self, key: str, value: Any) -> None:
        """Record a metadata value (title, model...); :meth:`load` merges these into :attr:`meta`."""
        value = redact_value(value, self._redactor())
        self._wait_queued()
        with self._mutex:
            self._check_writable()
            self.meta[key] = value
            log_meta(self.meta_log, {key: value})
            self._pending.append(encode_line({META_KEY: {key: value}}))
            self._flush_pending()

    def update_meta(self, values: dict[str, Any]) -> None:
        """Record several metadata values as one record: one write and one fsync (a new
        session's fields are saved on the way to its first request)."""
        if not values:
            return
        redactor = self._redactor()
        values = {key: redact_value(value, redactor) for key, value in values.items()}
        self._wait_queued()
        with self._mutex:
            self._check_writable()
            self.meta.update(values)
            log_meta(self.meta_log, values)
            self._pending.append(encode_line({META_KEY: values}))
            self._flush_pending()

    @property
    def pending(self) -> int:
        """How many records a failed save left unwritten (0 when everything is on disk)."""
        return len(self._pending)

    def flush(self) -> None:
        """Retry writing records a failed save left behind; raises SessionError if it fails again."""
        self._wait_queued()
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
            write_all(fd, data, self._size)
            datasync(fd)
        except OSError as exc:
            self._roll_back(fd)
            raise save_error(exc, self.path) from None
        self._size += len(data)
        self._pending.clear()

    def _roll_back(self, fd: int) -> None:
        # A partial record would be a torn line in the middle once the next append lands.
        try:
            os.ftruncate(fd, self._size)
            datasync(fd)
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
        self._wait_queued()
        with self._mutex:
            self._check_writable()
            if not self._meta_known:
                self._read_meta()
            try:
                self._replace_with(records)
            except OSError as exc:
                raise save_error(exc, self.path) from None
            self._pending.clear()

    def _read_meta(self) -> None:
        """Fill :attr:`meta` and :attr:`created` from the file without parsing the messages."""
        with open(os.dup(self._fd), "rb", buffering=CHUNK) as fh:
            fh.seek(0)
            meta: dict[str, Any] = {}
            logged: dict[str, list[Any]] = {}
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1 or raw.startswith(b'{"' + META_KEY.encode() + b'":'):
                    obj = parse_line(raw.strip()) or {}
                    if header_version(obj) is not None:
                        self.created = obj.get("created") or self.created
                        meta.update(obj.get("meta") or {})
                        log_meta(logged, obj.get("meta") or {})
                    elif isinstance(obj.get(META_KEY), dict):
                        meta.update(obj[META_KEY])
                        log_meta(logged, obj[META_KEY])
        meta.update(self.meta)  # values set in this process are the newest
        self.meta = meta
        # The file holds every value set in this process too (set_meta writes through).
        self.meta_log = logged
        self._meta_known = True

    def _replace_with(self, records: list[bytes]) -> None:
        """Atomically replace the file with a header (current meta) and ``records``."""
        # A logged key's values follow the header, oldest first (the last one is the
        # meta value a reader ends with): a rewrite (rewind, reset) keeps them all.
        header = {
            HEADER_KEY: FORMAT_VERSION,
            "created": self.created or now().isoformat(timespec="seconds"),
            "meta": {k: v for k, v in self.meta.items() if k not in self.meta_log},
        }
        logged = [encode_line({META_KEY: {key: value}})
                  for key in LOGGED_META for value in self.meta_log.get(key, ())]
        tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            old = self._fds["data"]
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(os.fstat(old).st_mode))
            with open(os.dup(fd), "wb", buffering=CHUNK) as out:
                out.write(encode_line(header))
                out.writelines(logged)
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
        fsync_dir(self.path.parent)

    def close(self) -> None:
        """Write anything still pending, then release the file and its lock.

        Raises :class:`SessionError` if pending records still cannot be saved (the file
        is closed anyway and holds everything saved before).
        """
        if self._appends is not None:
            self._appends.close()  # what is queued is written first
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
            close_fds(self._fds)
            if error is not None:
                raise error

    def __enter__(self) -> HistoryFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "open" if self._fds["data"] else "closed"
        return f"<HistoryFile {str(self.path)!r} {mode}>"
