"""Problems from the user's own commands (``/cmd``): mapped into the workspace, replaced
tool by tool, summarised; paths outside the workspace are left out."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pygent.diagnostics.runs import CommandProblems


def _problems(root: Path) -> CommandProblems:
    runtime = SimpleNamespace(files=SimpleNamespace(root=root))
    return CommandProblems.for_runtime(runtime)


def test_ruff_output_maps_into_the_workspace_and_skips_outside_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("import os\n")
    (tmp_path / "b.py").write_text("x\n")
    problems = _problems(tmp_path)
    output = (
        "a.py:1:8: F401 [*] `os` imported but unused\n"
        f"{tmp_path}/b.py:1:1: F821 Undefined name `x`\n"
        "/usr/lib/python3/dist-packages/foo.py:3:1: E999 not ours\n"
        "../elsewhere.py:1:1: F401 not ours either\n"
        "Found 4 errors.\n"
    )
    found = problems.read("cd pkg && ruff check .", output)
    assert found is not None and found.tools == ("ruff",)
    # a.py is pkg/a.py (the command's folder); the absolute b.py is in the workspace;
    # the standard library and ../elsewhere.py are not the workspace's files.
    assert (found.problems, found.files) == (2, 2)
    assert found.text() == "2 problems from ruff in 2 files"
    assert [path for path, _ in problems.listing()] == ["b.py", "pkg/a.py"]
    found = problems.read("ruff check .", output.replace("a.py", "pkg/a.py"))
    assert found is not None and (found.problems, found.files) == (2, 2)
    assert [path for path, _ in problems.listing()] == ["b.py", "pkg/a.py"]
    [(path, [one])] = [row for row in problems.listing() if row[0] == "pkg/a.py"]
    assert (one.line, one.column, one.code, one.command) == (1, 8, "F401", "ruff check .")
    # A clean run of the same tool clears its problems; another tool's stay.
    problems.read("mypy .", f"{tmp_path}/b.py:1: error: Name \"x\" is not defined  [name-defined]\n")
    clean = problems.read("ruff check .", "All checks passed!\n")
    assert clean is not None and clean.text() == (
        "no problems from ruff (the 2 problems of its last run cleared)")
    assert [(p, [x.tool for x in f]) for p, f in problems.listing()] == [("b.py", ["mypy"])]
    assert problems.read("echo hello", "hello\n") is None


def test_a_containers_paths_map_to_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x: int = 'a'\n")
    problems = _problems(tmp_path)
    found = problems.read("mypy /workspace/src", (
        "/workspace/src/m.py:1: error: Incompatible types in assignment  [assignment]\n"
        "/workspace/src/gone.py:3: error: not a file of the workspace  [misc]\n"
        "Found 2 errors in 2 files (checked 1 source file)\n"))
    assert found is not None and (found.problems, found.files) == (1, 1)
    [(path, [one])] = problems.listing()
    assert (path, one.line, one.severity, one.code) == ("src/m.py", 1, "error", "assignment")
