"""``pygent ui``'s language server over the WebSocket, without a browser: pages come and go, sessions stay.

Each page is a JSON-RPC client as ``ui.js`` is one (``tests.web.conftest.rpc_page``);
the server is the real ``pygent ui`` process on the scripted model server, local
runtime, so every command asks.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from pygent.lsp import protocol as p
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply
from tests.web.conftest import RpcPage, StartUi, UiServer, rpc_page

PERMISSION = "pygent/requestPermission"


def _asked(data: dict) -> bool:
    return data.get("method") == PERMISSION


async def _start_turn(page: RpcPage, prompt: str) -> str:
    session = await page.call("pygent/session/new", {"syncMode": "none"})
    await page.send("pygent/session/prompt", {"sessionId": session["sessionId"], "prompt": prompt})
    return str(session["sessionId"])


def _updates(page: RpcPage, session_id: str) -> list[dict]:
    return [
        d["params"]["update"]
        for d in page.seen
        if d.get("method") == "pygent/sessionUpdate" and d["params"]["sessionId"] == session_id
    ]


def test_a_waiting_approval_is_asked_again_on_the_page_that_comes_back(
    start_ui: StartUi, openai_server: ScriptedOpenAIServer
) -> None:
    """Reload: the new connection gets the session's log so far, the request still waiting,
    and the live updates after it; a restarted server shows the saved history."""
    openai_server.add_tool_call("bash", {"cmd": "echo moved-over"})
    openai_server.add_text("Done on the second page.")
    ui = start_ui()

    async def first() -> str:
        async with rpc_page(ui) as page:
            session_id = await _start_turn(page, "run it")
            await page.receive_until(_asked)
            return session_id

    async def second(session_id: str) -> None:
        async with rpc_page(ui) as page:
            listed = await page.call("pygent/session/list", {})
            assert [s["sessionId"] for s in listed["sessions"]] == [session_id]
            transcript = await page.call(p.SESSION_TRANSCRIPT, {"sessionId": session_id})
            kinds = [e["type"] for e in transcript["events"]]
            assert kinds[0] == "turn_started" and "tool_call_proposed" in kinds
            assert transcript["events"][-1]["type"] == "permission"
            assert transcript["events"][-1]["state"] == "pending"
            request = await page.receive_until(_asked)
            assert request["params"]["toolCall"]["arguments"]["cmd"] == "echo moved-over"
            await page.answer(request, {"optionId": "allow_once"})
            ended = await page.update("turn_ended")
            assert ended["params"]["seq"] > transcript["seq"]
            outputs = [u["text"] for u in _updates(page, session_id) if u["type"] == "tool_output"]
            assert "moved-over" in "".join(outputs)

    session_id = asyncio.run(first())
    asyncio.run(second(session_id))
    assert ui.stop() == 0

    async def after_restart(again: UiServer) -> None:
        async with rpc_page(again) as page:
            listed = await page.call("pygent/session/list", {"includeSaved": True})
            assert session_id in [s["sessionId"] for s in listed["sessions"]]
            saved = await page.call(p.SESSION_TRANSCRIPT, {"sessionId": session_id})
            kinds = [e["type"] for e in saved["events"]]
            assert kinds == [
                "turn_started",
                "tool_call_proposed",
                "tool_call_finished",
                "message_done",
                "turn_ended",
            ], kinds
            assert saved["events"][2]["output"].strip() == "moved-over"

    asyncio.run(after_restart(start_ui()))


def test_with_every_page_closed_the_approval_is_denied_after_the_grace(
    start_ui: StartUi, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo never-run"})
    openai_server.add_text("Denied, fine.")
    ui = start_ui()

    async def leave() -> str:
        async with rpc_page(ui) as page:
            session_id = await _start_turn(page, "run it")
            await page.receive_until(_asked)
            return session_id

    session_id = asyncio.run(leave())
    left = time.monotonic()

    async def come_back() -> None:
        while True:
            async with rpc_page(ui) as page:
                transcript = await page.call(p.SESSION_TRANSCRIPT, {"sessionId": session_id})
                events = transcript["events"]
                if events[-1]["type"] == "turn_ended":
                    resolved = [e for e in events if e["type"] == "permission"][-1]
                    assert resolved["state"] == "resolved"
                    assert resolved["outcome"].startswith("denied: no client was attached")
                    finished = [e for e in events if e["type"] == "tool_call_finished"]
                    assert finished[0]["status"] == "denied"
                    return
            assert time.monotonic() - left < 30, events
            await asyncio.sleep(0.5)

    # Nobody comes back within the grace: the call is denied and the turn goes on.
    time.sleep(6)
    asyncio.run(come_back())
    assert time.monotonic() - left >= 5


def test_the_download_is_a_patch_that_applies(
    start_ui: StartUi, openai_server: ScriptedOpenAIServer, project: Path, tmp_path: Path
) -> None:
    """Added, deleted and modified files: ``git apply`` of the download redoes them."""
    openai_server.add_tool_call(
        "bash", {"cmd": "echo new > added.txt && rm app.py && echo more >> README.md"}
    )
    openai_server.add_text("Changed.")
    ui = start_ui(["--folder", str(project), "--no-confirm-bash"])

    async def drive() -> str:
        async with rpc_page(ui) as page:
            session = await page.call(
                "pygent/session/new", {"workspaceFolder": project.as_uri(), "syncMode": "copy"}
            )
            params = {"sessionId": session["sessionId"], "prompt": "change things"}
            result = await page.call("pygent/session/prompt", params)
            assert result["changes"] == 3, result
            return str(session["sessionId"])

    session_id = asyncio.run(drive())
    url = f"{ui.origin}/download/changes.patch?token={ui.token}&session={session_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        patch = response.read().decode("utf-8")
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    subprocess.run(["git", "apply"], input=patch, text=True, cwd=copy, check=True)
    assert (copy / "added.txt").read_text() == "new\n"
    assert not (copy / "app.py").exists()
    assert (copy / "README.md").read_text() == "# Demo project\nmore\n"
    assert (project / "app.py").exists(), "the folder itself is untouched"


def test_a_delegated_task_asks_the_page_too(
    start_ui: StartUi, openai_server: ScriptedOpenAIServer
) -> None:
    """A sub-agent asks from the task manager's thread; the request names the task."""
    calls = {"n": 0}

    def sub_agent(body: dict[str, Any]) -> Any:
        users = [m.get("content") for m in body["messages"] if m["role"] == "user"]
        if not any(isinstance(u, str) and "list the files" in u for u in users):
            return None
        calls["n"] += 1
        if calls["n"] == 1:
            return tool_call_reply("bash", {"cmd": "echo from-the-task"})
        return text_reply("listed")

    openai_server.set_responder(sub_agent)
    openai_server.add_tool_call("delegate_task", {"prompt": "list the files"})
    openai_server.add_text("Delegated.")
    ui = start_ui()

    async def drive() -> None:
        async with rpc_page(ui) as page:
            session_id = await _start_turn(page, "delegate it")
            request = await page.receive_until(_asked)
            task_id = request["params"]["taskId"]
            assert task_id and request["params"]["toolCall"]["preview"] == "echo from-the-task"
            await page.answer(request, {"optionId": "allow_once"})
            await page.receive_until(
                lambda d: (
                    d.get("method") == "pygent/sessionUpdate"
                    and d["params"]["update"]["type"] == "task_status"
                    and d["params"]["update"]["status"] == "finished"
                )
            )
            updates = _updates(page, session_id)
            outputs = [u["text"] for u in updates if u["type"] == "tool_output"]
            assert "from-the-task" in "".join(outputs)
            assert all(u["taskId"] == task_id for u in updates if u["type"] == "tool_output")

    asyncio.run(drive())
