"""MCP servers given in ACP ``session/new`` become the session's Pygent MCP tools.

The server is the third-party ``mcp-server-time`` (PyPI) that ``.ci/mcp-setup.sh``
installs; the session runs locally, so the server runs on this machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from acp import RequestError
from acp import schema as s

from tests.acp.conftest import StartAgent
from tests.mcp.servers import time_server
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def time_command() -> Path:
    path = time_server()
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing (.ci/mcp-setup.sh installs it)")
        pytest.skip(f"{path} is missing: run .ci/mcp-setup.sh")
    return path


async def test_client_mcp_server_becomes_a_tool(
    start_agent: StartAgent,
    openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
    time_command: Path,
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    openai_server.add_tool_call("mcp__time__get_current_time", {"timezone": "UTC"})
    openai_server.add_text("it is now")
    async with start_agent() as agent:
        await agent.initialize()
        response = await agent.conn.new_session(
            cwd=str(folder),
            mcp_servers=[s.McpServerStdio(name="time", command=str(time_command), args=[], env=[])],
        )
        assert response.field_meta["pygent"]["mcpServers"] == ["time"]
        result = await agent.prompt(response.session_id, "what time is it?")
        assert result.stop_reason == "end_turn"
        chat = [r.body for r in openai_server.requests if r.body and "messages" in r.body]
        tools = [t["function"]["name"] for t in chat[0].get("tools", [])]
        assert "mcp__time__get_current_time" in tools
        done = [u for u in agent.client.of("tool_call_update") if u.get("status") == "completed"]
        assert done, agent.client.of("tool_call_update")
        assert "UTC" in json.dumps(done[-1]["rawOutput"])


async def test_sse_server_is_refused_clearly(start_agent: StartAgent, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    async with start_agent() as agent:
        await agent.initialize()
        with pytest.raises(RequestError) as info:
            await agent.conn.new_session(
                cwd=str(folder),
                mcp_servers=[
                    s.SseMcpServer(type="sse", name="old", url="http://127.0.0.1:1/sse", headers=[])
                ],
            )
        assert info.value.code == -32602 and "SSE" in str(info.value)
        assert await agent.new_session(folder)  # still serving
