"""``pygent acp`` joined to a real ``pygent serve``: what the in-process path shows, whole.

Each test runs a real host process and the ACP agent as a real subprocess (driven by the
ACP SDK's client side) against the scripted model server: a write's and an edit's
``diff`` carry the file's old text (the core event's ``old_text``, read before the
write), a prompt's image replays on ``session/load`` in a
new ACP process, a fork made through the host is a session of its own, and a delegated
task's status and result reach the ACP client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from acp import schema as s

from tests.acp.conftest import HostClient, JoinedHost, RecordingClient, StartAgent, until
from tests.acp.test_images import PNG
from tests.acp.test_schema import check_frames
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(120)


def _diffs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for item in items for c in item.get("content") or [] if c.get("type") == "diff"]


async def test_write_and_edit_diffs_carry_old_text_through_the_host(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
) -> None:
    folder = joined.folder
    (folder / "a.txt").write_text("one\ntwo\n")
    (folder / "b.txt").write_text("alpha\nbeta\ngamma\n")
    openai_server.add_tool_call("write_file", {"path": "a.txt", "content": "fresh\n"})
    openai_server.add_tool_call(
        "edit_file", {"path": "b.txt", "old_text": "beta", "new_text": "BETA"}
    )
    openai_server.add_tool_call("write_file", {"path": "new.txt", "content": "brand new\n"})
    openai_server.add_text("edited")
    async with start_agent(env=joined.env) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        result = await agent.prompt(sid, "edit them")
        assert result.stop_reason == "end_turn"
        client = agent.client
        write = {
            "type": "diff",
            "path": str(folder / "a.txt"),
            "oldText": "one\ntwo\n",
            "newText": "fresh\n",
        }
        # ACP's diff is the whole file, before and after (not the edit's snippets).
        edit = {
            "type": "diff",
            "path": str(folder / "b.txt"),
            "oldText": "alpha\nbeta\ngamma\n",
            "newText": "alpha\nBETA\ngamma\n",
        }
        created = {"type": "diff", "path": str(folder / "new.txt"), "newText": "brand new\n"}
        assert _diffs(client.of("tool_call", sid)) == [write, edit, created]
        # Local mode asks for every write: the permission request shows the same diff...
        assert _diffs([p["toolCall"] for p in client.permissions]) == [write, edit, created]
        # ...and so does each call's final update.
        finished = [u for u in client.of("tool_call_update", sid) if u.get("status")]
        assert _diffs(finished) == [write, edit, created]
        # The change set is the host's (copy-on-write): the folder is untouched.
        assert (folder / "b.txt").read_text() == "alpha\nbeta\ngamma\n"
        assert check_frames(agent) > 5


async def test_prompt_image_replays_on_load_in_a_new_acp_process(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    folder = joined.folder
    image = s.ImageContentBlock(type="image", data=PNG, mime_type="image/png")
    openai_server.add_text("a red dot")
    async with start_agent(env=joined.env, home=tmp_path / "first") as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        await agent.conn.prompt(
            session_id=sid, prompt=[s.TextContentBlock(type="text", text="what is it?"), image]
        )
    expected = [
        {"type": "text", "text": "what is it?"},
        {"type": "image", "mimeType": "image/png", "data": PNG},
    ]
    # A new ACP process joins the host: session/load replays the prompt with its image.
    async with start_agent(env=joined.env, home=tmp_path / "second") as agent:
        await agent.initialize()
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        client = agent.client
        assert [u["content"] for u in client.of("user_message_chunk", sid)] == expected
        assert client.text(sid) == "a red dot"
        # Closed in the host, then loaded again: the saved history replays it the same.
        await agent.conn.close_session(session_id=sid)
        client.updates.clear()
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        assert [u["content"] for u in client.of("user_message_chunk", sid)] == expected
        assert client.text(sid) == "a red dot"
        assert check_frames(agent) > 3


async def test_fork_through_the_host(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
) -> None:
    folder = joined.folder
    editor = await joined.editor()
    async with start_agent(env=joined.env) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        for prompt in ("one", "two"):
            openai_server.add_text(f"{prompt} done")
            await agent.prompt(sid, prompt)
        timeline = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        second = timeline["turns"][1]["turnId"]
        forked = await agent.conn.ext_method(
            "pygent/fork", {"sessionId": sid, "turnId": second}
        )
        fork = forked["sessionId"]
        assert fork != sid
        # The fork is a live session of the host: the editor sees it too.
        assert fork in await editor.live()
        # Loaded from ACP: the conversation before the second turn, nothing after.
        await agent.conn.load_session(cwd=str(folder), session_id=fork, mcp_servers=[])
        client = agent.client
        prompts = [u["content"]["text"] for u in client.of("user_message_chunk", fork)]
        assert prompts == ["one"]
        assert client.text(fork) == "one done"
        openai_server.add_text("three done")
        result = await agent.prompt(fork, "three")
        assert result.stop_reason == "end_turn"
        sent = openai_server.chat_requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == ["one", "three"]
        # The original keeps both turns.
        seen = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        assert [t["prompt"] for t in seen["turns"]] == ["one", "two"]
        # A turn id that does not exist: a clear error, the agent keeps serving.
        from acp import RequestError

        with pytest.raises(RequestError) as error:
            await agent.conn.ext_method("pygent/fork", {"sessionId": sid, "turnId": "nope"})
        assert "nope" in str(error.value)
        assert check_frames(agent) > 5


def _delegating(body: dict[str, Any]) -> Any:
    from tests.openai_server import text_reply, tool_call_reply

    users = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
    tools = [m for m in body["messages"] if m.get("role") == "tool"]
    if users and users[-1] == "count the files":
        return text_reply("three files, counted")
    if users and users[-1] == "delegate it":
        if not tools:
            return tool_call_reply("delegate_task", {"prompt": "count the files"})
        return text_reply("delegated")
    return None


async def test_delegated_task_status_and_result_through_the_host(
    start_agent: StartAgent,
    joined: JoinedHost,
    openai_server: ScriptedOpenAIServer,
) -> None:
    folder = joined.folder
    openai_server.set_responder(_delegating)
    async with start_agent(client=RecordingClient(), env=joined.env) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        result = await agent.prompt(sid, "delegate it")
        assert result.stop_reason == "end_turn"
        client = agent.client

        def finished() -> list[dict[str, Any]]:
            return [
                u
                for u in client.of("plan", sid)
                if u["entries"] and u["entries"][0]["_meta"]["pygent"]["state"] == "finished"
            ]

        # The task's live status is the session's plan, as in-process.
        plan = (await client.wait_for(finished, timeout=30))[-1]["entries"][0]
        assert plan["content"] == "count the files" and plan["status"] == "completed"
        task_id = plan["_meta"]["pygent"]["taskId"]
        listed = await agent.conn.ext_method("pygent/tasks", {"sessionId": sid})
        assert [(t["taskId"], t["status"]) for t in listed["tasks"]] == [(task_id, "finished")]
        answer = await agent.conn.ext_method(
            "pygent/task/result", {"sessionId": sid, "taskId": task_id}
        )
        assert answer["result"] == "three files, counted"
        assert answer["task"]["prompt"] == "count the files"
        # The sub-agent's reply is its result, not the session's reply.
        assert "three files" not in client.text(sid)
        from acp import RequestError

        with pytest.raises(RequestError) as error:
            await agent.conn.ext_method("pygent/task/result", {"sessionId": sid, "taskId": "t-x"})
        assert "t-x" in str(error.value)
        assert check_frames(agent) > 5


async def test_editor_sees_old_text_in_tool_call_proposed(
    start_host: Any,  # noqa: F811
    openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    """The core event carries the replaced text to every client of the host (one copy)."""
    host = start_host()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "a.txt").write_text("before\n")
    editor = await HostClient.connect(host.socket)
    try:
        info = await editor.client.request(
            "pygent/session/new",
            {"workspaceFolder": str(folder), "runtime": "local", "approvalMode": "never"},
        )
        sid = info["sessionId"]
        openai_server.add_tool_call("write_file", {"path": "a.txt", "content": "after\n"})
        openai_server.add_text("ok")
        await editor.client.request("pygent/session/prompt", {"sessionId": sid, "prompt": "w"})
        await until(lambda: "turn_ended" in editor.kinds(sid))
        proposed = [
            u["update"] for u in editor.updates if u["update"]["type"] == "tool_call_proposed"
        ]
        assert proposed[0]["oldText"] == "before\n"
        # The host's transcript keeps the call without it (memory: a file per edit).
        transcript = await editor.client.request(
            "pygent/session/transcript", {"sessionId": sid}
        )
        logged = [e for e in transcript["events"] if e["type"] == "tool_call_proposed"]
        assert logged[0]["arguments"] == {"path": "a.txt", "content": "after\n"}
        assert logged[0]["oldText"] is None
    finally:
        await editor.client.aclose()


def test_saved_history_replays_prompt_images_for_the_host() -> None:
    """A session the host reopens from its history file (no live log) replays its images."""
    from pygent.lsp import protocol as p
    from pygent.lsp.transcript import history_updates
    from pygent.prompt_images import user_message

    url = f"data:image/png;base64,{PNG}"
    events = history_updates(
        [user_message("see", [url]), {"role": "assistant", "content": "a dot"}]
    )
    assert events[0] == {"type": "turn_started", "taskId": None, "prompt": "see", "images": [url]}
    for event in events:  # each is a whole session update of the wire
        p.structure({"sessionId": "s", "seq": 0, "update": event}, p.SessionUpdateParams)
