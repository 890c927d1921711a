"""Compaction against the scripted server: automatic at the threshold, on demand, failures.

The server declares a small context window in its ``/v1/models`` metadata and refuses
(400 ``context_length_exceeded``, as real servers do) any request larger than it, so a
session that did not compact would fail; the history file is read back to show that
nothing was deleted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pygent import Agent
from pygent import compaction as cx
from pygent.context_window import forget_reported
from pygent.events import Event, StopReason
from pygent.history import HistoryFile
from pygent.runtime import Runtime
from pygent.settings import load_settings
from pygent.tools import ToolRegistry, builtin_tools
from tests.openai_server import error_reply, text_reply, tool_call_reply

WINDOW = 4096


@pytest.fixture(autouse=True)
def _fresh_discovery() -> None:
    forget_reported()  # each test's server runs on a new port; forget older answers


def _make_agent(openai_server, tmp_path: Path, history: Path | None = None, **env: str) -> Agent:
    base = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
            "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0", **env}
    settings = load_settings(environ=base, cwd=tmp_path)
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    agent = Agent(runtime=rt, settings=settings, tools=ToolRegistry(builtin_tools()),
                  history_file=history, checkpoints=False)
    seen: list[Event] = []
    agent.events.subscribe(seen.append)
    agent.seen = seen  # type: ignore[attr-defined]
    return agent


def _close(agent: Agent) -> None:
    agent.close()
    agent.runtime.cleanup()


def _is_summary_request(body: dict[str, Any]) -> bool:
    return body["messages"][0]["content"] == cx.SUMMARIZER


def _tokens(body: dict[str, Any]) -> int:
    return len(json.dumps(body["messages"])) // 4 + len(json.dumps(body.get("tools", []))) // 4


def test_two_hundred_tool_calls_compact_automatically_and_the_file_keeps_everything(
    openai_server, tmp_path: Path
) -> None:
    openai_server.model_info["test-model"] = {"context_length": WINDOW}
    state = {"calls": 0, "summaries": 0, "too_long": 0}

    def respond(body: dict[str, Any]) -> Any:
        if _tokens(body) > WINDOW:  # what a real server does with an oversized request
            state["too_long"] += 1
            return error_reply(400, code="context_length_exceeded")
        if _is_summary_request(body):
            state["summaries"] += 1
            return text_reply(f"## Task\nrun 200 echo steps\n## State of the work\n"
                              f"summary {state['summaries']}: {state['calls']} steps done")
        # Usage as a real server counts it: the tool schemas are part of the prompt.
        usage = {"prompt_tokens": _tokens(body), "completion_tokens": 20}
        if state["calls"] < 200:
            state["calls"] += 1
            n = state["calls"]
            reply = tool_call_reply("bash", {"cmd": f"echo step-{n}-" + "x" * 150})
            return dataclasses.replace(reply, usage=usage)
        return text_reply("all 200 steps done", usage=usage)

    openai_server.set_responder(respond)
    history = tmp_path / "session.jsonl"
    agent = _make_agent(openai_server, tmp_path, history)
    try:
        result = agent.turn("run the 200 steps", max_steps=260)
        assert result.stop_reason == StopReason.END_TURN, result.error
        assert result.text == "all 200 steps done"
        done = [e for e in agent.seen if e.type == "compaction"]
        assert done and all(e.ok and e.automatic for e in done)
        assert state["too_long"] == 0  # it compacted before the server had to refuse
        assert agent.context_window is not None and agent.context_window.source == "server"
        assert not any("not known" in getattr(e, "text", "") for e in agent.seen)
        requests = [r.body for r in openai_server.chat_requests]
        work = [b for b in requests if not _is_summary_request(b)]
        assert max(_tokens(b) for b in work) <= WINDOW * 0.8 + 400
        last = work[-1]["messages"]
        assert last[0]["role"] == "system" and last[1]["content"].startswith(cx.SUMMARY_HEADER)
        assert f"summary {len(done)}" in last[1]["content"]
        # Every original message is kept, in memory and in the file.
        outputs = [m["content"] for m in agent.history if m.get("role") == "tool"]
        assert len(outputs) == 200 and "step-1-" in outputs[0] and "step-200-" in outputs[-1]
    finally:
        _close(agent)
    saved = HistoryFile(history, read_only=True)
    messages = saved.load()
    assert [m["content"] for m in messages if m.get("role") == "tool"] == outputs
    # The marker: the last compaction's summary and where the verbatim part began.
    assert saved.meta["compaction"]["summary"] == done[-1].summary
    assert 0 < saved.meta["compaction"]["cut"] < len(messages)
    saved.close()


def _script_steps(openai_server, n: int) -> None:
    for i in range(n):
        openai_server.add_tool_call("bash", {"cmd": f"echo older-{i}"})
    openai_server.add_text("finished the older work")


def test_compact_on_demand_with_a_focus_and_resume_sees_the_summary(
    openai_server, tmp_path: Path
) -> None:
    history = tmp_path / "h.jsonl"
    agent = _make_agent(openai_server, tmp_path, history, PYGENT_CONTEXT_WINDOW="100000")
    try:
        _script_steps(openai_server, 6)
        assert agent.turn("do the older work").stop_reason == StopReason.END_TURN
        openai_server.add_text("## Task\nolder work\n## Decisions\nthe parser stays")
        result = agent.compact("the parser")
        assert result.ok and result.replaced >= 2 and "the parser stays" in result.summary
        asked = openai_server.chat_requests[-1].body
        assert _is_summary_request(asked) and "tools" not in asked
        assert "Focus especially on: the parser" in asked["messages"][1]["content"]
        assert "older-0" in asked["messages"][1]["content"]  # the older part went to the model
        marker = [e for e in agent.seen if e.type == "compaction"][-1]
        assert marker.ok and not marker.automatic and marker.focus == "the parser"
        assert marker.summary == result.summary
        openai_server.add_text("next answer")
        agent.turn("and now?")
        sent = openai_server.chat_requests[-1].body["messages"]
        assert sent[1]["content"].startswith(cx.SUMMARY_HEADER)
        assert sent[-1] == {"role": "user", "content": "and now?"}
        assert not any("older-0" in json.dumps(m) for m in sent[2:])
        assert any("older-0" in json.dumps(m) for m in agent.history)
    finally:
        _close(agent)
    # A resumed session goes on from the summary; the file still has everything.
    resumed = _make_agent(openai_server, tmp_path, history, PYGENT_CONTEXT_WINDOW="100000")
    try:
        assert any("older-0" in json.dumps(m) for m in resumed.history)
        view = resumed.request_messages()
        assert view[1]["content"].startswith(cx.SUMMARY_HEADER) and len(view) < len(resumed.history)
        # A reset conversation of the same length does not pick up the old marker.
        resumed.reset()
        _script_steps(openai_server, 6)
        resumed.turn("a new task")
    finally:
        _close(resumed)
    fresh = _make_agent(openai_server, tmp_path, history, PYGENT_CONTEXT_WINDOW="100000")
    try:
        assert fresh.compacted is None and fresh.request_messages() == fresh.history
    finally:
        _close(fresh)


def test_a_failed_compaction_leaves_the_conversation_as_it_was(openai_server, tmp_path) -> None:
    agent = _make_agent(openai_server, tmp_path, PYGENT_CONTEXT_WINDOW="2000")
    try:
        _script_steps(openai_server, 4)
        agent.turn("work")
        before = agent.request_messages()
        openai_server.add_error(400, code="invalid_request_error")
        failed = agent.compact()
        assert not failed.ok and failed.error
        assert agent.request_messages() == before and agent.compacted is None
        ev = [e for e in agent.seen if e.type == "compaction"][-1]
        assert not ev.ok and ev.error
        assert any(e.type == "notice" and "compaction failed" in e.text
                   and "unchanged" in e.text for e in agent.seen)
        # A summary too long for the window is refused the same way.
        openai_server.add_text("word " * 2000)
        too_long = agent.compact()
        assert not too_long.ok and "too long" in too_long.error
        assert agent.request_messages() == before
        # Nothing to compact yet is said as well.
        agent.reset()
        empty = agent.compact()
        assert not empty.ok and "not enough" in empty.error
    finally:
        _close(agent)


def test_the_request_prefix_stays_byte_stable_between_steps(openai_server, tmp_path) -> None:
    agent = _make_agent(openai_server, tmp_path, PYGENT_CONTEXT_WINDOW="100000")
    try:
        _script_steps(openai_server, 5)
        agent.turn("five steps")
        openai_server.add_text("again")
        agent.turn("one more turn")
        raws = [r.raw for r in openai_server.chat_requests]
        assert len(raws) == 7
        for older, newer in zip(raws, raws[1:], strict=False):
            end = older.rindex(b',"tools"') if b',"tools"' in older else older.rindex(b"]")
            prefix = older[: end - 1]  # up to the end of its last message
            assert newer.startswith(prefix)
            tools = older[end:older.index(b"]", older.index(b'"tools"')) + 1]
            assert tools in newer  # the tool schemas, byte for byte
    finally:
        _close(agent)


def test_a_default_window_is_said_once_and_config_wins(openai_server, tmp_path) -> None:
    openai_server.add_text("one")
    openai_server.add_text("two")
    agent = _make_agent(openai_server, tmp_path)
    try:
        agent.turn("a")
        agent.turn("b")
        said = [e for e in agent.seen if e.type == "notice" and "not known" in e.text]
        assert len(said) == 1 and "8,192" in said[0].text
        assert agent.context_window is not None and agent.context_window.source == "default"
    finally:
        _close(agent)
    configured = _make_agent(openai_server, tmp_path, PYGENT_CONTEXT_WINDOW="test-model=32000")
    try:
        openai_server.add_text("three")
        configured.turn("c")
        assert configured.context_window is not None
        assert (configured.context_window.tokens, configured.context_window.source) == (32000, "config")
    finally:
        _close(configured)


def test_cut_never_separates_a_call_from_its_result() -> None:
    history: list[dict[str, Any]] = [{"role": "system", "content": "s"},
                                     {"role": "user", "content": "u"}]
    for i in range(10):
        history.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]})
        history.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 100})
    for keep in range(1, 400, 7):
        cut = cx.choose_cut(history, 1, keep)
        assert cut is not None and history[cut]["role"] != "tool" and cut >= 3


def test_context_length_exceeded_compacts_and_retries_once(openai_server, tmp_path) -> None:
    """ADVERSARIAL F12: the server refuses a request as too long although the estimate
    said it fit: Pygent compacts, asks again once, and the turn goes on."""
    agent = _make_agent(openai_server, tmp_path, PYGENT_CONTEXT_WINDOW="100000")
    try:
        _script_steps(openai_server, 4)
        agent.turn("older work")
        openai_server.add_error(400, code="context_length_exceeded")
        openai_server.add_text("## Task\nolder work\n## State of the work\nsummarised")
        openai_server.add_text("answered after compacting")
        result = agent.turn("go on")
        assert result.stop_reason == StopReason.END_TURN and result.text == "answered after compacting"
        done = [e for e in agent.seen if e.type == "compaction"]
        assert len(done) == 1 and done[0].ok and done[0].automatic
        retried = openai_server.chat_requests[-1].body["messages"]
        assert retried[1]["content"].startswith(cx.SUMMARY_HEADER)
        assert retried[-1] == {"role": "user", "content": "go on"}
        # Too long again after compacting: a clear error, the conversation intact.
        openai_server.add_error(400, code="context_length_exceeded")
        openai_server.add_text("## Task\nagain")
        openai_server.add_error(400, code="context_length_exceeded")
        failed = agent.turn("and again")
        assert failed.stop_reason == StopReason.ERROR and "too long" in failed.error.lower()
        assert any(m.get("content") == "and again" for m in agent.history)
    finally:
        _close(agent)


def test_window_discovery_reads_the_servers_shapes() -> None:
    from pygent.context_window import table_window, window_from_models, window_from_props

    openrouter = {"data": [{"id": "a", "context_length": 131072}, {"id": "b"}]}
    vllm = {"data": [{"id": "m", "max_model_len": 32768}]}
    llamacpp = {"data": [{"id": "/models/x.gguf", "meta": {"n_ctx": 8192, "n_ctx_train": 9}}]}
    assert window_from_models(openrouter, "a") == 131072
    assert window_from_models(openrouter, "b") is None
    assert window_from_models(vllm, "m") == 32768
    assert window_from_models(llamacpp, "any-name") == 8192  # one model served under any name
    assert window_from_models({"error": "x"}, "a") is None
    # The training size is no promise of what the server runs with.
    assert window_from_models({"data": [{"id": "x", "meta": {"n_ctx_train": 8192}}]}, "x") is None
    assert window_from_props({"default_generation_settings": {"n_ctx": 2048}}) == 2048
    assert window_from_props({"n_ctx": 4096}) == 4096 and window_from_props([]) is None
    assert table_window("gpt-4.1-mini") == 1_047_576 and table_window("openai/gpt-4o") == 128_000
    assert table_window("gpt-4") == 8192 and table_window("my-local-model") is None
