"""What each real server does on the wire, pinned with plain HTTP (no Pygent in the way).

These are the facts Pygent's model layer is built around (and docs/models.md lists);
when an upgrade of a server changes one, the test that pins it says which. Each table
below maps a server to what it was seen to do.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from tests.real_models import servers
from tests.real_models.conftest import Restartable, each_server
from tests.real_models.servers import LITELLM, LLAMA_CPP_PYTHON, LLAMA_SERVER, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BASH = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command and return its output.",
        "parameters": {
            "type": "object",
            "properties": {"cmd": {"type": "string", "description": "The command."}},
            "required": ["cmd"],
        },
    },
}
#: SmolLM2-135M copies this call; llama-server parses it (the test template's format).
TOOL_PROMPT = (
    "Repeat after me: <tool_call>\n"
    '{"name": "bash", "arguments": {"cmd": "echo pygent"}}\n'
    "</tool_call>"
)
OVERFLOW = "word " * (servers.N_CTX + 1000)
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "bash", "arguments": '{"cmd": "echo pygent"}'},
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes
    events: list[Any] = field(default_factory=list)  # SSE data, parsed ("[DONE]" kept)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict)]

    def finish_reasons(self) -> list[str]:
        return [
            c["finish_reason"]
            for e in self.chunks()
            for c in e.get("choices") or []
            if c.get("finish_reason")
        ]

    def streamed_text(self) -> str:
        return "".join(
            (c.get("delta") or {}).get("content") or ""
            for e in self.chunks()
            for c in e.get("choices") or []
        )


def post(
    server: ServerProcess,
    body: dict[str, Any],
    *,
    stream: bool = False,
    root: str | None = None,
    api_key: str | None = None,
    on_first_event: Any = None,
) -> Reply:
    """One chat-completions request as any HTTP client would send it."""
    body = {"model": servers.MODEL_NAME, "temperature": 0, **body}
    if stream:
        body["stream"] = True
    url = f"{root or server.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {api_key or server.api_key}"} if api_key != "" else {}
    with (
        httpx2.Client(timeout=60) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        if not stream or "event-stream" not in response.headers.get("content-type", ""):
            return Reply(response.status_code, dict(response.headers), response.read())
        reply = Reply(response.status_code, dict(response.headers), b"")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            reply.events.append(data if data == "[DONE]" else json.loads(data))
            if on_first_event is not None and len(reply.events) == 1:
                on_first_event()
        return reply


def messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------- tools


def test_llama_cpp_python_sees_tools_only_with_a_tool_choice(
    llama_cpp_python: ServerProcess,
) -> None:
    plain = post(llama_cpp_python, {"messages": messages("Run echo pygent"), "max_tokens": 8})
    dropped = post(
        llama_cpp_python,
        {"messages": messages("Run echo pygent"), "tools": [BASH], "max_tokens": 8},
    )
    assert dropped.status == 200 and not dropped.json["choices"][0]["message"].get("tool_calls")
    # No tool_choice: the tools are not even in the prompt.
    assert dropped.json["usage"]["prompt_tokens"] == plain.json["usage"]["prompt_tokens"]
    auto = post(
        llama_cpp_python,
        {"messages": messages("Run echo pygent"), "tools": [BASH], "tool_choice": "auto"},
    )
    choice = auto.json["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "bash"
    required = post(
        llama_cpp_python,
        {"messages": messages("Run echo pygent"), "tools": [BASH], "tool_choice": "required"},
    )
    assert required.status == 500, required.raw[:300]


def test_llama_cpp_python_cannot_stream_an_automatic_tool_choice(
    llama_cpp_python: ServerProcess,
) -> None:
    """An empty 200 event stream, then the connection is closed although the headers
    said keep-alive: a client that reuses it for its next request gets a read error."""
    body = json.dumps(
        {
            "model": servers.MODEL_NAME,
            "messages": messages("Run echo pygent"),
            "tools": [BASH],
            "tool_choice": "auto",
            "stream": True,
        }
    ).encode()
    with socket.create_connection(("127.0.0.1", llama_cpp_python.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk  # until the server closes the connection
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    assert b"connection: keep-alive" in head.lower()
    assert rest == b"0\r\n\r\n", rest[:300]  # a chunked body with nothing in it


def test_llama_cpp_python_answers_a_text_choice_beside_tools_with_empty_content(
    llama_cpp_python: ServerProcess,
) -> None:
    """chatml-function-calling constrains a "message" answer to a tool name or the end."""
    system = (
        "You are a friendly chat assistant. Only use tools when the user asks you to run a command."
    )
    reply = post(
        llama_cpp_python,
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "Hello! How are you today?"},
            ],
            "tools": [BASH],
            "tool_choice": "auto",
        },
    )
    message = reply.json["choices"][0]["message"]
    assert message["content"] == "" and not message.get("tool_calls"), message


def test_llama_cpp_python_never_shows_the_model_a_tool_result(
    llama_cpp_python: ServerProcess,
) -> None:
    """chatml-function-calling's template has no branch for the "tool" role. (Asked with
    tool_choice "none", the same template: "auto" ignores max_tokens for a call's
    arguments, which this model can spin out for seconds.)"""

    def prompt_tokens(result: str) -> int:
        history = [
            *messages("Run echo pygent"),
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]
        reply = post(
            llama_cpp_python,
            {"messages": history, "tools": [BASH], "tool_choice": "none", "max_tokens": 4},
        )
        assert reply.status == 200, reply.raw[:300]
        return reply.json["usage"]["prompt_tokens"]

    assert prompt_tokens("pygent") == prompt_tokens("pygent " * 200)


CONTENT_NULL_STATUS = {LLAMA_CPP_PYTHON: 500, LLAMA_SERVER: 200, LITELLM: 200}


@each_server()
def test_assistant_tool_call_content_null_or_empty(model_server: ServerProcess) -> None:
    def status(content: Any) -> int:
        history = [
            *messages("Run echo pygent"),
            {"role": "assistant", "content": content, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "pygent\n"},
        ]
        # tool_choice "none": quick everywhere (see the test above); null is refused
        # (or not) when the request is validated, whatever the choice.
        return post(
            model_server,
            {"messages": history, "tools": [BASH], "tool_choice": "none", "max_tokens": 4},
        ).status

    assert status("") == 200  # the form every server takes
    assert status(None) == CONTENT_NULL_STATUS[model_server.kind]


@each_server(LLAMA_SERVER, LITELLM)
def test_streamed_tool_call_with_usage(model_server: ServerProcess) -> None:
    reply = post(
        model_server,
        {
            "messages": messages(TOOL_PROMPT),
            "tools": [BASH],
            "tool_choice": "auto",
            "stream_options": {"include_usage": True},
        },
        stream=True,
    )
    deltas = [
        call
        for e in reply.chunks()
        for c in e.get("choices") or []
        for call in (c.get("delta") or {}).get("tool_calls") or []
    ]
    assert deltas and deltas[0]["function"]["name"] == "bash" and deltas[0]["id"]
    arguments = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(arguments) == {"cmd": "echo pygent"}
    assert reply.finish_reasons() == ["tool_calls"] and reply.events[-1] == "[DONE]"
    assert any(e.get("usage") for e in reply.chunks())


def test_llama_server_with_the_models_own_template_drops_tools(restartable: Restartable) -> None:
    """SmolLM2's template has no place for tools: they vanish from the prompt, no warning."""
    server = restartable.start(LLAMA_SERVER, own_template=True)
    plain = post(server, {"messages": messages(TOOL_PROMPT), "max_tokens": 4})
    tools = post(
        server,
        {
            "messages": messages(TOOL_PROMPT),
            "tools": [BASH],
            "tool_choice": "required",
            "max_tokens": 4,
        },
    )
    assert tools.json["usage"]["prompt_tokens"] == plain.json["usage"]["prompt_tokens"]
    assert not tools.json["choices"][0]["message"].get("tool_calls")


def test_llama_server_tool_choice_forces_nothing_up_front(llama_server: ServerProcess) -> None:
    """A named choice is ignored (logged as the wrong type); "required" lets the model
    write text before the call it must end with."""
    for choice in ({"type": "function", "function": {"name": "bash"}}, "required"):
        reply = post(
            llama_server,
            {
                "messages": messages("Say hi"),
                "tools": [BASH],
                "tool_choice": choice,
                "max_tokens": 8,
            },
        )
        message = reply.json["choices"][0]["message"]
        assert reply.status == 200 and message["content"] and not message.get("tool_calls")


# --------------------------------------------------------------------------- usage, overflow


STREAM_USAGE = {LLAMA_CPP_PYTHON: False, LLAMA_SERVER: True, LITELLM: True}


@each_server()
def test_usage_in_streams(model_server: ServerProcess) -> None:
    asked = post(
        model_server,
        {
            "messages": messages("Say hi"),
            "max_tokens": 8,
            "stream_options": {"include_usage": True},
        },
        stream=True,
    )
    assert asked.finish_reasons() and asked.streamed_text()
    assert any(e.get("usage") for e in asked.chunks()) is STREAM_USAGE[model_server.kind]
    unasked = post(model_server, {"messages": messages("Say hi"), "max_tokens": 8}, stream=True)
    assert not any(e.get("usage") for e in unasked.chunks())


#: (status, error code or type) of an overflowing request, plain then streamed;
#: llama-cpp-python streams nothing at all (an empty 200 event stream).
OVERFLOW_REPLY = {
    LLAMA_CPP_PYTHON: ((400, "context_length_exceeded"), (200, None)),
    LLAMA_SERVER: ((400, "exceed_context_size_error"), (400, "exceed_context_size_error")),
    LITELLM: ((400, "400"), (400, "400")),
}


@each_server()
def test_context_overflow(model_server: ServerProcess) -> None:
    for stream, (status, code) in zip(
        (False, True), OVERFLOW_REPLY[model_server.kind], strict=True
    ):
        reply = post(model_server, {"messages": messages(OVERFLOW), "max_tokens": 4}, stream=stream)
        assert reply.status == status, (stream, reply.raw[:300])
        if code is None:
            assert reply.events == [] and reply.raw == b"", (reply.events, reply.raw)
            continue
        error = reply.json["error"]
        assert code in (error.get("code"), error.get("type"), str(error.get("code"))), error
        assert "context" in error["message"], error  # what Pygent recognises as "too long"


# --------------------------------------------------------------------------- streams, paths


@each_server()
def test_a_request_during_a_stream(model_server: ServerProcess) -> None:
    """llama-cpp-python ends the running stream with a bare [DONE] (no finish_reason) as
    soon as any other request arrives, even GET /v1/models; the others finish it."""
    answers: list[int] = []
    threads: list[threading.Thread] = []

    def interrupt() -> None:
        def get() -> None:
            with httpx2.Client(timeout=60) as client:
                answers.append(
                    client.get(
                        f"{model_server.base_url}/models",
                        headers={"Authorization": f"Bearer {model_server.api_key}"},
                    ).status_code
                )

        threads.append(threading.Thread(target=get))
        threads[0].start()

    reply = post(
        model_server,
        {"messages": messages("Explain what a CPU does."), "max_tokens": 120},
        stream=True,
        on_first_event=interrupt,
    )
    threads[0].join(60)
    assert answers == [200]
    assert reply.events[-1] == "[DONE]"
    if model_server.kind == LLAMA_CPP_PYTHON:
        assert reply.finish_reasons() == [], reply.finish_reasons()
    else:
        assert reply.finish_reasons() == ["length"]


#: Status of POST <root>/chat/completions (no /v1) and of a typo (<root>/vi/...).
PATHS = {LLAMA_CPP_PYTHON: (404, 404), LLAMA_SERVER: (200, 404), LITELLM: (200, 404)}


@each_server()
def test_paths(model_server: ServerProcess) -> None:
    root = model_server.root_url
    for prefix, status in zip((root, f"{root}/vi"), PATHS[model_server.kind], strict=True):
        reply = post(model_server, {"messages": messages("Say hi"), "max_tokens": 4}, root=prefix)
        assert reply.status == status, (prefix, reply.raw[:300])
        if status == 404:  # JSON, but no OpenAI-style model error
            assert "model" not in reply.raw.decode().lower(), reply.raw


def test_litellm_without_a_database_answers_bad_keys_oddly(litellm: ServerProcess) -> None:
    """Without a database it cannot check keys other than the master key: a wrong key is
    a 400 "No connected db.", a missing one an HTTP 500 (not 401)."""
    wrong = post(litellm, {"messages": messages("Say hi"), "max_tokens": 4}, api_key="sk-wrong")
    assert wrong.status == 400 and wrong.json["error"]["type"] == "no_db_connection"
    missing = post(litellm, {"messages": messages("Say hi"), "max_tokens": 4}, api_key="")
    assert missing.status == 500, missing.raw[:300]
