"""A second real editor: Emacs 28 + eglot in batch mode drives ``pygent lsp --stdio``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.editors.driver import run_editor

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("emacs") is None,
        reason="Emacs is not installed (apt-get install emacs-nox elpa-eglot)",
    ),
]

DRIVER = Path(__file__).with_name("pygent-eglot.el")


def test_emacs_eglot_session_prompt_approval_and_apply(tmp_path: Path, openai_server) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hello')\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    openai_server.add_tool_call(
        "edit_file", {"path": "src/app.py", "old_text": "hello", "new_text": "hello, world"}
    )
    openai_server.add_text("Greeting updated.")
    out = tmp_path / "emacs-result.json"
    result, proc = run_editor(
        ["emacs", "--batch", "-l", str(DRIVER)],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], (result["errors"], proc.stderr[-3000:])
    assert result["prompt"]["stopReason"] == "end_turn"
    assert result["prompt"]["text"] == "Greeting updated."
    assert [a["toolCall"]["tool"] for a in result["asked"]] == ["edit_file"]
    assert "turn_ended" in result["updates"]
    assert result["applied"]["applied"] == ["src/app.py"]
    assert result["buffer"] == "print('hello, world')\n"


def test_emacs_eglot_workspace_configuration(tmp_path: Path, openai_server) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hello')\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    out = tmp_path / "emacs-config.json"
    result, proc = run_editor(
        ["emacs", "--batch", "-l", str(DRIVER.with_name("pygent-eglot-config.el"))],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], (result["errors"], proc.stderr[-3000:])
    assert result["initial"]["settings"]["maxSteps"] == 8
    assert result["session"]["model"] == "emacs-model"
    assert result["session"]["approvalMode"] == "confirm"
    # The change reached the live session; maxSteps, gone from the section, is the server's again.
    assert result["changed"]["settings"]["maxSteps"] == 50
    assert [s["approvalMode"] for s in result["list"]["sessions"]] == ["never"]


def test_emacs_flymake_shows_sandbox_problems_and_the_quickfix_clears_them(
    tmp_path: Path, openai_server
) -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff comes with pip's test extra")
    project = tmp_path / "project"
    project.mkdir()
    (project / "greet.py").write_text(
        "import os\n\n\ndef greet(name: str) -> str:\n    unused = 1\n    return 'hi ' + name\n"
    )
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("Two problems.")
    openai_server.add_tool_call(
        "write_file",
        {"path": "greet.py", "content": "def greet(name: str) -> str:\n    return 'hi ' + name\n"},
    )
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("Fixed.")
    out = tmp_path / "emacs-diagnostics.json"
    result, proc = run_editor(
        ["emacs", "--batch", "-l", str(Path(__file__).with_name("pygent-eglot-diagnostics.el"))],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], (result["errors"], proc.stderr[-3000:])
    # Flymake's list: ruff's two problems at lines 1 and 5, as eglot labels them.
    assert [(d["line"], d["type"]) for d in result["before"]] == [
        (1, "eglot-warning"),
        (5, "eglot-warning"),
    ], proc.stderr[-3000:]
    assert result["before"][0]["text"] == "pygent:ruff [F401]: `os` imported but unused"
    assert result["offered"] == [
        "Ask Pygent to fix",
        "Explain with Pygent",
        "Write tests for this with Pygent",
    ]
    prompts = [
        r.body["messages"][-1]["content"]
        for r in openai_server.chat_requests
        if r.body["messages"][-1]["role"] == "user"
    ]
    assert len(prompts) == 2 and "[pygent:ruff F841] Local variable `unused`" in prompts[1]
    assert result["after"] == []
    assert result["updates"].count("turn_ended") == 2
