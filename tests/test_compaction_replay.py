"""#18: a saved session's replay shows every compaction marker, with its summary, where it
was shown live; a rewind (which rewrites the history file) keeps the markers that still
apply and drops those whose summarised part it took away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pygent import compaction as cx
from pygent.context_window import forget_reported
from pygent.events import StopReason
from pygent.history import HistoryFile
from pygent.lsp.transcript import history_updates
from tests.test_compaction import _close, _make_agent


@pytest.fixture(autouse=True)
def _fresh_discovery() -> None:
    forget_reported()


def _replay(path: Path) -> list[dict[str, Any]]:
    reader = HistoryFile.read(path)
    try:
        messages = reader.load(repair=False)
        return history_updates(messages, reader.meta_log.get("compaction", []))
    finally:
        reader.close()


def _shape(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        if e["type"] == "turn_started":
            out.append(f"turn:{e['prompt']}")
        elif e["type"] == "compaction":
            out.append(f"compaction:{e['summary'].splitlines()[-1]}")
        elif e["type"] == "turn_ended":
            out.append("end")
    return out


def _work(openai_server, agent, prompt: str, steps: int) -> None:
    for i in range(steps):
        openai_server.add_tool_call("bash", {"cmd": f"echo {prompt}-{i}"})
    openai_server.add_text(f"{prompt} done")
    assert agent.turn(prompt).stop_reason == StopReason.END_TURN


def test_every_marker_replays_in_order_and_a_rewind_keeps_those_that_apply(
    openai_server, tmp_path: Path
) -> None:
    history = tmp_path / "h.jsonl"
    agent = _make_agent(openai_server, tmp_path, history, PYGENT_CONTEXT_WINDOW="100000")
    try:
        _work(openai_server, agent, "first", 4)
        openai_server.add_text("## Task\nfirst\n## State of the work\nsummary one")
        assert agent.compact().ok
        _work(openai_server, agent, "second", 4)
        openai_server.add_text("## Task\nsecond\n## State of the work\nsummary two")
        assert agent.compact("the second").ok
        _work(openai_server, agent, "third", 1)
        assert _shape(_replay(history)) == [
            "turn:first", "end", "compaction:summary one",
            "turn:second", "end", "compaction:summary two",
            "turn:third", "end",
        ]
        second = [e for e in _replay(history) if e["type"] == "compaction"][1]
        assert second["focus"] == "the second" and second["replaced"] >= 2
        live = [e for e in agent.seen if e.type == "compaction"][1]  # type: ignore[attr-defined]
        assert (second["tokensBefore"], second["tokensAfter"], second["replaced"]) == (
            live.tokens_before, live.tokens_after, live.replaced)

        # Rewinding the third turn rewrites the file: both markers are still there.
        agent.rewind(3, files=False, conversation=True)
        assert _shape(_replay(history)) == [
            "turn:first", "end", "compaction:summary one",
            "turn:second", "end", "compaction:summary two",
        ]
        # Rewinding the second turn takes away what the second summary summarised.
        agent.rewind(2, files=False, conversation=True)
        assert _shape(_replay(history)) == ["turn:first", "end", "compaction:summary one"]
        # Redo puts the conversation, and so the second marker, back.
        agent.redo()
        assert _shape(_replay(history))[-1] == "compaction:summary two"
        # A reset conversation shows no marker of the old one.
        agent.reset()
        _work(openai_server, agent, "fresh", 1)
        assert _shape(_replay(history)) == ["turn:fresh", "end"]
    finally:
        _close(agent)
    # The agent reopening the file still resumes from the newest marker that applies.
    reader = HistoryFile.read(history)
    reader.load()
    assert reader.meta["compaction"]["summary"].endswith("summary two")
    assert len(reader.meta_log["compaction"]) == 2
    reader.close()


def test_an_automatic_compaction_replays_inside_its_turn() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "out"},
        {"role": "assistant", "content": "still going"},
        {"role": "assistant", "content": "done"},
    ]
    history = [{"role": "system", "content": "s"}, *messages]
    mark = cx.marker(history[:5], 3, "the summary", automatic=True, tokens=(900, 200))
    events = history_updates(messages, [mark, {"cut": 99, "summary": "no longer fits"}])
    kinds = [e["type"] for e in events]
    assert kinds == ["turn_started", "tool_call_proposed", "tool_call_finished", "message_done",
                     "compaction", "message_done", "turn_ended"]
    marker = events[4]
    assert marker["automatic"] and marker["summary"] == "the summary"
    assert (marker["tokensBefore"], marker["tokensAfter"], marker["replaced"]) == (900, 200, 2)
