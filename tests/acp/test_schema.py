"""Every message ``pygent acp`` sends validates against the ACP schema.

The ``agent-client-protocol`` SDK (0.12) ships no ``schema.json`` file; its
``acp.schema`` module is generated from that schema (``schema-v1.19.0``). Each frame
the agent wrote is checked two ways: against the JSON Schema of the SDK model for its
method (``model_json_schema``, validated with ``jsonschema``), and by a round trip
through the model that must give back the same keys (a misspelt field would be dropped
by the model's lenient parsing and show up here).
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from acp import schema as s
from pydantic import BaseModel, TypeAdapter

from tests.acp.conftest import RecordingClient, StartAgent, allow
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply

pytestmark = pytest.mark.timeout(120)

#: Requests the test client sends -> the model of the agent's answer.
RESULTS: dict[str, Any] = {
    "initialize": s.InitializeResponse,
    "session/new": s.NewSessionResponse,
    "session/load": s.LoadSessionResponse,
    "session/resume": s.ResumeSessionResponse,
    "session/list": s.ListSessionsResponse,
    "session/prompt": s.PromptResponse,
    "session/set_mode": s.SetSessionModeResponse,
    "session/set_config_option": s.SetSessionConfigOptionResponse,
    "session/close": s.CloseSessionResponse,
}
#: Messages the agent starts -> the model of their params.
OUTGOING: dict[str, Any] = {
    "session/update": s.SessionNotification,
    "session/request_permission": s.RequestPermissionRequest,
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
}


@functools.cache
def _validator(model: Any) -> tuple[TypeAdapter[Any], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    schema = adapter.json_schema(by_alias=True)
    return adapter, jsonschema.validators.validator_for(schema)(schema)


def _check(model: Any, value: Any) -> None:
    adapter, validator = _validator(model)
    validator.validate(value)
    parsed = adapter.validate_python(value)
    if isinstance(parsed, BaseModel):
        again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        _same_keys(value, again, model)


def _same_keys(sent: Any, parsed: Any, where: Any) -> None:
    if isinstance(sent, dict):
        assert isinstance(parsed, dict)
        if "_meta" in sent:  # free-form by definition
            sent = {k: v for k, v in sent.items() if k != "_meta"}
            parsed = {k: v for k, v in parsed.items() if k != "_meta"}
        assert set(sent) == set(parsed), f"{where}: unknown keys {set(sent) - set(parsed)}"
        for key in sent:
            _same_keys(sent[key], parsed[key], where)
    elif isinstance(sent, list):
        for a, b in zip(sent, parsed, strict=True):
            _same_keys(a, b, where)


def check_frames(agent: Any) -> int:
    """Check every frame the agent wrote (an :class:`AgentProcess`); returns how many."""
    requests = {m["id"]: m["method"] for m in agent.sent if "method" in m and "id" in m}
    checked = 0
    for message in agent.received:
        if "method" in message:
            _check(OUTGOING[message["method"]], message["params"])
        elif "error" in message:
            jsonschema.validate(message["error"], ERROR_SCHEMA)
        else:
            method = requests.get(message["id"])
            if method in RESULTS:
                _check(RESULTS[method], message["result"])
        checked += 1
    return checked


def _responder(body: dict[str, Any]) -> Any:
    users = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
    tools = [m for m in body["messages"] if m.get("role") == "tool"]
    if users and users[-1] == "count the files":
        return (
            text_reply("three files") if tools else tool_call_reply("bash", {"cmd": "ls | wc -l"})
        )
    if users and users[-1] == "delegate and edit":
        if not tools:
            return tool_call_reply("delegate_task", {"prompt": "count the files"})
        if len(tools) == 1:
            return tool_call_reply(
                "edit_file", {"path": "notes.txt", "old_text": "old", "new_text": "new"}
            )
        if len(tools) == 2:
            return tool_call_reply("bash", {"cmd": "for i in 1 2 3; do echo line $i; done; exit 3"})
        return text_reply("all done")
    return None


async def test_every_message_conforms(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("old text\n")
    openai_server.set_responder(_responder)
    async with start_agent(client=RecordingClient(answer=allow("allow_always"))) as agent:
        await agent.initialize()
        response = await agent.conn.new_session(
            cwd=str(folder),
            mcp_servers=[s.McpServerStdio(name="files", command="/bin/true", args=[], env=[])],
        )
        sid = response.session_id
        result = await agent.prompt(sid, "delegate and edit")
        assert result.stop_reason == "end_turn"
        await agent.client.wait_for(
            lambda: [
                u
                for u in agent.client.of("plan", sid)
                if u["entries"] and u["entries"][0]["_meta"]["pygent"]["state"] == "finished"
            ],
            timeout=30,
        )
        await agent.conn.set_session_mode(mode_id="auto", session_id=sid)
        await agent.conn.set_config_option(config_id="mode", session_id=sid, value="confirm")
        await agent.conn.list_sessions(cwd=str(folder))
        await agent.conn.ext_method("pygent/tasks", {"sessionId": sid})
        await agent.conn.close_session(session_id=sid)
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        await asyncio.sleep(0.2)

        kinds = {u["sessionUpdate"] for u in agent.client.updates}
        assert kinds >= {
            "agent_message_chunk",
            "agent_thought_chunk",
            "tool_call",
            "tool_call_update",
            "plan",
            "usage_update",
            "current_mode_update",
            "config_option_update",
            "user_message_chunk",
        }
        # An MCP server that does not start is told about, and the session goes on.
        assert response.field_meta["pygent"]["mcpServers"] == ["files"]
        thoughts = " ".join(u["content"]["text"] for u in agent.client.of("agent_thought_chunk"))
        assert "files" in thoughts
        # The task's tool calls carry their own ids; the plan follows the task.
        plan = agent.client.of("plan", sid)
        assert [e["status"] for e in plan[0]["entries"]] == ["pending"]
        assert plan[-1]["entries"][0]["status"] == "completed"
        assert any(":" in u["toolCallId"] for u in agent.client.of("tool_call", sid))
        failed = [
            u for u in agent.client.of("tool_call_update", sid) if u.get("status") == "failed"
        ]
        assert "line 3" in str(failed)

        assert check_frames(agent) > 30
