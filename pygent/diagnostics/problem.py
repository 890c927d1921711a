"""The problem record shared by the matchers, the per-session board and the editor's list."""

from __future__ import annotations

from typing import Literal, NamedTuple

#: LSP's four severities, by name.
Severity = Literal["error", "warning", "information", "hint"]

_SEVERITY_WORDS: dict[str, Severity] = {
    "error": "error",
    "fatal error": "error",
    "fatal": "error",
    "failed": "error",
    "e": "error",
    "warning": "warning",
    "warn": "warning",
    "w": "warning",
    "note": "information",
    "info": "information",
    "information": "information",
    "help": "hint",
    "hint": "hint",
}


def severity_of(word: str | None, default: Severity = "error") -> Severity:
    """A tool's severity word ("error", "fatal error", "note", "Warning"...) as a Severity."""
    if not word:
        return default
    return _SEVERITY_WORDS.get(word.strip().lower(), default)


class Problem(NamedTuple):
    """One problem in one file.

    ``path`` is as the tool printed it (relative to the command's folder, or absolute in
    the sandbox) until :mod:`pygent.diagnostics.mapping` makes it workspace-relative.
    Lines and columns are 1-based as tools print them; 0 means "not given". A named
    tuple, not a dataclass: a flood of 10,000 problems is built in a few milliseconds.
    """

    path: str
    line: int
    message: str
    tool: str
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    severity: Severity = "error"
    code: str = ""
    #: The command whose output it came from (shown in the editor's hover).
    command: str = ""

    def key(self) -> tuple[str, int, int, str]:
        """Sort key: by file, then position."""
        return (self.path, self.line, self.column, self.message)
