"""Requests real servers accept, and the fallbacks learned from their answers.

The scripted server plays each quirk seen on real servers (docs/models.md has the
table; tests/real_models/ runs the real ones): llama-cpp-python's empty stream for an
automatic tool choice, its HTTP 500 on ``"content": null``, servers that reject a
field, servers that cannot take parallel calls, servers that report no usage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pygent.errors import ContextTooLongError, ModelError
from pygent.openai_model import OpenAIModel
from pygent.server_profile import RequestOptions, forget_profiles, wire_messages
from tests.openai_server import (
    RawReply,
    ScriptedOpenAIServer,
    error_reply,
    text_reply,
    tool_call_reply,
)
from tests.test_models import TOOLS, _close_models, track  # noqa: F401 (an autouse fixture)

KEY = "sk-compat-test-key"
AFTER_A_CALL = [
    {"role": "user", "content": "list files"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
]
PARALLEL = [
    {"role": "user", "content": "two things"},
    {
        "role": "assistant",
        "content": "Both at once.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "one"},
    {"role": "tool", "tool_call_id": "c2", "content": "two"},
]
EMPTY_STREAM = RawReply(200, b"data: [DONE]\n\n", "text/event-stream")


@pytest.fixture(autouse=True)
def _fresh_profiles():
    forget_profiles()
    yield
    forget_profiles()


class Seen:
    """What a caller of astream was shown: text pieces, discards, notices."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.notices: list[str] = []

    def text(self, piece: str) -> None:
        self.items.append(piece)

    def discard(self, reason: str) -> None:
        self.items.append(f"<discard: {reason}>")

    @property
    def final_text(self) -> str:
        """The text shown since the last discard: what the user is left looking at."""
        last = max((i for i, x in enumerate(self.items) if x.startswith("<discard")), default=-1)
        return "".join(self.items[last + 1 :])


def make(server: ScriptedOpenAIServer, seen: Seen | None = None, **kw: Any) -> OpenAIModel:
    kw.setdefault("retry_base_delay", 0.01)
    notices = seen.notices.append if seen else None
    return track(OpenAIModel(KEY, server.base_url, on_notice=notices, **kw))


async def ask(model: OpenAIModel, seen: Seen, messages: Any = None, tools: Any = TOOLS):
    return await model.astream(
        messages or [{"role": "user", "content": "hi"}],
        "test-model",
        tools,
        on_text=seen.text,
        on_discard=seen.discard,
    )


# ---------------------------------------------------------------- request shape


async def test_tools_go_with_tool_choice_auto_and_content_is_never_null(openai_server):
    openai_server.add_text("done")
    await ask(make(openai_server), Seen(), AFTER_A_CALL)
    body = openai_server.chat_requests[0].body
    assert body["tool_choice"] == "auto"
    assert body["messages"][1]["content"] == ""  # llama-cpp-python answers null with HTTP 500
    assert "temperature" not in body and "parallel_tool_calls" not in body


async def test_options_are_sent_and_omit_sends_no_tool_choice(openai_server):
    openai_server.add_text("a")
    openai_server.add_text("b")
    await ask(make(openai_server, options=RequestOptions(temperature=0.0, tool_choice="omit")),
              Seen())
    await ask(make(openai_server, options=RequestOptions(tool_choice="required")), Seen(),
              tools=None)
    first, second = (r.body for r in openai_server.chat_requests)
    assert first["temperature"] == 0.0 and "tool_choice" not in first
    assert "tool_choice" not in second and "tools" not in second  # no tools: no choice


# ---------------------------------------------------------------- empty and cut streams


async def test_a_server_that_cannot_stream_tools_is_asked_whole_from_then_on(openai_server):
    """llama-cpp-python with tool_choice "auto": an empty 200 stream, a fine plain answer."""

    def llama_like(body: dict[str, Any]) -> Any:
        if body.get("stream") and body.get("tools"):
            return EMPTY_STREAM
        return tool_call_reply("bash", {"cmd": "ls"}, call_id="c9")

    openai_server.set_responder(llama_like)
    seen = Seen()
    model = make(openai_server, seen)
    reply = await ask(model, seen)
    assert reply.message.tool_calls[0].function.arguments == '{"cmd": "ls"}'
    await ask(model, seen)
    assert [r.stream for r in openai_server.chat_requests] == [True, False, False]
    assert [n for n in seen.notices if "cannot stream" in n] == [
        f"the model server at {openai_server.base_url} cannot stream replies to requests with "
        "tools; Pygent asks for them whole from now on"
    ]
    # Another model object on the same server and model knows it too (a sub-agent).
    await ask(make(openai_server), Seen())
    assert openai_server.chat_requests[-1].stream is False


async def test_text_without_tools_still_streams_after_the_fallback(openai_server):
    def llama_like(body: dict[str, Any]) -> Any:
        if body.get("stream") and body.get("tools"):
            return EMPTY_STREAM
        return "plain text"

    openai_server.set_responder(llama_like)
    model = make(openai_server)
    await ask(model, Seen())
    await ask(model, Seen(), tools=None)
    assert [r.stream for r in openai_server.chat_requests] == [True, False, True]


async def test_an_empty_stream_that_was_an_overflow_says_too_long_at_once(openai_server):
    """llama-cpp-python streams nothing for a prompt over the window; plain, it says 400."""
    openai_server.add(EMPTY_STREAM)
    openai_server.add(error_reply(400, code="context_length_exceeded"))
    with pytest.raises(ContextTooLongError, match="too long"):
        await ask(make(openai_server), Seen())
    assert len(openai_server.chat_requests) == 2  # no retries


async def test_an_empty_stream_that_was_a_bad_request_says_what_was_bad(openai_server):
    openai_server.add(EMPTY_STREAM)
    openai_server.add(error_reply(400, {"error": {"message": "messages[3]: unknown role"}}))
    with pytest.raises(ModelError, match=r"refused the request \(HTTP 400\): messages\[3\]"):
        await ask(make(openai_server), Seen())
    assert len(openai_server.chat_requests) == 2


async def test_a_cut_stream_is_replaced_not_spliced(openai_server):
    """llama.cpp ends a running stream when another request arrives: a bare [DONE]."""
    cut = b'data: {"choices":[{"index":0,"delta":{"content":"The files are"}}]}\n\ndata: [DONE]\n\n'
    openai_server.add(RawReply(200, cut, "text/event-stream"))
    openai_server.add_text("There are two files.")
    seen = Seen()
    reply = await ask(make(openai_server), seen, tools=None)
    assert seen.items[0] == "The files are"
    assert seen.items[1].startswith("<discard: ")
    assert seen.final_text == reply.message.content == "There are two files."


async def test_a_retry_after_shown_text_discards_it_first(openai_server):
    openai_server.add_truncated_stream("Half an ans", tool_name=None)
    openai_server.add(error_reply(503))  # the plain re-ask fails too: a real retry
    openai_server.add_text("A whole answer.")
    seen = Seen()
    reply = await ask(make(openai_server), seen, tools=None)
    assert seen.final_text == reply.message.content == "A whole answer."
    assert any(x.startswith("<discard") for x in seen.items)


# ---------------------------------------------------------------- learned request shapes


async def test_a_rejected_field_is_left_out_and_remembered(openai_server):
    def strict(body: dict[str, Any]) -> Any:
        if "tool_choice" in body:
            return error_reply(
                400, {"error": {"message": "Extra inputs are not permitted: tool_choice"}}
            )
        return "ok"

    openai_server.set_responder(strict)
    model = make(openai_server)
    await ask(model, Seen())
    await ask(model, Seen())
    assert ["tool_choice" in r.body for r in openai_server.chat_requests] == [True, False, False]


async def test_a_server_wanting_null_content_gets_it_after_one_refusal(openai_server):
    def wants_null(body: dict[str, Any]) -> Any:
        if any(m.get("tool_calls") and m.get("content") == "" for m in body["messages"]):
            return error_reply(
                400, {"error": {"message": "assistant content must be null with tool_calls"}}
            )
        return "fine"

    openai_server.set_responder(wants_null)
    model = make(openai_server)
    reply = await ask(model, Seen(), AFTER_A_CALL)
    assert reply.message.content == "fine"
    await ask(model, Seen(), AFTER_A_CALL)
    contents = [r.body["messages"][1]["content"] for r in openai_server.chat_requests]
    assert contents == ["", None, None]


async def test_a_content_refusal_that_is_not_about_the_form_is_not_remembered(openai_server):
    openai_server.add(error_reply(400, {"error": {"message": "content policy violation"}}))
    openai_server.add(error_reply(400, {"error": {"message": "content policy violation"}}))
    model = make(openai_server)
    with pytest.raises(ModelError, match="content policy"):
        await ask(model, Seen(), AFTER_A_CALL)
    assert model.profile("test-model").null_content is False


async def test_parallel_calls_are_sent_one_at_a_time_when_refused(openai_server):
    def sequential_only(body: dict[str, Any]) -> Any:
        if any(len(m.get("tool_calls") or ()) > 1 for m in body["messages"]):
            return error_reply(400, {"error": {"message": "only one tool call per message"}})
        return "understood"

    openai_server.set_responder(sequential_only)
    seen = Seen()
    model = make(openai_server, seen)
    await ask(model, seen, PARALLEL)
    sent = openai_server.chat_requests[-1].body
    assert [(m["role"], m.get("content")) for m in sent["messages"]] == [
        ("user", "two things"),
        ("assistant", "Both at once."),
        ("tool", "one"),
        ("assistant", ""),
        ("tool", "two"),
    ]
    assert sent["parallel_tool_calls"] is False
    assert any("one at a time" in n for n in seen.notices)
    await ask(model, seen, PARALLEL)  # remembered: no refused request first
    assert len(openai_server.chat_requests) == 3


def test_wire_messages_copy_only_what_changes():
    history = [{"role": "user", "content": "x"}, *AFTER_A_CALL[1:]]
    out = wire_messages(history)
    assert out[0] is history[0] and out[2] is history[2]
    assert out[1]["content"] == "" and history[1]["content"] is None


# ---------------------------------------------------------------- usage


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


async def test_missing_usage_is_estimated_marked_and_said_once(openai_server):
    no_usage = _sse(
        {"choices": [{"index": 0, "delta": {"content": "twelve chars"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )
    for _ in range(2):
        openai_server.add(RawReply(200, no_usage, "text/event-stream"))
    seen = Seen()
    model = make(openai_server, seen)
    reply = await ask(model, seen, tools=None)
    assert reply.usage_estimated and reply.completion_tokens == 3 and reply.prompt_tokens > 0
    await ask(model, seen, tools=None)
    assert [n for n in seen.notices if "no token usage" in n] == [
        f"the model server at {openai_server.base_url} reports no token usage; token counts "
        "are estimated (~4 characters a token)"
    ]


async def test_reported_usage_is_not_marked(openai_server):
    openai_server.add(text_reply("hi", usage={"prompt_tokens": 7, "completion_tokens": 1}))
    reply = await ask(make(openai_server), Seen(), tools=None)
    assert (reply.prompt_tokens, reply.completion_tokens, reply.usage_estimated) == (7, 1, False)
