"""End to end through a real LSP client (pytest-lsp): pygent/session/timeline, rewind,
redo and fork, in mount mode (local runtime) and in a copy-on-write Docker session where
an approved ``rm -rf *`` is undone."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from pygent.lsp import protocol as p
from tests.docker_gate import TEST_IMAGE
from tests.lsp.conftest import as_dict, request

pytestmark = pytest.mark.timeout(180)


def tree_sum(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


async def prompt(client: Any, sid: str, text: str) -> dict[str, Any]:
    return await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": text}, timeout=60)


async def test_timeline_rewind_redo_in_mount_mode(start_client, openai_server, project: Path) -> None:
    openai_server.add_tool_call("write_file", {"path": "new.txt", "content": "one\n"})
    openai_server.add_text("wrote it")
    openai_server.add_tool_call("bash", {"cmd": "rm README.md && echo two > new.txt"})
    openai_server.add_text("changed it")
    client, _updates = await start_client(workspace=project)
    info = await request(client, p.SESSION_NEW, {
        "workspaceFolder": str(project), "runtime": "local", "approvalMode": "never",
        "syncMode": "mount"})
    sid = info["sessionId"]
    await prompt(client, sid, "first")
    await prompt(client, sid, "second")

    timeline = await request(client, p.SESSION_TIMELINE, {"sessionId": sid})
    assert [t["turn"] for t in timeline["turns"]] == [1, 2] and not timeline["canRedo"]
    second = timeline["turns"][1]
    assert second["turnId"] == f"{sid}:2" and second["prompt"] == "second"
    assert {(f["path"], f["kind"]) for f in second["files"]} == {
        ("README.md", "deleted"), ("new.txt", "modified")}

    # What the rewind would restore, without changing anything (the confirmation step).
    dry = await request(client, p.SESSION_REWIND,
                        {"sessionId": sid, "turnId": second["turnId"], "dryRun": True})
    assert {(f["path"], f["kind"]) for f in dry["preview"]} == {
        ("README.md", "added"), ("new.txt", "modified")}
    assert not (project / "README.md").exists()

    done = await request(client, p.SESSION_REWIND, {"sessionId": sid, "turnId": second["turnId"]})
    assert (project / "README.md").read_text() == "# demo\n"
    assert (project / "new.txt").read_text() == "one\n"
    assert done["canRedo"] and done["messagesRemoved"] > 0 and "README.md" in done["restored"]
    transcript = await request(client, p.SESSION_TRANSCRIPT, {"sessionId": sid})
    assert "second" not in str(transcript) and "first" in str(transcript)

    redo = await request(client, p.SESSION_REDO, {"sessionId": sid})
    assert redo["turn"] == 2 and not (project / "README.md").exists()
    assert (project / "new.txt").read_text() == "two\n"

    # The same through workspace/executeCommand (the commands of every request).
    via_command = as_dict(await asyncio.wait_for(client.workspace_execute_command_async(
        __import__("lsprotocol").types.ExecuteCommandParams(
            command=p.command_name(p.SESSION_TIMELINE), arguments=[{"sessionId": sid}])), 30))
    assert [t["turn"] for t in via_command["turns"]] == [1, 2]

    # Bad input: clear JSON-RPC errors, nothing changed.
    for turn_id, message in [("9", "no turn 9"), ("someoneelse:1", "belongs to session someoneelse"),
                             ("x", "is not a turn")]:
        with pytest.raises(JsonRpcException, match=message):
            await request(client, p.SESSION_REWIND, {"sessionId": sid, "turnId": turn_id})
    with pytest.raises(JsonRpcException, match="no live session"):
        await request(client, p.SESSION_TIMELINE, {"sessionId": "nope"})
    assert (project / "new.txt").read_text() == "two\n"

    # A fork of a mount session: its own folder, as before turn 2, the parent untouched.
    fork = await request(client, p.SESSION_FORK, {"sessionId": sid, "turnId": f"{sid}:2"},
                         timeout=60)
    assert fork["sessionId"] != sid and fork["messageCount"] > 0
    forked = Path(fork["sandboxPath"])
    assert forked != project and (forked / "README.md").read_text() == "# demo\n"
    assert (forked / "new.txt").read_text() == "one\n"
    assert any("own folder" in n for n in fork["notices"])
    assert not (project / "README.md").exists()
    await request(client, p.SESSION_CLOSE, {"sessionId": fork["sessionId"]})
    await request(client, p.SESSION_CLOSE, {"sessionId": sid})


async def test_rewind_while_a_turn_runs_is_refused(start_client, openai_server, project: Path) -> None:
    openai_server.add_tool_call("write_file", {"path": "new.txt", "content": "one\n"})
    openai_server.add_text("wrote it")
    openai_server.add_slow_stream("slow " * 200, delay_per_chunk=0.05)
    client, _updates = await start_client(workspace=project)
    info = await request(client, p.SESSION_NEW, {
        "workspaceFolder": str(project), "runtime": "local", "approvalMode": "never",
        "syncMode": "mount"})
    sid = info["sessionId"]
    await prompt(client, sid, "first")
    running = asyncio.ensure_future(prompt(client, sid, "slow one"))
    await asyncio.sleep(1.0)
    with pytest.raises(JsonRpcException, match="cancel it first"):
        await request(client, p.SESSION_REWIND, {"sessionId": sid, "turnId": "1"})
    await request(client, p.SESSION_CANCEL, {"sessionId": sid})
    result = await running
    assert result["stopReason"] == "cancelled"
    assert (project / "new.txt").exists()
    await request(client, p.SESSION_REWIND, {"sessionId": sid, "turnId": "1"})
    assert not (project / "new.txt").exists()


@pytest.mark.docker
async def test_approved_rm_rf_undone_in_a_cow_session(start_client, openai_server,
                                                      project: Path) -> None:
    openai_server.add_tool_call("bash", {"cmd": "cd /workspace && rm -rf * && ls -A"})
    openai_server.add_text("all gone")
    answers = [{"optionId": "allow_once"}]

    def setup(client: Any) -> None:
        client.feature(p.REQUEST_PERMISSION)(lambda params: answers.pop(0) if answers
                                             else {"optionId": "reject_once"})

    client, _updates = await start_client(setup=setup, workspace=project,
                                          env={"PYGENT_IMAGE": TEST_IMAGE})
    before = tree_sum(project)
    info = await request(client, p.SESSION_NEW, {
        "workspaceFolder": str(project), "runtime": "docker", "approvalMode": "confirm",
        "syncMode": "cow"}, timeout=120)
    sid = info["sessionId"]
    assert info["syncMode"] == "cow"
    await prompt(client, sid, "clean up everything")
    assert not answers, "the rm -rf was approved by the client"
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid})
    assert {"src/app.py", "README.md"} <= {c["path"] for c in changes["changes"]
                                          if c["status"] == "deleted"}

    timeline = await request(client, p.SESSION_TIMELINE, {"sessionId": sid})
    [turn] = timeline["turns"]
    assert ("src/app.py", "deleted") in {(f["path"], f["kind"]) for f in turn["files"]}
    # A fork as the session was before the rm -rf: its own sandbox over the same folder.
    fork = await request(client, p.SESSION_FORK, {"sessionId": sid, "turnId": turn["turnId"]},
                         timeout=120)
    assert fork["syncMode"] == "cow" and fork["workspaceFolder"] == str(project)

    await request(client, p.SESSION_REWIND, {"sessionId": sid, "turnId": turn["turnId"]},
                  timeout=60)
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid})
    assert changes["changes"] == []  # the sandbox sees the folder again, unchanged
    assert tree_sum(project) == before  # and the folder was never written
    await request(client, p.SESSION_REDO, {"sessionId": sid}, timeout=60)
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid})
    assert "src/app.py" in {c["path"] for c in changes["changes"]}
    fork_changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": fork["sessionId"]})
    assert fork_changes["changes"] == []  # the fork is as before the rm -rf
    assert tree_sum(project) == before
    for session in (fork["sessionId"], sid):
        await request(client, p.SESSION_CLOSE, {"sessionId": session}, timeout=60)
