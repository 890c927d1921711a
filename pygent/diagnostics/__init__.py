"""Problems recognised in the output of tools run in the sandbox, and the editor's own problems.

:mod:`.problem` holds the problem record, :mod:`.matchers` the table of output matchers
(pytest, ruff, mypy, gcc...), :mod:`.mapping` the sandbox-path to editor-path mapping,
:mod:`.board` the per-session sets replaced run by run and capped per file, and
:mod:`.editor` the problems an editor reported to Pygent. Nothing here imports the LSP
layer: :mod:`pygent.lsp.diagnostics` turns these into ``publishDiagnostics``.
"""

from pygent.diagnostics.problem import Problem, Severity

__all__ = ["Problem", "Severity"]
