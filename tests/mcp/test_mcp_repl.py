"""MCP in the terminal REPL (a real pseudo-terminal): /mcp, the approval prompt for an
MCP call (server, tool, arguments) and "always allow" for it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.mcp.conftest import FAULT_SERVER
from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import messages

pytestmark = pytest.mark.timeout(120)


def test_mcp_command_and_always_allow(spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"  # where the spawn fixture starts pygent: pygent.toml is read there
    cwd.mkdir(exist_ok=True)
    gate = tmp_path / "go"  # the fault server answers nothing until this file exists
    (cwd / "pygent.toml").write_text(
        "[mcp.servers.fault]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FAULT_SERVER))}]\n"
        f"env = {{ FAULT_START_GATE = {json.dumps(str(gate))}, FAULT_DIR = {json.dumps(str(tmp_path))} }}\n"
        "[mcp.servers.clock]\n"  # a host-side server: warned about at start
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FAULT_SERVER))}]\n"
        'where = "host"\n'
    )
    openai_server.add_tool_call("mcp__fault__fail", {"why": "first"})
    openai_server.add_tool_call("mcp__fault__fail", {"why": "second"})
    openai_server.add_text("Both calls came back.")
    term = spawn()  # local mode: MCP calls ask
    term.expect(r"MCP server 'clock' runs on the host, outside the sandbox")  # at start
    # The servers start in the background: the prompt is there at once, fault is starting.
    term.expect(r"MCP server\(s\) starting: [a-z, ]*fault")
    term.wait_prompt()
    term.expect(r"MCP server clock ready \(\d+ tools\)", timeout=60)
    term.send_line("/mcp")
    term.expect(r"fault\s+starting\s+sandbox")
    term.wait_prompt()
    gate.write_text("")
    term.expect(r"MCP server fault ready \(\d+ tools\)", timeout=60)
    term.send_line("/mcp")
    term.expect(r"fault\s+ready\s+sandbox\s+\d+ tools")
    term.expect(r"clock\s+ready\s+host\s+\d+ tools")
    term.expect(r"left out")
    term.wait_prompt()
    term.send_line("call the tool twice")
    term.expect(r"MCP server fault, tool fail")
    term.expect(r'"why": "first"')
    term.expect(r"allow\? \[y/n/a/d/m\]")
    term.send_line("a")
    term.expect(r"Both calls came back\.")
    term.wait_prompt()
    # The second call ran without a question: one prompt in the whole turn.
    assert term.text.count("always allow every mcp__fault__fail call") == 1
    results = [m["content"] for m in messages(openai_server.chat_requests[-1]) if m["role"] == "tool"]
    assert "failing on purpose: first" in results[0] and "failing on purpose: second" in results[1]
    # A server that dies mid-session: the terminal says so, and when it is back.
    openai_server.add_tool_call("mcp__fault__crash", {})
    openai_server.add_tool_call("mcp__fault__echo", {"text": "after"})
    openai_server.add_text("It came back.")
    term.send_line("crash it")
    term.expect(r"MCP server fault, tool crash")
    term.expect(r"allow\? \[y/n/a/d/m\]")
    term.send_line("y")
    restarting = term.expect(r"MCP server fault exited; restarting \(.*crashing on purpose")
    term.expect(r"allow\? \[y/n/a/d/m\]")  # echo: another tool, another question
    term.send_line("y")
    term.expect(r"It came back\.")
    term.wait_prompt()
    # "back" comes with the restart, before or after the question: anywhere after "exited"
    assert re.search(r"MCP server fault is back \(\d+ tools\)", term.text[restarting.end() :])
    term.send_line("/exit")
    assert term.wait_exit() == 0
