"""A session's problems from its sandbox: replaced tool by tool, capped per file.

The board keeps, for each tool, the problems its last run reported, by
workspace-relative file. A new run of a tool replaces all of that tool's problems (a
run that reports none clears them: the problems were fixed); other tools' problems
stay. What a file shows is the union over tools, at most ``cap`` problems and then one
summary entry saying how many more there are.
"""

from __future__ import annotations

from collections.abc import Iterable

from pygent.diagnostics.problem import Problem

#: Problems shown per file before the summary entry (a test run of 10,000 failures must
#: not freeze the editor).
DEFAULT_CAP = 100

_RANK = {"error": 0, "warning": 1, "information": 2, "hint": 3}


class ProblemBoard:
    """The problems of one session, by tool and file."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap = max(1, cap)
        self._by_tool: dict[str, dict[str, list[Problem]]] = {}

    def replace(self, tools: Iterable[str], problems: Iterable[Problem]) -> set[str]:
        """Make ``problems`` (workspace-relative paths) the problems of ``tools``; returns
        every file whose problems may have changed (before and after)."""
        tools = set(tools)
        changed: set[str] = set()
        for tool in tools:
            changed.update(self._by_tool.pop(tool, {}))
        for problem in problems:
            tools.add(problem.tool)
            files = self._by_tool.setdefault(problem.tool, {})
            files.setdefault(problem.path, []).append(problem)
            changed.add(problem.path)
        return changed

    def clear(self) -> set[str]:
        """Forget everything; returns the files that had problems."""
        files = self.files()
        self._by_tool.clear()
        return files

    def files(self) -> set[str]:
        return {path for files in self._by_tool.values() for path in files}

    def count(self) -> int:
        return sum(len(v) for files in self._by_tool.values() for v in files.values())

    def problems(self, path: str) -> list[Problem]:
        """What ``path`` shows: every tool's problems by position, capped, then a summary."""
        found = [p for files in self._by_tool.values() for p in files.get(path, ())]
        found.sort(key=lambda p: (p.line, p.column, _RANK[p.severity]))
        if len(found) <= self.cap:
            return found
        shown, hidden = found[: self.cap], found[self.cap :]
        tools = sorted({p.tool for p in hidden})
        worst = min(hidden, key=lambda p: _RANK[p.severity])
        summary = worst._replace(
            line=hidden[0].line,
            column=0,
            end_line=0,
            end_column=0,
            code="",
            tool=tools[0] if len(tools) == 1 else "summary",
            message=f"{len(hidden)} more problem{'s' if len(hidden) != 1 else ''} in this file "
            f"from {', '.join(tools)} not shown (at most {self.cap} per file)",
        )
        return [*shown, summary]
