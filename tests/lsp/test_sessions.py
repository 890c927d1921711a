"""End to end through a real LSP client: sessions, prompts, approvals, denial, cancel, concurrency."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from pygent.lsp import protocol as p
from tests.lsp.conftest import as_dict, request
from tests.openai_server import ScriptedOpenAIServer, text_reply

pytestmark = pytest.mark.timeout(90)
EVERY_TRANSPORT = True  # stdio, TCP, WebSocket and the host socket (tests/lsp/conftest.py)


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m.get("content") or "" for m in body["messages"] if m.get("role") == "tool"]


def permission_handler(answers: list[dict[str, Any]], seen: list[dict[str, Any]]):
    def answer(params: Any) -> dict[str, Any]:
        seen.append(as_dict(params))
        return answers.pop(0) if answers else {"optionId": "reject_once"}

    return answer


async def test_write_and_run_with_approval(
    start_client, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call(
        "write_file", {"path": "hello.py", "content": "print('hi from pygent')\n"}
    )
    openai_server.add_tool_call("bash", {"cmd": "python3 hello.py"})
    openai_server.add_text("It printed the greeting.")
    seen: list[dict[str, Any]] = []
    answers = [{"optionId": "allow_once"}, {"optionId": "allow_once"}]

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(permission_handler(answers, seen))

    client, updates = await start_client(setup)
    info = await request(client, p.SESSION_NEW, {"runtime": "local"})
    sid = info["sessionId"]
    assert info["runtime"] == "local" and info["live"] is True
    result = await request(
        client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "write and run hello.py"}
    )
    assert result["stopReason"] == "end_turn", result
    assert result["text"] == "It printed the greeting."

    # Two approvals: a diff for the write, the command line for bash.
    assert [s["toolCall"]["tool"] for s in seen] == ["write_file", "bash"]
    assert seen[0]["toolCall"]["previewKind"] == "diff"
    assert "+print('hi from pygent')" in seen[0]["toolCall"]["preview"]
    assert seen[1]["toolCall"]["preview"] == "python3 hello.py"
    assert seen[1]["reason"].startswith("local mode")
    assert {o["optionId"] for o in seen[1]["options"]} == set(p.PERMISSION_OPTIONS)

    # The command ran and its output streamed as updates, in order.
    outputs = "".join(u["text"] for u in updates.of(sid, "tool_output"))
    assert "hi from pygent" in outputs
    seqs = [u["seq"] for u in updates.items if u["sessionId"] == sid]
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = [u["type"] for u in updates.of(sid)]
    assert kinds[0] == "turn_started" and "turn_ended" in kinds
    assert kinds.index("tool_call_started") < kinds.index("tool_output") < kinds.index("turn_ended")
    # The write names its file (relative to the session's folder), for a client to link.
    proposed = updates.of(sid, "tool_call_proposed")
    assert [(u["tool"], u["locations"]) for u in proposed] == [
        ("write_file", ["hello.py"]), ("bash", [])]
    assert any(
        u["state"] == "resolved" and u["outcome"] == "allow_once"
        for u in updates.of(sid, "permission")
    )
    # The model saw the output.
    last = openai_server.chat_requests[-1].body
    assert any("hi from pygent" in m for m in tool_messages(last))
    # $/progress for generic clients.
    assert client.progress_reports, "expected work-done progress"
    reports = next(iter(client.progress_reports.values()))
    assert reports[0].kind == "begin" and reports[-1].kind == "end"


async def test_denial_message_reaches_the_model(
    start_client, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "rm -rf build"})
    openai_server.add_text("OK, I will not.")
    seen: list[dict[str, Any]] = []
    answers = [{"optionId": "reject_once", "message": "keep build/ and run make clean instead"}]

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(permission_handler(answers, seen))

    client, updates = await start_client(setup)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "clean up"})
    assert result["stopReason"] == "end_turn"
    finished = updates.of(sid, "tool_call_finished")
    assert finished and finished[0]["status"] == "denied"
    second = openai_server.chat_requests[1].body
    assert any("keep build/ and run make clean instead" in m for m in tool_messages(second))


async def test_client_without_permission_request_gets_denied(start_client, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo should-not-run"})
    openai_server.add_text("denied, fine")
    client, updates = await start_client()  # no pygent/requestPermission handler
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    started = time.monotonic()
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    assert time.monotonic() - started < 10
    assert result["stopReason"] == "end_turn"
    assert updates.of(sid, "tool_call_finished")[0]["status"] == "denied"
    assert not updates.of(sid, "tool_output")
    second = openai_server.chat_requests[1].body
    assert any("does not implement pygent/requestPermission" in m for m in tool_messages(second))


@pytest.mark.stdio_only
async def test_silent_and_garbage_answers_are_denied(start_client, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo one"})
    openai_server.add_tool_call("bash", {"cmd": "echo two"})
    openai_server.add_text("done")
    calls = {"n": 0}

    async def answer(params: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            await asyncio.sleep(3600)  # never answers
        return {"optionId": "yes please"}

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(answer)

    client, updates = await start_client(setup, args=["--approval-timeout", "1"])
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    started = time.monotonic()
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    assert result["stopReason"] == "end_turn"
    assert time.monotonic() - started < 15
    statuses = [u["status"] for u in updates.of(sid, "tool_call_finished")]
    assert statuses == ["denied", "denied"]
    msgs = tool_messages(openai_server.chat_requests[-1].body)
    assert any("did not answer the approval request within 1s" in m for m in msgs)
    assert any("not one of the options" in m for m in msgs)


def _gone(marker: str, timeout: float = 5.0) -> bool:
    """True once no ``sleep <marker>`` process is left (the kill is asynchronous)."""
    deadline = time.monotonic() + timeout
    while _sleepers(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "sleep" in cmdline:
            found.append(int(entry))
    return found


async def test_cancel_mid_command_kills_it(start_client, openai_server) -> None:
    marker = "31.4159"
    openai_server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    openai_server.add_text("never reached")
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "approvalMode": "never"}))[
        "sessionId"
    ]
    prompt = asyncio.ensure_future(
        request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "wait"})
    )
    await updates.wait_for(lambda u: u["update"]["type"] == "tool_call_started")
    await asyncio.sleep(0.3)
    assert _sleepers(marker), "the command should be running"
    started = time.monotonic()
    cancelled = await request(client, p.SESSION_CANCEL, {"sessionId": sid})
    assert cancelled == {"cancelled": True}
    result = await asyncio.wait_for(prompt, 10)
    assert result["stopReason"] == "cancelled"
    assert time.monotonic() - started < 5
    assert _gone(marker), "the sleep process must be killed"
    assert updates.of(sid, "tool_call_finished")[-1]["status"] == "cancelled"
    # The session still works after a cancel.
    again = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "hi"})
    assert again["stopReason"] == "end_turn"


async def test_cancel_while_approval_pending(start_client, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo pending"})
    asked = asyncio.Event()

    async def answer(params: Any) -> Any:
        asked.set()
        await asyncio.sleep(3600)

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(answer)

    client, updates = await start_client(setup)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    prompt = asyncio.ensure_future(
        request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    )
    await asyncio.wait_for(asked.wait(), 10)
    assert (await request(client, p.SESSION_CANCEL, {"sessionId": sid}))["cancelled"] is True
    result = await asyncio.wait_for(prompt, 10)
    assert result["stopReason"] == "cancelled"
    assert any(u["outcome"] == "cancelled" for u in updates.of(sid, "permission"))


async def test_cancel_request_on_prompt_cancels_the_turn(start_client, openai_server) -> None:
    marker = "32.718"
    openai_server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "approvalMode": "never"}))[
        "sessionId"
    ]
    future = client.protocol.send_request(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "wait"})
    await updates.wait_for(lambda u: u["update"]["type"] == "tool_call_started")
    msg_id = next(k for k, f in client.protocol._request_futures.items() if f is future)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(asyncio.wrap_future(future), 10)
    assert "cancel" in str(info.value).lower()
    await updates.wait_for(lambda u: u["update"]["type"] == "turn_ended")
    assert _gone(marker)


async def test_two_sessions_run_concurrently(start_client, openai_server) -> None:
    def responder(body: dict[str, Any]) -> Any:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        if users and users[-1] == "slow":
            from tests.openai_server import SlowStreamReply

            return SlowStreamReply("tick " * 40, 0.1)
        return text_reply("fast answer")

    openai_server.set_responder(responder)
    client, updates = await start_client()
    a = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    b = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    slow = asyncio.ensure_future(
        request(client, p.SESSION_PROMPT, {"sessionId": a, "prompt": "slow"})
    )
    await updates.wait_for(lambda u: u["sessionId"] == a and u["update"]["type"] == "message_delta")
    started = time.monotonic()
    listed = await request(client, p.SESSION_LIST, {})
    assert time.monotonic() - started < 1.0
    busy = {s["sessionId"]: s["busy"] for s in listed["sessions"]}
    assert busy == {a: True, b: False}
    fast = await request(client, p.SESSION_PROMPT, {"sessionId": b, "prompt": "fast"})
    assert fast["text"] == "fast answer"
    assert not slow.done(), "the fast session must not wait for the slow one"
    slow_result = await asyncio.wait_for(slow, 30)
    assert slow_result["text"].startswith("tick")
    deltas = "".join(u["text"] for u in updates.of(a, "message_delta"))
    assert deltas == slow_result["text"]
    assert not updates.of(b, "message_delta") or "tick" not in "".join(
        u["text"] for u in updates.of(b, "message_delta")
    )


async def test_busy_session_and_bad_input_get_errors(start_client, openai_server) -> None:
    from tests.openai_server import SlowStreamReply

    openai_server.add(SlowStreamReply("x " * 20, 0.1))
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    slow = asyncio.ensure_future(
        request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "a"})
    )
    await updates.wait_for(lambda u: u["update"]["type"] == "message_delta")
    with pytest.raises(Exception) as busy:
        await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "b"})
    assert getattr(busy.value, "code", None) == p.SESSION_BUSY
    cases = [
        (
            p.SESSION_PROMPT,
            {"sessionId": 5, "prompt": "x"},
            p.INVALID_PARAMS,
            "sessionId: expected a string",
        ),
        (
            p.SESSION_PROMPT,
            {"sessionId": "nope", "prompt": "x"},
            p.SESSION_NOT_FOUND,
            "no live session",
        ),
        (p.SESSION_NEW, {"runtime": "vm"}, p.INVALID_PARAMS, "expected one of"),
        (p.SESSION_NEW, {"workspaceFolder": "relative/dir"}, p.PATH_REFUSED, "absolute"),
        (p.SESSION_CLOSE, None, p.INVALID_PARAMS, "sessionId: is required"),
        (p.TOOLS_DISABLE, {"sessionId": sid, "names": ["nope"]}, p.PYGENT_ERROR, "unknown tool"),
        (p.TASK_STATUS, {"sessionId": sid, "taskId": "t9"}, p.TASK_NOT_FOUND, "no task"),
        (p.SESSION_LIST, {"bogus": 1}, p.INVALID_PARAMS, "unknown field"),
        ("pygent/nope", {}, p.METHOD_NOT_FOUND, "nope"),
    ]
    for method, params, code, text in cases:
        with pytest.raises(Exception) as info:
            await request(client, method, params)
        assert getattr(info.value, "code", None) == code, (method, info.value)
        assert text in str(info.value), (method, str(info.value))
    # Commands: unknown name, two arguments.
    with pytest.raises(Exception) as info:
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="pygent.nope")
        )
    assert "unknown command" in str(info.value)
    with pytest.raises(Exception) as info:
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="pygent.session.list", arguments=[{}, {}])
        )
    assert "takes one argument" in str(info.value)
    # Still serving; no params at all is answered.
    listed = await request(client, p.SESSION_LIST, None)
    assert listed["sessions"][0]["sessionId"] == sid
    await asyncio.wait_for(slow, 30)


async def test_execute_command_flow(start_client, openai_server) -> None:
    openai_server.add_text("via command")
    client, updates = await start_client()
    info = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="pygent.session.new", arguments=[{"runtime": "local"}])
    )
    sid = as_dict(info)["sessionId"]
    client.progress_reports["tok-1"] = []  # a token the client made itself
    result = as_dict(
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="pygent.session.prompt",
                arguments=[{"sessionId": sid, "prompt": "hi"}],
                work_done_token="tok-1",
            )
        )
    )  # a client-made token: no create request
    assert result["stopReason"] == "end_turn" and result["text"] == "via command"
    assert [r.kind for r in client.progress_reports["tok-1"]][0] == "begin"
    tools = as_dict(
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="pygent.tools.disable", arguments=[{"sessionId": sid, "names": ["bash"]}]
            )
        )
    )
    assert {t["name"]: t["enabled"] for t in tools["tools"]}["bash"] is False
    closed = as_dict(
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="pygent.session.close", arguments=[{"sessionId": sid}]
            )
        )
    )
    assert closed == {"closed": True}


async def test_resume_a_saved_session(start_client, openai_server) -> None:
    openai_server.add_text("first answer")
    openai_server.add_text("second answer")
    client, _updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "title": "remember me"}))[
        "sessionId"
    ]
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "first question"})
    assert await request(client, p.SESSION_CLOSE, {"sessionId": sid}) == {"closed": True}
    saved = await request(client, p.SESSION_LIST, {"includeSaved": True})
    entry = next(s for s in saved["sessions"] if s["sessionId"] == sid)
    assert entry["live"] is False and entry["title"] == "remember me" and entry["messageCount"] >= 2
    resumed = await request(client, p.SESSION_RESUME, {"sessionId": sid, "runtime": "local"})
    assert resumed["sessionId"] == sid and resumed["live"] is True and resumed["messageCount"] >= 2
    result = await request(
        client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "second question"}
    )
    assert result["text"] == "second answer"
    contents = [m.get("content") for m in openai_server.chat_requests[-1].body["messages"]]
    assert "first question" in contents and "first answer" in contents
    settings = await request(
        client, p.SESSION_SETTINGS, {"sessionId": sid, "approvalMode": "confirm"}
    )
    assert settings["approvalMode"] == "confirm"
    with pytest.raises(Exception) as info:
        await request(client, p.SESSION_RESUME, {"sessionId": "19990101-000000-abcdef"})
    assert getattr(info.value, "code", None) == p.SESSION_NOT_FOUND


def test_tcp_mode(tmp_path: Path, openai_server) -> None:
    import socket
    import subprocess

    from tests.lsp.conftest import SERVER_COMMAND, server_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [*SERVER_COMMAND[:-1], "--tcp", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=server_env(tmp_path / "tcp", openai_server), cwd=tmp_path, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the TCP server did not start"
                time.sleep(0.1)
        with conn:
            body = b'{"jsonrpc":"2.0","id":1,"method":"pygent/session/list"}'
            conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            conn.settimeout(10)
            data = b""
            while b'"sessions"' not in data:
                data += conn.recv(65536)
            assert b'"result": {"sessions": []}' in data
        assert proc.wait(15) == 0, "the server exits once its client disconnects"
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_allow_always_with_a_pattern(start_client, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo one"})
    openai_server.add_tool_call("bash", {"cmd": "echo two"})
    openai_server.add_tool_call("bash", {"cmd": "ls"})
    openai_server.add_text("done")
    seen: list[dict[str, Any]] = []
    answers = [{"optionId": "allow_always", "pattern": "echo *"}, {"optionId": "reject_once"}]

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(permission_handler(answers, seen))

    client, updates = await start_client(setup)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    # "echo two" matched the user's pattern and ran without asking; "ls" asked.
    assert [s["toolCall"]["preview"] for s in seen] == ["echo one", "ls"]
    statuses = [u["status"] for u in updates.of(sid, "tool_call_finished")]
    assert statuses == ["completed", "completed", "denied"]


async def test_cancel_request_on_execute_command_cancels_the_turn(
    start_client, openai_server
) -> None:
    marker = "34.5678"
    openai_server.add_tool_call("bash", {"cmd": f"sleep {marker}"})
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "approvalMode": "never"}))[
        "sessionId"
    ]
    future = client.protocol.send_request(
        types.WORKSPACE_EXECUTE_COMMAND,
        types.ExecuteCommandParams(
            command="pygent.session.prompt", arguments=[{"sessionId": sid, "prompt": "w"}]
        ),
    )
    await updates.wait_for(lambda u: u["update"]["type"] == "tool_call_started")
    msg_id = next(k for k, f in client.protocol._request_futures.items() if f is future)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(asyncio.wrap_future(future), 10)
    assert "cancel" in str(info.value).lower()
    ended = await updates.wait_for(lambda u: u["update"]["type"] == "turn_ended")
    assert ended["update"]["stopReason"] == "cancelled"
    assert _gone(marker)


async def test_generic_client_approves_through_show_message_request(
    start_client, openai_server
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo via-message"})
    openai_server.add_tool_call("bash", {"cmd": "echo second"})
    openai_server.add_text("done")
    shown: list[types.ShowMessageRequestParams] = []

    def setup(client: Any) -> None:
        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def ask(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
            shown.append(params)
            return params.actions[0] if len(shown) == 1 else None  # allow, then dismiss

    from tests.lsp.conftest import CAPABILITIES

    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(
            work_done_progress=True, show_message=types.ShowMessageRequestClientCapabilities()
        ),
        workspace=CAPABILITIES.workspace,
    )
    client, updates = await start_client(setup, capabilities=caps)
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})
    assert len(shown) == 2 and "echo via-message" in shown[0].message
    assert [a.title for a in shown[0].actions][0] == "Allow once"
    assert [u["status"] for u in updates.of(sid, "tool_call_finished")] == ["completed", "denied"]
    assert "via-message" in "".join(u["text"] for u in updates.of(sid, "tool_output"))
