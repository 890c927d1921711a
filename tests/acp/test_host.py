"""``pygent acp`` serving the sessions of a running session host (``pygent serve``).

A real host process, the ACP agent as a real subprocess driven by the ACP SDK's client
side, and an LSP-framed client of the host (:class:`~pygent.lsp.client.RpcClient`, what
``pygent attach`` and a joined ``pygent lsp`` speak): the same live sessions from both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from acp import schema as s

from pygent.lsp.client import RpcError
from tests.acp.conftest import HostClient, JoinedHost, StartAgent, host_env, until
from tests.acp.test_images import PNG
from tests.acp.test_schema import check_frames
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(120)


async def test_acp_session_lives_in_the_host(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
) -> None:
    folder = joined.folder
    editor = await joined.editor()
    async with start_agent(env=joined.env) as agent:
        init = await agent.initialize()
        caps = init.agent_capabilities
        assert caps is not None and caps.prompt_capabilities is not None
        assert caps.prompt_capabilities.image is True
        response = await agent.conn.new_session(cwd=str(folder), mcp_servers=[])
        sid = response.session_id
        assert response.field_meta["pygent"]["host"] is True
        # The editor sees the session the ACP client made, and follows it.
        live = await editor.live()
        assert sid in live and live[sid]["workspaceFolder"] == str(folder)
        await editor.client.request("pygent/session/transcript", {"sessionId": sid})
        openai_server.add_tool_call("bash", {"cmd": "echo shared-turn-output"})
        openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "new\n"})
        openai_server.add_text("done in the host")
        result = await agent.prompt(sid, "run it")
        assert result.stop_reason == "end_turn"
        # The ACP client got the turn (and was asked: local mode asks for commands)...
        client = agent.client
        assert client.text(sid) == "done in the host"
        assert [p["toolCall"]["kind"] for p in client.permissions] == ["execute", "edit"]
        # Paths are the client's folder (from the core's locations: the host's sandbox
        # is not readable here); a new file's diff has no old text.
        where = [{"path": str(folder / "notes.txt")}]
        assert client.permissions[1]["toolCall"]["locations"] == where
        edit = client.of("tool_call", sid)[1]
        assert edit["locations"] == where
        assert edit["content"][0] == {
            "type": "diff",
            "path": str(folder / "notes.txt"),
            "newText": "new\n",
        }
        assert "shared-turn-output" in json.dumps(client.of("tool_call_update", sid))
        # ...and so did the editor, from the same host session.
        await until(lambda: "turn_ended" in editor.kinds(sid))
        assert "tool_call_finished" in editor.kinds(sid)
        assert editor.text(sid) == "done in the host"
        assert "shared-turn-output" in json.dumps(editor.updates)
        # The change set is the host's: reviewed, then written to the folder, from ACP.
        assert not (folder / "notes.txt").exists()
        assert result.field_meta["pygent"]["changes"]["paths"] == ["notes.txt"]
        changes = await agent.conn.ext_method("pygent/changes", {"sessionId": sid})
        assert [c["path"] for c in changes["changes"]] == ["notes.txt"]
        assert "+new" in changes["changes"][0]["diff"]
        applied = await agent.conn.ext_method("pygent/apply", {"sessionId": sid})
        assert applied == {"applied": ["notes.txt"], "failed": []}
        assert (folder / "notes.txt").read_text() == "new\n"
        # A turn the editor starts on it shows in the ACP client, its prompt first.
        openai_server.add_text("answer to the editor")
        await editor.client.request(
            "pygent/session/prompt", {"sessionId": sid, "prompt": "editor's question"}
        )
        await client.wait_for(lambda: client.text(sid).endswith("answer to the editor"))
        prompts = [u["content"]["text"] for u in client.of("user_message_chunk", sid)]
        assert prompts == ["editor's question"]  # its own prompt is not echoed back
        # An image prompt goes through the host to the model as an image_url part.
        openai_server.add_text("a dot")
        image = s.ImageContentBlock(type="image", data=PNG, mime_type="image/png")
        await agent.conn.prompt(
            session_id=sid, prompt=[s.TextContentBlock(type="text", text="see"), image]
        )
        last_user = [
            m for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "user"
        ][-1]
        assert last_user["content"][1] == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}"},
        }
        # set_mode goes to the host's session: the editor sees its new mode.
        await agent.conn.set_session_mode(mode_id="read-only", session_id=sid)
        assert (await editor.live())[sid]["approvalMode"] == "read-only"
        assert check_frames(agent) > 10  # what came from the host conforms too
    # The ACP client left: the session goes on in the host.
    assert sid in await editor.live()


async def test_editor_session_loaded_in_acp(
    start_agent: StartAgent,
    start_host: Any,  # noqa: F811
    host_dir: Path,  # noqa: F811
    openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    host = start_host()
    folder = tmp_path / "editor-project"
    folder.mkdir()
    editor = await HostClient.connect(host.socket)
    try:
        info = await editor.client.request(
            "pygent/session/new", {"workspaceFolder": str(folder), "runtime": "local"}
        )
        sid = info["sessionId"]
        # The service checks every client's images (here an LSP client's): -32602.
        with pytest.raises(RpcError) as bad:
            await editor.client.request(
                "pygent/session/prompt",
                {"sessionId": sid, "prompt": "x", "images": ["http://example.com/a.png"]},
            )
        assert bad.value.code == -32602 and "data: URL" in str(bad.value)
        openai_server.add_text("answer from the editor's turn")
        await editor.client.request("pygent/session/prompt", {"sessionId": sid, "prompt": "hi"})
        async with start_agent(env=host_env(host_dir)) as agent:
            await agent.initialize()
            listed = await agent.conn.list_sessions(cwd=str(folder))
            assert sid in [s.session_id for s in listed.sessions]
            await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
            client = agent.client
            assert client.of("user_message_chunk", sid)[0]["content"]["text"] == "hi"
            assert client.text(sid) == "answer from the editor's turn"
            # A turn from ACP on the editor's session: both see it.
            openai_server.add_text("second answer")
            result = await agent.prompt(sid, "again")
            assert result.stop_reason == "end_turn"
            assert client.text(sid).endswith("second answer")
            await until(lambda: editor.text(sid).endswith("second answer"))
            sent = openai_server.chat_requests[-1].body["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == ["hi", "again"]
            # The timeline extensions go through the host: the turns, and a rewind that
            # the editor (an LSP client of the host) sees too.
            timeline = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
            assert [t["prompt"] for t in timeline["turns"]] == ["hi", "again"]
            second = timeline["turns"][1]["turnId"]
            rewound = await agent.conn.ext_method(
                "pygent/rewind", {"sessionId": sid, "turnId": second, "files": False}
            )
            assert rewound["conversation"] and rewound["messagesRemoved"] >= 2
            assert rewound["canRedo"]
            seen = await editor.client.request("pygent/session/timeline", {"sessionId": sid})
            assert [t["prompt"] for t in seen["turns"]] == ["hi"] and seen["canRedo"]
            openai_server.add_text("after the rewind")
            await agent.prompt(sid, "instead")
            sent = openai_server.chat_requests[-1].body["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == ["hi", "instead"]
            # Bad params: a clear error, not a traceback.
            from acp import RequestError

            with pytest.raises(RequestError) as error:
                await agent.conn.ext_method("pygent/rewind", {"sessionId": sid})
            assert "turnId" in str(error.value)
            tasks = await agent.conn.ext_method("pygent/tasks", {"sessionId": sid})
            assert tasks == {"tasks": []}
            assert check_frames(agent) > 5
    finally:
        await editor.client.aclose()


async def test_require_without_a_host_fails_clearly(
    start_agent: StartAgent,
    host_dir: Path,  # noqa: F811
) -> None:
    async with start_agent(env=host_env(host_dir)) as agent:
        assert await asyncio.wait_for(agent.process.wait(), 30) == 2
        assert agent.process.stderr is not None
        err = (await agent.process.stderr.read()).decode()
        assert "no session host answers" in err and "Traceback" not in err


