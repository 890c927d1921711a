"""The problems the editor knows (its language servers' and linters' diagnostics).

A client reports them (``pygent/workspace/diagnostics``: the VS Code extension sends
``vscode.languages.getDiagnostics()``, other clients what they have); the
``diagnostics`` tool reads them for the model. A report for a file replaces that
file's earlier list; an empty list clears it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from pygent.diagnostics.problem import Problem

#: Files and problems kept from the editor (a client flooding reports is cut here).
MAX_FILES = 2000
MAX_PER_FILE = 200


class EditorProblems:
    """Problems by workspace-relative file, as the editor last reported them."""

    def __init__(self) -> None:
        self._files: dict[str, list[Problem]] = {}
        self._lock = threading.Lock()  # the tool reads from the agent's thread
        self.updated = 0.0

    def report(self, files: Mapping[str, Iterable[Problem]], *, replace_all: bool = False) -> int:
        """Store the problems of ``files`` (each list replaces that file's); with
        ``replace_all`` every other file is cleared. Returns the problems now held."""
        with self._lock:
            if replace_all:
                self._files.clear()
            for path, problems in files.items():
                kept = list(problems)[:MAX_PER_FILE]
                if kept:
                    if path in self._files or len(self._files) < MAX_FILES:
                        self._files[path] = kept
                else:
                    self._files.pop(path, None)
            self.updated = time.time()
            return sum(len(v) for v in self._files.values())

    def problems(self, path: str | None = None) -> dict[str, list[Problem]]:
        """Every file's problems, or one file's (``path`` workspace-relative)."""
        with self._lock:
            if path is None:
                return {k: list(v) for k, v in sorted(self._files.items())}
            return {path: list(self._files[path])} if path in self._files else {}
