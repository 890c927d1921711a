"""File tools: read, write, edit, download and view images in the workspace.

Every path goes through :class:`pygent.runtime.workspace.Workspace`, which refuses
anything outside the workspace (``..``, absolute paths, links out, non-regular
files). Reads are capped so a huge file cannot flood the model or the host memory,
and so are writes.

Writes carry a precondition (ADVERSARIAL A19): the tools remember each file as the
agent last read or wrote it, and ``write_file`` refuses to overwrite a file that
changed since (the user edited it in the editor, or a command did), so nobody's edit
is lost; ``edit_file`` applies its exact-snippet edit to the current content and says
that the file had changed.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import mimetypes
import weakref

from pygent.errors import ToolError
from pygent.runtime.workspace import Workspace
from pygent.tools.registry import ToolContext, ToolResult

MAX_READ_BYTES = 256 * 1024
MAX_READ_LINES = 2000
MAX_IMAGE_BYTES = 8 * 1024 * 1024
#: The largest file content one write_file or edit_file call may write.
MAX_WRITE_BYTES = 10 * 1024 * 1024

# Per workspace: relative path -> (size, mtime_ns, sha256 or None) as the agent saw it.
_Seen = dict[str, tuple[int, int, str | None]]
_seen_by_workspace: weakref.WeakKeyDictionary[Workspace, _Seen] = weakref.WeakKeyDictionary()


def _seen(ws: Workspace) -> _Seen:
    return _seen_by_workspace.setdefault(ws, {})


def _remember(ws: Workspace, path: str, data: bytes | None) -> None:
    """Note ``path`` as the agent now knows it (``data``: its whole content, if known)."""
    st = ws.lstat(path)
    if st is not None:
        digest = hashlib.sha256(data).hexdigest() if data is not None else None
        _seen(ws)[ws.relpath(path)] = (st.st_size, st.st_mtime_ns, digest)


def _changed_since_seen(ws: Workspace, path: str) -> bool:
    """True when ``path`` differs from what the agent last read or wrote."""
    known = _seen(ws).get(ws.relpath(path))
    st = ws.lstat(path) if known is not None else None
    if known is None or st is None:
        return False  # never seen by the agent, or deleted since: nothing to lose
    size, mtime, digest = known
    if (st.st_size, st.st_mtime_ns) == (size, mtime):
        return False
    if digest is None or st.st_size > MAX_WRITE_BYTES:
        return True
    return hashlib.sha256(ws.read_bytes(path)).hexdigest() != digest


def _check_size(data: bytes, path: str) -> None:
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(
            f"refusing to write {len(data)} bytes to {path}: one call may write at most "
            f"{MAX_WRITE_BYTES} bytes; generate large files with a command instead"
        )

PATH = {"type": "string", "description": "Path relative to the workspace."}
READ_SCHEMA = {
    "type": "object",
    "properties": {
        "path": PATH,
        "start_line": {"type": "integer", "description": "First line to return (1-based)."},
        "end_line": {"type": "integer", "description": "Last line to return (inclusive)."},
    },
    "required": ["path"],
}
WRITE_SCHEMA = {
    "type": "object",
    "properties": {"path": PATH, "content": {"type": "string", "description": "Full file content."}},
    "required": ["path", "content"],
}
EDIT_SCHEMA = {
    "type": "object",
    "properties": {
        "path": PATH,
        "old_text": {"type": "string", "description": "Exact text to replace; must occur once."},
        "new_text": {"type": "string", "description": "Replacement text."},
    },
    "required": ["path", "old_text", "new_text"],
}
IMAGE_SCHEMA = {"type": "object", "properties": {"path": PATH}, "required": ["path"]}


def _decode(data: bytes, path: str, *, cut: bool = False) -> str:
    """UTF-8 text, strictly; ``cut``: the data stops mid-file (a split character is dropped)."""
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} looks like a binary file; use bash (e.g. xxd) to inspect it")
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
    except UnicodeDecodeError:
        raise ToolError(f"{path} is not valid UTF-8 text; use bash to inspect it") from None


async def read_file(ctx: ToolContext, path: str, start_line: int | None = None,
                    end_line: int | None = None) -> ToolResult:
    """Return a text file (or a line range of it), capped for large files."""
    ws = ctx.runtime.files
    if start_line or end_line:
        return _read_lines(ws, path, max(start_line or 1, 1), end_line)
    whole = ws.read(path, limit=MAX_READ_BYTES)
    text = _decode(whole.data, path, cut=whole.truncated)
    lines = text.splitlines(keepends=True)
    last = min(len(lines), MAX_READ_LINES)
    _remember(ws, path, None if whole.truncated else whole.data)
    note = ""
    if whole.truncated or last < len(lines):
        shown = sum(len(line.encode("utf-8")) for line in lines[:last])
        note = (f"\n[truncated: showing {last} lines ({shown} bytes) of a file of {whole.size} "
                "bytes; use start_line/end_line to read further]")
    return ToolResult(True, "".join(lines[:last]) + note)


def _read_lines(ws: Workspace, path: str, first: int, end_line: int | None) -> ToolResult:
    """Lines ``first``..``end_line``, read in chunks: a file of any size costs ~1 MiB of memory."""
    last = min(end_line or first + MAX_READ_LINES - 1, first + MAX_READ_LINES - 1)
    out = bytearray()
    line_no, offset, size, newlines, capped, tail = 1, 0, 0, 0, False, b"\n"
    while True:
        got = ws.read(path, offset=offset, limit=1 << 20)
        size = got.size
        if offset == 0:
            _decode(got.data[:8192], path, cut=True)  # refuses binary files at once
        if not got.data:
            break
        data, start = got.data, 0
        offset += len(data)
        count = data.count(b"\n")
        newlines += count
        tail = data[-1:]
        if line_no + count < first:  # the whole chunk is before the range
            line_no += count
            continue
        while line_no <= last and not capped:
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl + 1
            if line_no >= first:
                room = MAX_READ_BYTES - len(out)
                out += data[start : start + min(room, end - start)]
                capped = end - start > room
            if nl < 0:
                break
            line_no, start = line_no + 1, nl + 1
        if capped or (line_no > last and offset < size):
            break  # the rest is not needed (and may be huge)
    text = _decode(bytes(out), path, cut=capped)
    _remember(ws, path, None)
    if capped:
        note = (f"[truncated at {MAX_READ_BYTES} bytes: these lines are very long; use bash "
                "(cut -c, head -c) to read parts of them]")
    elif offset >= size:  # read to the end: the line count is known
        total = newlines + (0 if tail == b"\n" else 1)
        if first > total:
            note = f"[the file has only {total} lines]"
        else:
            note = f"[lines {first}-{min(last, total)} of {total}]"
    else:
        note = f"[lines {first}-{last}; the file ({size} bytes) continues]"
    return ToolResult(True, text + "\n" + note)


async def download_file(ctx: ToolContext, path: str, start_line: int | None = None,
                        end_line: int | None = None) -> ToolResult:
    """Upstream name for reading a workspace file (same caps and line ranges)."""
    return await read_file(ctx, path, start_line, end_line)


async def write_file(ctx: ToolContext, path: str, content: str) -> ToolResult:
    """Create or replace a file with ``content`` (refused if it changed since last read)."""
    ws = ctx.runtime.files
    data = content.encode("utf-8")
    _check_size(data, path)
    if _changed_since_seen(ws, path):
        raise ToolError(
            f"{path} changed since you last read it (edited in the editor or by a command); "
            "it was not overwritten. Read it again and include those changes, or use edit_file"
        )
    rel = ws.write(path, data)
    _remember(ws, rel, data)
    return ToolResult(True, f"Wrote {len(data)} bytes to {rel}", data={"path": rel})


def apply_edit(original: str, old_text: str, new_text: str, path: str) -> str:
    """Replace the one occurrence of ``old_text``; errors say how to fix the call."""
    if not old_text:
        raise ToolError("old_text is empty; give the exact text to replace")
    if "\r\n" in original and "\r\n" not in old_text:
        # Keep CRLF files CRLF: the model usually sends LF-only snippets.
        old_text = old_text.replace("\n", "\r\n")
        new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")
    count = original.count(old_text)
    if count == 0:
        raise ToolError(f"old_text was not found in {path}; read the file and copy the exact text (whitespace and indentation matter)")
    if count > 1:
        lines, start = [], 0
        for _ in range(min(count, 5)):
            idx = original.index(old_text, start)
            lines.append(str(original.count("\n", 0, idx) + 1))
            start = idx + 1
        raise ToolError(f"old_text occurs {count} times in {path} (lines {', '.join(lines)}); include more surrounding lines so it is unique")
    return original.replace(old_text, new_text, 1)


async def edit_file(ctx: ToolContext, path: str, old_text: str, new_text: str) -> ToolResult:
    """Replace an exact, unique snippet of a text file (BOM and line endings kept)."""
    ws = ctx.runtime.files
    changed = _changed_since_seen(ws, path)
    original = _decode(ws.read_bytes(path), path)
    updated = apply_edit(original, old_text, new_text, path).encode("utf-8")
    _check_size(updated, path)
    rel = ws.write(path, updated)
    _remember(ws, rel, updated)
    note = (" (it had changed since you last read it: your edit was applied to the current "
            "content; read it again before larger changes)") if changed else ""
    return ToolResult(True, f"Edited {rel}{note}", data={"path": rel})


async def read_image(ctx: ToolContext, path: str) -> ToolResult:
    """Show an image file to the model (as a data URL)."""
    got = ctx.runtime.files.read(path, limit=MAX_IMAGE_BYTES)
    if got.truncated:
        raise ToolError(f"{path} is {got.size} bytes; images over {MAX_IMAGE_BYTES} bytes are refused")
    mime = mimetypes.guess_type(path)[0] or "image/png"
    if not mime.startswith("image/"):
        raise ToolError(f"{path} is not an image ({mime})")
    url = f"data:{mime};base64,{base64.b64encode(got.data).decode()}"
    return ToolResult(True, f"Image {path} ({got.size} bytes) is attached below.", attachments=(url,))
