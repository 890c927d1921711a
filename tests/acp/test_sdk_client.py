"""``pygent acp`` driven by the ACP SDK's own client side, over a real subprocess.

The model is the scripted OpenAI-compatible server; the runtime is local, where every
command and file write asks (so each permission path is exercised).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from acp import RequestError
from acp import schema as s

from tests.acp.conftest import RecordingClient, StartAgent, allow
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(90)


def _workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("old line\n")
    return folder


async def test_initialize_advertises_acp_v1(start_agent: StartAgent) -> None:
    async with start_agent() as agent:
        init = await agent.initialize()
        assert init.protocol_version == 1
        assert init.agent_info is not None and init.agent_info.name == "pygent"
        caps = init.agent_capabilities
        assert caps is not None and caps.load_session is True
        assert caps.prompt_capabilities is not None and caps.prompt_capabilities.embedded_context
        sessions = caps.session_capabilities
        assert sessions is not None and sessions.list is not None and sessions.resume is not None
        assert sessions.close is not None
        assert init.auth_methods and init.auth_methods[0].id == "openai-api-key"


async def test_prompt_runs_command_and_edits_file(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    openai_server.add_tool_call("bash", {"cmd": "echo hello-from-sandbox"})
    openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "new line\n"})
    openai_server.add_text("Done: ran it and edited notes.txt.")
    async with start_agent() as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        result = await agent.prompt(sid, "run echo and edit notes")
        client = agent.client
        assert result.stop_reason == "end_turn"
        assert client.text(sid) == "Done: ran it and edited notes.txt."
        # One permission request per call (local runtime: everything asks).
        assert [p["toolCall"]["kind"] for p in client.permissions] == ["execute", "edit"]
        kinds = {o["kind"] for o in client.permissions[0]["options"]}
        assert kinds == {"allow_once", "allow_always", "reject_once", "reject_always"}
        starts = client.of("tool_call", sid)
        assert [t["kind"] for t in starts] == ["execute", "edit"]
        assert starts[0]["title"] == "echo hello-from-sandbox"
        # Paths are the client's folder, not the sandbox's.
        assert starts[1]["locations"] == [{"path": str(folder / "notes.txt")}]
        diff = starts[1]["content"][0]
        assert diff == {
            "type": "diff",
            "path": str(folder / "notes.txt"),
            "oldText": "old line\n",
            "newText": "new line\n",
        }
        finals = [u for u in client.of("tool_call_update", sid) if u.get("status") == "completed"]
        assert len(finals) == 2
        output = json.dumps(finals[0]["content"])
        assert "hello-from-sandbox" in output
        # Copy-on-write: the folder is untouched until the change set is applied.
        assert (folder / "notes.txt").read_text() == "old line\n"
        assert result.field_meta["pygent"]["changes"]["paths"] == ["notes.txt"]
        changes = await agent.conn.ext_method("pygent/changes", {"sessionId": sid})
        assert changes["changes"][0]["path"] == "notes.txt"
        applied = await agent.conn.ext_method("pygent/apply", {"sessionId": sid})
        assert applied["applied"] == ["notes.txt"]
        assert (folder / "notes.txt").read_text() == "new line\n"
        assert client.of("usage_update", sid)


async def test_reject_and_reject_always(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    openai_server.add_tool_call("bash", {"cmd": "touch made-once"})
    openai_server.add_tool_call("bash", {"cmd": "touch made-twice"})
    openai_server.add_tool_call("bash", {"cmd": "touch made-twice"})
    openai_server.add_text("gave up")
    answers = iter(["reject_once", "reject_always"])
    client = RecordingClient(
        answer=lambda _r: s.RequestPermissionResponse(
            outcome=s.AllowedOutcome(outcome="selected", option_id=next(answers))
        )
    )
    async with start_agent(client=client) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        result = await agent.prompt(sid, "make files")
        assert result.stop_reason == "end_turn"
        # The third call matched the "always reject" rule: nobody was asked.
        assert len(client.permissions) == 2
        failed = [u for u in client.of("tool_call_update", sid) if u.get("status") == "failed"]
        assert len(failed) == 3
        assert all(u["_meta"]["pygent"]["status"] == "denied" for u in failed)
        sandbox = result.field_meta["pygent"]
        assert sandbox["changes"]["count"] == 0
        assert not (folder / "made-once").exists()


async def test_client_error_and_timeout_deny(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    openai_server.add_tool_call("bash", {"cmd": "echo one"})
    openai_server.add_text("after error")
    openai_server.add_tool_call("bash", {"cmd": "echo two"})
    openai_server.add_text("after timeout")
    client = RecordingClient(answer=lambda _r: None)  # the client answers with an error
    async with start_agent(client=client, args=["--approval-timeout", "1"]) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        await agent.prompt(sid, "one")
        denied = [u for u in client.of("tool_call_update", sid) if u.get("status") == "failed"]
        assert "client answered the permission request with an error" in json.dumps(denied)
        client.hang_permissions = True
        started = time.monotonic()
        result = await agent.prompt(sid, "two")
        assert result.stop_reason == "end_turn"
        assert time.monotonic() - started < 15
        tool_messages = [
            m for m in openai_server.requests[-1].body["messages"] if m["role"] == "tool"
        ]
        assert "did not answer the permission request within 1s" in tool_messages[-1]["content"]


async def test_cancel_kills_the_command(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    marker = f"pygent-acp-sleep-{os.getpid()}"
    openai_server.add_tool_call("bash", {"cmd": f"sleep 300; echo {marker}"})
    async with start_agent(client=RecordingClient(answer=allow())) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        turn = asyncio.ensure_future(agent.prompt(sid, "sleep"))
        await agent.client.wait_for(
            lambda: [
                u
                for u in agent.client.of("tool_call_update", sid)
                if u.get("status") == "in_progress"
            ]
        )
        await asyncio.sleep(0.3)
        assert _processes_with("sleep 300")
        await agent.conn.cancel(session_id=sid)
        result = await asyncio.wait_for(turn, 20)
        assert result.stop_reason == "cancelled"
        deadline = time.monotonic() + 5
        while _processes_with("sleep 300") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _processes_with("sleep 300")


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and "bash" not in cmdline.split(" ")[0]:
            found.append(int(pid))
    return found


async def test_set_mode_and_config(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    async with start_agent() as agent:
        await agent.initialize()
        response = await agent.conn.new_session(cwd=str(folder), mcp_servers=[])
        assert response.modes is not None
        assert {m.id for m in response.modes.available_modes} >= {"confirm", "auto", "read-only"}
        await agent.conn.set_session_mode(mode_id="read-only", session_id=response.session_id)
        await agent.client.wait_for(lambda: agent.client.of("current_mode_update"))
        assert agent.client.of("current_mode_update")[-1]["currentModeId"] == "read-only"
        openai_server.add_tool_call("write_file", {"path": "x.txt", "content": "x"})
        openai_server.add_text("could not write")
        await agent.prompt(response.session_id, "write x")
        assert agent.client.permissions == []  # read-only refuses without asking
        with pytest.raises(RequestError) as info:
            await agent.conn.set_session_mode(mode_id="nonsense", session_id=response.session_id)
        assert info.value.code == -32602
        configured = await agent.conn.set_config_option(
            config_id="model", session_id=response.session_id, value="gpt-4.1-mini"
        )
        model = [o for o in configured.config_options if o.id == "model"][0]
        assert model.current_value == "gpt-4.1-mini"
        openai_server.add_text("hi")
        await agent.prompt(response.session_id, "hello")
        assert openai_server.requests[-1].body["model"] == "gpt-4.1-mini"
        # The session's start-up notice (no copy-on-write without Docker) is shown once.
        thoughts = [u["content"]["text"] for u in agent.client.of("agent_thought_chunk")]
        assert sum("copy-on-write" in text for text in thoughts) == 1


async def test_load_after_restart_replays_history(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    home = tmp_path / "shared-home"
    openai_server.add_tool_call("bash", {"cmd": "echo remembered"})
    openai_server.add_text("first answer")
    async with start_agent(home=home) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        await agent.prompt(sid, "first question")
    async with start_agent(home=home) as agent:
        await agent.initialize()
        listed = await agent.conn.list_sessions(cwd=str(folder))
        assert sid in [info.session_id for info in listed.sessions]
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        kinds = [u["sessionUpdate"] for u in agent.client.updates]
        assert kinds[:2] == ["user_message_chunk", "tool_call"]
        assert agent.client.of("user_message_chunk")[0]["content"]["text"] == "first question"
        assert agent.client.text(sid) == "first answer"
        assert "remembered" in json.dumps(agent.client.of("tool_call_update"))
        openai_server.add_text("second answer")
        result = await agent.prompt(sid, "second question")
        assert result.stop_reason == "end_turn"
        sent = openai_server.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == [
            "first question",
            "second question",
        ]
        await agent.conn.close_session(session_id=sid)
        with pytest.raises(RequestError) as info:
            await agent.prompt(sid, "gone")
        assert info.value.code == -32001


async def test_stop_reasons(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    async with start_agent(env={"PYGENT_MAX_STEPS": "1"}) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        openai_server.add_tool_call("read_file", {"path": "notes.txt"})
        result = await agent.prompt(sid, "loop")
        assert result.stop_reason == "max_turn_requests"
        openai_server.add_error(401)
        with pytest.raises(RequestError) as info:
            await agent.prompt(sid, "fail")
        # A model error is a JSON-RPC error with Pygent's message (ACP has no "error" stop).
        assert info.value.data == {"stopReason": "error"}
        assert "key" in str(info.value).lower()
        assert "Traceback" not in str(info.value)
        openai_server.add_text("still here")
        assert (await agent.prompt(sid, "again")).stop_reason == "end_turn"
        # finish_reason "length": the core's own MAX_TOKENS stop reason, not a guess.
        openai_server.add_length_cutoff("a reply cut sho", tool_name=None)
        result = await agent.prompt(sid, "long")
        assert result.stop_reason == "max_tokens"
        assert result.field_meta["pygent"]["stopReason"] == "max_tokens"


async def test_bad_input_keeps_serving(start_agent: StartAgent, tmp_path: Path) -> None:
    folder = _workspace(tmp_path)
    async with start_agent() as agent:
        await agent.initialize()
        await agent.raw(b"{this is not json\n")
        frame = await agent.wait_frame(lambda f: f.get("error", {}).get("code") == -32700)
        assert frame["id"] is None
        await agent.raw(b"[1, 2]\n")
        await agent.wait_frame(lambda f: f.get("error", {}).get("code") == -32600)
        await agent.raw(b'{"jsonrpc":"2.0","id":"x1","method":"session/nonsense","params":{}}\n')
        frame = await agent.wait_frame(lambda f: f.get("id") == "x1")
        assert frame["error"]["code"] == -32601
        await agent.raw(b'{"jsonrpc":"2.0","id":"x2","method":"session/new","params":{"cwd":42}}\n')
        frame = await agent.wait_frame(lambda f: f.get("id") == "x2")
        assert frame["error"]["code"] == -32602
        await agent.raw(b'{"jsonrpc":"2.0","id":"x3","method":"session/prompt"}\n')
        frame = await agent.wait_frame(lambda f: f.get("id") == "x3")
        assert frame["error"]["code"] == -32602
        with pytest.raises(RequestError) as info:
            await agent.conn.new_session(cwd="relative/path", mcp_servers=[])
        assert info.value.code == -32602 and "absolute" in str(info.value)
        with pytest.raises(RequestError) as info:
            await agent.conn.new_session(cwd=str(folder / "notes.txt"), mcp_servers=[])
        assert "not a directory" in str(info.value)
        with pytest.raises(RequestError) as info:
            await agent.prompt("no-such-session", "hi")
        assert info.value.code == -32001 and "no-such-session" in str(info.value)
        with pytest.raises(RequestError) as info:
            await agent.conn.ext_method("pygent/nonsense", {})
        assert info.value.code == -32601
        big = "x" * (5 * 1024 * 1024)
        sid = await agent.new_session(folder)
        with pytest.raises(RequestError) as info:
            await agent.prompt(sid, big)
        assert info.value.code == -32602 and "limit" in str(info.value)
        with pytest.raises(RequestError) as info:
            await agent.conn.prompt(
                session_id=sid,
                prompt=[
                    s.ImageContentBlock(type="image", data="not base64!", mime_type="image/png")
                ],
            )
        assert info.value.code == -32602 and "base64" in str(info.value)
        with pytest.raises(RequestError) as info:
            await agent.conn.prompt(
                session_id=sid,
                prompt=[s.ImageContentBlock(type="image", data="AAAA", mime_type="image/tiff")],
            )
        assert info.value.code == -32602 and "image/tiff" in str(info.value)
        # A notification the agent does not serve is dropped with a warning, not a traceback.
        await agent.raw(b'{"jsonrpc":"2.0","method":"$/nonsense","params":{}}\n')
        await agent.raw(
            b'{"jsonrpc":"2.0","method":"$/cancel_request","params":{"requestId":999}}\n'
        )
        # Still serving after all of it.
        sid = await agent.new_session(folder)
        assert sid
        log = (agent.home / "acp.log").read_text()
        assert "ignoring the notification '$/nonsense'" in log
        assert "Traceback" not in log


async def test_busy_session_is_refused(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    openai_server.add_slow_stream("a slow reply " * 20, delay_per_chunk=0.1)
    async with start_agent() as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        first = asyncio.ensure_future(agent.prompt(sid, "slow"))
        await agent.client.wait_for(lambda: agent.client.of("agent_message_chunk", sid))
        with pytest.raises(RequestError) as info:
            await agent.prompt(sid, "second")
        assert info.value.code == -32002
        assert (await first).stop_reason == "end_turn"


async def test_stdin_eof_and_sigterm_exit_cleanly(start_agent: StartAgent, tmp_path: Path) -> None:
    folder = _workspace(tmp_path)
    async with start_agent() as agent:
        await agent.initialize()
        await agent.new_session(folder)
        agent.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.process.wait(), 20) == 0
        assert agent.process.stderr is not None
        assert b"Traceback" not in await agent.process.stderr.read()


async def test_cancel_request_stops_the_turn(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    seconds = str(300 + os.getpid() % 97)
    openai_server.add_tool_call("bash", {"cmd": f"sleep {seconds}"})
    async with start_agent(client=RecordingClient(answer=allow())) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        turn = asyncio.ensure_future(agent.prompt(sid, "sleep"))
        await agent.client.wait_for(lambda: _processes_with(f"sleep {seconds}"))
        prompt_id = [m["id"] for m in agent.sent if m.get("method") == "session/prompt"][-1]
        await agent.raw(
            json.dumps(
                {"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": prompt_id}}
            ).encode()
            + b"\n"
        )
        result = await asyncio.wait_for(turn, 20)
        assert result.stop_reason == "cancelled"
        deadline = time.monotonic() + 5
        while _processes_with(f"sleep {seconds}") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _processes_with(f"sleep {seconds}")


async def test_stdin_eof_mid_command_kills_it(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = _workspace(tmp_path)
    seconds = str(500 + os.getpid() % 89)
    openai_server.add_tool_call("bash", {"cmd": f"sleep {seconds}"})
    async with start_agent(client=RecordingClient(answer=allow())) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        turn = asyncio.ensure_future(agent.prompt(sid, "sleep"))
        await agent.client.wait_for(lambda: _processes_with(f"sleep {seconds}"))
        agent.writer.close()  # the editor went away mid-command
        assert await asyncio.wait_for(agent.process.wait(), 30) == 0
        turn.cancel()
        deadline = time.monotonic() + 5
        while _processes_with(f"sleep {seconds}") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _processes_with(f"sleep {seconds}")
