"""Fixtures for the ACP tests: ``pygent acp`` as a real subprocess, driven by the ACP SDK's
own client side (``acp.ClientSideConnection``) against the scripted model server.

Every frame the agent writes is recorded raw (the connection's stream observer), so the
tests can check it against the ACP schema and see error frames the SDK client drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION
from acp import schema as s
from acp.client.connection import ClientSideConnection
from acp.connection import StreamDirection, StreamEvent

from pygent.lsp.client import RpcClient
from tests.host.conftest import host_dir, start_host  # noqa: F401 (fixtures)
from tests.lsp.conftest import server_env
from tests.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
AGENT_COMMAND = [sys.executable, "-m", "pygent", "acp"]

Answer = Callable[[dict[str, Any]], "s.RequestPermissionResponse | None"]


def allow(option: str = "allow_once") -> Answer:
    def answer(_request: dict[str, Any]) -> s.RequestPermissionResponse:
        return s.RequestPermissionResponse(
            outcome=s.AllowedOutcome(outcome="selected", option_id=option)
        )

    return answer


@dataclass
class RecordingClient:
    """The client side: records updates and permission requests, answers as told."""

    answer: Answer = field(default_factory=allow)
    updates: list[dict[str, Any]] = field(default_factory=list)
    permissions: list[dict[str, Any]] = field(default_factory=list)
    hang_permissions: bool = False
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any
    ) -> s.RequestPermissionResponse:
        request = {
            "sessionId": session_id,
            "toolCall": tool_call.model_dump(mode="json", by_alias=True, exclude_none=True),
            "options": [o.model_dump(mode="json", by_alias=True) for o in options],
        }
        self.permissions.append(request)
        self._event.set()
        if self.hang_permissions:
            await asyncio.sleep(3600)
        result = self.answer(request)
        if result is None:
            raise RuntimeError("the test client refuses")
        return result

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(
            {
                "sessionId": session_id,
                **update.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
        )
        self._event.set()

    def of(self, kind: str, session_id: str | None = None) -> list[dict[str, Any]]:
        return [
            u
            for u in self.updates
            if u["sessionUpdate"] == kind and (session_id is None or u["sessionId"] == session_id)
        ]

    def text(self, session_id: str | None = None) -> str:
        return "".join(u["content"]["text"] for u in self.of("agent_message_chunk", session_id))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out; updates: {[u['sessionUpdate'] for u in self.updates]}"
                )
            self._event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(left, 0.5))

    def on_connect(self, conn: Any) -> None:
        pass


@dataclass
class AgentProcess:
    """A running ``pygent acp`` with its SDK client connection and its raw frames."""

    conn: ClientSideConnection
    process: asyncio.subprocess.Process
    client: RecordingClient
    writer: asyncio.StreamWriter
    received: list[dict[str, Any]]
    sent: list[dict[str, Any]]
    home: Path

    async def initialize(self) -> s.InitializeResponse:
        return await self.conn.initialize(
            protocol_version=PROTOCOL_VERSION, client_capabilities=s.ClientCapabilities()
        )

    async def new_session(self, cwd: Path, **meta: Any) -> str:
        response = await self.conn.new_session(cwd=str(cwd), mcp_servers=[], **meta)
        return response.session_id

    async def prompt(self, session_id: str, text: str) -> s.PromptResponse:
        return await self.conn.prompt(
            session_id=session_id, prompt=[s.TextContentBlock(type="text", text=text)]
        )

    async def raw(self, line: bytes) -> None:
        self.writer.write(line)
        await self.writer.drain()

    async def wait_frame(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in self.received:
                if predicate(frame):
                    return frame
            await asyncio.sleep(0.02)
        raise AssertionError(f"no such frame; got {self.received[-5:]}")


def acp_env(base: Path, model_server: ScriptedOpenAIServer, **extra: str) -> dict[str, str]:
    # server_env keeps PYGENT_LSP_HOST=never: a host someone left running must not
    # capture the suite (the host tests name their own host folder and "require").
    return server_env(base, model_server, **extra)


StartAgent = Callable[..., "contextlib.AbstractAsyncContextManager[AgentProcess]"]


@pytest.fixture
def start_agent(tmp_path: Path, openai_server: ScriptedOpenAIServer) -> StartAgent:
    """``async with start_agent(client=..., args=[...], home=...) as agent:``"""

    @contextlib.asynccontextmanager
    async def start(
        client: RecordingClient | None = None,
        args: list[str] | None = None,
        home: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> AsyncIterator[AgentProcess]:
        client = client or RecordingClient()
        home = home or tmp_path / "agent-home"
        full_env = acp_env(home, openai_server, **(env or {}))
        process = await asyncio.create_subprocess_exec(
            *AGENT_COMMAND,
            *(args or []),
            "--log-file",
            str(home / "acp.log"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=str(tmp_path),
            limit=64 * 1024 * 1024,
            start_new_session=True,
        )
        assert process.stdin is not None and process.stdout is not None
        received: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []

        def observe(event: StreamEvent) -> None:
            (received if event.direction is StreamDirection.INCOMING else sent).append(
                event.message
            )

        conn = ClientSideConnection(client, process.stdin, process.stdout, observers=[observe])
        agent = AgentProcess(conn, process, client, process.stdin, received, sent, home)
        try:
            yield agent
        finally:
            with contextlib.suppress(Exception):
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except asyncio.TimeoutError:
                os.killpg(process.pid, 9)
                await process.wait()
            await conn.close()

    return start


# -- joined to a session host ---------------------------------------------------------------


class HostClient:
    """An LSP client of the host, keeping every ``pygent/sessionUpdate`` it gets."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self.updates: list[dict[str, Any]] = []
        client.on_notification("pygent/sessionUpdate", self.updates.append)

    @classmethod
    async def connect(cls, socket: Path) -> HostClient:
        client = await RpcClient.connect_unix(socket)
        await client.initialize("test-editor")
        return cls(client)

    def kinds(self, session_id: str) -> list[str]:
        return [u["update"]["type"] for u in self.updates if u["sessionId"] == session_id]

    def text(self, session_id: str) -> str:
        return "".join(
            u["update"].get("text", "")
            for u in self.updates
            if u["sessionId"] == session_id and u["update"]["type"] == "message_done"
        )

    async def live(self) -> dict[str, dict[str, Any]]:
        listed = await self.client.request("pygent/session/list", {})
        return {s["sessionId"]: s for s in listed["sessions"]}


def host_env(host_folder: Path) -> dict[str, str]:
    return {"PYGENT_HOST_DIR": str(host_folder), "PYGENT_LSP_HOST": "require"}


async def until(check: Any, timeout: float = 15) -> None:
    """Wait until ``check()`` is true (an AssertionError after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@dataclass
class JoinedHost:
    """A running session host, a project folder, and the environment that joins
    ``pygent acp`` to the host (``PYGENT_LSP_HOST=require``)."""

    host: Any
    folder: Path
    env: dict[str, str]
    editors: list[HostClient] = field(default_factory=list)

    async def editor(self) -> HostClient:
        """An LSP client of the host, as an editor is (closed when the test ends)."""
        editor = await HostClient.connect(self.host.socket)
        self.editors.append(editor)
        return editor


@pytest.fixture
async def joined(
    start_host: Any, host_dir: Path, tmp_path: Path  # noqa: F811 (the fixtures above)
) -> AsyncIterator[JoinedHost]:
    folder = tmp_path / "project"
    folder.mkdir()
    ready = JoinedHost(start_host(), folder, host_env(host_dir))
    try:
        yield ready
    finally:
        for editor in ready.editors:
            await editor.client.aclose()
