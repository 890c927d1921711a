"""The sessions directory: one folder per session with its history file, listed and resumed.

The history file itself lives in :mod:`pygent.history`; its public names are
re-exported here, where the upstream-facing API has always had them.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pygent.errors import SessionError
from pygent.history import INTERRUPTED_RESULT, LoadReport, repair_tool_calls
from pygent.history.disk import CHUNK, FORMAT_VERSION, META_KEY, acquire_lock, now, open_error
from pygent.history.file import HistoryFile
from pygent.history.scan import header_version, parse_line

logger = logging.getLogger(__name__)


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
        with open(fd, "rb", buffering=CHUNK) as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n") or not raw.strip():
                    continue
                if lineno == 1 or raw.startswith(b'{"_meta":'):
                    obj = parse_line(raw.strip()) or {}
                    version = header_version(obj)
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
                    obj = parse_line(raw.strip()) or {}
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
        return f"{now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

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
            raise open_error(exc, self.root) from None
        while True:
            session_id = self.new_id()
            try:
                (self.root / session_id).mkdir(mode=0o700)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise open_error(exc, self.root) from None
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
        lock = acquire_lock(path)
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
