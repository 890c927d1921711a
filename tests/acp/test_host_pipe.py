"""``pygent acp`` joined to a session host is a byte pipe: the host runs the ACP agent.

The host tells an ACP connection from an LSP one by its first line (the ACP hello,
:func:`pygent.lsp.host_socket.join_acp`) and serves it with the ACP agent on its shared
service (:mod:`pygent.acp.hosted`): the ACP client is one of the host's clients, asked
the approvals of the sessions it follows alongside the editors (the first answer counts),
and its sessions are in the host's update logs for clients that attach later. A host
that does not answer the hello (an older one) is not joined, or fails clearly with
``PYGENT_LSP_HOST=require``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acp import schema as s

from pygent.lsp import host_socket as hs
from tests.acp.conftest import HostClient, JoinedHost, RecordingClient, StartAgent, host_env, until
from tests.acp.test_mcp import time_command  # noqa: F401 (fixture)
from tests.acp.test_schema import check_frames
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(120)


@dataclass
class TakingTurns(RecordingClient):
    """Leaves the first permission request to the editor (never answers it); answers the
    next ones once ``editor_asked`` is set (the editor was asked too)."""

    editor_asked: asyncio.Event = field(default_factory=asyncio.Event)

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any
    ) -> s.RequestPermissionResponse:
        self.hang_permissions = not self.permissions
        if not self.hang_permissions:
            await asyncio.wait_for(self.editor_asked.wait(), 30)
        return await super().request_permission(session_id, tool_call, options, **kwargs)


async def _clients(host: Any, session_id: str) -> int | None:
    """How many clients follow the session, by ``pygentHost/status`` (None: not live)."""
    status = await asyncio.to_thread(host.status)
    found = [x["clients"] for x in status["sessions"] if x["sessionId"] == session_id]
    return found[0] if found else None


async def test_approvals_go_to_the_acp_client_and_the_editor_first_answer_wins(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
) -> None:
    host, folder = joined.host, joined.folder
    client = TakingTurns()
    editor = await joined.editor()
    asked: list[dict[str, Any]] = []
    hold = asyncio.get_running_loop().create_future()

    async def editor_answers(params: Any) -> dict[str, Any]:
        asked.append(params)
        if len(asked) == 1:  # the first: the editor answers, once the ACP client was asked
            await client.wait_for(lambda: client.permissions)
            return {"optionId": "allow_once"}
        client.editor_asked.set()  # the second: the ACP client answers first
        return await hold  # type: ignore[no-any-return]

    editor.client.on_request("pygent/requestPermission", editor_answers)
    try:
        async with start_agent(client=client, env=joined.env) as agent:
            await agent.initialize()
            sid = await agent.new_session(folder)
            # The editor follows the ACP client's session (it reads its transcript).
            await editor.client.request("pygent/session/transcript", {"sessionId": sid})
            assert await _clients(host, sid) == 2
            openai_server.add_tool_call("bash", {"cmd": "echo first-call"})
            openai_server.add_tool_call("bash", {"cmd": "echo second-call"})
            openai_server.add_text("both ran")
            result = await agent.prompt(sid, "run two")
            assert result.stop_reason == "end_turn"
            # Both clients were asked both times; the editor's answer decided the first
            # call, the ACP client's the second: both ran.
            assert len(client.permissions) == 2 and len(asked) == 2
            assert [a["sessionId"] for a in asked] == [sid, sid]
            updates = json.dumps(client.of("tool_call_update", sid))
            assert "first-call" in updates and "second-call" in updates
            assert client.text(sid) == "both ran"
            # The editor's second request was withdrawn: it sees how it was decided.
            await until(
                lambda: any(
                    u["update"].get("type") == "permission"
                    and u["update"].get("state") == "resolved"
                    and u["update"].get("outcome") == "allow_once"
                    for u in editor.updates
                    if u["sessionId"] == sid
                )
            )
            # An editor that attaches later reads the ACP client's turn from the host's log.
            late = await HostClient.connect(host.socket)
            try:
                transcript = await late.client.request(
                    "pygent/session/transcript", {"sessionId": sid}
                )
            finally:
                await late.client.aclose()
            kinds = [e["type"] for e in transcript["events"]]
            assert kinds[0] == "turn_started" and transcript["events"][0]["prompt"] == "run two"
            assert "tool_call_finished" in kinds and "message_done" in kinds
            assert check_frames(agent) > 5
            # The pipe process ran no agent: it only joined and copied bytes.
            log = (agent.home / "acp.log").read_text()
            assert "piping to the session host" in log
        # The ACP client left; its session goes on in the host, the editor still follows it.
        for _ in range(100):
            if await _clients(host, sid) == 1:
                break
            await asyncio.sleep(0.1)
        assert await _clients(host, sid) == 1
    finally:
        hold.cancel()


async def test_host_stopping_ends_the_pipe(
    start_agent: StartAgent,
    joined: JoinedHost,
) -> None:
    host, folder = joined.host, joined.folder
    async with start_agent(env=joined.env) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        assert await _clients(host, sid) == 1
        assert await asyncio.to_thread(host.stop) == 0
        # The host closed the connection: the pipe ends, and so does the ACP stream.
        assert await asyncio.wait_for(agent.process.wait(), 30) == 0


@contextlib.asynccontextmanager
async def _old_host(folder: Path, answer: bytes | None) -> Any:
    """A socket in the host folder that reads the hello and answers ``answer`` (None:
    closes the connection, as a host that does not know ACP ends on a framing error)."""
    hs.check_dir(folder)
    hellos: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(await reader.readline())
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(hs.socket_path(folder)))
    try:
        yield hellos
    finally:
        server.close()
        await server.wait_closed()


async def test_a_host_that_cannot_serve_acp(
    start_agent: StartAgent, host_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    # PYGENT_LSP_HOST=require: a clear failure, with the host's reason.
    refusal = hs.ACP_REFUSED + b"the ACP SDK is not installed in the host\n"
    async with _old_host(host_dir, refusal) as hellos:
        async with start_agent(env=host_env(host_dir), args=["--sync", "mount"]) as agent:
            assert await asyncio.wait_for(agent.process.wait(), 30) == 2
            assert agent.process.stderr is not None
            err = (await agent.process.stderr.read()).decode()
            assert "cannot serve ACP" in err and "SDK is not installed" in err
            assert "Traceback" not in err
        assert hellos[0].startswith(hs.ACP_HELLO)
        options = json.loads(hellos[0][len(hs.ACP_HELLO) :])
        assert options["syncMode"] == "mount" and options["approvalTimeout"] == 120
    # auto: a host that closes on the hello (too old) is not joined; sessions in process.
    async with _old_host(host_dir, None):
        env = {**host_env(host_dir), "PYGENT_LSP_HOST": "auto"}
        async with start_agent(env=env) as agent:
            await agent.initialize()
            response = await agent.conn.new_session(cwd=str(folder), mcp_servers=[])
            assert response.field_meta["pygent"]["host"] is False


async def test_join_acp_answers() -> None:
    """The hello and the host's answer, over a socket pair: ready, refused, garbage, gone."""
    import socket

    cases = [
        (hs.ACP_READY + b"\n", None),
        (hs.ACP_REFUSED + b"no SDK\n", "no SDK"),
        (b"Content-Length: 10\r\n\r\n", "not an ACP answer"),
        (b"", "closed the connection"),
    ]
    for answer, expected in cases:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            if answer:
                theirs.sendall(answer)
            else:
                theirs.shutdown(socket.SHUT_WR)
            got = hs.join_acp(ours, {"syncMode": "cow"}, timeout=5)
            hello = theirs.recv(4096)
            assert hello == hs.ACP_HELLO + b'{"syncMode": "cow"}\n'
            if expected is None:
                assert got is None
            else:
                assert got is not None and expected in got


async def test_client_mcp_server_starts_in_the_host(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
    time_command: Path,  # noqa: F811
) -> None:
    """The ``mcpServers`` of ``session/new`` start in the host's session, as in process."""
    folder = joined.folder
    openai_server.add_tool_call("mcp__time__get_current_time", {"timezone": "UTC"})
    openai_server.add_text("it is now")
    async with start_agent(env=joined.env) as agent:
        await agent.initialize()
        response = await agent.conn.new_session(
            cwd=str(folder),
            mcp_servers=[s.McpServerStdio(name="time", command=str(time_command), args=[], env=[])],
        )
        assert response.field_meta["pygent"]["host"] is True
        assert response.field_meta["pygent"]["mcpServers"] == ["time"]
        result = await agent.prompt(response.session_id, "what time is it?")
        assert result.stop_reason == "end_turn"
        done = [u for u in agent.client.of("tool_call_update") if u.get("status") == "completed"]
        assert done and "UTC" in json.dumps(done[-1]["rawOutput"])
