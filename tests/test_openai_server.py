"""The scripted OpenAI-compatible server speaks the wire protocol the way OpenAI does."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.openai_server import (
    EXHAUSTED_TEXT,
    ScriptedOpenAIServer,
    error_reply,
    parse_item,
    tool_call_reply,
)

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "hi"}]


def post(server: ScriptedOpenAIServer, body: dict[str, Any]) -> tuple[int, dict, bytes]:
    """POST a chat request with plain urllib; returns status, headers, raw body."""
    req = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-raw"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def sse_events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            out.append(block[len("data: ") :])
    return out


def chat(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": MESSAGES, "stream": stream, **extra}


def test_text_streams_in_several_chunks_then_finish_and_done(openai_server):
    openai_server.add_text("one two three four")
    status, headers, raw = post(openai_server, chat())
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert "".join(p for p in pieces if p) == "one two three four"
    assert len([p for p in pieces if p]) >= 4
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert "usage" not in chunks[-1]  # not asked for


def test_usage_chunk_only_with_include_usage(openai_server):
    openai_server.add_text("hi", usage={"prompt_tokens": 11, "completion_tokens": 3})
    _, _, raw = post(openai_server, chat(stream_options={"include_usage": True}))
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_tool_call_deltas_carry_id_and_name_once_and_split_arguments(openai_server):
    openai_server.add_tool_call("bash", {"cmd": "ls -la /tmp"}, call_id="call_x")
    _, _, raw = post(openai_server, chat())
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["id"] == "call_x" and deltas[0]["function"]["name"] == "bash"
    assert all("id" not in d and "name" not in d["function"] for d in deltas[1:])
    assert len(deltas) >= 3
    args = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(args) == {"cmd": "ls -la /tmp"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_parallel_calls_are_interleaved_by_index(openai_server):
    openai_server.add_tool_calls([("bash", {"cmd": "echo a"}), ("read_file", {"path": "x.py"})])
    _, _, raw = post(openai_server, chat())
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    order = [tc["index"] for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert order[:2] == [0, 1]
    assert order[2:4] == [0, 1]  # argument pieces alternate between the calls


def test_non_streaming_reply_is_a_chat_completion(openai_server):
    openai_server.add_tool_call("bash", {"cmd": "ls"}, text="Let me look.", call_id="c1")
    status, headers, raw = post(openai_server, chat(stream=False))
    body = json.loads(raw)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    assert choice["message"]["tool_calls"][0] == {
        "id": "c1",
        "type": "function",
        "function": {"name": "bash", "arguments": '{"cmd": "ls"}'},
    }
    assert body["usage"]["total_tokens"] > 0


def test_the_real_sdk_parses_both_forms(openai_server):
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-x", max_retries=0)
    openai_server.add_text("plain")
    openai_server.add_tool_calls([("a", {"x": 1}), ("b", "{}")])
    assert (
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        == "plain"
    )
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    names = [
        tc.function.name
        for c in chunks
        for tc in (c.choices[0].delta.tool_calls or [])
        if c.choices and tc.function and tc.function.name
    ]
    assert names == ["a", "b"]


def test_error_shapes_match_openai(openai_server):
    openai_server.add_error(429, headers={"Retry-After": "7"})
    openai_server.add_error(400, code="context_length_exceeded")
    openai_server.add_error(404)
    openai_server.add_error(401)
    status, headers, raw = post(openai_server, chat())
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    status, _, raw = post(openai_server, chat())
    err = json.loads(raw)["error"]
    assert status == 400 and err["code"] == "context_length_exceeded" and err["param"] == "messages"
    status, _, raw = post(openai_server, chat())
    assert status == 404 and "test-model" in json.loads(raw)["error"]["message"]
    status, _, raw = post(openai_server, chat())
    # The 401 echoes the key it got, like a careless provider: clients must not repeat it.
    assert status == 401 and "sk-raw" in json.loads(raw)["error"]["message"]


def test_raw_garbage_is_sent_verbatim(openai_server):
    openai_server.add_raw(200, "<html>login</html>", "text/html")
    status, headers, raw = post(openai_server, chat())
    assert (status, headers["Content-Type"], raw) == (200, "text/html", b"<html>login</html>")


def test_truncated_stream_has_no_finish_and_no_done(openai_server):
    openai_server.add_truncated_stream("partial", abort=False)
    _, _, raw = post(openai_server, chat())
    events = sse_events(raw)
    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    args = "".join(
        tc["function"].get("arguments", "")
        for c in chunks
        for tc in c["choices"][0]["delta"].get("tool_calls", [])
    )
    with pytest.raises(ValueError):
        json.loads(args)


def test_aborted_stream_breaks_the_http_body(openai_server):
    openai_server.add_truncated_stream("partial")
    with pytest.raises((http.client.IncompleteRead, urllib.error.URLError, ConnectionError)):
        post(openai_server, chat())


def test_length_cutoff(openai_server):
    openai_server.add_length_cutoff("text", arguments={"path": "a", "content": "x" * 40})
    _, _, raw = post(openai_server, chat())
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    status, _, raw = post(openai_server, chat(stream=False))  # queue exhausted now
    assert json.loads(raw)["choices"][0]["message"]["content"] == EXHAUSTED_TEXT


def test_stall_sends_nothing(openai_server):
    openai_server.add_stall(5)
    conn = http.client.HTTPConnection("127.0.0.1", openai_server.port, timeout=0.3)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat()))
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()
    assert len(openai_server.chat_requests) == 1


def test_slow_stream_records_client_disconnect(openai_server):
    openai_server.add_slow_stream("a b c d e f g h i j k l", delay_per_chunk=0.1)
    conn = http.client.HTTPConnection("127.0.0.1", openai_server.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat()))
    resp = conn.getresponse()
    resp.read1(10)
    conn.sock.close()
    conn.close()
    deadline = time.monotonic() + 3
    while not openai_server.requests[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert openai_server.requests[0].disconnected


def test_exhausted_queue_answers_visibly(openai_server):
    status, _, raw = post(openai_server, chat(stream=False))
    assert json.loads(raw)["choices"][0]["message"]["content"] == EXHAUSTED_TEXT


def test_responder_sees_the_body_and_may_defer_to_the_queue(openai_server):
    seen = []

    def respond(body):
        seen.append(body["messages"][-1]["content"])
        if body["messages"][-1]["content"] == "tool please":
            return tool_call_reply("bash", {"cmd": "pwd"})
        if body["messages"][-1]["content"] == "fail":
            return error_reply(503)
        return None

    openai_server.add_text("from the queue")
    openai_server.set_responder(respond)
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-x", max_retries=0)
    msg = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "tool please"}]
    ).choices[0]
    assert msg.message.tool_calls[0].function.name == "bash"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail"}])
    other = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert other.choices[0].message.content == "from the queue"
    assert seen == ["tool please", "fail", "x"]


def test_requests_are_recorded_with_headers_and_reset(openai_server):
    openai_server.add_text("a")
    post(openai_server, chat(stream=False))
    (req,) = openai_server.requests
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-raw"
    assert req.body["messages"] == MESSAGES and not req.stream
    openai_server.add_text("b")
    openai_server.reset()
    assert openai_server.requests == [] and openai_server.pending == 0


def test_concurrent_requests_are_all_recorded(openai_server):
    for i in range(20):
        openai_server.add_text(f"r{i}")
    results: list[str] = []

    def worker():
        _, _, raw = post(openai_server, chat(stream=False))
        results.append(json.loads(raw)["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"r{i}" for i in range(20))
    assert len(openai_server.requests) == 20


def test_models_endpoint_and_unknown_paths(openai_server):
    with urllib.request.urlopen(f"{openai_server.base_url}/models", timeout=5) as resp:
        ids = [m["id"] for m in json.loads(resp.read())["data"]]
    assert "test-model" in ids
    req = urllib.request.Request(f"{openai_server.url}/chat/completions", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 404
    info.value.close()
    assert openai_server.pending == 0


def test_expected_api_key_rejects_others():
    with ScriptedOpenAIServer(expected_api_key="sk-right") as server:
        server.add_text("welcome")
        status, _, _ = post(server, chat())  # sends sk-raw
        assert status == 401
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-right", max_retries=0)
        got = client.chat.completions.create(model="m", messages=MESSAGES)
        assert got.choices[0].message.content == "welcome"


def test_openai_env_fixture(openai_env, monkeypatch):
    import os

    assert os.environ["OPENAI_BASE_URL"] == openai_env.base_url
    assert os.environ["OPENAI_API_KEY"] == "sk-test-key"
    assert os.environ["PYGENT_MODEL"] == "test-model"


def test_script_items_parse():
    items = [
        {"text": "hi"},
        {"tool_call": {"name": "bash", "arguments": {"cmd": "ls"}}, "text": "ok"},
        {"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{}"}]},
        {"error": {"status": 429, "headers": {"Retry-After": "1"}}},
        {"slow_text": "slow", "delay": 0.01},
        {"stall": 1},
        {"raw": {"status": 200, "body": "<html>"}},
        {"truncated": {"text": "x"}},
        {"length_cutoff": {"name": None, "text": "y"}},
    ]
    kinds = [type(parse_item(i)).__name__ for i in items]
    assert kinds == [
        "TextReply",
        "ToolCallsReply",
        "ToolCallsReply",
        "ErrorReply",
        "SlowStreamReply",
        "StallReply",
        "RawReply",
        "TruncatedStreamReply",
        "LengthCutoffReply",
    ]
    with pytest.raises(ValueError, match="unknown script item"):
        parse_item({"nonsense": 1})


def test_standalone_server_from_a_script_file(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps([{"text": "first"}, {"tool_call": {"name": "bash", "arguments": {"cmd": "ls"}}}])
    )
    url_file = tmp_path / "url.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_server", "--script", str(script), "--port", "0"]
        + ["--port-file", str(url_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        printed = proc.stdout.readline().strip()
        base_url = url_file.read_text().strip()
        assert printed == base_url and base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=base_url, api_key="sk-x", max_retries=0)
        assert (
            client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            == "first"
        )
        calls = client.chat.completions.create(model="m", messages=MESSAGES).choices[0]
        assert calls.message.tool_calls[0].function.name == "bash"
        # Script more from outside the process, then read what the server saw.
        root = base_url.removesuffix("/v1")
        req = urllib.request.Request(
            f"{root}/_control/script", data=json.dumps([{"text": "later"}]).encode()
        )
        urllib.request.urlopen(req, timeout=5).read()
        got = client.chat.completions.create(model="m", messages=MESSAGES)
        assert got.choices[0].message.content == "later"
        with urllib.request.urlopen(f"{root}/_control/requests", timeout=5) as resp:
            seen = json.loads(resp.read())
        assert [r["path"] for r in seen] == ["/v1/chat/completions"] * 3
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()


def test_stop_does_not_wait_for_a_stalled_request():
    server = ScriptedOpenAIServer().start()
    server.add_stall(30)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat()))
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    conn.close()


# --------------------------------------------------------------------------- Responses API


def post_responses(server: ScriptedOpenAIServer, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"{server.base_url}/responses",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-raw"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def named_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of a Responses stream; each ``event:`` name must match its data's type."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        out.append(data)
    return out


def responses_body(stream: bool = True) -> dict[str, Any]:
    return {"model": "test-model", "input": "hi", "stream": stream, "instructions": "be brief"}


def test_responses_stream_text_as_typed_events(openai_server):
    openai_server.add_text("one two three", usage={"prompt_tokens": 9, "completion_tokens": 3})
    status, raw = post_responses(openai_server, responses_body())
    events = named_events(raw)
    kinds = [e["type"] for e in events]
    assert status == 200
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == "one two three"
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["instructions"] == "be brief"
    assert done["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "one two three",
        "annotations": [],
        "logprobs": [],
    }
    assert done["usage"]["input_tokens"] == 9 and done["usage"]["output_tokens"] == 3
    assert done["usage"]["total_tokens"] == 12


def test_responses_tool_calls_are_function_call_items(openai_server):
    openai_server.add_tool_calls(
        [("exec_command", {"cmd": "ls -la"}, "call_a"), ("view_image", {"path": "x"}, "call_b")],
        text="Looking.",
    )
    _, raw = post_responses(openai_server, responses_body())
    events = named_events(raw)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [i["type"] for i in added] == ["message", "function_call", "function_call"]
    args = "".join(
        e["delta"]
        for e in events
        if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == 1
    )
    assert json.loads(args) == {"cmd": "ls -la"}
    output = events[-1]["response"]["output"]
    calls = [(i["call_id"], i["name"], json.loads(i["arguments"])) for i in output[1:]]
    assert calls == [
        ("call_a", "exec_command", {"cmd": "ls -la"}),
        ("call_b", "view_image", {"path": "x"}),
    ]
    assert all(i["status"] == "completed" for i in output)


def test_responses_the_real_sdk_parses_stream_and_json(openai_server):
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-x", max_retries=0)
    openai_server.add_text("streamed answer")
    openai_server.add_tool_call("exec_command", {"cmd": "true"}, call_id="call_z")
    openai_server.add_text("plain answer")
    with client.responses.stream(model="m", input="hi") as stream:
        assert stream.get_final_response().output_text == "streamed answer"
    events = list(client.responses.create(model="m", input="hi", stream=True))
    (call,) = events[-1].response.output
    assert (call.type, call.call_id, call.name) == ("function_call", "call_z", "exec_command")
    plain = client.responses.create(model="m", input="hi")
    assert plain.output_text == "plain answer" and plain.usage.total_tokens > 0
    assert [r.path for r in openai_server.responses_requests] == ["/v1/responses"] * 3


def test_responses_errors_cutoffs_and_dropped_streams(openai_server):
    openai_server.add_error(429, headers={"Retry-After": "2"})
    openai_server.add_length_cutoff("partial", arguments={"cmd": "x" * 30})
    openai_server.add_truncated_stream("half", abort=False)
    status, raw = post_responses(openai_server, responses_body())
    assert status == 429 and json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    _, raw = post_responses(openai_server, responses_body())
    last = named_events(raw)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in last["response"]["output"]] == ["message"]  # the cut call is not
    _, raw = post_responses(openai_server, responses_body())
    kinds = [e["type"] for e in named_events(raw)]
    assert "response.completed" not in kinds and "response.function_call_arguments.delta" in kinds


def test_requests_are_stamped_on_arrival_on_both_routes(openai_server):
    before_mono, before_wall = time.monotonic(), time.time()
    post(openai_server, chat(stream=False))
    post_responses(openai_server, responses_body(stream=False))
    after_mono, after_wall = time.monotonic(), time.time()
    chat_req, resp_req = openai_server.model_requests
    assert chat_req.path == "/v1/chat/completions" and resp_req.path == "/v1/responses"
    assert before_mono <= chat_req.received_monotonic <= resp_req.received_monotonic <= after_mono
    assert before_wall <= chat_req.received_wall <= after_wall
    assert chat_req.to_dict()["received_monotonic"] == chat_req.received_monotonic
    assert openai_server.chat_requests == [chat_req]
    assert openai_server.responses_requests == [resp_req]
