"""The bridge in-process: a real SessionService (local runtime) and the scripted model server,
with recording pages in place of browser sockets.

These pin the rules a browser test cannot reach quickly: who answers approvals when no
page is there or nobody answers, what a page that connects later gets, malformed
messages, saved sessions, and the downloadable patch.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pygent import events as ev
from pygent.settings import Settings, load_settings
from pygent.web.bridge import Bridge
from pygent.web.eventlog import SessionLog, history_events
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply

Message = dict[str, Any]


class FakePage:
    """Records what the bridge posts; waits for a matching message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def post(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    def of(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m["type"] == kind]

    def events(self, kind: str | None = None) -> list[Message]:
        return [m["event"] for m in self.of("event") if kind is None or m["event"]["type"] == kind]

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 15) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [
                    m["type"] if m["type"] != "event" else m["event"]["type"] for m in self.messages
                ]
                raise AssertionError(f"no matching message within {timeout}s; got {kinds}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_event(self, kind: str, timeout: float = 15) -> Message:
        found = await self.wait_for(
            lambda m: m["type"] == "event" and m["event"]["type"] == kind, timeout
        )
        return found["event"]


def make_settings(tmp_path: Path, server: ScriptedOpenAIServer) -> Settings:
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "PYGENT_MODEL": "test-model",
        "PYGENT_USE_DOCKER": "0",
        "PYGENT_REQUEST_TIMEOUT": "30",
        "PYGENT_SESSIONS_DIR": str(tmp_path / "sessions"),
    }
    return load_settings(environ=env, cwd=tmp_path)


MakeBridge = Callable[..., Bridge]


@pytest.fixture
async def make_bridge(
    tmp_path: Path, openai_server: ScriptedOpenAIServer
) -> AsyncIterator[MakeBridge]:
    bridges: list[Bridge] = []

    def make(**kwargs: Any) -> Bridge:
        grace = kwargs.pop("grace", None)
        bridge = Bridge(make_settings(tmp_path, openai_server), **kwargs)
        if grace is not None:
            bridge.broker.grace = grace
        bridge.start()
        bridges.append(bridge)
        return bridge

    yield make
    for bridge in bridges:
        await bridge.aclose()


async def connect(bridge: Bridge) -> FakePage:
    page = FakePage()
    bridge.attach(page)
    await bridge.handle(page, {"type": "ready", "protocol": 1})
    return page


async def test_ready_gets_init_with_capabilities_and_status(make_bridge: MakeBridge) -> None:
    page = await connect(make_bridge())
    init = page.of("init")[0]
    assert init["host"] == "pygent-ui"
    assert init["capabilities"] == {"openDiff": False, "openInEditor": False, "actions": []}
    assert init["status"]["connection"] == "ready"
    assert init["status"]["runtime"] == "local"  # PYGENT_USE_DOCKER=0
    assert init["status"]["model"] == "test-model"
    assert init["status"]["problem"] is None
    assert init["activeSessionId"] is None


async def test_allowed_command_runs_and_every_step_reaches_the_page(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo bridged-output"})
    openai_server.add_text("It printed bridged-output.")
    bridge = make_bridge()
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    assert approval["tool"] == "bash" and approval["previewKind"] == "command"
    assert approval["preview"] == "echo bridged-output"
    assert "local" in approval["reason"]
    assert {o["optionId"] for o in approval["options"]} >= {"allow_once", "reject_once"}
    pending = await page.wait_event("permission")
    assert pending["state"] == "pending" and pending["callId"] == approval["callId"]

    await bridge.handle(
        page,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    ended = await page.wait_event("turn_ended")
    assert ended["stopReason"] == "end_turn"
    assert page.of("approvalClosed")[0] == {
        "type": "approvalClosed",
        "id": approval["id"],
        "outcome": "allow_once",
    }
    output = "".join(e["text"] for e in page.events("tool_output"))
    assert "bridged-output" in output
    finished = page.events("tool_call_finished")[0]
    assert finished["status"] == "completed" and finished["ok"] is True
    kinds = [e["type"] for e in page.events()]
    # Order as it happened: proposed, waiting, resolved, started, output, finished.
    for earlier, later in [
        ("tool_call_proposed", "permission"),
        ("permission", "tool_call_started"),
        ("tool_call_started", "tool_output"),
        ("tool_output", "tool_call_finished"),
        ("tool_call_finished", "turn_ended"),
    ]:
        assert kinds.index(earlier) < kinds.index(later), kinds
    # The model got the command's output back.
    tool_messages = [
        m for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "tool"
    ]
    assert "bridged-output" in tool_messages[0]["content"]


async def test_no_page_means_denied(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo should-not-run"})
    openai_server.add_text("ok")
    bridge = make_bridge()
    page = await connect(bridge)
    bridge.detach(page)  # the page went away before the agent asked
    await bridge.handle(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    session_id = bridge.active_session_id
    assert session_id is not None
    events = bridge._logs[session_id].events
    finished = [e for e in events if e["type"] == "tool_call_finished"]
    assert finished and finished[0]["status"] == "denied"
    resolved = [e for e in events if e["type"] == "permission"]
    assert resolved[-1]["state"] == "resolved" and "no browser page" in resolved[-1]["outcome"]
    tool_messages = [
        m for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "tool"
    ]
    assert "no browser page" in tool_messages[0]["content"]
    assert not [e for e in events if e["type"] == "tool_output"]


async def test_unanswered_approval_times_out_as_a_denial(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo late"})
    openai_server.add_text("ok")
    bridge = make_bridge(approval_timeout=0.5)
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    closed = await page.wait_for(lambda m: m["type"] == "approvalClosed")
    assert closed == {"type": "approvalClosed", "id": approval["id"], "outcome": "timeout"}
    finished = await page.wait_event("tool_call_finished")
    assert finished["status"] == "denied"
    await page.wait_event("turn_ended")
    # A late answer is refused, and the page is told the card is gone.
    await bridge.handle(
        page,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    assert page.of("approvalClosed")[-1]["outcome"] == "expired"


async def test_closing_every_page_denies_after_the_grace(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo orphan"})
    openai_server.add_text("ok")
    bridge = make_bridge(grace=0.2)
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    await page.wait_for(lambda m: m["type"] == "approval")
    bridge.detach(page)
    session_id = bridge.active_session_id
    assert session_id is not None
    deadline = time.monotonic() + 10
    while not bridge._logs[session_id].events or bridge._logs[session_id].turn_open():
        assert time.monotonic() < deadline, "the turn did not end after the page left"
        await asyncio.sleep(0.05)
    finished = [e for e in bridge._logs[session_id].events if e["type"] == "tool_call_finished"]
    assert finished[0]["status"] == "denied"
    tool_messages = [
        m for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "tool"
    ]
    assert "page was closed" in tool_messages[0]["content"]


async def test_a_page_that_connects_later_gets_the_transcript_and_pending_approvals(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo again"})
    openai_server.add_text("done")
    bridge = make_bridge()
    first = await connect(bridge)
    bridge.receive(first, {"type": "prompt", "sessionId": None, "text": "first prompt"})
    approval = (await first.wait_for(lambda m: m["type"] == "approval"))["approval"]

    second = await connect(bridge)  # a reload, or another tab
    init = second.of("init")[0]
    assert init["activeSessionId"] == approval["sessionId"]
    transcript = second.of("transcript")[0]
    assert transcript["sessionId"] == approval["sessionId"]
    kinds = [e["type"] for e in transcript["events"] if e["type"] != "usage"]
    assert kinds == ["turn_started", "tool_call_proposed", "permission"]
    assert transcript["events"][0]["prompt"] == "first prompt"
    assert second.of("approval")[0]["approval"]["id"] == approval["id"]

    # Either page may answer; both see the card go.
    await bridge.handle(
        second,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    await first.wait_for(lambda m: m["type"] == "approvalClosed")
    await second.wait_event("turn_ended")
    await first.wait_event("turn_ended")


async def test_malformed_messages_are_dropped_and_the_bridge_goes_on(
    make_bridge: MakeBridge,
) -> None:
    bridge = make_bridge()
    page = await connect(bridge)
    before = len(page.messages)
    for bad in [None, {"type": "explode"}, {"type": "prompt", "text": 5}, {"type": "cancel"}]:
        await bridge.handle(page, bad)
    assert len(page.messages) == before
    # Answers for unknown approvals and actions the browser lacks get a polite reply.
    await bridge.handle(
        page, {"type": "answerApproval", "id": "nope", "optionId": "allow_once", "message": None}
    )
    assert page.of("approvalClosed")[-1] == {
        "type": "approvalClosed",
        "id": "nope",
        "outcome": "expired",
    }
    await bridge.handle(page, {"type": "runAction", "action": "restartServer"})
    await bridge.handle(page, {"type": "openChange", "sessionId": "x", "path": "a"})
    assert [m["level"] for m in page.of("toast")] == ["info", "info"]
    # An unknown session is an error toast, not an exception.
    await bridge.handle(page, {"type": "cancelTask", "sessionId": "no-such", "taskId": "t1"})
    assert page.of("toast")[-1]["level"] == "error"


async def test_cancel_withdraws_the_approval_and_ends_the_turn_cancelled(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo never"})
    bridge = make_bridge()
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    await bridge.handle(page, {"type": "cancel", "sessionId": approval["sessionId"]})
    ended = await page.wait_event("turn_ended")
    assert ended["stopReason"] == "cancelled"
    assert page.of("approvalClosed")[0]["outcome"] == "cancelled"
    assert not page.events("tool_output")


async def test_cancel_stops_the_rest_of_the_command(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    """Stop kills the whole command, not only the child running at that moment."""
    openai_server.add_tool_call("bash", {"cmd": "sleep 3; touch after-cancel.txt"})
    bridge = make_bridge()
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "run it"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    await bridge.handle(
        page,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    await page.wait_event("tool_call_started")
    await asyncio.sleep(0.3)
    await bridge.handle(page, {"type": "cancel", "sessionId": approval["sessionId"]})
    assert (await page.wait_event("turn_ended"))["stopReason"] == "cancelled"
    workspace = bridge.service.get(approval["sessionId"]).runtime.workspace
    await asyncio.sleep(3.5)
    assert not (workspace / "after-cancel.txt").exists()


async def test_changes_come_back_as_a_patch_that_applies(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "keep.txt").write_text("one\ntwo\n")
    (folder / "gone.txt").write_text("bye\n")
    openai_server.add_tool_call(
        "bash", {"cmd": "printf 'one\\n2\\n' > keep.txt; rm gone.txt; echo new > new.txt"}
    )
    openai_server.add_text("changed")
    bridge = make_bridge(folder=folder)
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "edit"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    await bridge.handle(
        page,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    note = await page.wait_event("changes")
    assert note["count"] == 3 and sorted(note["paths"]) == ["gone.txt", "keep.txt", "new.txt"]
    listed = page.of("changes")[-1]
    assert listed["syncMode"] == "copy"
    assert {c["path"]: c["status"] for c in listed["changes"]} == {
        "gone.txt": "deleted",
        "keep.txt": "modified",
        "new.txt": "added",
    }
    assert "+2" in next(c["diff"] for c in listed["changes"] if c["path"] == "keep.txt")
    # The folder is untouched until someone applies; the patch reproduces the change.
    assert (folder / "gone.txt").exists() and not (folder / "new.txt").exists()
    found = await bridge.patch()
    assert found is not None
    name, text = found
    assert name.endswith(".patch") and "--- /dev/null" in text and "+++ /dev/null" in text
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
        done = subprocess.run(
            ["git", "apply", "-"], cwd=copy, input=text, text=True, capture_output=True
        )
        assert done.returncode == 0, done.stderr
        assert (copy / "keep.txt").read_text() == "one\n2\n"
        assert (copy / "new.txt").read_text() == "new\n"
        assert not (copy / "gone.txt").exists()
    # Apply all writes the folder, and the change set empties.
    await bridge.handle(
        page, {"type": "applyChanges", "sessionId": approval["sessionId"], "paths": None}
    )
    assert (folder / "keep.txt").read_text() == "one\n2\n" and not (folder / "gone.txt").exists()
    assert page.of("changes")[-1]["changes"] == []
    assert page.of("toast")[-1]["level"] == "info"


async def test_saved_sessions_replay_after_a_restart(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("the first answer")
    first = make_bridge()
    page = await connect(first)
    await first.handle(page, {"type": "prompt", "sessionId": None, "text": "remember this"})
    session_id = first.active_session_id
    await first.aclose()

    again = make_bridge()
    page = await connect(again)
    sessions = page.of("sessions")[-1]["sessions"]
    saved = [s for s in sessions if s["sessionId"] == session_id]
    assert saved and saved[0]["live"] is False and saved[0]["title"] == "remember this"
    await again.handle(page, {"type": "selectSession", "sessionId": session_id})
    events = page.of("transcript")[-1]["events"]
    assert [e["type"] for e in events] == ["turn_started", "message_done", "turn_ended"]
    assert events[0]["prompt"] == "remember this" and events[1]["text"] == "the first answer"
    # Prompting it resumes it: the agent gets the old conversation.
    openai_server.add_text("I remember")
    await again.handle(page, {"type": "prompt", "sessionId": session_id, "text": "and now?"})
    sent = [
        m["content"]
        for m in openai_server.chat_requests[-1].body["messages"]
        if m["role"] == "user"
    ]
    assert sent == ["remember this", "and now?"]
    live = page.of("sessions")[-1]["sessions"]
    assert [s["live"] for s in live if s["sessionId"] == session_id] == [True]


async def test_delegated_tasks_fill_the_task_list(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    def sub_agent(body: dict[str, Any]) -> Any:
        # The sub-agent's requests carry its own prompt; the main agent's go to the queue.
        users = [m.get("content") for m in body["messages"] if m["role"] == "user"]
        if any(isinstance(u, str) and "count to three" in u for u in users):
            return text_reply("one two three")
        return None

    openai_server.set_responder(sub_agent)
    openai_server.add_tool_call("delegate_task", {"prompt": "count to three"})
    openai_server.add_text("Delegated.")
    bridge = make_bridge()
    page = await connect(bridge)
    await bridge.handle(page, {"type": "prompt", "sessionId": None, "text": "delegate it"})
    done = await page.wait_for(
        lambda m: m["type"] == "tasks" and any(t["status"] == "finished" for t in m["tasks"])
    )
    task = done["tasks"][0]
    assert task["prompt"] == "count to three" and task["result"] == "one two three"
    statuses = [e["status"] for e in page.events("task_status")]
    assert statuses[0] in ("queued", "running") and statuses[-1] == "finished"
    # The sub-agent's own events carry its task id; the conversation's do not.
    assert any(e["taskId"] == task["taskId"] for e in page.events("turn_started"))
    # A page that connects later gets the task list of the shown session.
    later = await connect(bridge)
    assert later.of("tasks")[0]["tasks"][0]["result"] == "one two three"


async def test_a_delegated_task_asks_the_page_too(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    """A sub-agent asks from the task manager's thread; the card shows the task."""
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
    bridge = make_bridge()
    page = await connect(bridge)
    bridge.receive(page, {"type": "prompt", "sessionId": None, "text": "delegate it"})
    approval = (await page.wait_for(lambda m: m["type"] == "approval"))["approval"]
    assert approval["taskId"] and approval["preview"] == "echo from-the-task"
    await bridge.handle(
        page,
        {"type": "answerApproval", "id": approval["id"], "optionId": "allow_once", "message": None},
    )
    await page.wait_for(
        lambda m: m["type"] == "tasks" and any(t["status"] == "finished" for t in m["tasks"])
    )
    outputs = [e["text"] for e in page.events("tool_output") if e["taskId"] == approval["taskId"]]
    assert "from-the-task" in "".join(outputs)


def test_history_events_mark_denied_calls_and_close_every_turn() -> None:
    messages = [
        {"role": "system", "content": "x"},
        {"role": "user", "content": "one"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"cmd": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "denied: nobody"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"cmd": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "$ ls\na.txt\n"},
        {"role": "assistant", "content": "fine"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]
    events = history_events(messages)
    assert [e["type"] for e in events] == [
        "turn_started",
        "tool_call_proposed",
        "tool_call_finished",
        "tool_call_proposed",
        "tool_call_finished",
        "message_done",
        "turn_ended",
        "turn_started",
        "turn_ended",
    ]
    assert events[1]["arguments"] == {"cmd": "ls"}
    assert events[2]["status"] == "denied" and events[2]["tool"] == "bash"
    # The command echo the model gets is not repeated in the card's output.
    assert events[4]["status"] == "completed" and events[4]["output"] == "a.txt\n"
    assert events[7]["prompt"] == "two"


def test_session_log_merges_stream_chunks() -> None:
    log = SessionLog()
    for text in ["Hel", "lo"]:
        log.append({"type": "message_delta", "taskId": None, "text": text})
    for text in ["a\n", "b\n"]:
        log.append(
            {"type": "tool_output", "taskId": None, "callId": "c", "text": text, "stream": "stdout"}
        )
    log.append(
        {"type": "tool_output", "taskId": None, "callId": "c", "text": "e\n", "stream": "stderr"}
    )
    assert [(e["type"], e["text"]) for e in log.events] == [
        ("message_delta", "Hello"),
        ("tool_output", "a\nb\n"),
        ("tool_output", "e\n"),
    ]


def test_session_log_drops_the_reply_a_discard_withdraws() -> None:
    log = SessionLog()
    before = [
        {"type": "turn_started", "taskId": None, "prompt": "q"},
        {"type": "message_delta", "taskId": None, "text": "Let me look."},
        {"type": "message_done", "taskId": None, "text": "Let me look."},
        {
            "type": "tool_call_finished",
            "taskId": None,
            "callId": "c",
            "tool": "bash",
            "ok": True,
            "output": "",
            "status": "completed",
        },
    ]
    for update in before:
        log.append(update)
    snapshot = log.snapshot()
    log.append({"type": "message_delta", "taskId": None, "text": "It is the "})
    log.append({"type": "message_delta", "taskId": "t1", "text": "a task's own reply"})
    log.append({"type": "message_delta", "taskId": None, "text": "ent"})
    log.append({"type": "notice", "taskId": None, "level": "warning", "text": "cut; asking again"})
    log.append({"type": "message_discarded", "taskId": None, "reason": "the stream was cut"})
    assert log.events == [
        *before,
        {"type": "message_delta", "taskId": "t1", "text": "a task's own reply"},
        {"type": "notice", "taskId": None, "level": "warning", "text": "cut; asking again"},
    ]
    log.append({"type": "message_delta", "taskId": None, "text": "It is the entry point."})
    assert log.events[-1]["text"] == "It is the entry point."
    assert len(snapshot) == len(before), "a snapshot handed out earlier is not changed"
    # A discard with no reply since the last step removes nothing.
    log.append({"type": "message_done", "taskId": None, "text": "It is the entry point."})
    count = len(log.events)
    log.append({"type": "message_discarded", "taskId": None, "reason": ""})
    assert len(log.events) == count


async def test_a_discarded_reply_leaves_the_page_and_the_replay(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("hello")
    bridge = make_bridge()
    page = await connect(bridge)
    await bridge.handle(page, {"type": "prompt", "sessionId": None, "text": "first"})
    session_id = bridge.active_session_id
    assert session_id is not None
    hub = bridge.service.get(session_id).events
    # A second turn whose model call streamed, was cut, and was asked again.
    for event in (
        ev.TurnStarted(prompt="second"),
        ev.MessageDelta(text="Let me "),
        ev.MessageDelta(text="look."),
        ev.MessageDone(text="Let me look."),
        ev.MessageDelta(text="It is the ent"),
        ev.Notice(level="warning", text="the stream was cut; asking again"),
        ev.MessageDiscarded(reason="the stream was cut"),
        ev.MessageDelta(text="It is the entry point."),
        ev.MessageDone(text="It is the entry point."),
        ev.TurnEnded(text="It is the entry point."),
    ):
        hub.emit(event)
    await page.wait_event("turn_ended")
    assert page.events("message_discarded") == [
        {"type": "message_discarded", "taskId": None, "reason": "the stream was cut"}
    ]

    reloaded = await connect(bridge)
    events = reloaded.of("transcript")[-1]["events"]
    second = events[[e.get("prompt") for e in events].index("second") :]
    shown = [(e["type"], e.get("text")) for e in second]
    assert shown == [
        ("turn_started", None),
        ("message_delta", "Let me look."),
        ("message_done", "Let me look."),
        ("notice", "the stream was cut; asking again"),
        ("message_delta", "It is the entry point."),
        ("message_done", "It is the entry point."),
        ("turn_ended", "It is the entry point."),
    ]


async def test_a_cut_stream_reaches_the_page_as_a_discard_and_leaves_no_trace(
    make_bridge: MakeBridge, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_truncated_stream("The answer is fort", tool_name=None)
    openai_server.add_text("The answer is 42.")
    bridge = make_bridge()
    page = await connect(bridge)
    await bridge.handle(page, {"type": "prompt", "sessionId": None, "text": "what is it?"})
    await page.wait_event("turn_ended")
    kinds = [e["type"] for e in page.events() if e["type"] != "notice"]
    cut = kinds.index("message_discarded")
    assert "message_delta" in kinds[:cut] and "message_delta" in kinds[cut + 1 :]

    reloaded = await connect(bridge)
    events = reloaded.of("transcript")[-1]["events"]
    deltas = [e["text"] for e in events if e["type"] == "message_delta"]
    assert deltas == ["The answer is 42."]
    assert "message_discarded" not in [e["type"] for e in events]
