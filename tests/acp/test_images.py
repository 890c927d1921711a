"""Images in ACP prompts reach the model as OpenAI ``image_url`` content parts; a model
server that refuses them gets a clear error, and the session goes on without them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from acp import RequestError
from acp import schema as s

from tests.acp.conftest import StartAgent
from tests.acp.test_schema import check_frames
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(90)

#: A real 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()


def _prompt(text: str) -> list[Any]:
    return [
        s.TextContentBlock(type="text", text=text),
        s.ImageContentBlock(type="image", data=PNG, mime_type="image/png"),
    ]


def _user_messages(server: ScriptedOpenAIServer) -> list[Any]:
    return [m["content"] for m in server.chat_requests[-1].body["messages"] if m["role"] == "user"]


async def test_image_reaches_the_model_and_is_replayed(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    home = tmp_path / "home"
    openai_server.add_text("a red dot")
    async with start_agent(home=home) as agent:
        init = await agent.initialize()
        caps = init.agent_capabilities
        assert caps is not None and caps.prompt_capabilities is not None
        assert caps.prompt_capabilities.image is True
        sid = await agent.new_session(folder)
        result = await agent.conn.prompt(session_id=sid, prompt=_prompt("what is in it?"))
        assert result.stop_reason == "end_turn"
        assert _user_messages(openai_server)[-1] == [
            {"type": "text", "text": "what is in it?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
    async with start_agent(home=home) as agent:  # after a restart, session/load shows it
        await agent.initialize()
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        shown = [u["content"] for u in agent.client.of("user_message_chunk", sid)]
        assert shown == [
            {"type": "text", "text": "what is in it?"},
            {"type": "image", "mimeType": "image/png", "data": PNG},
        ]
        assert check_frames(agent) > 3


async def test_a_server_that_refuses_images(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    openai_server.add_error(
        400,
        {
            "error": {
                "message": "image input is not supported by this model",
                "type": "invalid_request_error",
                "code": None,
                "param": None,
            }
        },
    )
    async with start_agent() as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        with pytest.raises(RequestError) as info:
            await agent.conn.prompt(session_id=sid, prompt=_prompt("look"))
        message = str(info.value)
        assert "not supported by this model" in message  # the server's own words
        assert "may not take images" in message and "Traceback" not in message
        # The image left the conversation: the next turn is not refused for it again.
        openai_server.add_text("fine without it")
        result = await agent.prompt(sid, "go on")
        assert result.stop_reason == "end_turn"
        first = _user_messages(openai_server)[0]
        assert isinstance(first, list)
        assert [p["type"] for p in first] == ["text", "text"]
        assert "did not accept it" in first[1]["text"]
