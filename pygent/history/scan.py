"""Reading a history file: scanning its lines, salvaging what a crash or an older format left, and the report of what was kept."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygent.history.disk import (
    FORMAT_VERSION,
    HEAD_LIMIT,
    HEADER_KEY,
    LOGGED_META,
    META_KEY,
    newer_error,
)

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
class Scan:
    messages: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: Every value of a :data:`LOGGED_META` key, oldest first.
    logged: dict[str, list[Any]] = field(default_factory=dict)
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


def parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        # Decode strictly first: json.loads(bytes) would guess UTF-16 for some flipped bytes.
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: absurdly nested garbage
        return None
    return obj if isinstance(obj, dict) else None


def header_version(obj: dict[str, Any] | None) -> int | None:
    if obj is None or HEADER_KEY not in obj:
        return None
    version = obj[HEADER_KEY]
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def log_meta(logged: dict[str, list[Any]], update: dict[str, Any]) -> None:
    """Add the :data:`LOGGED_META` values of one metadata update to ``logged``."""
    for key in LOGGED_META:
        if key in update:
            logged.setdefault(key, []).append(update[key])


def scan_lines(lines: Iterable[bytes], path: Path, limit: int | None = None) -> Scan:
    scan = Scan()
    first = True
    for lineno, raw in enumerate(lines, 1):
        if limit is not None and scan.size >= limit:
            break
        scan.size += len(raw)
        complete = raw.endswith(b"\n")
        body = raw.strip()
        if not body:
            continue
        obj = parse_line(body)
        is_first, first = first, False
        if obj is None:
            if complete:
                scan.damaged.append(lineno)
            else:
                scan.torn = len(raw)
            continue
        if HEADER_KEY in obj:
            version = header_version(obj)
            if is_first and version is not None and version > FORMAT_VERSION:
                raise newer_error(path, version)
            if not is_first or version is None or version < 1:
                scan.damaged.append(lineno)
                continue
            scan.has_header = True
            scan.created = obj.get("created") if isinstance(obj.get("created"), str) else None
            if isinstance(obj.get("meta"), dict):
                scan.meta.update(obj["meta"])
                log_meta(scan.logged, obj["meta"])
        elif isinstance(obj.get(META_KEY), dict) and len(obj) == 1:
            scan.meta.update(obj[META_KEY])
            log_meta(scan.logged, obj[META_KEY])
        elif isinstance(obj.get("role"), str):
            scan.messages.append(obj)
        else:
            scan.damaged.append(lineno)
            continue
        scan.records += 1
    return scan


def salvage_array(text: str) -> tuple[list[dict[str, Any]], bool]:
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


def read_head(fd: int) -> bytes:
    """The first line of the file (up to :data:`HEAD_LIMIT` bytes)."""
    head = os.pread(fd, HEAD_LIMIT, 0)
    end = head.find(b"\n")
    return head if end < 0 else head[: end + 1]
