"""MCP through the language server, with a real LSP client (pytest-lsp): servers from
pygent.toml, their tools in pygent/tools/list, pygent/mcp/status, and the approval
request for an MCP call with its server, tool and arguments in the preview."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.lsp.conftest import as_dict, request
from tests.mcp.conftest import FAULT_SERVER
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(120)


def _config(folder: Path) -> None:
    (folder / "pygent.toml").write_text(
        "[mcp.servers.fault]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FAULT_SERVER))}]\n"
        "[mcp.servers.off]\n"
        'command = "never-started"\n'
        "enabled = false\n"
    )


async def test_mcp_status_tools_and_approval_over_lsp(
    start_client, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    _config(tmp_path)
    seen: list[dict[str, Any]] = []

    def setup(client: Any) -> None:
        def answer(params: Any) -> dict[str, Any]:
            seen.append(as_dict(params))
            return {"optionId": "allow_once"}

        client.feature(p.REQUEST_PERMISSION)(answer)

    client, updates = await start_client(setup)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    status = await request(client, p.MCP_STATUS, {"sessionId": sid})
    servers = {s["name"]: s for s in status["servers"]}
    assert servers["fault"]["state"] == "ready" and servers["fault"]["where"] == "sandbox"
    assert "echo" in servers["fault"]["tools"]
    assert any(n.startswith("loop:") for n in servers["fault"]["leftOut"])
    assert servers["off"]["state"] == "disabled"
    tools = {t["name"]: t for t in (await request(client, p.TOOLS_LIST, {"sessionId": sid}))["tools"]}
    assert "mcp__fault__echo" in tools and tools["mcp__fault__echo"]["kind"] == "mcp_read"

    openai_server.add_tool_call("mcp__fault__echo", {"text": "via lsp"})
    openai_server.add_text("done")
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "echo"})
    assert result["stopReason"] == "end_turn"
    # local mode: the call asked, and the preview names the server, tool and arguments
    assert [s["toolCall"]["tool"] for s in seen] == ["mcp__fault__echo"]
    preview = seen[0]["toolCall"]["preview"]
    assert "MCP server fault, tool echo" in preview and "via lsp" in preview
    last = openai_server.chat_requests[-1].body
    assert any(m.get("content") == "via lsp" for m in last["messages"] if m.get("role") == "tool")
    # disabling an MCP tool works like a built-in's
    listed = await request(client, p.TOOLS_DISABLE, {"sessionId": sid, "names": ["mcp__fault__echo"]})
    assert not {t["name"]: t for t in listed["tools"]}["mcp__fault__echo"]["enabled"]


async def test_always_allow_becomes_a_rule_and_a_denial_reaches_the_model_over_lsp(
    start_client, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """The editor's answers are rules for MCP tools as for any tool: "allow always" for
    one tool stops the questions for it (not for the server's other tools), and a
    denial with a message reaches the model, with the tool never called."""
    _config(tmp_path)
    asked: list[str] = []

    def setup(client: Any) -> None:
        def answer(params: Any) -> dict[str, Any]:
            call = as_dict(params)["toolCall"]
            asked.append(f"{call['tool']} {call['arguments']}")
            if call["tool"] == "mcp__fault__echo":
                return {"optionId": "allow_always"}
            return {"optionId": "reject_once", "message": "not that one"}

        client.feature(p.REQUEST_PERMISSION)(answer)

    client, _updates = await start_client(setup)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    openai_server.add_tool_calls(
        [
            ("mcp__fault__echo", {"text": "one"}),
            ("mcp__fault__echo", {"text": "two"}),
            ("mcp__fault__fail", {"why": "never"}),
        ]
    )
    openai_server.add_text("done")
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    assert result["stopReason"] == "end_turn"
    assert asked == ["mcp__fault__echo {'text': 'one'}", "mcp__fault__fail {'why': 'never'}"]
    tool_results = [
        m["content"] for m in openai_server.chat_requests[-1].body["messages"] if m.get("role") == "tool"
    ]
    assert tool_results[:2] == ["one", "two"]
    assert "not that one" in tool_results[2] and "failing on purpose" not in tool_results[2]
