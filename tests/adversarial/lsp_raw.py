"""A raw-bytes JSON-RPC client for the real ``pygent lsp --stdio`` subprocess (catalogue groups B and E)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pygent.lsp import protocol as p
from tests.lsp.conftest import SERVER_COMMAND, RawClient, server_env
from tests.openai_server import ScriptedOpenAIServer

Message = dict[str, Any]


class Lsp(RawClient):
    """A RawClient that keeps every message it reads, answers nothing by itself, and
    counts the replies per request id (for "exactly one response" checks)."""

    def __init__(self, env: dict[str, str], cwd: Path, args: list[str] | None = None) -> None:
        # RawClient's own __init__ has no way to pass server arguments.
        self.stderr_path = cwd / "server-stderr.log"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*SERVER_COMMAND, *(args or [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=cwd,
            )
        self.buf = b""
        self.seen: list[Message] = []
        self._next = 1000

    def pump(self, timeout: float) -> Message | None:
        """Read one message (or None after ``timeout``), remembering it."""
        try:
            msg = self.recv(timeout)
        except (TimeoutError, EOFError):  # EOF: the server exited (the caller checks why)
            return None
        self.seen.append(msg)
        return msg

    def wait_for(self, pred: Callable[[Message], bool], timeout: float = 15) -> Message:
        for msg in self.seen:
            if pred(msg):
                return msg
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.pump(max(0.01, deadline - time.monotonic()))
            if msg is not None and pred(msg):
                return msg
        raise AssertionError(f"no matching message within {timeout}s; saw {self.seen[-5:]}")

    def call(self, method: str, params: Any = None, timeout: float = 30) -> Message:
        """Send a request and wait for its reply (result or error)."""
        self._next += 1
        msg_id = self._next
        body: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            body["params"] = params
        self.send(body)
        return self.reply(msg_id, timeout)

    def start(self, method: str, params: Any = None) -> int:
        self._next += 1
        body: Message = {"jsonrpc": "2.0", "id": self._next, "method": method}
        if params is not None:
            body["params"] = params
        self.send(body)
        return self._next

    def reply(self, msg_id: Any, timeout: float = 30) -> Message:
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def replies(self, msg_id: Any) -> list[Message]:
        return [m for m in self.seen if m.get("id") == msg_id and "method" not in m]

    def permission(self, timeout: float = 15) -> Message:
        """The next (unanswered) pygent/requestPermission request."""
        answered = getattr(self, "_answered", set())
        self._answered = answered
        msg = self.wait_for(
            lambda m: m.get("method") == p.REQUEST_PERMISSION and m["id"] not in answered, timeout
        )
        answered.add(msg["id"])
        return msg

    def answer(self, msg_id: Any, result: Any = None, error: Message | None = None) -> None:
        body: Message = {"jsonrpc": "2.0", "id": msg_id}
        body["error" if error is not None else "result"] = error if error is not None else result
        self.send(body)

    def new_session(self, **params: Any) -> str:
        params.setdefault("runtime", "local")
        reply = self.call(p.SESSION_NEW, params)
        assert "result" in reply, reply
        return str(reply["result"]["sessionId"])

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(max(0.01, deadline - time.monotonic()))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readable(self) -> bool:
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], 0)[0])


def start_lsp(
    base: Path,
    server: ScriptedOpenAIServer,
    *,
    args: list[str] | None = None,
    capabilities: Message | None = None,
    **env: str,
) -> Lsp:
    """A server subprocess (home and data under ``base``), initialised."""
    base.mkdir(parents=True, exist_ok=True)
    client = Lsp(server_env(base, server, **env), base, args)
    client.send(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"processId": os.getpid(), "capabilities": capabilities or {}},
        }
    )
    assert "result" in client.reply(0, 30)
    client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    # initialize is answered while the server still loads (pygent.lsp.launch): one
    # round trip more, so the cases time the server, not its start-up.
    assert "result" in client.call(p.SESSION_LIST, {}, timeout=30)
    return client


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()
