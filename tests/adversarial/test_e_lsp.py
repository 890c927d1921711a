"""ADVERSARIAL E: LSP protocol abuse, with a raw-bytes client against the real ``pygent lsp --stdio``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.adversarial.conftest import processes_with
from tests.adversarial.lsp_raw import Lsp, dumps, frame, start_lsp
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer, text_reply

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lsp(openai_server: ScriptedOpenAIServer, tmp_path: Path) -> Iterator[Lsp]:
    client = start_lsp(tmp_path / "server", openai_server)
    yield client
    client.close()


def ends_with_protocol_error(c: Lsp, within: float = 10) -> None:
    assert c.wait(within) == 1, "a framing error must end the server, not leave it deaf"
    assert "protocol error" in c.stderr()


def test_E1_malformed_json_body(lsp: Lsp) -> None:
    lsp.send(body=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    err = lsp.wait_for(lambda m: "error" in m)
    assert err["id"] is None and err["error"]["code"] == p.PARSE_ERROR
    assert "result" in lsp.call(p.SESSION_LIST, {})


@pytest.mark.parametrize(
    "head",
    [b"Content-Length: abc", b"Content-Length: -5", b"Content-Type: application/json"],
    ids=["not-a-number", "negative", "missing"],
)
def test_E2_bad_content_length(lsp: Lsp, head: bytes) -> None:
    lsp.send_bytes(head + b"\r\n\r\n{}")
    ends_with_protocol_error(lsp)


def test_E2_lowercase_header_is_accepted(lsp: Lsp) -> None:
    body = dumps({"jsonrpc": "2.0", "id": 7, "method": p.SESSION_LIST, "params": {}})
    lsp.send_bytes(b"content-length: %d\r\n\r\n" % len(body) + body)
    assert "result" in lsp.reply(7)


def test_E3_declared_length_shorter_than_the_body(lsp: Lsp) -> None:
    lsp.send_bytes(b'Content-Length: 2\r\n\r\n{"jsonrpc": "2.0", "id": 5, "method": "x"}')
    ends_with_protocol_error(lsp)


def test_E3_declared_length_longer_than_the_body_then_a_pause(lsp: Lsp) -> None:
    body = dumps({"jsonrpc": "2.0", "id": 5, "method": p.SESSION_LIST, "params": {}})
    lsp.send_bytes(b"Content-Length: %d\r\n\r\n" % (len(body) + 40) + body)
    time.sleep(1.0)
    assert lsp.alive() and lsp.pump(0.2) is None  # still waiting for the promised bytes
    lsp.send_bytes(
        frame(dumps({"jsonrpc": "2.0", "id": 6, "method": p.SESSION_LIST, "params": {}}))
    )
    # The promised bytes swallow the next frame's start: garbage, then a broken frame.
    deadline = time.monotonic() + 10
    while lsp.alive() and time.monotonic() < deadline:
        lsp.pump(0.2)
    ends_with_protocol_error(lsp)
    assert any(m.get("error", {}).get("code") == p.PARSE_ERROR for m in lsp.seen)


def test_E4_huge_declared_length_is_refused_at_once(lsp: Lsp) -> None:
    rss = _rss_kb(lsp.proc.pid)
    started = time.monotonic()
    lsp.send_bytes(b"Content-Length: 3000000000\r\n\r\n")
    for _ in range(20):  # slowly send bytes: nothing is buffered towards 3 GB
        if not lsp.alive():
            break
        try:
            lsp.send_bytes(b"x" * 1024)
        except BrokenPipeError:
            break
        time.sleep(0.05)
    ends_with_protocol_error(lsp, 5)
    assert time.monotonic() - started < 5
    assert "too large" in lsp.stderr() or "32" in lsp.stderr()
    assert rss < 200_000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_E5_requests_without_params_are_answered(lsp: Lsp) -> None:
    for i, method in enumerate(p.REQUESTS, start=100):
        started = time.monotonic()
        lsp.send({"jsonrpc": "2.0", "id": i, "method": method})
        reply = lsp.reply(i, timeout=5)
        assert time.monotonic() - started < 1.0, method
        assert "result" in reply or reply["error"]["code"] == p.INVALID_PARAMS, (method, reply)


def test_E6_wrong_types_missing_extra_and_deep_json(lsp: Lsp) -> None:
    bad = [
        {"sessionId": 42, "prompt": ["x"]},
        {"prompt": "no session"},
        {"sessionId": "x", "prompt": "hi", "unexpected": {"deep": [1, 2]}},
        "a string",
        [1, 2, 3],
    ]
    for params in bad:
        reply = lsp.call(p.SESSION_PROMPT, params)
        assert reply["error"]["code"] in (p.INVALID_PARAMS, p.SESSION_NOT_FOUND), reply
    lsp.send(body=b"[" * 100_000 + b"]" * 100_000)
    assert lsp.wait_for(lambda m: "error" in m and m["id"] is None)["error"]["code"] in (
        p.PARSE_ERROR,
        p.INVALID_REQUEST,
    )
    deep = "{" + '"a":{' * 50_000 + "}" * 50_001
    lsp.send(
        body=b'{"jsonrpc":"2.0","id":299,"method":"pygent/session/list","params":'
        + deep.encode()
        + b"}"
    )
    assert "error" in lsp.wait_for(lambda m: "error" in m and m["id"] in (299, None))
    assert "result" in lsp.call(p.SESSION_LIST, {})
    assert "RecursionError" not in lsp.stderr()


def test_E7_unknown_methods_and_notifications(lsp: Lsp) -> None:
    assert lsp.call("pygent/nope", {})["error"]["code"] == p.METHOD_NOT_FOUND
    lsp.send({"jsonrpc": "2.0", "method": "pygent/unknownNotification", "params": {}})
    lsp.send({"jsonrpc": "2.0", "method": "$/setTrace", "params": {"value": "off"}})
    lsp.send({"jsonrpc": "2.0", "method": "$/somethingElse", "params": {}})
    assert "result" in lsp.call(p.SESSION_LIST, {})
    assert not [m for m in lsp.seen if m.get("id") is None and "error" in m]


def test_E8_flood_of_requests_and_changes(lsp: Lsp, openai_server, tmp_path: Path) -> None:
    n = 20_000
    data = b"".join(
        frame(dumps({"jsonrpc": "2.0", "id": i, "method": p.SESSION_LIST, "params": {}}))
        for i in range(1, n + 1)
    )
    started = time.monotonic()
    lsp.send_bytes(data)
    answered = 0
    while answered < n:
        msg = lsp.recv(60)
        answered += "id" in msg and "method" not in msg
    flood = time.monotonic() - started
    uri = (tmp_path / "big.py").as_uri()
    lsp.send({"jsonrpc": "2.0", "method": "textDocument/didOpen",
              "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                          "text": ""}}})  # fmt: skip
    chunk = "y" * (1 << 20)
    started = time.monotonic()
    for v in range(100):  # 100 MB of changes
        lsp.send({"jsonrpc": "2.0", "method": "textDocument/didChange",
                  "params": {"textDocument": {"uri": uri, "version": v + 2},
                             "contentChanges": [{"text": chunk}]}})  # fmt: skip
    latencies = []
    for _ in range(20):  # a cancel arriving behind the flood is answered promptly
        t = time.monotonic()
        lsp.call(p.SESSION_CANCEL, {"sessionId": "none"})
        latencies.append(time.monotonic() - t)
    changes = time.monotonic() - started
    rss = _rss_kb(lsp.proc.pid) // 1024
    print(
        f"\nE8: {n} pipelined requests answered in {flood:.1f}s; 100 MB of didChange + 20 "
        f"cancels in {changes:.1f}s, cancel p99 {max(latencies) * 1000:.0f} ms; RSS {rss} MiB"
    )
    assert max(latencies) < 1.0 and rss < 400


def _start_sleeping_prompt(
    c: Lsp, server: ScriptedOpenAIServer, marker: str, **new: Any
) -> tuple[str, int]:
    server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    server.add_text("never")
    sid = c.new_session(approvalMode="never", **new)
    prompt = c.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "wait"})
    deadline = time.monotonic() + 60
    while not processes_with(f"sleep {marker}"):
        assert time.monotonic() < deadline, "the command never started"
        c.pump(0.05)
    return sid, prompt


def test_E9_cancel_request_kills_the_command(lsp: Lsp, openai_server, tmp_path: Path) -> None:
    marker = "44.1901"
    sid, prompt = _start_sleeping_prompt(lsp, openai_server, marker)
    started = time.monotonic()
    lsp.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": prompt}})
    reply = lsp.reply(prompt, 10)
    assert time.monotonic() - started < 2
    assert reply.get("error", {}).get("code") == p.REQUEST_CANCELLED or (
        reply.get("result", {}).get("stopReason") == "cancelled"
    )
    deadline = time.monotonic() + 5
    while processes_with(f"sleep {marker}"):
        assert time.monotonic() < deadline, "the command outlived the cancel"
        time.sleep(0.05)
    history = next((tmp_path / "server").rglob(f"{sid}*.jsonl"), None) or next(
        (tmp_path / "server").rglob("*.jsonl")
    )
    deadline = time.monotonic() + 10  # the turn's clean-up finishes after the reply
    while "cancelled" not in history.read_text():
        assert time.monotonic() < deadline, history.read_text()[-500:]
        time.sleep(0.1)


def test_E10_cancel_races(lsp: Lsp, openai_server) -> None:
    done = lsp.call(p.SESSION_LIST, {})
    lsp.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": done["id"]}})
    body = dumps({"jsonrpc": "2.0", "id": 501, "method": p.SESSION_LIST, "params": {}})
    cancel = dumps({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 501}})
    lsp.send_bytes(frame(body) + frame(cancel))  # cancelled before the handler may start
    lsp.reply(501)
    # A permission request withdrawn by a cancelled turn, answered afterwards.
    openai_server.add_tool_call("bash", {"cmd": "echo hi"})
    openai_server.add_text("ok")
    sid = lsp.new_session()
    prompt = lsp.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    asked = lsp.permission()
    assert lsp.call(p.SESSION_CANCEL, {"sessionId": sid})["result"]
    lsp.reply(prompt)
    lsp.answer(asked["id"], {"optionId": "allow_once"})
    lsp.drain(0.5)
    for msg_id in (done["id"], 501, prompt):
        assert len(lsp.replies(msg_id)) == 1, msg_id
    assert "result" in lsp.call(p.SESSION_LIST, {})
    assert "InvalidStateError" not in lsp.stderr() and "Traceback" not in lsp.stderr()


def test_E11_duplicate_reused_and_odd_ids(lsp: Lsp) -> None:
    twice = frame(dumps({"jsonrpc": "2.0", "id": "dup", "method": p.SESSION_LIST, "params": {}}))
    lsp.send_bytes(twice + twice)
    lsp.drain(0.5)
    assert len(lsp.replies("dup")) == 2  # one response per request
    for msg_id in ("str-1", 0, -1, 2**53, "ü-🚀"):
        assert "result" in lsp.call(p.SESSION_LIST, {}) if msg_id == 0 else True
        lsp.send({"jsonrpc": "2.0", "id": msg_id, "method": p.SESSION_LIST, "params": {}})
        assert "result" in lsp.reply(msg_id)
    lsp.send({"jsonrpc": "2.0", "id": None, "method": p.SESSION_LIST, "params": {}})
    lsp.drain(0.5)
    assert "result" in lsp.call(p.SESSION_LIST, {})


@pytest.mark.parametrize("mode", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_E12_client_disconnect_mid_command(openai_server, tmp_path: Path, mode: str) -> None:
    c = start_lsp(tmp_path / "s", openai_server, PYGENT_IMAGE=TEST_IMAGE)
    marker = f"44.12{os.getpid() % 100}"
    sid, _ = _start_sleeping_prompt(c, openai_server, marker, runtime=mode)
    started = time.monotonic()
    assert c.proc.stdin is not None
    c.proc.stdin.close()  # the editor disappears
    assert c.wait(30) == 0
    assert time.monotonic() - started < 15
    assert not processes_with(f"sleep {marker}")
    assert _containers_of(c.proc.pid) == []
    history = next((tmp_path / "s").rglob("*.jsonl"))
    assert "cancelled" in history.read_text() or "interrupted" in history.read_text()
    again = start_lsp(tmp_path / "s", openai_server)  # the next start lists it to resume
    saved = again.call(p.SESSION_LIST, {"includeSaved": True})["result"]["sessions"]
    assert any(s["sessionId"] == sid for s in saved)
    again.close()


def _containers_of(pid: int) -> list[str]:
    import docker

    from tests.docker_gate import docker_unavailable_reason

    if docker_unavailable_reason() is not None:
        return []
    client = docker.from_env()
    try:
        deadline = time.monotonic() + 5
        while True:
            found = client.api.containers(all=True, filters={"label": f"pygent.owner_pid={pid}"})
            if not found or time.monotonic() > deadline:
                return [c["Id"] for c in found]
            time.sleep(0.2)
    finally:
        client.close()


def test_E13_editor_killed_with_the_pipe_left_open(openai_server, tmp_path: Path) -> None:
    """The editor dies (SIGKILL) but something keeps our stdin open: initialize.processId."""
    editor = subprocess.Popen(["sleep", "600"])
    c = Lsp(
        __import__("tests.lsp.conftest", fromlist=["server_env"]).server_env(
            tmp_path / "s", openai_server
        ),
        tmp_path,
    )
    try:
        c.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"processId": editor.pid, "capabilities": {}}})  # fmt: skip
        c.reply(0, 30)
        c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        marker = "44.1313"
        _start_sleeping_prompt(c, openai_server, marker)
        editor.send_signal(signal.SIGKILL)
        editor.wait()
        started = time.monotonic()
        assert c.wait(30) in (0, 1)  # stdin is still open: only the watch can notice
        print(f"\nE13: server exited {time.monotonic() - started:.1f}s after the editor died")
        assert not processes_with(f"sleep {marker}")
    finally:
        c.close()


def test_E14_non_ascii_both_ways(lsp: Lsp, openai_server) -> None:
    openai_server.add_text("答案 ✅ — ok 🚀")
    sid = lsp.new_session(title="标题 🚀")
    reply = lsp.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "你好 👋 ñ"})
    assert reply["result"]["text"] == "答案 ✅ — ok 🚀"
    body = openai_server.chat_requests[-1].body
    assert body["messages"][-1]["content"] == "你好 👋 ñ"


def test_E15_stray_stdout_writes_do_not_corrupt_the_protocol(openai_server, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys, threading, time\n"
        "def noise():\n"
        "    time.sleep(0.5)\n"
        "    for _ in range(40):\n"
        "        print('GARBAGE-PRINT', flush=True)\n"
        "        os.write(1, b'GARBAGE-FD1\\n')\n"
        "        time.sleep(0.02)\n"
        "threading.Thread(target=noise, daemon=True).start()\n"
    )
    from tests.lsp.conftest import ROOT

    c = start_lsp(tmp_path / "s", openai_server, PYTHONPATH=f"{hook}:{ROOT}")
    try:
        for _ in range(30):
            assert "result" in c.call(p.SESSION_LIST, {})
            time.sleep(0.03)
        openai_server.add_tool_call("bash", {"cmd": "echo from-a-command; echo err >&2"})
        openai_server.add_text("done")
        sid = c.new_session(approvalMode="never")
        assert (
            c.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})["result"]["text"] == "done"
        )
    finally:
        c.close()
    assert "GARBAGE" in c.stderr()


def test_E16_execute_command_paths_and_sizes(lsp: Lsp, openai_server, tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "a.py").write_text("a = 1\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    sid = lsp.new_session(workspaceFolder=folder.as_uri(), syncMode="copy")

    def command(method: str, args: dict[str, Any]) -> dict[str, Any]:
        return lsp.call("workspace/executeCommand",
                        {"command": p.command_name(method), "arguments": [args]})  # fmt: skip

    outside = ["../victim.txt", str(victim), "../../../../etc/passwd", "/etc/passwd"]
    applied = command(p.WORKSPACE_APPLY, {"sessionId": sid, "paths": outside, "method": "write"})
    discarded = command(p.WORKSPACE_DISCARD, {"sessionId": sid, "paths": outside})
    collected = command(
        p.TASK_COLLECT_FILE, {"sessionId": sid, "taskId": "t1", "path": "../victim.txt"}
    )
    assert victim.read_text() == "keep me"
    assert not applied.get("result", {}).get("applied")
    assert not discarded.get("result", {}).get("discarded")
    assert "error" in collected
    huge = command(p.SESSION_LIST, {"includeSaved": False, "junk": "x" * (10 << 20)})
    assert "error" in huge and huge["error"]["code"] == p.INVALID_PARAMS
    assert "result" in lsp.call(p.SESSION_LIST, {})


def test_E17_client_that_stops_reading(openai_server, tmp_path: Path) -> None:
    c = start_lsp(tmp_path / "s", openai_server)
    try:
        openai_server.add_tool_call(
            "bash", {"cmd": "for i in $(seq 30000); do echo line $i of chatty output; done"}
        )
        openai_server.add_slow_stream("x " * 3000, delay_per_chunk=0.0005)
        sid = c.new_session(approvalMode="never")
        prompt = c.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "talk a lot"})
        time.sleep(4)  # not reading: the server's writes back up
        rss = _rss_kb(c.proc.pid) // 1024
        listed = c.start(p.SESSION_LIST, {})
        reply = c.reply(prompt, 60)
        assert reply["result"]["stopReason"] == "end_turn"
        assert "result" in c.reply(listed, 10)
        print(f"\nE17: server RSS {rss} MiB while the client did not read")
        assert rss < 300
    finally:
        c.close()


def test_E18_approval_prompt_edge_cases(openai_server, tmp_path: Path) -> None:
    for i in range(4):
        openai_server.add_tool_call("bash", {"cmd": f"touch e18-{i}"})
    openai_server.add_text("done")
    c = start_lsp(tmp_path / "s", openai_server, args=["--approval-timeout", "1"])
    try:
        sid = c.new_session()
        prompt = c.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
        c.permission()  # silent
        c.answer(c.permission()["id"], {"optionId": "<script>alert(1)</script>", "title": "Yes!!"})
        c.answer(c.permission()["id"], error={"code": -32603, "message": "the editor crashed"})
        c.answer(c.permission()["id"], error={"code": -32601, "message": "no such method"})
        assert c.reply(prompt, 30)["result"]["stopReason"] == "end_turn"
        tools = [m for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "tool"]
        assert len(tools) == 4 and all("denied" in t["content"] for t in tools), tools
        assert not list(tmp_path.rglob("e18-*"))
    finally:
        c.close()


_ = (json, text_reply)
