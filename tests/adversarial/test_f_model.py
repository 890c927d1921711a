"""ADVERSARIAL F: model API faults, through the agent and the real ``openai`` SDK against the scripted server."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent import Agent
from pygent.openai_model import OpenAIModel
from pygent.tools import ToolRegistry, builtin_tools
from tests.adversarial.conftest import Harness, make_harness, settings_for, unique
from tests.openai_server import ScriptedOpenAIServer, error_reply, text_reply

pytestmark = pytest.mark.timeout(120)

KEY = "sk-test-key"


def model_for(server_or_url: ScriptedOpenAIServer | str, **opts: float) -> OpenAIModel:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    opts.setdefault("timeout", 1.0)
    opts.setdefault("connect_timeout", 1.0)
    opts.setdefault("max_retries", 2)
    opts.setdefault("retry_base_delay", 0.01)
    return OpenAIModel(api_key=KEY, base_url=url, **opts)  # type: ignore[arg-type]


@pytest.fixture
def hf(runtimes, openai_server, tmp_path: Path) -> Iterator[Harness]:
    """A local agent whose model gives up fast (1 s timeouts, 3 attempts)."""
    harness = make_harness(
        openai_server, runtimes["local"], tmp_path, model=model_for(openai_server),
        history_file=tmp_path / "h.jsonl",
    )  # fmt: skip
    yield harness
    harness.agent.close()


def chat_count(server: ScriptedOpenAIServer) -> int:
    return len(server.chat_requests)


def assert_session_intact(h: Harness) -> None:
    """The conversation still works: a retry of the turn (no new prompt) answers."""
    h.server.reset()
    h.server.add_text("back")
    assert h.agent.turn(None).text == "back"  # type: ignore[arg-type]


def test_F1_connect_timeout_stall_and_stall_mid_stream(hf: Harness) -> None:
    hf.server.add_stall(5)
    hf.server.add_stall(5)
    hf.server.add_stall(5, partial_text="half an ans")
    started = time.monotonic()
    result = hf.agent.turn("hi")
    assert "timed out after 1s (attempt 3/3)" in result.error or "ended early" in result.error
    assert time.monotonic() - started < 15
    assert_session_intact(hf)
    # Connect timeout: a listening socket whose accept queue is full drops the SYN.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    filler = socket.create_connection(blackhole.getsockname())
    try:
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}/v1"
        hf.agent.model = model_for(url, max_retries=1)
        started = time.monotonic()
        result = hf.agent.turn("hello?")
        assert "timed out after 1s (attempt 2/2) connecting to" in result.error, result.error
        assert time.monotonic() - started < 10
    finally:
        filler.close()
        blackhole.close()


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after-ms": "800"}, 0.8),
        ({"Retry-After": "HTTP-DATE"}, 2.0),
    ],
    ids=["seconds", "ms", "http-date"],
)
def test_F2_rate_limit_waits_as_asked(
    runtimes, openai_server, tmp_path: Path, headers: dict[str, str], hint: float
) -> None:
    """The agent's own model (its retries are shown to the user as a countdown)."""
    h = make_harness(openai_server, runtimes["local"], tmp_path)
    if headers.get("Retry-After") == "HTTP-DATE":
        headers = {"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)}
    openai_server.add_error(429, headers=headers)
    openai_server.add_text("ok")
    started = time.monotonic()
    result = h.agent.turn("hi")
    waited = time.monotonic() - started
    assert result.text == "ok" and chat_count(openai_server) == 2
    notices = [e.text for e in h.events if e.type == "notice" and "retrying in" in e.text]
    assert notices and "rate limited" in notices[0], "the user sees why and how long"
    assert waited >= hint * 0.9 and waited < hint * 1.5 + 1


def test_F2_retry_wait_is_capped(runtimes, openai_server, tmp_path: Path) -> None:
    h = make_harness(openai_server, runtimes["local"], tmp_path,
                     model=model_for(openai_server, max_retry_wait=1.0))  # fmt: skip
    openai_server.add_error(429, headers={"Retry-After": "3600"})
    openai_server.add_text("ok")
    started = time.monotonic()
    assert h.agent.turn("hi").text == "ok"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_F3_server_errors_are_retried(hf: Harness, status: int) -> None:
    hf.server.add_error(status)
    hf.server.add_text("ok")
    assert hf.agent.turn("hi").text == "ok" and chat_count(hf.server) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_F3_client_errors_are_not_retried(hf: Harness, status: int) -> None:
    hf.server.add_error(status)
    hf.server.add_text("never sent")
    result = hf.agent.turn("hi")
    assert result.stop_reason == "error" and chat_count(hf.server) == 1
    assert KEY not in result.error
    if status == 401:
        assert "rejected the API key" in result.error


@pytest.mark.parametrize(
    "raw", ['{"path": "a.py",', '{"cmd": "ls",}', "[]", "null", '"str"', "{" + "x" * 5000]
)
def test_F4_malformed_arguments(hf: Harness, raw: str) -> None:
    out = hf.call("bash", raw)
    assert out.startswith("error:") and "not run" in out and "Schema" in out
    assert len(out) < 2000  # a preview, not the whole argument


def test_F4_consecutive_malformed_calls_stop_the_turn(hf: Harness) -> None:
    for _ in range(5):
        hf.server.add_tool_call("write_file", '{"path": "x.py", "content": "unterminated')
    result = hf.agent.turn("go")
    assert (
        result.stop_reason == "error" and "malformed" in result.error or "repeated" in result.error
    )
    assert chat_count(hf.server) == 3


def test_F5_unknown_and_disabled_tools(runtimes, openai_server, tmp_path: Path) -> None:
    h = make_harness(openai_server, runtimes["local"], tmp_path, disabled_tools=["bash"])
    marker = unique("f5")
    outs = h.calls(
        [
            ("Bash", {"cmd": f"touch {marker}"}),
            ("run_shell", {"cmd": f"touch {marker}"}),
            ("bash", {"cmd": f"touch {marker}"}),
        ]
    )
    assert "does not exist" in outs[0] and "does not exist" in outs[1]
    assert "disabled" in outs[2] or "does not exist" in outs[2]
    assert all("Available tools:" in o and "read_file" in o for o in outs)
    assert not (h.ws / marker).exists()


def test_F6_schema_violations_run_nothing(hf: Harness) -> None:
    name = unique("f6")
    outs = hf.calls(
        [
            ("write_file", {"path": name}),
            ("write_file", {"path": name, "content": "x", "mode": "0777"}),
            ("write_file", {"path": name, "content": 42}),
            ("bash", {"cmd": f"touch {name}", "timeout": "soon"}),
        ]
    )
    assert "missing required" in outs[0] and "unknown argument" in outs[1]
    assert "must be string" in outs[2] and "must be integer" in outs[3]
    assert not (hf.ws / name).exists()


@pytest.mark.parametrize("abort", [True, False], ids=["dropped", "clean-eof"])
def test_F7_truncated_stream_is_never_executed(hf: Harness, abort: bool) -> None:
    marker = unique("f7")
    hf.server.add_truncated_stream(
        tool_name="bash", arguments={"cmd": f"touch {marker}"}, abort=abort
    )
    hf.server.add_text("retried fine")
    result = hf.agent.turn("go")
    assert result.text == "retried fine" and chat_count(hf.server) == 2
    assert not (hf.ws / marker).exists()
    assert "length" not in result.error


def test_F8_length_cutoff_with_a_partial_call(hf: Harness) -> None:
    marker = unique("f8")
    hf.server.add_length_cutoff(
        "I will run", tool_name="bash", arguments={"cmd": f"touch {marker}"}
    )
    result = hf.agent.turn("go")
    assert result.stop_reason.value == "max_tokens"
    assert "cut off at its length limit" in result.error
    assert not (hf.ws / marker).exists()
    assert_session_intact(hf)


def test_F9_duplicate_ids_and_writes_to_one_file(hf: Harness) -> None:
    name = unique("f9")
    hf.server.add_tool_calls(
        [
            ("write_file", {"path": name, "content": "one\n"}, "call_dup"),
            ("edit_file", {"path": name, "old_text": "one", "new_text": "two"}, "call_dup"),
        ]
    )
    hf.server.add_text("done")
    hf.agent.turn("go")
    assert (hf.ws / name).read_text() == "two\n"  # run in order: the edit saw the write
    messages = hf.server.chat_requests[-1].body["messages"]
    ids = [c["id"] for m in messages if m.get("tool_calls") for c in m["tool_calls"]]
    answered = [m["tool_call_id"] for m in messages if m.get("role") == "tool"]
    assert len(set(ids)) == 2 and ids == answered


@pytest.mark.parametrize("text", ["", "   \n  ", "I can't help with that."])
def test_F10_empty_or_refusal_ends_the_turn(hf: Harness, text: str) -> None:
    hf.server.add_text(text)
    result = hf.agent.turn("go")
    assert result.stop_reason == "end_turn" and chat_count(hf.server) == 1
    if not text.strip():
        assert any("empty reply" in e.text for e in hf.events if e.type == "notice")


def test_F11_the_same_failing_call_repeated(hf: Harness) -> None:
    for _ in range(20):
        hf.server.add_tool_call("bash", {"cmd": "false"})
    result = hf.agent.turn("go", max_steps=25)
    assert result.stop_reason == "error" and "repeated the same failing tool call" in result.error
    assert chat_count(hf.server) == 3


def test_F12_context_too_long(hf: Harness) -> None:
    """The server says the conversation is too long: Pygent compacts it (the model writes
    a summary of the older part) and asks again; when that fails too, old tool outputs
    are shortened and it asks again; past that the turn ends with a clear error."""
    for i in range(6):
        hf.server.add_tool_call("bash", {"cmd": f"head -c 2000 /dev/zero | tr '\\0' {i}"})
    hf.server.add_error(400, code="context_length_exceeded")
    hf.server.add_text("## Task\nthe summary of the work so far")  # the compaction's call
    hf.server.add_text("fits now")
    assert hf.agent.turn("go").text == "fits now"
    retried = hf.server.chat_requests[-1].body["messages"]
    assert any("the summary of the work so far" in str(m.get("content")) for m in retried)

    for i in range(6):
        hf.server.add_tool_call("bash", {"cmd": f"head -c 2000 /dev/zero | tr '\\0' {i}"})
    hf.server.add_error(400, code="context_length_exceeded")
    hf.server.add_error(400)  # the compaction's own call fails: shorten instead
    hf.server.add_text("fits after shortening")
    assert hf.agent.turn("again").text == "fits after shortening"
    shortened = [
        m
        for m in hf.server.chat_requests[-1].body["messages"]
        if "shortened" in str(m.get("content"))
    ]
    assert shortened
    for _ in range(3):  # the request, the compaction's call, the shortened request
        hf.server.add_error(400, code="context_length_exceeded")
    result = hf.agent.turn("more")
    assert result.stop_reason == "error" and "too long" in result.error


def test_F13_cancel_during_streaming_keeps_the_partial_text(hf: Harness) -> None:
    hf.server.add_slow_stream("word " * 400, delay_per_chunk=0.02)

    async def go() -> None:
        task = asyncio.ensure_future(hf.agent.arun("talk"))
        while not any(e.type == "message_delta" for e in hf.events):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        hf.agent.cancel()
        assert (await task).stop_reason == "cancelled"

    asyncio.run(go())
    last = hf.agent.history[-1]
    assert last["role"] == "assistant" and last["content"].startswith("word")
    assert last["content"].endswith("[interrupted]")
    assert hf.agent.history_store is not None
    saved = [json.loads(line) for line in hf.agent.history_store.path.read_text().splitlines()[1:]]
    assert saved[-1] == last  # persisted as interrupted
    assert_session_intact(hf)


def test_F14_garbage_tls_and_dns_failures_name_the_endpoint(hf: Harness) -> None:
    hf.server.add_raw(200, b"<html><body>502 Bad Gateway</body></html>")
    result = hf.agent.turn("go")
    assert hf.server.base_url in result.error and "instead of a chat completion" in result.error
    tls_url = hf.server.base_url.replace("http://", "https://")
    hf.agent.model = model_for(tls_url, max_retries=0)
    result = hf.agent.turn("go")
    assert "could not reach the model server at " + tls_url in result.error, result.error
    hf.agent.model = model_for("http://no-such-host.invalid/v1", max_retries=0)
    result = hf.agent.turn("go")
    assert "no-such-host.invalid" in result.error and result.stop_reason == "error"


_ = (Agent, ToolRegistry, builtin_tools, settings_for, error_reply, text_reply)
