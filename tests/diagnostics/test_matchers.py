"""The matcher table against real tool output: committed captures, and live runs wherever
the tool is installed (``.ci/run`` installs them all)."""

from __future__ import annotations

import json
import os

import pytest

from pygent.diagnostics.board import ProblemBoard
from pygent.diagnostics.mapping import PathMapper
from pygent.diagnostics.matchers import matcher_from_config, recognise
from pygent.diagnostics.problem import Problem
from tests.diagnostics.capture import CASE_TABLE, FIXTURES, available, problems, run


@pytest.mark.parametrize("name", sorted(CASE_TABLE))
def test_captured_output_gives_the_expected_problems(name: str) -> None:
    case = CASE_TABLE[name]
    output = (FIXTURES / f"{name}.out").read_text()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert expected, "every case has problems"
    assert problems(case, output) == expected


@pytest.mark.parametrize("name", sorted(CASE_TABLE))
def test_the_tool_today_prints_what_was_captured(name: str) -> None:
    case = CASE_TABLE[name]
    if not available(case):
        why = f"{case.needs} is not installed (.ci/diagnostics-setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)  # CI must read every tool's real output, not skip it
        pytest.skip(why)
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert problems(case, run(case)) == expected


def test_expected_lines_are_the_real_problem_lines() -> None:
    # Spot checks against the sources, so a fixture cannot drift to wrong lines.
    by = {n: json.loads((FIXTURES / f"{n}.json").read_text()) for n in CASE_TABLE}
    assert [(p["line"], p["code"]) for p in by["ruff"]] == [(1, "F401"), (9, "F841")]
    assert [p["line"] for p in by["pytest"]] == [5, 13]  # the assert, the raise
    assert by["pytest"][0]["message"].startswith("assert -1 == 3")
    assert sorted(p["line"] for p in by["unittest"]) == [8, 11]
    assert [(p["line"], p["column"]) for p in by["tsc"]] == [(2, 3), (5, 7), (6, 7)]
    assert by["pyright"][0]["code"] == "reportReturnType"
    assert by["cargo"][0]["path"] == "src/main.rs" and by["cargo"][0]["code"] == "E0308"
    assert {p["severity"] for p in by["eslint"]} == {"error", "warning"}


def test_unknown_command_reads_every_format_without_double_counting() -> None:
    output = (
        "bad.c:6:20: error: 'x' undeclared\n"
        "calc.py:10: error: Incompatible return value type  [return-value]\n"
        "calc.py:1:8: F401 [*] `os` imported but unused\n"
    )
    found = recognise(output, "make check")
    # mypy's line fits gcc's format too, and ruff's fits every "file:line:col:" one: each
    # line is read once, by the most specific matcher.
    assert sorted((p.tool, p.path, p.line) for p in found.problems) == [
        ("gcc", "bad.c", 6),
        ("mypy", "calc.py", 10),
        ("ruff", "calc.py", 1),
    ]
    assert found.tools == {"gcc", "mypy", "ruff"}


def test_a_clean_run_still_names_its_tool() -> None:
    found = recognise("All checks passed!\n", "ruff check .")
    assert found.problems == [] and found.tools == {"ruff"}


def test_user_matcher_from_config() -> None:
    matcher = matcher_from_config(
        {
            "tool": "mylint",
            "command": r"\bmylint\b",
            "pattern": r"^(?P<file>\S+) line (?P<line>\d+): (?P<message>.+)$",
            "severity": "warning",
        }
    )
    found = recognise("src/a.py line 3: too clever\n", "mylint src", (matcher,))
    assert [(p.tool, p.path, p.line, p.severity, p.message) for p in found.problems] == [
        ("mylint", "src/a.py", 3, "warning", "too clever")
    ]
    with pytest.raises(ValueError, match="needs the groups"):
        matcher_from_config({"tool": "x", "pattern": r"^(?P<file>\S+)$"})
    with pytest.raises(ValueError, match="bad regular expression"):
        matcher_from_config({"tool": "x", "pattern": r"(?P<file"})


def test_a_user_pattern_that_backtracks_forever_is_skipped_not_hung(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (a|aa)+b against a long run of "a" with no "b": ~1.6^n steps when backtracking.
    slow = matcher_from_config({
        "tool": "slowlint",
        "pattern": r"^(?P<file>(a|aa)+)b:(?P<line>\d+): (?P<message>.+)$",
    })
    fine = matcher_from_config({
        "tool": "finelint",
        "pattern": r"^(?P<file>\S+\.py):(?P<line>\d+): (?P<message>.+)$",
    })
    output = "a" * 60 + "\nsrc/a.py:3: too clever\n"
    with caplog.at_level("WARNING"):
        found = recognise(output, "make lint", (slow, fine))
    # The other matchers still read the output; the slow one is named in the log.
    assert [(p.tool, p.path, p.line) for p in found.problems] == [("finelint", "src/a.py", 3)]
    assert "slowlint" in caplog.text and "simplify the pattern" in caplog.text


def test_paths_map_into_the_workspace_only() -> None:
    mapper = PathMapper(["/workspace", "/tmp/sandbox-1"], exists=lambda rel: rel != "gone.py")
    assert mapper.relative("/workspace/src/a.py") == "src/a.py"
    assert mapper.relative("/tmp/sandbox-1/src/a.py") == "src/a.py"
    assert mapper.relative("src/../src/a.py") == "src/a.py"
    assert mapper.relative("a.py", "sub") == "sub/a.py"
    assert mapper.relative("/usr/lib/python3.11/unittest/case.py") is None
    assert mapper.relative("/workspace-other/a.py") is None
    assert mapper.relative("../../etc/passwd") is None
    assert mapper.relative("/workspace/../etc/passwd") is None
    assert mapper.relative("gone.py") is None
    assert mapper.command_folder("cd pkg && ruff check .") == "pkg"
    assert mapper.command_folder("ruff check .") == ""


def _p(path: str, line: int, tool: str = "ruff") -> Problem:
    return Problem(path=path, line=line, message=f"m{line}", tool=tool)


def test_board_replaces_per_tool_and_caps_per_file() -> None:
    board = ProblemBoard(cap=3)
    assert board.replace({"ruff"}, [_p("a.py", 1), _p("b.py", 2)]) == {"a.py", "b.py"}
    board.replace({"mypy"}, [_p("a.py", 5, "mypy")])
    # ruff runs again and finds only b.py: a.py keeps mypy's problem.
    assert board.replace({"ruff"}, [_p("b.py", 3)]) == {"a.py", "b.py"}
    assert [(p.tool, p.line) for p in board.problems("a.py")] == [("mypy", 5)]
    board.replace({"ruff"}, [_p("c.py", n) for n in range(1, 11)])
    shown = board.problems("c.py")
    assert [p.line for p in shown[:3]] == [1, 2, 3] and len(shown) == 4
    assert (
        shown[-1].message == "7 more problems in this file from ruff not shown (at most 3 per file)"
    )
    assert board.clear() == {"a.py", "c.py"}
