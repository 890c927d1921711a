"""What an approval prompt shows: the command, or a unified diff for file changes."""

from __future__ import annotations

import difflib
from typing import Any

from pygent.errors import PathError, ToolError
from pygent.runtime.workspace import Workspace
from pygent.tools.file_tools import MAX_WRITE_BYTES, apply_edit

MAX_PREVIEW = 20_000
#: The largest file whose text a proposed write or edit carries (``ToolCallProposed.old_text``):
#: every client of the session receives it, so a huge file is left out (its diff then
#: shows the new text only).
OLD_TEXT_LIMIT = 256 * 1024
#: The tools whose calls replace a file's text (their ``path`` argument names it).
_REPLACING = ("write_file", "edit_file")
#: The argument names that hold the file a call reads or writes (built-in file tools and
#: the usual spellings of custom ones).
PATH_ARGUMENTS = ("path", "file_path", "filepath", "filename", "file")


def locations(tool: str, args: dict[str, Any], ws: Workspace) -> list[str]:
    """The workspace-relative paths a call names (``"."`` for the root), so clients can
    link the call to its file; never raises. An MCP tool's paths are its server's (not
    the workspace's), and a path outside the workspace names nothing."""
    if tool.startswith("mcp__"):
        return []
    found: list[str] = []
    for key in PATH_ARGUMENTS:
        value = args.get(key)
        if isinstance(value, str) and value.strip():
            try:
                rel = ws.relpath(value.strip()) or "."
            except (PathError, ValueError):
                continue
            if rel not in found:
                found.append(rel)
    return found


def old_text(tool: str, args: dict[str, Any], ws: Workspace) -> str | None:
    """The text a ``write_file``/``edit_file`` call is about to replace; never raises.

    None for other tools, a file that does not exist yet (or is refused, a link out),
    one over :data:`OLD_TEXT_LIMIT` and one that is not UTF-8 text.
    """
    path = args.get("path")
    if tool not in _REPLACING or not isinstance(path, str) or not path.strip():
        return None
    try:
        read = ws.read(path.strip(), limit=OLD_TEXT_LIMIT + 1)
    except (PathError, OSError, ValueError):
        return None
    if read.size > OLD_TEXT_LIMIT:
        return None
    try:
        return read.data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def unified_diff(path: str, before: str, after: str) -> str:
    diff = "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"a/{path}", tofile=f"b/{path}"))
    return diff[:MAX_PREVIEW] + ("\n[diff truncated]" if len(diff) > MAX_PREVIEW else "")


def _current(ws: Workspace, path: str) -> str:
    try:
        return ws.read_bytes(path).decode("utf-8", errors="replace")
    except (PathError, OSError):  # missing, refused, or changing under us: nothing to show
        return ""


def preview(tool: str, args: dict[str, Any], ws: Workspace) -> str:
    """A human-readable preview of a call; never raises."""
    try:
        if tool == "bash":
            return str(args.get("cmd", ""))
        if tool.startswith("mcp__") and "__" in tool[5:]:  # an MCP server's tool
            import json

            server, _, name = tool[5:].partition("__")
            shown = json.dumps(args, indent=2, ensure_ascii=False)[:MAX_PREVIEW]
            return f"MCP server {server}, tool {name}, arguments:\n{shown}"
        path = str(args.get("path", ""))
        big = max((len(v) for v in args.values() if isinstance(v, str)), default=0)
        if big > MAX_WRITE_BYTES:  # diffing it would stall the turn; the call is refused
            return f"({tool} {path}: {big} characters of arguments, over the write limit)"
        if tool == "write_file":
            return unified_diff(path, _current(ws, path), str(args.get("content", "")))
        if tool == "edit_file":
            before = _current(ws, path)
            try:
                after = apply_edit(before, str(args.get("old_text", "")), str(args.get("new_text", "")), path)
            except ToolError as exc:
                return f"(edit will fail: {exc})"
            return unified_diff(path, before, after)
    except PathError as exc:
        return f"(refused path: {exc})"
    except OSError as exc:
        return f"(cannot preview: {exc.strerror or exc})"
    import json

    return json.dumps(args, indent=2)[:MAX_PREVIEW]
