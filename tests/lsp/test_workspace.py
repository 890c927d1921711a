"""End to end: the editor's folder synced into the sandbox, agent edits back as workspace/applyEdit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from pygent.lsp import protocol as p
from tests.lsp.conftest import request

pytestmark = pytest.mark.timeout(90)
EVERY_TRANSPORT = True  # stdio, TCP, WebSocket and the host socket (tests/lsp/conftest.py)


async def test_saved_edit_reaches_the_sandbox(start_client, openai_server, project: Path) -> None:
    openai_server.add_tool_call(
        "bash", {"cmd": "cat src/app.py; ls -a; ls build node_modules 2>&1 | head -2"}
    )
    openai_server.add_text("seen")
    client, updates = await start_client(workspace=project)
    info = await request(
        client,
        p.SESSION_NEW,
        {"workspaceFolder": project.as_uri(), "runtime": "local", "approvalMode": "never"},
    )
    sid = info["sessionId"]
    assert info["syncMode"] == "copy" and info["workspaceFolder"] == str(project)
    sandbox = Path(info["sandboxPath"])
    assert (sandbox / "src" / "app.py").read_text() == "print('hello')\n"
    assert not (sandbox / "build").exists() and not (sandbox / "debug.log").exists()
    assert not (sandbox / "node_modules").exists()

    # The user edits and saves: didSave queues the file; the next prompt copies it.
    (project / "src" / "app.py").write_text("print('edited in the editor')\n")
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=(project / "src" / "app.py").as_uri())
        )
    )
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "show app.py"})
    assert result["stopReason"] == "end_turn"
    output = "".join(u["text"] for u in updates.of(sid, "tool_output"))
    assert "edited in the editor" in output
    assert "No such file" in output  # build/ and node_modules/ were not copied


async def test_unsaved_buffer_sync_and_change_set(
    start_client, openai_server, project: Path
) -> None:
    client, updates = await start_client(workspace=project)
    sid = (
        await request(client, p.SESSION_NEW, {"workspaceFolder": str(project), "runtime": "local"})
    )["sessionId"]
    uri = (project / "README.md").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="markdown", version=1, text="# demo\nunsaved line\n"
            )
        )
    )
    synced = await request(client, p.WORKSPACE_SYNC, {"sessionId": sid, "includeUnsaved": True})
    assert synced["copied"] == ["README.md"]
    again = await request(client, p.WORKSPACE_SYNC, {"sessionId": sid, "full": True})
    assert again["copied"] == [] and again["conflicts"] == []
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid})
    assert changes == {"sessionId": sid, "syncMode": "copy", "changes": []}


async def test_agent_edit_comes_back_as_apply_edit(
    start_client, openai_server, project: Path
) -> None:
    openai_server.add_tool_call(
        "edit_file", {"path": "src/app.py", "old_text": "hello", "new_text": "hello, world"}
    )
    openai_server.add_tool_call(
        "write_file", {"path": "NOTES.md", "content": "written by the agent\n"}
    )
    openai_server.add_text("edited")
    edits: list[types.ApplyWorkspaceEditParams] = []

    def setup(client: Any) -> None:
        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            edits.append(params)
            return types.ApplyWorkspaceEditResult(applied=True)

    client, updates = await start_client(setup, workspace=project)
    sid = (
        await request(
            client,
            p.SESSION_NEW,
            {"workspaceFolder": project.as_uri(), "runtime": "local", "approvalMode": "never"},
        )
    )["sessionId"]
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "edit"})
    assert result["stopReason"] == "end_turn" and result["changes"] == 2
    assert updates.of(sid, "changes")[-1]["paths"] == ["NOTES.md", "src/app.py"]
    # The folder is untouched until the change set is applied.
    assert (project / "src" / "app.py").read_text() == "print('hello')\n"
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid})
    by_path = {c["path"]: c for c in changes["changes"]}
    assert by_path["src/app.py"]["status"] == "modified"
    assert "+print('hello, world')" in by_path["src/app.py"]["diff"]
    assert by_path["NOTES.md"]["status"] == "added"

    applied = await request(client, p.WORKSPACE_APPLY, {"sessionId": sid})
    assert sorted(applied["applied"]) == ["NOTES.md", "src/app.py"] and applied["failed"] == []
    assert len(edits) == 1
    doc_changes = edits[0].edit.document_changes
    creates = [c for c in doc_changes if isinstance(c, types.CreateFile)]
    text_edits = {
        c.text_document.uri: c.edits[0]
        for c in doc_changes
        if isinstance(c, types.TextDocumentEdit)
    }
    assert creates[0].uri == (project / "NOTES.md").as_uri()
    app_edit = text_edits[(project / "src" / "app.py").as_uri()]
    assert app_edit.new_text == "print('hello, world')\n"
    assert (app_edit.range.start.line, app_edit.range.start.character) == (0, 0)
    assert (app_edit.range.end.line, app_edit.range.end.character) == (1, 0)
    assert text_edits[(project / "NOTES.md").as_uri()].new_text == "written by the agent\n"
    # Applied changes are no longer pending; the user saving them copies nothing back.
    assert (await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid}))["changes"] == []
    (project / "src" / "app.py").write_text("print('hello, world')\n")
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=(project / "src" / "app.py").as_uri())
        )
    )
    synced = await request(client, p.WORKSPACE_SYNC, {"sessionId": sid})
    assert synced["copied"] == [] and synced["conflicts"] == []


async def test_discard_and_write_methods(start_client, openai_server, project: Path) -> None:
    openai_server.add_tool_call("write_file", {"path": "src/app.py", "content": "broken(\n"})
    openai_server.add_tool_call("write_file", {"path": "extra.txt", "content": "keep me\n"})
    openai_server.add_text("done")
    client, _updates = await start_client(workspace=project)
    info = await request(
        client,
        p.SESSION_NEW,
        {"workspaceFolder": project.as_uri(), "runtime": "local", "approvalMode": "never"},
    )
    sid, sandbox = info["sessionId"], Path(info["sandboxPath"])
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "edit"})
    discarded = await request(
        client, p.WORKSPACE_DISCARD, {"sessionId": sid, "paths": ["src/app.py"]}
    )
    assert discarded == {"discarded": ["src/app.py"]}
    assert (sandbox / "src" / "app.py").read_text() == "print('hello')\n"
    written = await request(client, p.WORKSPACE_APPLY, {"sessionId": sid, "method": "write"})
    assert written["applied"] == ["extra.txt"]
    assert (project / "extra.txt").read_text() == "keep me\n"
    assert (await request(client, p.WORKSPACE_CHANGES, {"sessionId": sid}))["changes"] == []


async def test_mount_mode_writes_the_folder(start_client, openai_server, project: Path) -> None:
    openai_server.add_tool_call("write_file", {"path": "direct.txt", "content": "direct\n"})
    openai_server.add_text("done")
    client, _updates = await start_client(workspace=project)
    info = await request(
        client,
        p.SESSION_NEW,
        {
            "workspaceFolder": str(project),
            "runtime": "local",
            "approvalMode": "never",
            "syncMode": "mount",
        },
    )
    assert info["sandboxPath"] == str(project)
    await request(client, p.SESSION_PROMPT, {"sessionId": info["sessionId"], "prompt": "write"})
    assert (project / "direct.txt").read_text() == "direct\n"
    changes = await request(client, p.WORKSPACE_CHANGES, {"sessionId": info["sessionId"]})
    assert [(c["path"], c["status"]) for c in changes["changes"]] == [("direct.txt", "added")]
    await request(client, p.SESSION_CLOSE, {"sessionId": info["sessionId"]})
    assert (project / "direct.txt").exists(), "closing a mounted session keeps the folder"
