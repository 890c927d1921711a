"""Request bodies: each message JSON-encoded once for the session, the bytes the same as
a whole encoding, and a message the agent changes sent as changed (pygent/request_body.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pygent import Agent
from pygent import compaction as cx
from pygent.request_body import RequestEncoder
from pygent.runtime import Runtime
from pygent.server_profile import wire_messages
from pygent.settings import load_settings
from pygent.tools import ToolRegistry, builtin_tools


def _whole(body: Any) -> bytes:
    """What httpx sends for ``json=body``."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _conversation(n: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Sé útil — “quoted” \u2028 ok"}]
    for i in range(n):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "bash", "arguments": json.dumps({"cmd": f"echo {i} \"é\""})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"{i}\n\ttab ✓"})
    messages.append({"role": "user", "content": [{"type": "text", "text": "look"},
                                                 {"type": "image_url", "image_url": {"url": "data:,"}}]})
    return messages


def _body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "m", "messages": wire_messages(messages), "tools": [
        {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}],
        "temperature": 0.5, "stream": True, "stream_options": {"include_usage": True}}


def test_the_bytes_are_those_of_one_whole_encoding() -> None:
    encoder = RequestEncoder()
    messages = _conversation(3)
    for _ in range(3):  # cold, then from the cache, then grown
        body = _body(messages)
        assert encoder.encode(body) == _whole(body)
        messages.append({"role": "user", "content": f"more {len(messages)}"})
    assert encoder.encode({}) == b"{}"
    assert encoder.encode({"messages": []}) == b'{"messages":[]}'


def test_older_messages_are_not_encoded_again_and_a_changed_one_is() -> None:
    encoder = RequestEncoder()
    messages = _conversation(4)
    first = encoder.encode(_body(messages))
    cached = {key: entry[1] for key, entry in encoder._current.items()}
    messages.append({"role": "user", "content": "next"})
    # The wire form is rebuilt (a fresh copy of each assistant message), yet the bytes of
    # every older message are the very objects encoded before.
    second = encoder.encode(_body(messages))
    reused = [b for key, b in cached.items() if encoder._current.get(key, (None, None))[1] is b]
    assert len(reused) == len(cached)
    assert second.startswith(first[:first.index(b',"tools"') - 1])
    # The agent shortens an old tool output by replacing the field: that is sent.
    messages[2]["content"] = "shortened"
    third = encoder.encode(_body(messages))
    assert b'"content":"shortened"' in third and third == _whole(_body(messages))


def test_a_session_sends_what_its_history_holds_after_an_edit(openai_server, tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
           "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0"}
    settings = load_settings(environ=env, cwd=tmp_path)
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    agent = Agent(runtime=rt, settings=settings, tools=ToolRegistry(builtin_tools()),
                  checkpoints=False)
    try:
        openai_server.add_tool_call("bash", {"cmd": "echo first-output"})
        openai_server.add_text("done")
        agent.turn("run it")
        assert b"first-output\\n" in openai_server.chat_requests[-1].raw  # the command's output
        tool = next(m for m in agent.history if m.get("role") == "tool")
        tool["content"] = "[replaced output]"  # as the agent's own shortening does
        openai_server.add_text("again")
        agent.turn("and now")
        last = openai_server.chat_requests[-1]
        assert b"[replaced output]" in last.raw and b"first-output\\n" not in last.raw
        # Every request went out exactly as one whole encoding of its body would.
        for request in openai_server.chat_requests:
            assert request.raw == _whole(request.body)
    finally:
        agent.close()
        rt.cleanup()


def test_the_summary_message_is_one_object_for_the_whole_compaction() -> None:
    # A summary may fill a fifth of the window: built (and so encoded) once, not per step.
    history: list[dict[str, Any]] = _conversation(6)
    compacted = cx.Compacted(5, "## Task\nthe parser", history[4])
    first, second = cx.request_view(history, compacted), cx.request_view(history, compacted)
    assert first[1] is second[1] and first[1] == cx.summary_message("## Task\nthe parser")
    assert first[2:] == history[5:]
