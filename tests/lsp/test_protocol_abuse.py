"""The real server against a raw-bytes client: framing errors, bad JSON, no params, EOF clean-up (ADVERSARIAL E)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.lsp.conftest import ROOT, SERVER_COMMAND, server_env
from tests.lsp.test_sessions import _sleepers

pytestmark = pytest.mark.timeout(60)


class RawClient:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.stderr_path = cwd / "server-stderr.log"
        self.proc = subprocess.Popen(SERVER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "wb"), env=env, cwd=cwd)
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
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
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
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}})
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
        client = RawClient(server_env(tmp_path / f"s{len(clients)}", openai_server, **env), tmp_path)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


def test_bad_json_and_missing_params_are_answered(raw) -> None:
    c = raw()
    c.initialize()
    c.send(body=b"{not json")
    err = c.recv()
    assert err["id"] is None and err["error"]["code"] == p.PARSE_ERROR
    c.send(body=b"[" * 100_000 + b"]" * 100_000)
    assert c.recv()["error"]["code"] == p.PARSE_ERROR
    c.send([1, 2])
    assert c.recv()["error"]["code"] == p.INVALID_REQUEST
    for i, method in enumerate(p.REQUESTS, start=10):
        c.send({"jsonrpc": "2.0", "id": i, "method": method})  # no params at all
        reply = c.reply_to(i, timeout=5)
        assert "result" in reply or reply["error"]["code"] == p.INVALID_PARAMS, (method, reply)
    c.send({"jsonrpc": "2.0", "id": "s-1", "method": "shutdown"})
    assert c.reply_to("s-1") == {"jsonrpc": "2.0", "id": "s-1", "result": None}
    c.send({"jsonrpc": "2.0", "method": "exit"})
    assert c.wait() == 0


@pytest.mark.parametrize("frame", [
    b"Content-Length: abc\r\n\r\n{}",
    b"Content-Length: -5\r\n\r\n{}",
    b"Content-Type: application/json\r\n\r\n{}",
    b"Content-Length: 3000000000\r\n\r\n",
    b"Content-Length: 2\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": \"pygent/session/list\"}",
])
def test_framing_errors_end_the_connection(raw, frame: bytes) -> None:
    c = raw()
    c.initialize()
    started = time.monotonic()
    c.send_bytes(frame)
    assert c.wait(10) == 1, "a framing error must end the server, not leave it deaf"
    assert time.monotonic() - started < 10
    assert "protocol error" in c.stderr()


def test_lowercase_header_and_unicode(raw, openai_server) -> None:
    openai_server.add_text("答案 ✅ — ok")
    c = raw()
    c.initialize()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": p.SESSION_NEW,
                       "params": {"runtime": "local", "title": "标题 🚀"}}, ensure_ascii=False).encode()
    c.send_bytes(b"content-length: %d\r\n\r\n" % len(body) + body)
    sid = c.reply_to(1)["result"]["sessionId"]
    c.send({"jsonrpc": "2.0", "id": 2, "method": p.SESSION_PROMPT, "params": {"sessionId": sid, "prompt": "你好 👋"}})
    assert c.reply_to(2)["result"]["text"] == "答案 ✅ — ok"
    c.send({"jsonrpc": "2.0", "id": 3, "method": p.SESSION_LIST, "params": {}})
    assert c.reply_to(3)["result"]["sessions"][0]["title"] == "标题 🚀"


def test_eof_mid_command_cleans_up(raw, openai_server) -> None:
    marker = "33.1337"
    openai_server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    c = raw()
    c.initialize()
    c.send({"jsonrpc": "2.0", "id": 1, "method": p.SESSION_NEW,
            "params": {"runtime": "local", "approvalMode": "never"}})
    info = c.reply_to(1)["result"]
    c.send({"jsonrpc": "2.0", "id": 2, "method": p.SESSION_PROMPT,
            "params": {"sessionId": info["sessionId"], "prompt": "wait"}})
    deadline = time.monotonic() + 10
    while not _sleepers(marker):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    started = time.monotonic()
    assert c.proc.stdin is not None
    c.proc.stdin.close()  # the editor disappears
    assert c.wait(15) == 0
    assert time.monotonic() - started < 10
    assert not _sleepers(marker), "no command may outlive the server"
    assert not Path(info["sandboxPath"]).exists(), "the temporary sandbox workspace is removed"
    # The history was saved: a new server can resume the session.
    c2 = raw()
    c2.initialize()
    c2.send({"jsonrpc": "2.0", "id": 1, "method": p.SESSION_LIST, "params": {"includeSaved": True}})
    del c2


def test_protocol_names_are_documented() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for method in (*p.REQUESTS, p.SESSION_UPDATE, p.REQUEST_PERMISSION):
        assert f"`{method}`" in doc, method
    for command in p.COMMANDS:
        assert command in doc, command
    for kind in p.UPDATE_TYPES:
        assert f"`{kind}`" in doc, kind
    ts = ROOT / "editors" / "vscode" / "src" / "protocol.ts"
    if ts.exists():  # the extension mirrors every name
        text = ts.read_text()
        for method in (*p.REQUESTS, p.SESSION_UPDATE, p.REQUEST_PERMISSION):
            assert f'"{method}"' in text or f"'{method}'" in text, method
