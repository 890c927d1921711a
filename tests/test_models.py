"""The model layer through the real ``openai`` SDK against the real scripted server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from pygent import openai_compat
from pygent.errors import (
    ContextTooLongError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelQuotaError,
)
from pygent.models import (
    ModelReply,
    complete,
    get_custom_model,
    reply_from_raw,
    set_custom_model,
)
from pygent.openai_model import OpenAIModel, parse_retry_after
from tests.openai_server import ScriptedOpenAIServer, error_reply

KEY = "sk-canary-5f2b9c1d7e3a4b6c8d0e"
MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "run a command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
    }
]


class Retries:
    """Collects on_retry reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, str]] = []

    def __call__(self, attempt: int, delay: float, reason: str) -> None:
        self.calls.append((attempt, delay, reason))


_made: list[OpenAIModel] = []


def track(model: OpenAIModel) -> OpenAIModel:
    _made.append(model)
    return model


def make(server: ScriptedOpenAIServer, **kw: Any) -> OpenAIModel:
    kw.setdefault("retry_base_delay", 0.01)
    return track(OpenAIModel(KEY, server.base_url, **kw))


@pytest.fixture(autouse=True)
async def _close_models():
    """Close the models' HTTP clients so no pooled socket outlives its test."""
    _made.clear()
    yield
    for model in _made:
        await model.aclose()
        model.close()


async def stream(model: OpenAIModel, tools: Any = None) -> tuple[ModelReply, list[str]]:
    pieces: list[str] = []
    reply = await model.astream(MESSAGES, "test-model", tools, on_text=pieces.append)
    return reply, pieces


# ---------------------------------------------------------------- streaming


async def test_text_deltas_arrive_in_order(openai_server):
    openai_server.add_text("The quick brown fox jumps")
    reply, pieces = await stream(make(openai_server))
    assert pieces == ["The ", "quick ", "brown ", "fox ", "jumps"]
    assert reply.message.content == "The quick brown fox jumps"
    assert reply.message.tool_calls is None
    assert reply.finish_reason == "stop"
    (req,) = openai_server.chat_requests
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}
    assert req.body["model"] == "test-model" and req.body["messages"] == MESSAGES
    assert "tools" not in req.body  # an empty tool list is never sent
    assert req.headers["authorization"] == f"Bearer {KEY}"


async def test_consecutive_calls_share_one_connection(openai_server):
    # Each stream is read to its end after [DONE], so its connection goes back to the pool.
    model = make(openai_server)
    for word in ("one", "two", "three"):
        openai_server.add_text(word)
        reply, _ = await stream(model)
        assert reply.message.content == word
    assert openai_server.connections_opened == 1


async def test_tool_call_assembled_from_split_deltas(openai_server):
    openai_server.add_tool_call("bash", {"cmd": "ls -la /work"}, call_id="call_42", text="Looking.")
    reply, pieces = await stream(make(openai_server), TOOLS)
    assert "".join(pieces) == "Looking."
    (call,) = reply.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_42", "function", "bash")
    assert json.loads(call.function.arguments) == {"cmd": "ls -la /work"}
    assert reply.finish_reason == "tool_calls"
    assert openai_server.chat_requests[0].body["tools"] == TOOLS


async def test_two_parallel_tool_calls(openai_server):
    openai_server.add_tool_calls(
        [("bash", {"cmd": "echo one"}, "call_a"), ("read_file", {"path": "src/x.py"}, "call_b")]
    )
    reply, _ = await stream(make(openai_server), TOOLS)
    calls = reply.message.tool_calls
    assert [(c.id, c.function.name) for c in calls] == [("call_a", "bash"), ("call_b", "read_file")]
    assert json.loads(calls[0].function.arguments) == {"cmd": "echo one"}
    assert json.loads(calls[1].function.arguments) == {"path": "src/x.py"}
    assert reply.message.content is None


async def test_usage_recorded(openai_server):
    openai_server.add_text("ok", usage={"prompt_tokens": 1234, "completion_tokens": 56})
    reply, _ = await stream(make(openai_server))
    assert (reply.prompt_tokens, reply.completion_tokens) == (1234, 56)


async def test_server_rejecting_stream_options_falls_back(openai_server):
    def respond(body):
        if "stream_options" in body:
            return error_reply(
                400,
                {
                    "error": {
                        "message": "Unrecognized request argument supplied: stream_options",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        return "no usage here"

    openai_server.set_responder(respond)
    model = make(openai_server)
    reply, _ = await stream(model)
    assert reply.message.content == "no usage here" and reply.usage_estimated
    reply, _ = await stream(model)  # remembered: no second rejected request
    assert [("stream_options" in r.body) for r in openai_server.chat_requests] == [
        True,
        False,
        False,
    ]


async def test_server_ignoring_stream_returns_json(openai_server):
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "whole answer"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    openai_server.add_raw(200, json.dumps(body), "application/json")
    reply, pieces = await stream(make(openai_server))
    assert reply.message.content == "whole answer" and pieces == ["whole answer"]
    assert reply.prompt_tokens == 5


async def test_cancel_stops_the_stream(openai_server):
    openai_server.add_slow_stream(" ".join(["word"] * 100), delay_per_chunk=0.05)
    got_text = asyncio.Event()
    task = asyncio.create_task(
        make(openai_server).astream(MESSAGES, "test-model", None, on_text=lambda _: got_text.set())
    )
    await asyncio.wait_for(got_text.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    for _ in range(100):  # the server notices the closed connection on its next write
        if openai_server.requests[0].disconnected:
            break
        await asyncio.sleep(0.05)
    assert openai_server.requests[0].disconnected


def test_each_event_loop_gets_working_clients(openai_server):
    # Agent.step() may drive turns from more than one loop; a pooled connection
    # belongs to the loop that opened it and must not be used from another.
    model = make(openai_server)
    openai_server.add_text("one")
    openai_server.add_text("two")
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        got = [
            loop.run_until_complete(model.astream(MESSAGES, "test-model", None)) for loop in loops
        ]
        assert [r.message.content for r in got] == ["one", "two"]
    finally:
        for loop in loops:
            loop.run_until_complete(model.aclose())
            loop.close()


# ---------------------------------------------------------------- retries


async def test_429_retry_after_is_honoured(openai_server):
    openai_server.add_error(429, headers={"Retry-After": "1"})
    openai_server.add_text("after the wait")
    retries = Retries()
    reply, _ = await stream(make(openai_server, on_retry=retries))
    assert reply.message.content == "after the wait"
    assert len(openai_server.chat_requests) == 2
    ((attempt, delay, reason),) = retries.calls
    assert attempt == 1 and 1.0 <= delay <= 1.1 and "429" in reason


async def test_retry_after_ms_is_honoured(openai_server):
    openai_server.add_error(429, headers={"retry-after-ms": "300", "Retry-After": "9"})
    openai_server.add_text("ok")
    retries = Retries()
    await stream(make(openai_server, on_retry=retries))
    assert 0.3 <= retries.calls[0][1] <= 0.33


async def test_retry_wait_is_capped(openai_server):
    openai_server.add_error(503, headers={"Retry-After": "7"})
    openai_server.add_text("ok")
    retries = Retries()
    await stream(make(openai_server, on_retry=retries, max_retry_wait=0.2))
    assert retries.calls[0][1] == 0.2


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "4321"}) == 4.321
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 28 <= parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}) <= 30
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert parse_retry_after({"retry-after": format_datetime(past, usegmt=True)}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
async def test_server_errors_are_retried(openai_server, status):
    openai_server.add_error(status)
    openai_server.add_text("recovered")
    retries = Retries()
    reply, _ = await stream(make(openai_server, on_retry=retries))
    assert reply.message.content == "recovered"
    assert len(openai_server.chat_requests) == 2 and len(retries.calls) == 1


async def test_server_errors_give_up_after_max_retries(openai_server):
    for _ in range(3):
        openai_server.add_error(500)
    with pytest.raises(ModelError, match=r"HTTP 500 after 3 attempt"):
        await stream(make(openai_server, max_retries=2))
    assert len(openai_server.chat_requests) == 3


async def test_429_after_retries_is_a_quota_error(openai_server):
    openai_server.add_error(429, headers={"retry-after-ms": "10"})
    openai_server.add_error(429, headers={"retry-after-ms": "10"})
    with pytest.raises(ModelQuotaError, match="rate limited"):
        await stream(make(openai_server, max_retries=1))
    assert len(openai_server.chat_requests) == 2


async def test_insufficient_quota_is_not_retried(openai_server):
    openai_server.add_error(429, code="insufficient_quota")
    with pytest.raises(ModelQuotaError, match="quota"):
        await stream(make(openai_server))
    assert len(openai_server.chat_requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(openai_server, status):
    openai_server.add_error(status)
    openai_server.add_text("never reached")
    retries = Retries()
    with pytest.raises(ModelError):
        await stream(make(openai_server, on_retry=retries))
    assert len(openai_server.chat_requests) == 1 and retries.calls == []


# ---------------------------------------------------------------- errors


async def test_401_names_the_problem_without_the_key(openai_server, caplog):
    caplog.set_level(logging.DEBUG)
    openai_server.add_error(401)  # the server's own message echoes the key
    model = make(openai_server)
    with pytest.raises(ModelAuthError) as info:
        await stream(model)
    err = info.value
    assert str(err) == "the model server rejected the API key (401)"
    assert err.hint == f"set OPENAI_API_KEY to a valid key for {openai_server.base_url}"
    assert err.__context__ is None and err.__cause__ is None
    for text in (str(err), err.user_message(), repr(err), repr(model), caplog.text):
        assert KEY not in text
        assert KEY[10:] not in text


async def test_key_never_logged_or_reported_on_any_failure(openai_server, caplog):
    caplog.set_level(logging.DEBUG)
    # A server that puts the key in every error message it sends.
    leak = {"error": {"message": f"bad key {KEY} (Bearer {KEY})", "type": "server_error"}}
    openai_server.add_error(500, leak)
    openai_server.add_error(500, leak)
    retries = Retries()
    with pytest.raises(ModelError) as info:
        await stream(make(openai_server, max_retries=1, on_retry=retries))
    texts = [str(info.value), info.value.user_message(), caplog.text, repr(retries.calls)]
    assert "sk-***" in str(info.value) or "***" in str(info.value)
    for text in texts:
        assert KEY not in text


async def test_404_model_names_model_and_endpoint(openai_server):
    openai_server.add_error(404)
    with pytest.raises(ModelNotFoundError) as info:
        await stream(make(openai_server))
    assert "'test-model'" in str(info.value) and openai_server.base_url in str(info.value)


async def test_wrong_base_url_is_a_not_found_with_a_hint(openai_server):
    model = track(OpenAIModel(KEY, openai_server.url))  # forgot the /v1
    with pytest.raises(ModelNotFoundError) as info:
        await model.astream(MESSAGES, "test-model", None)
    assert openai_server.url in str(info.value) and "OPENAI_BASE_URL" in info.value.hint


async def test_context_too_long(openai_server):
    openai_server.add_error(400, code="context_length_exceeded")
    with pytest.raises(ContextTooLongError, match="too long for model 'test-model'"):
        await stream(make(openai_server))
    assert len(openai_server.chat_requests) == 1


async def test_html_garbage_names_the_endpoint(openai_server):
    openai_server.add_raw(200, "<!DOCTYPE html><html><body>Please log in</body></html>")
    with pytest.raises(ModelError) as info:
        await stream(make(openai_server))
    assert openai_server.base_url in str(info.value) and "text/html" in str(info.value)
    assert "OPENAI_BASE_URL" in info.value.hint
    assert len(openai_server.chat_requests) == 1


async def test_garbage_inside_the_event_stream(openai_server):
    openai_server.add_raw(200, b"data: <html>oops</html>\n\n", "text/event-stream")
    with pytest.raises(ModelError, match="instead of a chat completion"):
        await stream(make(openai_server))


async def test_error_event_inside_a_stream(openai_server):
    overloaded = (
        b'data: {"error": {"message": "The server is overloaded", "type": "server_error"}}\n\n'
    )
    openai_server.add_raw(200, overloaded, "text/event-stream")
    openai_server.add_text("fine now")
    reply, _ = await stream(make(openai_server))
    assert reply.message.content == "fine now" and len(openai_server.chat_requests) == 2
    too_long = (
        b'data: {"error": {"message": "prompt is too long", "type": "invalid_request_error",'
        b' "code": "context_length_exceeded"}}\n\n'
    )
    openai_server.add_raw(200, too_long, "text/event-stream")
    with pytest.raises(ContextTooLongError):
        await stream(make(openai_server))


async def test_empty_answer(openai_server):
    openai_server.add_text("")
    reply, pieces = await stream(make(openai_server))
    assert reply.message.content is None and reply.message.tool_calls is None
    assert reply.finish_reason == "stop" and pieces == []


async def test_missing_key_constructs_then_fails_on_first_call(openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = track(OpenAIModel(None, openai_server.base_url))
    with pytest.raises(ModelAuthError) as info:
        await model.astream(MESSAGES, "test-model", None)
    assert "set OPENAI_API_KEY" in info.value.hint
    with pytest.raises(ModelAuthError):
        model.chat(MESSAGES, "test-model", None)
    assert openai_server.requests == []


async def test_defaults_come_from_the_environment(openai_env):
    openai_env.add_text("from env")
    reply = await track(OpenAIModel()).astream(MESSAGES, "test-model", None)
    assert reply.message.content == "from env"
    assert openai_env.chat_requests[0].headers["authorization"] == "Bearer sk-test-key"


# ---------------------------------------------------------------- broken streams


async def test_truncated_stream_never_yields_tool_calls(openai_server):
    openai_server.add_truncated_stream(
        "Running it.", tool_name="bash", arguments={"cmd": "rm -rf x"}
    )
    openai_server.add_text("Sorry, trying again.")
    retries = Retries()
    reply, _ = await stream(make(openai_server, on_retry=retries), TOOLS)
    assert reply.message.tool_calls is None
    assert reply.message.content == "Sorry, trying again."
    # Not blindly retried: the same request asked once without streaming.
    assert [r.stream for r in openai_server.chat_requests] == [True, False]
    assert retries.calls == []


@pytest.mark.parametrize("abort", [True, False])
async def test_truncated_stream_gives_up_with_a_clear_error(openai_server, abort):
    # The stream, the plain re-ask (cut too: asked again on a new connection), the
    # retried stream.
    for _ in range(4):
        openai_server.add_truncated_stream(abort=abort)
    with pytest.raises(ModelConnectionError, match=r"the model stream ended early \(attempt 2/2\)"):
        await stream(make(openai_server, max_retries=1), TOOLS)
    assert [r.stream for r in openai_server.chat_requests] == [True, False, False, True]


async def test_a_retried_answer_replaces_the_shown_text(openai_server):
    openai_server.add_truncated_stream("hello big", tool_name=None)
    openai_server.add_text("hello big world")
    shown: list[str] = []
    reply = await make(openai_server).astream(
        MESSAGES, "test-model", None, on_text=shown.append,
        on_discard=lambda reason: shown.append(f"<discard: {reason}>"),
    )
    assert shown[-2:] == ["<discard: the stream was cut short; the answer was asked again>",
                          "hello big world"]
    assert "".join(shown).startswith("hello big<discard")
    assert reply.message.content == "hello big world"


async def test_length_cutoff_drops_the_partial_tool_call(openai_server):
    openai_server.add_length_cutoff("Writing the file.", tool_name="write_file")
    reply, _ = await stream(make(openai_server), TOOLS)
    assert reply.finish_reason == "length"
    assert reply.message.tool_calls is None
    assert reply.message.content == "Writing the file."
    assert len(openai_server.chat_requests) == 1  # not retried


async def test_stall_times_out_with_attempts(openai_server):
    openai_server.add_stall(10)
    openai_server.add_stall(10)
    retries = Retries()
    model = make(openai_server, timeout=0.3, connect_timeout=0.3, max_retries=1, on_retry=retries)
    with pytest.raises(ModelConnectionError) as info:
        await stream(model)
    assert "model API timed out after 0.3s (attempt 2/2)" in str(info.value)
    assert openai_server.base_url in str(info.value)
    assert len(openai_server.chat_requests) == 2 and "timed out" in retries.calls[0][2]


async def test_stall_mid_stream_times_out(openai_server):
    openai_server.add_stall(10, partial_text="Let me think")
    with pytest.raises(ModelConnectionError, match="timed out after 0.3s"):
        await stream(make(openai_server, timeout=0.3, max_retries=0))


async def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    model = track(OpenAIModel(KEY, url, max_retries=1, retry_base_delay=0.01))
    with pytest.raises(ModelConnectionError) as info:
        await model.astream(MESSAGES, "test-model", None)
    assert f"127.0.0.1:{port}" in str(info.value) and "attempt 2/2" in str(info.value)


# ---------------------------------------------------------------- sync chat()


def test_sync_chat_returns_a_message(openai_server):
    openai_server.add_error(502)
    openai_server.add_tool_call("bash", {"cmd": "pwd"}, call_id="c1")
    msg = make(openai_server).chat(MESSAGES, "test-model", TOOLS)
    assert isinstance(msg, openai_compat.Message)
    assert msg.tool_calls[0].function.name == "bash"
    assert [r.stream for r in openai_server.chat_requests] == [False, False]


def test_sync_chat_garbage_and_length(openai_server):
    openai_server.add_raw(200, "<html>proxy login</html>")
    with pytest.raises(ModelError, match="instead of a chat completion"):
        make(openai_server).chat(MESSAGES, "test-model")
    openai_server.add_length_cutoff("cut", tool_name="write_file")
    msg = make(openai_server).chat(MESSAGES, "test-model", TOOLS)
    assert msg.tool_calls is None and msg.content == "cut"


# ---------------------------------------------------------------- complete() and custom models


class EchoModel:
    def chat(self, messages, model, tools):
        last = messages[-1]["content"]
        return openai_compat.Message(role="assistant", content=f"Echo: {last}")


class BashModel:
    def chat(self, messages, model, tools):
        cmd = messages[-1]["content"]
        call = openai_compat.ToolCall(
            id="1",
            type="function",
            function=openai_compat.ToolCallFunction(
                name="bash",
                arguments=json.dumps({"cmd": cmd}),
            ),
        )
        return openai_compat.Message(role="assistant", content=None, tool_calls=[call])


async def test_complete_with_the_upstream_echo_model():
    pieces: list[str] = []
    reply = await complete(
        EchoModel(), [{"role": "user", "content": "test"}], "m", None, on_text=pieces.append
    )
    assert reply == ModelReply(openai_compat.Message("assistant", "Echo: test"), "stop", 0, 0)
    assert pieces == ["Echo: test"]


async def test_complete_with_the_upstream_bash_model():
    reply = await complete(BashModel(), [{"role": "user", "content": "echo hi"}], "m", TOOLS)
    (call,) = reply.message.tool_calls
    assert call.function.name == "bash" and json.loads(call.function.arguments) == {
        "cmd": "echo hi"
    }
    assert reply.finish_reason == "tool_calls"


async def test_complete_uses_astream_of_the_openai_model(openai_server):
    openai_server.add_text("streamed")
    pieces: list[str] = []
    reply = await complete(make(openai_server), MESSAGES, "test-model", None, on_text=pieces.append)
    assert reply.message.content == "streamed" and len(pieces) >= 2
    assert openai_server.chat_requests[0].stream


async def test_complete_accepts_dicts_sdk_messages_and_strings():
    from openai.types.chat import ChatCompletionMessage

    class DictModel:
        def chat(self, messages, model, tools):
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "x", "function": {"name": "bash", "arguments": {"cmd": "ls"}}}
                ],
            }

    class SDKModel:
        def chat(self, messages, model, tools):
            return ChatCompletionMessage(role="assistant", content="from the SDK")

    class StrModel:
        def chat(self, messages, model, tools):
            return "plain string"

    dict_reply = await complete(DictModel(), MESSAGES, "m", None)
    assert json.loads(dict_reply.message.tool_calls[0].function.arguments) == {"cmd": "ls"}
    assert (await complete(SDKModel(), MESSAGES, "m", None)).message.content == "from the SDK"
    assert (await complete(StrModel(), MESSAGES, "m", None)).message.content == "plain string"


async def test_a_crashing_custom_model_is_a_model_error():
    class Broken:
        def chat(self, messages, model, tools):
            raise RuntimeError("kaboom")

    with pytest.raises(ModelError, match="Broken failed: RuntimeError: kaboom"):
        await complete(Broken(), MESSAGES, "m", None)


async def test_complete_prefers_a_custom_astream():
    class Streamer:
        def chat(self, messages, model, tools):  # pragma: no cover - must not be used
            raise AssertionError("chat() used instead of astream()")

        async def astream(self, messages, model, tools, *, on_text=None):
            for piece in ("a", "b"):
                on_text(piece)
            return openai_compat.Message("assistant", "ab")

    pieces: list[str] = []
    reply = await complete(Streamer(), MESSAGES, "m", None, on_text=pieces.append)
    assert reply.message.content == "ab" and pieces == ["a", "b"]


def test_reply_from_a_whole_completion_keeps_usage_and_drops_cut_calls():
    raw = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "x",
                    "tool_calls": [{"id": "1", "function": {"name": "w", "arguments": '{"a'}}],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    reply = reply_from_raw(raw)
    assert reply == ModelReply(openai_compat.Message("assistant", "x"), "length", 9, 4)


@pytest.fixture
def restore_custom_model():
    before = get_custom_model()
    yield
    set_custom_model(before)


def test_set_and_get_custom_model(restore_custom_model):
    echo = EchoModel()
    set_custom_model(echo)
    assert get_custom_model() is echo
    set_custom_model(None)
    assert get_custom_model() is None
    with pytest.raises(TypeError, match="not a model"):
        set_custom_model(object())
