"""Problems from commands the user runs where no editor shows them (the REPL's ``/cmd``).

The same recognition as for the agent's commands in an editor session
(:func:`~pygent.diagnostics.matchers.recognise`, paths mapped into the workspace by
:class:`~pygent.diagnostics.mapping.PathMapper`, a
:class:`~pygent.diagnostics.board.ProblemBoard` where a tool's new run replaces its
earlier problems); what comes out is a one-line summary after the command and a
listing (``/problems``) instead of ``publishDiagnostics``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pygent.diagnostics.board import DEFAULT_CAP, ProblemBoard
from pygent.diagnostics.mapping import PathMapper
from pygent.diagnostics.matchers import BUILTIN, Matcher, recognise
from pygent.diagnostics.problem import Problem

#: Output read for problems at most (as for the agent's commands in an editor).
MAX_OUTPUT = 8 * 1024 * 1024


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class RunSummary:
    """What one command's output said: its tools, their problems now, what went away."""

    tools: tuple[str, ...]
    problems: int
    files: int
    #: A run with no problems left: how many its tools' previous runs had.
    cleared: int

    def text(self) -> str:
        """``3 problems from pytest in 2 files`` (or that there are none now)."""
        tools = ", ".join(self.tools)
        if self.problems:
            line = (f"{_plural(self.problems, 'problem')} from {tools} in "
                    f"{_plural(self.files, 'file')}")
        else:
            line = f"no problems from {tools}"
        if self.cleared:
            line += f" (the {_plural(self.cleared, 'problem')} of its last run cleared)"
        return line


class CommandProblems:
    """One session's problems from the commands the user ran, by tool and file."""

    def __init__(self, mapper: PathMapper, *, matchers: Iterable[Matcher] = BUILTIN,
                 cap: int = DEFAULT_CAP) -> None:
        self.mapper = mapper
        self.matchers = tuple(matchers)
        self.board = ProblemBoard(cap)

    @classmethod
    def for_runtime(cls, runtime: Any) -> CommandProblems:
        """For a :class:`~pygent.runtime.Runtime`: the paths its sandbox shows the
        workspace at (``/workspace`` in a container, its folder on this machine)."""
        files = runtime.files
        roots = ["/workspace", str(files.root)]
        workspace = getattr(runtime, "workspace", None)
        if workspace is not None:
            roots.append(str(workspace))
        def exists(rel: str) -> bool:
            # lexists: a link is not followed out of the workspace (nothing is read).
            return os.path.lexists(files.root / rel)

        return cls(PathMapper(roots, exists))

    def read(self, command: str, output: str) -> RunSummary | None:
        """Recognise ``output`` of ``command``; None when no known tool's output is in it.

        Problems in files outside the workspace (the standard library, ``/etc``) are
        left out, as an editor session leaves them out.
        """
        found = recognise(output[-MAX_OUTPUT:], command, self.matchers)
        if not found.tools:
            return None
        start = self.mapper.command_folder(command)
        mapped: list[Problem] = []
        for problem in found.problems:
            rel = self.mapper.relative(problem.path, start)
            if rel is not None:
                mapped.append(problem._replace(path=rel, command=command))
        before = self._count(found.tools)
        self.board.replace(found.tools, mapped)
        return RunSummary(
            tools=tuple(sorted(found.tools)),
            problems=len(mapped),
            files=len({p.path for p in mapped}),
            cleared=0 if mapped else before,
        )

    def _count(self, tools: Iterable[str]) -> int:
        wanted = set(tools)
        return sum(1 for path in self.board.files() for p in self.board.problems(path)
                   if p.tool in wanted)

    def listing(self) -> list[tuple[str, list[Problem]]]:
        """Every file's problems (capped per file, with the summary entry), by path."""
        return [(path, self.board.problems(path)) for path in sorted(self.board.files())]

    def count(self) -> int:
        return self.board.count()
