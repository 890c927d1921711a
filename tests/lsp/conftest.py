"""Fixtures for the language-server tests: a real pytest-lsp client talking to ``pygent lsp --stdio``.

The server runs as a subprocess against the scripted OpenAI-compatible server, with
its home and data directories under ``tmp_path`` and Docker off (local runtime).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client

from tests.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
SERVER_COMMAND = [sys.executable, "-m", "pygent", "lsp", "--stdio"]
#: The transports the end-to-end modules run over (``pytestmark`` of those modules):
#: stdio, TCP (``pygent lsp --tcp``), the WebSocket of ``pygent ui`` and the session
#: host's socket (``pygent serve`` joined by ``pygent lsp --stdio``); see tests/lsp/relay.py.
TRANSPORTS = ["stdio", "tcp", "websocket", "host"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``EVERY_TRANSPORT = True`` runs each test over every transport, but
    for tests marked ``stdio_only`` (they pass ``pygent lsp`` flags)."""
    if (
        "transport" in metafunc.fixturenames
        and getattr(metafunc.module, "EVERY_TRANSPORT", False)
        and metafunc.definition.get_closest_marker("stdio_only") is None
    ):
        metafunc.parametrize("transport", TRANSPORTS, indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """How the test client reaches the server; stdio unless a module asks for every one."""
    return str(getattr(request, "param", "stdio"))


def server_command(transport: str) -> list[str]:
    if transport == "stdio":
        return SERVER_COMMAND
    return [sys.executable, "-m", "tests.lsp.relay", transport]


def server_env(base: Path, openai_server: ScriptedOpenAIServer, **extra: str) -> dict[str, str]:
    """A clean environment for the server: no host settings, home and data under ``base``."""
    for name in ("home", "data", "config", "cache"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(base / "home"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "PYGENT_MODEL": "test-model",
        "PYGENT_USE_DOCKER": "0",
        "PYGENT_REQUEST_TIMEOUT": "30",
        # A host the user left running (pygent serve) must not capture the suite.
        "PYGENT_LSP_HOST": "never",
    }
    env.update(extra)
    return env


class Updates:
    """Every ``pygent/sessionUpdate`` the client received, with waiting helpers."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._event = asyncio.Event()

    def add(self, params: Any) -> None:
        self.items.append(as_dict(params))
        self._event.set()

    def of(self, session_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            u["update"]
            for u in self.items
            if u["sessionId"] == session_id and (kind is None or u["update"]["type"] == kind)
        ]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.items:
                if predicate(item):
                    return item
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no matching update within {timeout}s; got {[i['update']['type'] for i in self.items]}"
                )
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass


def as_dict(value: Any) -> Any:
    """pygls hands custom params over as namedtuples: turn them back into JSON values."""
    if hasattr(value, "_asdict"):
        return {k: as_dict(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_dict(v) for v in value]
    return value


CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        workspace_edit=types.WorkspaceEditClientCapabilities(
            document_changes=True,
            resource_operations=[
                types.ResourceOperationKind.Create,
                types.ResourceOperationKind.Delete,
            ],
        ),
    ),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True)
    ),
)

Setup = Callable[[LanguageClient], None]
StartClient = Callable[..., Awaitable[tuple[LanguageClient, Updates]]]


@pytest.fixture
async def start_client(
    tmp_path: Path, openai_server: ScriptedOpenAIServer, transport: str
) -> AsyncIterator[StartClient]:
    """``await start_client(setup=fn, args=[...], env={...})`` -> (initialised client, updates)."""
    clients: list[LanguageClient] = []

    async def start(
        setup: Setup | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        capabilities: types.ClientCapabilities = CAPABILITIES,
        workspace: Path | None = None,
    ) -> tuple[LanguageClient, Updates]:
        client = make_test_lsp_client()
        updates = Updates()

        def on_update(params: Any) -> None:
            updates.add(params)

        client.feature("pygent/sessionUpdate")(on_update)
        if setup is not None:
            setup(client)
        full_env = server_env(tmp_path / f"server{len(clients)}", openai_server, **(env or {}))
        if args and transport != "stdio":
            raise AssertionError(f"server flags {args} apply to pygent lsp --stdio only")
        command = server_command(transport)
        await client.start_io(*command, *(args or []), env=full_env, cwd=str(tmp_path))
        clients.append(client)
        folder = workspace or tmp_path
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities,
                root_uri=folder.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=folder.as_uri(), name="ws")],
            )
        )
        return client, updates

    yield start
    for client in clients:
        try:
            await asyncio.wait_for(client.shutdown_session(), 30)
        except (asyncio.TimeoutError, RuntimeError, ConnectionError):
            pass
        await client.stop()


async def request(
    client: LanguageClient, method: str, params: dict[str, Any] | None = None, timeout: float = 30
) -> Any:
    """A custom request; the result as plain JSON values."""
    result = await asyncio.wait_for(client.protocol.send_request_async(method, params), timeout)
    return as_dict(result)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An editor folder with a few files, a .gitignore and an ignored directory."""
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "app.py").write_text("print('hello')\n")
    (folder / "README.md").write_text("# demo\n")
    (folder / ".gitignore").write_text("build/\n*.log\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.bin").write_bytes(b"\0\1")
    (folder / "debug.log").write_text("noise\n")
    (folder / "node_modules" / "x").mkdir(parents=True)
    (folder / "node_modules" / "x" / "index.js").write_text("x\n")
    return folder


class RawClient:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.stderr_path = cwd / "server-stderr.log"
        self.proc = subprocess.Popen(
            SERVER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "wb"),
            env=env,
            cwd=cwd,
        )
        self.buf = b""

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, obj: Any = None, *, body: bytes | None = None) -> None:
        data = body if body is not None else json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(data) + data)

    def recv(self, timeout: float = 10) -> Any:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            if b"\r\n\r\n" in self.buf:
                head, rest = self.buf.split(b"\r\n\r\n", 1)
                length = int(head.split(b":")[1])
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return json.loads(rest[:length].decode("utf-8"))
            ready, _, _ = select.select(
                [self.proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                raise TimeoutError("no message from the server")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError("the server closed its output")
            self.buf += chunk

    def reply_to(self, msg_id: Any, timeout: float = 10) -> dict[str, Any]:
        while True:
            msg = self.recv(timeout)
            if msg.get("id") == msg_id and "method" not in msg:
                return msg

    def initialize(self) -> None:
        self.send(
            {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}
        )
        assert "result" in self.reply_to(0)
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def raw(tmp_path: Path, openai_server):
    clients: list[RawClient] = []

    def start(**env: str) -> RawClient:
        client = RawClient(
            server_env(tmp_path / f"s{len(clients)}", openai_server, **env), tmp_path
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
