"""End to end through a real LSP client (pytest-lsp): a budget ends a prompt with ``budget``,
``pygent/session/compact`` summarises with a focus, ``usage`` updates and
``pygent/session/usage`` carry the server's figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from tests.lsp.conftest import request
from tests.openai_server import ToolCallsReply, _call

pytestmark = pytest.mark.timeout(120)
USAGE = {"prompt_tokens": 1000, "completion_tokens": 100}


async def _session(client, folder: Path) -> str:
    info = await request(client, p.SESSION_NEW, {
        "workspaceFolder": str(folder), "runtime": "local", "approvalMode": "never",
        "syncMode": "mount"})
    return str(info["sessionId"])


async def test_a_token_budget_ends_the_prompt_with_budget(
    start_client, openai_server, tmp_path: Path
) -> None:
    for i in range(5):
        openai_server.add(ToolCallsReply((_call("bash", {"cmd": "echo hi"}, f"c{i}"),), usage=USAGE))
    client, updates = await start_client(env={"PYGENT_BUDGET_TOKENS": "2500",
                                              "PYGENT_CONTEXT_WINDOW": "50000"})
    sid = await _session(client, tmp_path)
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"}, timeout=60)
    assert result["stopReason"] == "budget"
    ended = await updates.wait_for(lambda u: u["update"]["type"] == "turn_ended")
    assert "token budget of 2,500" in ended["update"]["error"]
    usage = updates.of(sid, "usage")
    assert [u["promptTokens"] for u in usage] == [1000, 1000]
    assert usage[-1]["totalPromptTokens"] == 2000 and usage[-1]["contextWindow"] == 50000
    figures = await request(client, p.SESSION_USAGE, {"sessionId": sid})
    assert (figures["promptTokens"], figures["calls"]) == (2000, 2)
    assert figures["budget"]["max_tokens"] == 2500


async def test_compact_with_a_focus_shows_the_marker(start_client, openai_server, tmp_path) -> None:
    for i in range(4):
        openai_server.add_tool_call("bash", {"cmd": f"echo step{i}"})
    openai_server.add_text("done")
    client, updates = await start_client(env={"PYGENT_CONTEXT_WINDOW": "50000"})
    sid = await _session(client, tmp_path)
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "work"}, timeout=60)
    openai_server.add_text("## Task\nwork\n## State of the work\nfour steps done")
    done = await request(client, p.SESSION_COMPACT, {"sessionId": sid, "focus": "the steps"})
    assert done["ok"] and "four steps done" in done["summary"] and done["replaced"] >= 2
    marker = await updates.wait_for(lambda u: u["update"]["type"] == "compaction")
    assert marker["update"]["summary"] == done["summary"] and marker["update"]["focus"] == "the steps"
    assert "Focus especially on: the steps" in str(openai_server.chat_requests[-1].body)
    # A failure says so and changes nothing.
    openai_server.add_error(400)
    failed = await request(client, p.SESSION_COMPACT, {"sessionId": sid})
    assert not failed["ok"] and failed["error"]


async def test_a_saved_sessions_transcript_shows_the_compaction_marker_in_order(
    start_client, openai_server, tmp_path
) -> None:
    """#18: the marker (with its summary) replays where it was shown live, between the
    turns, for the live session (an editor of its own keeps no log) and once it is saved."""
    for i in range(4):
        openai_server.add_tool_call("bash", {"cmd": f"echo step{i}"})
    openai_server.add_text("done")
    client, _updates = await start_client(env={"PYGENT_CONTEXT_WINDOW": "50000"})
    sid = await _session(client, tmp_path)
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "work"}, timeout=60)
    openai_server.add_text("## Task\nwork\n## State of the work\nfour steps done")
    done = await request(client, p.SESSION_COMPACT, {"sessionId": sid, "focus": "the steps"})
    assert done["ok"]
    openai_server.add_text("next answer")
    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "more"}, timeout=60)

    def shape(events: list[dict]) -> list[str]:
        return [e["type"] + (f":{e.get('prompt')}" if e["type"] == "turn_started" else "")
                for e in events if e["type"] in ("turn_started", "turn_ended", "compaction")]

    expected = ["turn_started:work", "turn_ended", "compaction", "turn_started:more", "turn_ended"]
    live = await request(client, p.SESSION_TRANSCRIPT, {"sessionId": sid})
    assert shape(live["events"]) == expected
    await request(client, p.SESSION_CLOSE, {"sessionId": sid})
    saved = await request(client, p.SESSION_TRANSCRIPT, {"sessionId": sid})
    assert shape(saved["events"]) == expected
    marker = next(e for e in saved["events"] if e["type"] == "compaction")
    assert marker["summary"] == done["summary"] and marker["focus"] == "the steps"
    assert marker["replaced"] == done["replaced"] and not marker["automatic"]
