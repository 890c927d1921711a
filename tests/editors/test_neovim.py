"""A real third-party editor: headless Neovim 0.7 drives ``pygent lsp --stdio`` with the documented config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.editors.driver import run_editor

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("nvim") is None, reason="Neovim is not installed (apt-get install neovim)"
    ),
]

CONFIG = Path(__file__).with_name("pygent.lua")


def test_neovim_session_prompt_approval_and_apply(tmp_path: Path, openai_server) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hello')\n")
    openai_server.add_tool_call(
        "edit_file", {"path": "src/app.py", "old_text": "hello", "new_text": "hello, world"}
    )
    openai_server.add_text("Greeting updated.")
    out = tmp_path / "nvim-result.json"
    result, _ = run_editor(
        ["nvim", "--headless", "-u", str(CONFIG)],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], result["errors"]
    assert result["session"]["runtime"] == "local"
    assert result["prompt"]["stopReason"] == "end_turn"
    assert result["prompt"]["text"] == "Greeting updated."
    # Local mode asked; Neovim's handler allowed it.
    assert [a["toolCall"]["tool"] for a in result["asked"]] == ["edit_file"]
    assert "+print('hello, world')" in result["asked"][0]["toolCall"]["preview"]
    assert "turn_ended" in result["updates"] and "message_delta" in result["updates"]
    assert [c["path"] for c in result["changes"]["changes"]] == ["src/app.py"]
    assert result["applied"]["applied"] == ["src/app.py"]
    assert result["buffer"] == "print('hello, world')"
    assert (project / "src" / "app.py").read_text() == "print('hello')\n", (
        "applied to the buffer, not saved"
    )
    assert result["list"]["sessions"][0]["sessionId"] == result["session"]["sessionId"]


def test_neovim_configures_pygent_with_settings_and_init_options(
    tmp_path: Path, openai_server
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    openai_server.add_text("Configured.")
    out = tmp_path / "nvim-config.json"
    result, _ = run_editor(
        ["nvim", "--headless", "-u", str(CONFIG.with_name("pygent-config.lua"))],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], result["errors"]
    # settings.pygent, sent with workspace/didChangeConfiguration from on_init.
    assert result["pulled"]["settings"]["maxSteps"] == 12
    assert result["pulled"]["clientKeys"] == ["approvalMode", "maxSteps", "model"]
    assert result["session"]["model"] == "nvim-model"
    assert result["session"]["approvalMode"] == "confirm"
    assert result["prompt"]["text"] == "Configured."
    assert openai_server.chat_requests[-1].body["model"] == "nvim-model"
    # workspace/didChangeConfiguration: applied live, no restart.
    assert result["changed"]["appliedToLiveSessions"] == ["approvalMode"]
    assert [s["approvalMode"] for s in result["list"]["sessions"]] == ["never"]
    # init_options (initializationOptions).
    assert result["initial"]["settings"]["runtime"] == "local"


def test_neovim_shows_sandbox_problems_and_fixes_them_with_a_code_action(
    tmp_path: Path, openai_server
) -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff comes with pip's test extra")
    project = tmp_path / "project"
    project.mkdir()
    (project / "greet.py").write_text(
        "import os\n\n\ndef greet(name: str) -> str:\n    unused = 1\n    return 'hi ' + name\n"
    )
    # First turn: the agent lints. Second (the code action's): it fixes and lints again.
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("Two problems.")
    openai_server.add_tool_call(
        "write_file",
        {"path": "greet.py", "content": "def greet(name: str) -> str:\n    return 'hi ' + name\n"},
    )
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("Fixed.")
    out = tmp_path / "nvim-diagnostics.json"
    result, _ = run_editor(
        ["nvim", "--headless", "-u", str(Path(__file__).with_name("pygent-diagnostics.lua"))],
        tmp_path=tmp_path, openai_server=openai_server, root=project, out=out,
    )
    assert result["errors"] == [], result["errors"]
    # Neovim's diagnostic list: ruff's two problems at their lines (0-based).
    assert [(d["lnum"], d["col"], d["source"]) for d in result["before"]] == [
        (0, 7, "pygent:ruff"),
        (4, 4, "pygent:ruff"),
    ]
    assert "`os` imported but unused" in result["before"][0]["message"]
    # The cursor's line offered all three actions; "Ask Pygent to fix" started a turn
    # whose prompt carried the problem and the code around it.
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
    assert len(prompts) == 2 and "Local variable `unused` is assigned to but never used" in prompts[1]
    assert "    5      unused = 1" in prompts[1]
    # The fix ran ruff again: the problems are gone from Neovim's list.
    assert result["after"] == []
    assert result["updates"].count("turn_ended") == 2
