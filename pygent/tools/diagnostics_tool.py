"""The ``diagnostics`` tool: the problems the user's editor shows, for the model to read.

The editor reports them to Pygent (:class:`pygent.diagnostics.editor.EditorProblems`,
reached through ``ctx.agent.editor_problems``); a session with no editor attached says
so instead of pretending there are none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pygent.tools.registry import ToolContext, ToolResult

if TYPE_CHECKING:  # a type only: the board comes with an editor, not at start-up
    from pygent.diagnostics.editor import EditorProblems

#: Lines returned at most (a workspace with thousands of problems).
MAX_LINES = 300

DIAGNOSTICS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "A workspace file to read the problems of (omit for every file).",
        },
        "severity": {
            "type": "string",
            "enum": ["error", "warning", "information", "hint"],
            "description": "Only problems at least this severe (default: all).",
        },
    },
}

_RANK = {"error": 0, "warning": 1, "information": 2, "hint": 3}


async def diagnostics(ctx: ToolContext, path: str = "", severity: str = "hint") -> ToolResult:
    """List the editor's problems as ``file:line:col: severity [source code] message``."""
    board: EditorProblems | None = getattr(ctx.agent, "editor_problems", None)
    if board is None:
        return ToolResult(
            False,
            "No editor is attached to this session, so its problems are unknown. Run the "
            "project's linters or tests with bash instead.",
        )
    if severity not in _RANK:
        return ToolResult(False, f"severity {severity!r}: use error, warning, information or hint")
    rel = ""
    if path:
        try:
            rel = ctx.runtime.files.relpath(path)
        except Exception as exc:  # a PathError: say it to the model
            return ToolResult(False, f"error: {exc}")
    files = board.problems(rel or None)
    lines: list[str] = []
    total = 0
    for name, problems in files.items():
        for p in problems:
            if _RANK[p.severity] > _RANK[severity]:
                continue
            total += 1
            if len(lines) < MAX_LINES:
                where = f"{name}:{p.line}:{p.column}" if p.column else f"{name}:{p.line}"
                source = " ".join(x for x in (p.tool, p.code) if x)
                message = p.message.replace("\n", " | ")
                lines.append(f"{where}: {p.severity} [{source}] {message}")
    if not lines:
        scope = f"in {rel}" if rel else "in the workspace"
        return ToolResult(True, f"The editor reports no problems {scope}.")
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return ToolResult(True, "\n".join(lines))
