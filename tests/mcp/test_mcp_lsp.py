"""MCP through the language server, with a real LSP client (pytest-lsp): servers from
pygent.toml, their tools in pygent/tools/list, pygent/mcp/status, and the approval
request for an MCP call with its server, tool and arguments in the preview."""

from __future__ import annotations

import asyncio
import json
import sys
import time
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


async def _settled(client: Any, sid: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """pygent/mcp/status once no server is starting (they start after session/new)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await request(client, p.MCP_STATUS, {"sessionId": sid})
        servers = {s["name"]: s for s in status["servers"]}
        if all(s["state"] != "starting" for s in servers.values()) or time.monotonic() > deadline:
            return servers
        await asyncio.sleep(0.1)


def _allow(client: Any) -> None:
    client.feature(p.REQUEST_PERMISSION)(lambda params: {"optionId": "allow_once"})


async def test_a_slow_server_is_starting_after_session_new_then_ready_and_a_turn_gets_its_tools(
    start_client, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    gate = tmp_path / "go"  # the server answers nothing until this file exists
    (tmp_path / "pygent.toml").write_text(
        "[mcp.servers.slow]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FAULT_SERVER))}]\n"
        f"env = {{ FAULT_START_GATE = {json.dumps(str(gate))}, FAULT_DIR = {json.dumps(str(tmp_path))} }}\n"
    )
    client, updates = await start_client(_allow)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    # session/new returned without waiting for the server: it is starting, no tools yet
    (slow,) = (await request(client, p.MCP_STATUS, {"sessionId": sid}))["servers"]
    assert (slow["name"], slow["state"], slow["tools"]) == ("slow", "starting", [])
    tools = (await request(client, p.TOOLS_LIST, {"sessionId": sid}))["tools"]
    assert not any(t["name"].startswith("mcp__") for t in tools)

    # A turn started meanwhile waits (and says so); its first request has the tools.
    openai_server.add_tool_call("mcp__slow__echo", {"text": "waited for"})
    openai_server.add_text("done")
    turn = asyncio.ensure_future(request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "echo"}))
    await updates.wait_for(
        lambda u: u["update"]["type"] == "notice" and "waiting for MCP server(s) to start: slow" in u["update"]["text"],
        timeout=60,
    )
    assert openai_server.chat_requests == []
    gate.write_text("")
    assert (await turn)["stopReason"] == "end_turn"
    first = openai_server.chat_requests[0].body
    assert "mcp__slow__echo" in [t["function"]["name"] for t in first["tools"]]
    last = openai_server.chat_requests[-1].body
    assert any(m.get("content") == "waited for" for m in last["messages"] if m.get("role") == "tool")

    (slow,) = (await request(client, p.MCP_STATUS, {"sessionId": sid}))["servers"]
    assert slow["state"] == "ready" and "echo" in slow["tools"]
    # the editor was told when it became ready, with its tools (its "starting" went out
    # before this connection followed the session: pygent/mcp/status said it above)
    states = [(u["name"], u["state"]) for u in updates.of(sid, "mcp_server")]
    assert states[-1] == ("slow", "ready") and set(states) <= {("slow", "starting"), ("slow", "ready")}
    assert "echo" in updates.of(sid, "mcp_server")[-1]["tools"]


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
    servers = await _settled(client, sid)
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
