"""#20 in the REPL: tests and linters the user runs with ``/cmd`` are read for problems.

A real ``pytest`` run in the sandbox (local runtime, in a pty): a summary line after the
command, ``/problems`` lists them with file and line, a clean run clears them, and
output with no known tool in it adds nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.openai_server import ScriptedOpenAIServer

FAILING = '''\
def test_one():
    assert 1 + 1 == 3


def test_two():
    assert "a" == "b"


def test_fine():
    assert True
'''

ALSO_FAILING = '''\
def test_three():
    raise ValueError("boom")
'''


def test_cmd_pytest_problems_are_summarised_listed_and_cleared(
    spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "test_math.py").write_text(FAILING)
    (workspace / "test_other.py").write_text(ALSO_FAILING)
    term = spawn("-w", str(workspace))
    term.wait_prompt()
    pytest = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    term.send_line(f"/cmd {pytest}")
    term.expect(r"3 failed, 1 passed")
    term.expect(r"3 problems from pytest in 2 files \(/problems lists them\)")
    term.wait_prompt()

    term.send_line("/problems")
    term.expect(r"test_math\.py:2: error \[pytest\] assert \(1 \+ 1\) == 3")
    term.expect(r"test_math\.py:6: error \[pytest\]")
    term.expect(r"test_other\.py:2: error \[pytest\] [^\n]*ValueError: boom")
    term.wait_prompt()
    term.send_line("/problems test_other.py")
    term.expect(r"test_other\.py:2: error")
    term.wait_prompt()

    # Fixed: the next run of the same tool replaces its problems, here with none.
    (workspace / "test_math.py").write_text("def test_fine():\n    assert True\n")
    (workspace / "test_other.py").unlink()
    term.send_line(f"/cmd {pytest}")
    term.expect(r"1 passed")
    term.expect(r"no problems from pytest \(the 3 problems of its last run cleared\)")
    term.wait_prompt()
    term.send_line("/problems")
    term.expect(r"no problems from the commands you ran with /cmd")
    term.wait_prompt()

    # Output no matcher knows: no summary line at all.
    start = term.pos
    term.send_line("/cmd echo all good")
    term.wait_prompt()
    assert "problem" not in term.text[start:]
    assert openai_server.chat_requests == [], "/cmd must not involve the model"
    term.send_line("/exit")
    assert term.wait_exit() == 0
