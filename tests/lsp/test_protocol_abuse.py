"""The real server against a raw-bytes client: framing errors, bad JSON, no params, EOF clean-up (ADVERSARIAL E)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from tests.lsp.conftest import ROOT
from tests.lsp.test_sessions import _gone, _sleepers

pytestmark = pytest.mark.timeout(60)


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


def test_an_id_without_method_result_or_error_is_an_invalid_request(raw) -> None:
    c = raw()
    c.initialize()
    for msg_id in (7, "x-7"):
        c.send({"jsonrpc": "2.0", "id": msg_id})
        reply = c.reply_to(msg_id, timeout=5)
        assert reply["error"]["code"] == p.INVALID_REQUEST, reply
        assert "'method'" in reply["error"]["message"]
    c.send({"jsonrpc": "2.0", "id": 8, "params": {}})
    assert c.reply_to(8, timeout=5)["error"]["code"] == p.INVALID_REQUEST
    # A real response (even a null result) to an unknown request stays unanswered, and
    # the server goes on answering requests.
    c.send({"jsonrpc": "2.0", "id": 9, "result": None})
    c.send({"jsonrpc": "2.0", "id": 10, "method": p.SESSION_LIST, "params": {}})
    msg = c.recv(timeout=5)
    while "method" in msg and "id" not in msg:  # a log message is fine
        msg = c.recv(timeout=5)
    assert msg == {"jsonrpc": "2.0", "id": 10, "result": {"sessions": []}}


@pytest.mark.parametrize(
    "frame",
    [
        b"Content-Length: abc\r\n\r\n{}",
        b"Content-Length: -5\r\n\r\n{}",
        b"Content-Type: application/json\r\n\r\n{}",
        b"Content-Length: 3000000000\r\n\r\n",
        b'Content-Length: 2\r\n\r\n{"jsonrpc": "2.0", "id": 5, "method": "pygent/session/list"}',
    ],
)
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
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": p.SESSION_NEW,
            "params": {"runtime": "local", "title": "标题 🚀"},
        },
        ensure_ascii=False,
    ).encode()
    c.send_bytes(b"content-length: %d\r\n\r\n" % len(body) + body)
    sid = c.reply_to(1)["result"]["sessionId"]
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": p.SESSION_PROMPT,
            "params": {"sessionId": sid, "prompt": "你好 👋"},
        }
    )
    assert c.reply_to(2)["result"]["text"] == "答案 ✅ — ok"
    c.send({"jsonrpc": "2.0", "id": 3, "method": p.SESSION_LIST, "params": {}})
    assert c.reply_to(3)["result"]["sessions"][0]["title"] == "标题 🚀"


def test_eof_mid_command_cleans_up(raw, openai_server) -> None:
    marker = "33.1337"
    openai_server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    c = raw()
    c.initialize()
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": p.SESSION_NEW,
            "params": {"runtime": "local", "approvalMode": "never"},
        }
    )
    info = c.reply_to(1)["result"]
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": p.SESSION_PROMPT,
            "params": {"sessionId": info["sessionId"], "prompt": "wait"},
        }
    )
    deadline = time.monotonic() + 10
    while not _sleepers(marker):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    started = time.monotonic()
    assert c.proc.stdin is not None
    c.proc.stdin.close()  # the editor disappears
    assert c.wait(15) == 0
    assert time.monotonic() - started < 10
    assert _gone(marker), "no command may outlive the server"
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


def test_server_exits_when_the_editor_process_dies(raw) -> None:
    import subprocess as sp

    editor = sp.Popen(["sleep", "1"])
    c = raw()
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"processId": editor.pid, "capabilities": {}},
        }
    )
    assert "result" in c.reply_to(0)
    editor.wait()
    assert c.wait(15) == 0, "stdin is still open, but the editor is gone"


def test_pipelined_flood_is_all_answered(raw) -> None:
    c = raw()
    c.initialize()
    count = 3000
    frames = b"".join(
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in (
            json.dumps({"jsonrpc": "2.0", "id": i, "method": p.SESSION_LIST, "params": {}}).encode()
            for i in range(1, count + 1)
        )
    )
    c.send_bytes(frames)
    seen = set()
    while len(seen) < count:
        msg = c.recv(timeout=30)
        assert "result" in msg, msg
        seen.add(msg["id"])
    assert seen == set(range(1, count + 1))


def test_documented_examples_match_the_types() -> None:
    """Every JSON example in docs/protocol.md structures with its declared type."""
    import re

    doc = (ROOT / "docs" / "protocol.md").read_text()
    blocks = [
        json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", doc, re.S) if '"..."' not in b
    ]
    methods: dict[object, str] = {}
    checked = 0
    for block in blocks:
        method = block.get("method")
        if method in p.SIGNATURES and "params" in block:
            p.structure(block["params"], p.SIGNATURES[method][0])
            methods[block.get("id")] = method
            checked += 1
        elif method == "workspace/executeCommand":
            command = block["params"]["command"]
            p.structure(block["params"]["arguments"][0], p.SIGNATURES[p.COMMANDS[command]][0])
            checked += 1
        elif "result" in block and methods.get(block["id"]) in p.SIGNATURES:
            p.structure(block["result"], p.SIGNATURES[methods[block["id"]]][1])
            checked += 1
    assert checked >= 30
