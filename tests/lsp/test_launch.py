"""``pygent lsp --stdio`` answers ``initialize`` before the server loads, exactly as the server would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp.approver import DEFAULT_TIMEOUT
from pygent.lsp.capabilities import ANSWER_PATH, early_answer, render, served_answer
from pygent.lsp.launch import DEFAULT_APPROVAL_TIMEOUT
from tests.lsp.conftest import SERVER_COMMAND, server_env

CLIENTS = {
    "bare": {},
    "utf-8 first": {"general": {"positionEncodings": ["utf-8", "utf-16"]}},
    "utf-32 only": {"general": {"positionEncodings": ["utf-32"]}},
    "unknown encoding": {"general": {"positionEncodings": ["latin-1"]}},
    "notebooks and file operations": {
        "notebookDocument": {"synchronization": {}},
        "workspace": {"fileOperations": {"didCreate": True, "willRename": True}},
        "textDocument": {"synchronization": {"willSave": True}, "rename": {"prepareSupport": True}},
    },
}


@pytest.mark.parametrize("caps", CLIENTS.values(), ids=CLIENTS.keys())
def test_the_early_answer_is_the_servers(caps: dict[str, Any]) -> None:
    params = {"processId": None, "capabilities": caps}
    assert early_answer(params) == served_answer(params), (
        f"{ANSWER_PATH.name} is stale: regenerate it with python scripts/gen_protocol.py"
    )


def test_the_stored_answer_is_current() -> None:
    assert ANSWER_PATH.read_text() == render(served_answer({"capabilities": {}})), (
        f"{ANSWER_PATH.name} is stale: regenerate it with python scripts/gen_protocol.py"
    )


def test_the_launcher_and_the_server_share_the_approval_timeout() -> None:
    assert DEFAULT_APPROVAL_TIMEOUT == DEFAULT_TIMEOUT


def _frame(message: dict[str, Any] | bytes) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _messages(raw: bytes) -> list[dict[str, Any]]:
    found = []
    while raw:
        header, _, rest = raw.partition(b"\r\n\r\n")
        length = int(header.split(b":")[1])
        found.append(json.loads(rest[:length]))
        raw = rest[length:]
    return found


def _run(tmp_path: Path, openai_server: Any, *frames: bytes) -> tuple[int, list[dict[str, Any]]]:
    """Everything the client sends, written at once (before the server could load)."""
    proc = subprocess.run(
        SERVER_COMMAND, input=b"".join(frames), capture_output=True, timeout=60,
        env=server_env(tmp_path, openai_server), cwd=tmp_path,
    )
    return proc.returncode, _messages(proc.stdout)


def _read(stream: Any) -> dict[str, Any]:
    header = b""
    while not header.endswith(b"\r\n\r\n"):
        byte = stream.read(1)
        assert byte, "the server closed its output"
        header += byte
    return dict(json.loads(stream.read(int(header.split(b":")[1]))))


def test_one_answer_per_request_and_the_server_knows_the_client(
    tmp_path: Path, openai_server: Any
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    init = {
        "processId": os.getpid(),
        "workspaceFolders": [{"uri": folder.as_uri(), "name": "project"}],
        "capabilities": {"general": {"positionEncodings": ["utf-8"]}},
    }
    proc = subprocess.Popen(
        SERVER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=server_env(tmp_path, openai_server), cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # Sent together, before the server could have loaded.
        proc.stdin.write(
            _frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
            + _frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + _frame({"jsonrpc": "2.0", "id": 2, "method": "pygent/session/new",
                      "params": {"runtime": "local", "syncMode": "none"}})
        )
        proc.stdin.flush()
        first = _read(proc.stdout)
        assert first["id"] == 1 and first["result"]["capabilities"]["positionEncoding"] == "utf-8"
        while "method" in (reply := _read(proc.stdout)):
            pass
        # The next answer is to session/new: the answer to initialize came once.
        assert reply["id"] == 2 and reply["result"]["live"], reply
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
        proc.stdin.flush()
        while "method" in (reply := _read(proc.stdout)):
            pass
        assert reply == {"jsonrpc": "2.0", "id": 3, "result": None}
        proc.stdin.write(_frame({"jsonrpc": "2.0", "method": "exit"}))
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_first_message_that_is_not_initialize_goes_to_the_server(
    tmp_path: Path, openai_server: Any
) -> None:
    code, seen = _run(
        tmp_path, openai_server,
        _frame(b'{"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {'),
        _frame({"jsonrpc": "2.0", "id": 8, "method": "initialize", "params": {"capabilities": {}}}),
        _frame({"jsonrpc": "2.0", "method": "exit"}),
    )
    assert seen[0]["error"]["code"] == -32700  # the server's own parse error
    assert seen[1]["id"] == 8 and "capabilities" in seen[1]["result"]
    assert len(seen) == 2


def test_a_client_gone_before_its_first_message_ends_the_server(
    tmp_path: Path, openai_server: Any
) -> None:
    code, seen = _run(tmp_path, openai_server, b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")
    # As when the server reads it itself: the cut message is reported, the server exits.
    assert [m["method"] for m in seen] == ["window/showMessage"]
    assert "90 bytes into a message body" in seen[0]["params"]["message"]
    assert code == 1
