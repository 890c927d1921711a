"""Sandbox problems reach the editor as diagnostics, through a real LSP client (pytest-lsp)
and the real ``pygent lsp --stdio`` server; the agent runs the real ``ruff`` and ``pytest``
in a local sandbox."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from pygent.lsp import protocol as p
from tests.lsp.conftest import CAPABILITIES, request
from tests.openai_server import ScriptedOpenAIServer

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by .ci/run"),
]

BAD = "import os\n\n\ndef greet(name: str) -> str:\n    unused = 1\n    return 'hi ' + name\n"
GOOD = "def greet(name: str) -> str:\n    return 'hi ' + name\n"


class Published:
    """The diagnostics the client holds per URI (pytest-lsp keeps the last
    ``textDocument/publishDiagnostics`` of each)."""

    def __init__(self) -> None:
        self.client: Any = None

    @property
    def uris(self) -> set[str]:
        return set(self.client.diagnostics)

    def last(self, uri: str) -> list[types.Diagnostic] | None:
        found = self.client.diagnostics.get(uri)
        return None if found is None else list(found)

    async def wait(self, uri: str, check: Any, timeout: float = 20) -> list[types.Diagnostic]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last(uri)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching diagnostics for {uri}: {self.client.diagnostics}")


def collect(published: Published):
    def setup(client: Any) -> None:
        published.client = client

    return setup


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "greet.py").write_text(BAD)
    return ws


async def new_session(client: Any, folder: Path) -> str:
    info = await request(
        client,
        p.SESSION_NEW,
        {"runtime": "local", "approvalMode": "never", "workspaceFolder": str(folder)},
    )
    return str(info["sessionId"])


async def test_ruff_problems_published_replaced_and_cleared(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    published = Published()
    client, _ = await start_client(collect(published), workspace=folder)
    sid = await new_session(client, folder)
    uri = (folder / "greet.py").as_uri()

    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("ruff found two problems.")
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "lint"})
    assert result["stopReason"] == "end_turn"
    shown = await published.wait(uri, lambda d: len(d) == 2)
    assert [(d.range.start.line, d.range.start.character) for d in shown] == [(0, 7), (4, 4)]
    assert {d.source for d in shown} == {"pygent:ruff"}
    assert [d.code for d in shown] == ["F401", "F841"]
    assert all(d.severity == types.DiagnosticSeverity.Warning for d in shown)
    assert "`os` imported but unused" in shown[0].message
    assert shown[0].data == {"command": "ruff check --no-cache greet.py"}

    # The agent fixes the file and runs ruff again: the next run replaces the problems.
    openai_server.add_tool_call("write_file", {"path": "greet.py", "content": GOOD})
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("fixed")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "fix it"})
    assert await published.wait(uri, lambda d: d == []) == []


async def test_pytest_failure_at_its_line_and_cleared_on_close(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    (folder / "test_greet.py").write_text(
        "from greet import greet\n\n\ndef test_greet():\n    assert greet('bo') == 'hello bo'\n"
    )
    published = Published()
    client, _ = await start_client(collect(published), workspace=folder)
    sid = await new_session(client, folder)
    uri = (folder / "test_greet.py").as_uri()
    openai_server.add_tool_call("bash", {"cmd": "python3 -m pytest -q -p no:cacheprovider"})
    openai_server.add_text("one failure")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "test"})
    shown = await published.wait(uri, lambda d: len(d) == 1)
    assert shown[0].range.start.line == 4
    assert shown[0].source == "pygent:pytest"
    assert (
        "AssertionError" in shown[0].message or "assert 'hi bo' == 'hello bo'" in shown[0].message
    )

    await request(client, p.SESSION_CLOSE, {"sessionId": sid})
    assert await published.wait(uri, lambda d: d == []) == []


async def test_outside_files_ignored_and_flood_capped(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    lines = [f"greet.py:{i % 6 + 1}:1: F401 problem {i}" for i in range(1000)]
    lines += [
        "/etc/passwd:1:1: F401 outside",
        "../other.py:2:1: F401 outside",
        "nothere.py:1:1: F401 gone",
    ]
    (folder / "out.txt").write_text("\n".join(lines) + "\n")
    published = Published()
    client, _ = await start_client(collect(published), workspace=folder)
    sid = await new_session(client, folder)
    openai_server.add_tool_call("bash", {"cmd": "cat out.txt"})
    openai_server.add_text("done")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "show"})
    shown = await published.wait((folder / "greet.py").as_uri(), lambda d: len(d) > 0)
    assert len(shown) == 101  # 100 problems, then one summary entry
    assert "900 more problems in this file from ruff not shown" in shown[-1].message
    assert published.uris == {(folder / "greet.py").as_uri()}


async def test_pull_client_gets_no_push_and_pulls(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    caps = types.ClientCapabilities(
        window=CAPABILITIES.window,
        workspace=CAPABILITIES.workspace,
        text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities()
        ),
    )
    published = Published()
    client, _ = await start_client(collect(published), workspace=folder, capabilities=caps)
    assert client.protocol  # initialised
    sid = await new_session(client, folder)
    openai_server.add_tool_call("bash", {"cmd": "ruff check --no-cache greet.py"})
    openai_server.add_text("two")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "lint"})
    uri = (folder / "greet.py").as_uri()
    report: Any = None
    for _ in range(100):
        report = await client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        if report.items:
            break
        await asyncio.sleep(0.05)
    assert [d.code for d in report.items] == ["F401", "F841"]
    assert published.uris == set()  # a pulling client is not pushed to (no duplicates)
    workspace = await client.workspace_diagnostic_async(
        types.WorkspaceDiagnosticParams(previous_result_ids=[])
    )
    assert [i.uri for i in workspace.items] == [uri]


def test_code_actions_offered_and_fix_starts_a_turn(
    raw: Any, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    raw = raw()
    # Raw JSON: lsprotocol's client-side converter reads a CodeAction with a command as a
    # Command; editors read the JSON as it is.
    raw.send(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "capabilities": {},
                "rootUri": folder.as_uri(),
                "workspaceFolders": [{"uri": folder.as_uri(), "name": "ws"}],
            },
        }
    )
    assert "result" in raw.reply_to(0)
    raw.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    uri = (folder / "greet.py").as_uri()
    diagnostic = {
        "range": {"start": {"line": 4, "character": 4}, "end": {"line": 4, "character": 10}},
        "message": "Local variable `unused` is assigned to but never used",
        "source": "pygent:ruff",
        "code": "F841",
    }

    def code_actions(target: str, diagnostics: list[Any], rid: int) -> list[dict[str, Any]]:
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "method": "textDocument/codeAction",
                "params": {
                    "textDocument": {"uri": target},
                    "range": diagnostic["range"],
                    "context": {"diagnostics": diagnostics},
                },
            }
        )
        return list(raw.reply_to(rid)["result"] or [])

    actions = code_actions(uri, [diagnostic], 1)
    titles = [a["title"] for a in actions]
    assert titles == [
        "Ask Pygent to fix",
        "Explain with Pygent",
        "Write tests for this with Pygent",
    ]
    fix = actions[0]
    assert fix["kind"] == "quickfix" and fix["diagnostics"] == [diagnostic]

    openai_server.add_text("I removed the unused variable.")
    raw.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "workspace/executeCommand",
            "params": {
                "command": fix["command"]["command"],
                "arguments": fix["command"]["arguments"],
            },
        }
    )
    answer = raw.reply_to(2, timeout=30)["result"]
    assert answer["sessionId"]
    deadline = time.monotonic() + 20
    while not openai_server.chat_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    prompt = openai_server.chat_requests[0].body["messages"][-1]["content"]
    assert "Fix the problem" in prompt and "File: greet.py, lines 5-5." in prompt
    assert "[pygent:ruff F841] Local variable `unused`" in prompt
    assert "    5      unused = 1" in prompt  # the surrounding code, numbered

    # A selection without diagnostics: no "fix"; a file outside the folder: nothing.
    bare = code_actions(uri, [], 3)
    assert [a["title"] for a in bare] == ["Explain with Pygent", "Write tests for this with Pygent"]
    assert code_actions("file:///etc/hosts", [diagnostic], 4) == []
    # Bad arguments: a clear -32602, and the server goes on.
    for rid, arguments in (
        (10, []),
        (11, [{"action": "nope", "uri": uri}]),
        (12, [{"action": "fix", "uri": "file:///etc/hosts"}]),
    ):
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "method": "workspace/executeCommand",
                "params": {"command": "pygent.codeAction", "arguments": arguments},
            }
        )
        error = raw.reply_to(rid)["error"]
        assert error["code"] == -32602, error
    assert "not in the editor's workspace" in error["message"]
    raw.send({"jsonrpc": "2.0", "id": 5, "method": "shutdown", "params": None})
    raw.reply_to(5, timeout=30)
    raw.send({"jsonrpc": "2.0", "method": "exit", "params": None})
    assert raw.wait(15) == 0


async def test_editor_problems_reach_the_diagnostics_tool(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    client, _ = await start_client(workspace=folder)
    sid = await new_session(client, folder)
    uri = (folder / "greet.py").as_uri()
    held = await request(
        client,
        p.WORKSPACE_DIAGNOSTICS,
        {
            "files": [
                {
                    "uri": uri,
                    "diagnostics": [
                        {
                            "range": {
                                "start": {"line": 3, "character": 4},
                                "end": {"line": 3, "character": 9},
                            },
                            "message": 'Type "int" is not assignable to "str"',
                            "severity": 1,
                            "source": "Pylance",
                            "code": "reportReturnType",
                        }
                    ],
                },
                {
                    "uri": "file:///etc/hosts",
                    "diagnostics": [
                        {
                            "range": {
                                "start": {"line": 0, "character": 0},
                                "end": {"line": 0, "character": 1},
                            },
                            "message": "outside",
                        }
                    ],
                },
            ]
        },
    )
    assert held == {"files": 1, "problems": 1}
    openai_server.add_tool_call("diagnostics", {"path": "greet.py"})
    openai_server.add_text("One type error.")
    await request(
        client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "fix the problems in this file"}
    )
    last = openai_server.chat_requests[-1].body["messages"]
    tool_text = [m["content"] for m in last if m.get("role") == "tool"][-1]
    assert (
        tool_text
        == 'greet.py:4:5: error [Pylance reportReturnType] Type "int" is not assignable to "str"'
    )


async def test_user_matcher_from_the_editor_configuration(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    published = Published()
    client, _ = await start_client(collect(published), workspace=folder)
    config = await request(
        client,
        p.CONFIGURATION,
        {
            "settings": {
                "diagnosticMatchers": [
                    {
                        "tool": "mylint",
                        "command": r"\bmylint\b",
                        "pattern": r"^(?P<file>\S+) line (?P<line>\d+): (?P<message>.+)$",
                        "severity": "hint",
                    }
                ]
            }
        },
    )
    assert config["settings"]["diagnosticMatchers"] == ["mylint"]
    (folder / "mylint").write_text("#!/bin/sh\necho 'greet.py line 4: name could be shorter'\n")
    (folder / "mylint").chmod(0o755)
    sid = await new_session(client, folder)
    openai_server.add_tool_call("bash", {"cmd": "./mylint greet.py"})
    openai_server.add_text("ok")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "lint"})
    shown = await published.wait((folder / "greet.py").as_uri(), lambda d: len(d) == 1)
    assert (shown[0].source, shown[0].range.start.line, shown[0].severity) == (
        "pygent:mylint",
        3,
        types.DiagnosticSeverity.Hint,
    )
    with pytest.raises(Exception, match="bad regular expression"):
        await request(
            client,
            p.CONFIGURATION,
            {"settings": {"diagnosticMatchers": [{"tool": "x", "pattern": "(?P<file"}]}},
        )


async def test_follow_along_reveals_the_file_the_agent_reads(
    start_client, openai_server: ScriptedOpenAIServer, folder: Path
) -> None:
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(
            work_done_progress=True,
            show_document=types.ShowDocumentClientCapabilities(support=True),
        ),
        workspace=CAPABILITIES.workspace,
    )
    client, _ = await start_client(workspace=folder, capabilities=caps)
    shown = client.shown_documents  # pytest-lsp answers window/showDocument and keeps it
    sid = await new_session(client, folder)
    # Off by default: nothing is revealed.
    openai_server.add_tool_call("read_file", {"path": "greet.py"})
    openai_server.add_text("read")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "read"})
    await asyncio.sleep(0.3)
    assert shown == []
    await request(client, p.CONFIGURATION, {"settings": {"followAlong": True}})
    openai_server.add_tool_call("read_file", {"path": "greet.py", "start_line": 4})
    openai_server.add_tool_call("read_file", {"path": "/etc/hostname"})
    openai_server.add_text("read")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "read"})
    deadline = time.monotonic() + 10
    while not shown and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert len(shown) == 1  # the file outside the folder is not revealed
    assert shown[0].uri == (folder / "greet.py").as_uri()
    assert shown[0].take_focus is False and shown[0].selection.start.line == 3
