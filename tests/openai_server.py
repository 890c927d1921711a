"""A real, scripted HTTP server speaking the OpenAI chat-completions and Responses protocols.

Every test in the project drives the agent through this server and the real ``openai``
SDK, so the bytes on the wire are what a real provider sends: JSON for plain requests,
server-sent events (content and tool-call deltas split over several chunks, parallel
calls interleaved by index, ``finish_reason`` in the last choice chunk, a usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``) for streaming ones,
and the real error JSON shapes for 4xx/5xx.

``POST /v1/responses`` answers the same script in the Responses API's shapes, for
clients that speak only that (Codex CLI, in ``bench/bench_launch.py``): typed SSE events
(``response.created``, ``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ``response.output_item.done``,
``response.completed`` with usage), tool calls as ``function_call`` output items.
Every request is stamped on arrival (``received_monotonic``, ``received_wall``) as
soon as its request line is read, so a bench can tell when it reached the wire.

In-process use::

    with ScriptedOpenAIServer() as server:
        server.add_text("hello")
        server.add_tool_call("bash", {"cmd": "ls"})
        client = OpenAI(base_url=server.base_url, api_key="sk-test")

Out of process (editors, browsers)::

    python -m tests.openai_server --script script.json --port 0 --port-file url.txt

The URL file receives the base URL (``http://127.0.0.1:PORT/v1``). A running server
also answers ``POST /_control/script`` (a JSON list of script items, appended to the
queue), ``GET /_control/requests`` (what it has seen) and ``POST /_control/reset``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

log = logging.getLogger(__name__)

EXHAUSTED_TEXT = "(script exhausted)"
DEFAULT_MODELS = ("test-model", "gpt-4.1-mini")


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call the model will make; ``arguments`` is the raw JSON text sent."""

    name: str
    arguments: str
    id: str


@dataclass(frozen=True)
class TextReply:
    text: str
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ToolCallsReply:
    calls: tuple[ScriptedCall, ...]
    text: str | None = None
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: Any = None  # None: the real OpenAI error shape for the status (or ``code``)
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None


@dataclass(frozen=True)
class RawReply:
    status: int
    body: bytes
    content_type: str = "text/html"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StallReply:
    """Accept the request, send nothing for ``seconds`` (after ``partial_text`` when
    streaming), then drop the connection."""

    seconds: float
    partial_text: str | None = None


@dataclass(frozen=True)
class TruncatedStreamReply:
    """A stream that dies inside a tool call: no ``finish_reason``, no ``[DONE]``.

    ``abort`` drops the connection mid-body (the client sees a protocol error); without
    it the HTTP body ends cleanly, which only the missing finish_reason betrays.
    """

    text: str | None = None
    call: ScriptedCall | None = None
    abort: bool = True


@dataclass(frozen=True)
class LengthCutoffReply:
    """``finish_reason="length"`` with the tool call's arguments cut in half."""

    text: str | None = None
    call: ScriptedCall | None = None


@dataclass(frozen=True)
class SlowStreamReply:
    text: str
    delay: float = 0.05


Reply = (
    TextReply
    | ToolCallsReply
    | ErrorReply
    | RawReply
    | StallReply
    | TruncatedStreamReply
    | LengthCutoffReply
    | SlowStreamReply
)
Responder = Callable[[dict[str, Any]], "Reply | str | None"]


def _args_text(arguments: Mapping[str, Any] | str) -> str:
    # A string is sent verbatim so tests can script malformed arguments.
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _call(
    name: str, arguments: Mapping[str, Any] | str, call_id: str | None = None
) -> ScriptedCall:
    return ScriptedCall(name, _args_text(arguments), call_id or f"call_{uuid.uuid4().hex[:12]}")


def text_reply(text: str, *, usage: Mapping[str, int] | None = None) -> TextReply:
    """A plain assistant answer."""
    return TextReply(text, usage)


def tool_call_reply(
    name: str,
    arguments: Mapping[str, Any] | str,
    *,
    call_id: str | None = None,
    text: str | None = None,
) -> ToolCallsReply:
    """One tool call, optionally after some assistant text."""
    return ToolCallsReply((_call(name, arguments, call_id),), text)


def tool_calls_reply(
    calls: Sequence[tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, str]],
    *,
    text: str | None = None,
) -> ToolCallsReply:
    """Parallel tool calls: ``[(name, args), ...]`` or ``[(name, args, call_id), ...]``."""
    return ToolCallsReply(tuple(_call(*c) for c in calls), text)


def error_reply(
    status: int,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    code: str | None = None,
) -> ErrorReply:
    """An HTTP error; ``body=None`` sends the real OpenAI JSON for the status or ``code``."""
    return ErrorReply(status, body, dict(headers or {}), code)


# --------------------------------------------------------------------------- wire shapes


def _error_body(reply: ErrorReply, request: dict[str, Any], api_key: str) -> dict[str, Any]:
    """The error JSON OpenAI sends for a status (or an explicit ``code``)."""
    model = request.get("model", "test-model")
    code = reply.code
    if code is None:
        code = {
            400: "invalid_request_error",
            401: "invalid_api_key",
            403: "unsupported_country_region_territory",
            404: "model_not_found",
            429: "rate_limit_exceeded",
        }.get(reply.status)
    kind = "invalid_request_error"
    param = None
    if code == "invalid_api_key":
        # Deliberately echoes the key it was given, like a careless provider would, so
        # tests prove the client never repeats the server's message for auth failures.
        message = f"Incorrect API key provided: {api_key}. You can find your API key at https://platform.openai.com/account/api-keys."
    elif code == "model_not_found":
        message = f"The model `{model}` does not exist or you do not have access to it."
    elif code == "context_length_exceeded":
        param = "messages"
        message = (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 131072 tokens. Please reduce the length of the messages."
        )
    elif code == "rate_limit_exceeded":
        kind = "requests"
        message = (
            f"Rate limit reached for {model} in organization org-test on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 1s."
        )
    elif code == "insufficient_quota":
        kind = "insufficient_quota"
        message = "You exceeded your current quota, please check your plan and billing details."
    elif code == "unsupported_country_region_territory":
        kind = "request_forbidden"
        message = "Country, region, or territory not supported"
    elif reply.status >= 500:
        kind, code = "server_error", None
        message = "The server had an error while processing your request. Sorry about that!"
        if reply.status in (503, 529):
            message = "The engine is currently overloaded, please try again later"
    else:
        message = f"Invalid request ({reply.status})"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _split_text(value: str) -> list[str]:
    """Split text into word-sized deltas (at least two when there is anything to split)."""
    parts = re.findall(r"\S+\s*|\s+", value)
    if len(parts) == 1 and len(value) > 1:
        half = len(value) // 2
        parts = [value[:half], value[half:]]
    return parts


def _split_args(value: str, pieces: int = 3) -> list[str]:
    if len(value) <= 1:
        return [value]
    size = max(1, -(-len(value) // pieces))
    return [value[i : i + size] for i in range(0, len(value), size)]


def _usage(request: dict[str, Any], completion: str, usage: Mapping[str, int] | None) -> dict:
    if usage is not None:
        prompt = int(usage.get("prompt_tokens", 0))
        done = int(usage.get("completion_tokens", 0))
    else:
        # Deterministic rough estimate: four characters a token.
        prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
        done = max(1, len(completion) // 4) if completion else 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": done,
                           "total_tokens": prompt + done}
    if usage is not None:  # extra fields as given (``prompt_tokens_details``...)
        out.update({k: v for k, v in usage.items() if k not in out})
    return out


class _Completion:
    """Builds the JSON and SSE forms of one assistant answer for one request."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = str(request.get("model") or "test-model")
        opts = request.get("stream_options") or {}
        self.include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))

    def message(
        self,
        content: str | None,
        calls: Sequence[ScriptedCall],
        finish: str,
        usage: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        completion_text = (content or "") + "".join(c.arguments for c in calls)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(self.request, completion_text, usage),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, completion_text: str, usage: Mapping[str, int] | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_test",
            "choices": [],
            "usage": _usage(self.request, completion_text, usage),
        }

    def content_chunks(self, content: str | None) -> Iterator[dict[str, Any]]:
        # OpenAI opens with the role and an empty content string.
        yield self.chunk({"role": "assistant", "content": "" if content else None, "refusal": None})
        for piece in _split_text(content or ""):
            yield self.chunk({"content": piece})

    def call_chunks(self, calls: Sequence[ScriptedCall], cut: bool = False) -> Iterator[dict]:
        """Tool-call deltas: id and name first, then argument pieces interleaved by index.

        ``cut`` sends only the first half of each call's arguments.
        """
        pieces = []
        for c in calls:
            args = c.arguments[: len(c.arguments) // 2] if cut else c.arguments
            pieces.append(_split_args(args))
        for i, c in enumerate(calls):
            yield self.chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": ""},
                        }
                    ]
                }
            )
        for r in range(max((len(p) for p in pieces), default=0)):
            for i, p in enumerate(pieces):
                if r < len(p) and p[r]:
                    yield self.chunk(
                        {"tool_calls": [{"index": i, "function": {"arguments": p[r]}}]}
                    )


class _Response:
    """Builds the Responses API forms (SSE events, final object) of one answer.

    The events are the ones OpenAI sends, in its order: ``response.created`` and
    ``response.in_progress``; per output item ``response.output_item.added``, its deltas
    (``response.output_text.delta`` inside a content part, or
    ``response.function_call_arguments.delta``), their ``.done`` events and
    ``response.output_item.done``; then ``response.completed`` (or
    ``response.incomplete``) carrying the whole response with its usage.
    """

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.id = f"resp_{uuid.uuid4().hex[:24]}"
        self.created_at = int(time.time())
        self.model = str(request.get("model") or "test-model")
        self.output: list[dict[str, Any]] = []  # finished items, for the final object
        self._seq = 0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return out

    def response(
        self,
        status: str,
        usage: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        tools = self.request.get("tools")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "model": self.model,
            "output": list(self.output) if status != "in_progress" else [],
            "parallel_tool_calls": bool(self.request.get("parallel_tool_calls", True)),
            "previous_response_id": self.request.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": bool(self.request.get("store", False)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.request.get("tool_choice", "auto"),
            "tools": tools if isinstance(tools, list) else [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    def usage(self, completion: str, usage: Mapping[str, int] | None) -> dict[str, Any]:
        if usage is not None:  # chat-style names in scripts are accepted too
            prompt = int(usage.get("input_tokens", usage.get("prompt_tokens", 0)))
            done = int(usage.get("output_tokens", usage.get("completion_tokens", 0)))
        else:
            sent = [self.request.get("instructions"), self.request.get("input")]
            prompt = max(1, len(json.dumps(sent)) // 4)
            done = max(1, len(completion) // 4) if completion else 0
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": done,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + done,
        }

    def message_events(self, text: str, *, finish: bool = True) -> Iterator[dict[str, Any]]:
        """An assistant message item; ``finish=False`` stops after the deltas."""
        index = len(self.output)
        item_id = f"msg_{uuid.uuid4().hex[:24]}"
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant"}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        yield self.event(
            "response.output_item.added", output_index=index, item={**item, "content": []}
        )
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield self.event("response.content_part.added", **where, part=empty)
        for piece in _split_text(text):
            yield self.event("response.output_text.delta", **where, delta=piece, logprobs=[])
        if not finish:
            return
        part = {**empty, "text": text}
        yield self.event("response.output_text.done", **where, text=text, logprobs=[])
        yield self.event("response.content_part.done", **where, part=part)
        done = {**item, "status": "completed", "content": [part]}
        self.output.append(done)
        yield self.event("response.output_item.done", output_index=index, item=done)

    def call_events(self, call: ScriptedCall, *, cut: bool = False) -> Iterator[dict[str, Any]]:
        """A ``function_call`` item; ``cut`` sends half the arguments and no ``.done``."""
        index = len(self.output)
        item_id = f"fc_{uuid.uuid4().hex[:24]}"
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call.id,
            "name": call.name,
        }
        yield self.event("response.output_item.added", output_index=index, item=item)
        args = call.arguments[: len(call.arguments) // 2] if cut else call.arguments
        for piece in _split_args(args):
            if piece:
                yield self.event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=index,
                    delta=piece,
                )
        if cut:
            return
        yield self.event(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=index,
            name=call.name,
            arguments=args,
        )
        done = {**item, "status": "completed", "arguments": args}
        self.output.append(done)
        yield self.event("response.output_item.done", output_index=index, item=done)

    def opening(self) -> Iterator[dict[str, Any]]:
        yield self.event("response.created", response=self.response("in_progress"))
        yield self.event("response.in_progress", response=self.response("in_progress"))


# --------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request the server received. ``body`` is the parsed JSON (None if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any
    raw: bytes = b""
    disconnected: bool = False  # the client went away before the reply was complete
    received_monotonic: float = 0.0  # time.monotonic() when the request line was read
    received_wall: float = 0.0  # time.time() at the same moment

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "disconnected": self.disconnected,
            "received_monotonic": self.received_monotonic,
            "received_wall": self.received_wall,
        }


# --------------------------------------------------------------------------- HTTP


class _ClientGone(Exception):
    """The client closed the connection while we were writing."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedOpenAI/1.0"
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    server: _HTTPServer
    arrived: tuple[float, float] = (0.0, 0.0)  # (monotonic, wall) of the request line

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Small SSE writes plus Nagle and delayed ACKs cost ~40 ms a response otherwise.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    # --- plumbing

    def parse_request(self) -> bool:
        # Called right after the request line was read: the closest this side gets to
        # the moment the request reached the wire (headers and body are still unread).
        self.arrived = (time.monotonic(), time.time())
        return super().parse_request()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in dict(headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as exc:
            raise _ClientGone() from exc

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _sse(self, payload: Any, event: str | None = None) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        frame = f"data: {data}\n\n".encode()
        if event is not None:  # the Responses API names each event, as well as typing it
            frame = f"event: {event}\n".encode() + frame
        self._write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def _end_chunked(self) -> None:
        self._write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the connection abruptly (no more bytes, no terminating chunk)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.debug("shutdown of a dropped connection failed: %s", exc)

    # --- routes

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        owner = self.server.owner
        path = self.path.split("?")[0].rstrip("/")
        if not path.startswith("/_control/"):  # the test's own traffic is not recorded
            owner._record(self, None, b"")
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "pygent-tests",
                 **owner.model_info.get(m, {})}
                for m in owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        elif path == "/_control/requests":
            self._send_json(200, [r.to_dict() for r in owner.requests])
        elif path == "/health":
            self._send_json(200, {"ok": True})
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        owner = self.server.owner
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?")[0].rstrip("/")
        if path == "/_control/script":
            try:
                owner.load_script(body if isinstance(body, list) else [body])
            except (ValueError, KeyError, TypeError) as exc:
                self._send_json(400, {"error": {"message": f"bad script: {exc}"}})
                return
            self._send_json(200, {"queued": owner.pending})
            return
        if path == "/_control/reset":
            owner.reset()
            self._send_json(200, {"ok": True})
            return
        record = owner._record(self, body, raw)
        if path not in ("/v1/chat/completions", "/v1/responses"):
            self._not_found()
            return
        if not isinstance(body, dict):
            self._send_json(
                400,
                {
                    "error": {
                        "message": "We could not parse the JSON body of your request.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        reply: Reply
        if owner.expected_api_key is not None and key != owner.expected_api_key:
            reply = ErrorReply(401)
        else:
            reply = owner._next_reply(body)
        try:
            if path == "/v1/responses":
                self._serve_responses(reply, body, key)
            else:
                self._serve(reply, body, key)
        except _ClientGone:
            record.disconnected = True
            self.close_connection = True
            log.debug("client went away during %s", type(reply).__name__)

    def _not_found(self) -> None:
        self._send_json(
            404,
            {
                "error": {
                    "message": f"Invalid URL ({self.command} {self.path})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        )

    def _serve(self, reply: Reply, request: dict[str, Any], key: str) -> None:
        stream = bool(request.get("stream"))
        comp = _Completion(request)
        owner = self.server.owner
        if isinstance(reply, ErrorReply):
            body = reply.body if reply.body is not None else _error_body(reply, request, key)
            if isinstance(body, (bytes, str)):
                data = body.encode() if isinstance(body, str) else body
                self._send_bytes(reply.status, data, "application/json", reply.headers)
            else:
                self._send_json(reply.status, body, reply.headers)
        elif isinstance(reply, RawReply):
            self._send_bytes(reply.status, reply.body, reply.content_type, reply.headers)
        elif isinstance(reply, StallReply):
            if stream and reply.partial_text:
                self._start_sse()
                for c in comp.content_chunks(reply.partial_text):
                    self._sse(c)
            owner._stop.wait(reply.seconds)
            self._drop()
        elif isinstance(reply, TextReply):
            self._answer(comp, stream, reply.text, (), "stop", reply.usage)
        elif isinstance(reply, ToolCallsReply):
            self._answer(comp, stream, reply.text, reply.calls, "tool_calls", reply.usage)
        elif isinstance(reply, LengthCutoffReply):
            calls = (reply.call,) if reply.call else ()
            if not stream:
                cut = tuple(
                    ScriptedCall(c.name, c.arguments[: len(c.arguments) // 2], c.id) for c in calls
                )
                self._send_json(200, comp.message(reply.text, cut, "length"))
                return
            self._start_sse()
            for c in comp.content_chunks(reply.text):
                self._sse(c)
            for c in comp.call_chunks(calls, cut=True):
                self._sse(c)
            self._sse(comp.chunk({}, "length"))
            if comp.include_usage:
                self._sse(comp.usage_chunk(reply.text or "", None))
            self._sse("[DONE]")
            self._end_chunked()
        elif isinstance(reply, TruncatedStreamReply):
            calls = (reply.call,) if reply.call else ()
            if not stream:
                # Promise the whole body, send half of it, hang up.
                data = json.dumps(comp.message(reply.text, calls, "tool_calls")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self._write(data[: len(data) // 2])
                self._drop()
                return
            self._start_sse()
            for c in comp.content_chunks(reply.text):
                self._sse(c)
            for c in comp.call_chunks(calls, cut=True):
                self._sse(c)
            if reply.abort:
                self._drop()
            else:
                self._end_chunked()
        elif isinstance(reply, SlowStreamReply):
            if not stream:
                owner._stop.wait(reply.delay * max(1, len(_split_text(reply.text))))
                self._send_json(200, comp.message(reply.text, (), "stop"))
                return
            self._start_sse()
            for c in comp.content_chunks(reply.text):
                self._sse(c)
                if owner._stop.wait(reply.delay):
                    self._drop()
                    return
            self._sse(comp.chunk({}, "stop"))
            if comp.include_usage:
                self._sse(comp.usage_chunk(reply.text, None))
            self._sse("[DONE]")
            self._end_chunked()
        else:  # pragma: no cover - a test scripted something this server does not know
            raise TypeError(f"unknown scripted reply: {reply!r}")

    def _serve_responses(self, reply: Reply, request: dict[str, Any], key: str) -> None:
        """The Responses API's form of a scripted reply (``POST /v1/responses``)."""
        stream = bool(request.get("stream"))
        resp = _Response(request)
        opening = list(resp.opening())  # first, so sequence numbers follow the stream's order
        owner = self.server.owner
        if isinstance(reply, (ErrorReply, RawReply)):
            self._serve(reply, request, key)  # errors look the same on both routes
            return
        if isinstance(reply, (TextReply, ToolCallsReply, SlowStreamReply)):
            text = reply.text
            calls = reply.calls if isinstance(reply, ToolCallsReply) else ()
            usage = None if isinstance(reply, SlowStreamReply) else reply.usage
            delay = reply.delay if isinstance(reply, SlowStreamReply) else 0.0
            events: list[dict[str, Any]] = []
            if text:
                events += resp.message_events(text)
            for call in calls:
                events += resp.call_events(call)
            completion = (text or "") + "".join(c.arguments for c in calls)
            final = resp.response("completed", resp.usage(completion, usage))
            if not stream:
                if delay:
                    owner._stop.wait(delay * max(1, len(_split_text(text or ""))))
                self._send_json(200, final)
                return
            self._start_sse()
            for event in [*opening, *events]:
                self._sse(event, event["type"])
                if delay and event["type"] == "response.output_text.delta":
                    if owner._stop.wait(delay):
                        self._drop()
                        return
            self._sse(resp.event("response.completed", response=final), "response.completed")
            self._end_chunked()
        elif isinstance(reply, StallReply):
            if stream and reply.partial_text:
                self._start_sse()
                for event in [
                    *opening,
                    *resp.message_events(reply.partial_text, finish=False),
                ]:
                    self._sse(event, event["type"])
            owner._stop.wait(reply.seconds)
            self._drop()
        elif isinstance(reply, (TruncatedStreamReply, LengthCutoffReply)):
            cut_events: list[dict[str, Any]] = []
            if reply.text:
                cut_events += resp.message_events(reply.text)
            if reply.call is not None:
                cut_events += resp.call_events(reply.call, cut=True)
            if isinstance(reply, LengthCutoffReply):
                # The cut call never completes: the final object lists what did.
                final = resp.response(
                    "incomplete", resp.usage(reply.text or "", None), "max_output_tokens"
                )
                if not stream:
                    self._send_json(200, final)
                    return
                self._start_sse()
                for event in [*opening, *cut_events]:
                    self._sse(event, event["type"])
                self._sse(resp.event("response.incomplete", response=final), "response.incomplete")
                self._end_chunked()
                return
            if not stream:
                data = json.dumps(resp.response("completed")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self._write(data[: len(data) // 2])
                self._drop()
                return
            self._start_sse()
            for event in [*opening, *cut_events]:
                self._sse(event, event["type"])
            if reply.abort:
                self._drop()
            else:
                self._end_chunked()  # a clean end of body without response.completed
        else:  # pragma: no cover - a test scripted something this server does not know
            raise TypeError(f"unknown scripted reply: {reply!r}")

    def _answer(
        self,
        comp: _Completion,
        stream: bool,
        content: str | None,
        calls: Sequence[ScriptedCall],
        finish: str,
        usage: Mapping[str, int] | None,
    ) -> None:
        if not stream:
            self._send_json(200, comp.message(content, calls, finish, usage))
            return
        self._start_sse()
        for c in comp.content_chunks(content):
            self._sse(c)
        for c in comp.call_chunks(calls):
            self._sse(c)
        self._sse(comp.chunk({}, finish))
        if comp.include_usage:
            completion = (content or "") + "".join(c.arguments for c in calls)
            self._sse(comp.usage_chunk(completion, usage))
        self._sse("[DONE]")
        self._end_chunked()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], owner: ScriptedOpenAIServer) -> None:
        self.owner = owner
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing an idle keep-alive connection (a pool shutting down) resets
        # it under the handler's readline: normal, not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- the server


class ScriptedOpenAIServer:
    """A chat-completions and Responses API server on 127.0.0.1 that answers from a script.

    Each POST to ``/v1/chat/completions`` or ``/v1/responses`` consumes one scripted
    reply (or asks the responder), answered in that route's shapes; when nothing is
    scripted it answers ``"(script exhausted)"`` so a test that makes one call too many
    shows it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expected_api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        self.host = host
        self.port = port
        self.expected_api_key = expected_api_key  # when set, other keys get a 401
        self.models = list(models)
        #: Extra metadata per model in ``GET /v1/models`` (e.g. ``{"context_length": 4096}``).
        self.model_info: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._responder: Responder | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()
        #: How many TCP connections clients opened (keep-alive reuse shows here).
        self.connections_opened = 0

    # --- lifecycle

    def start(self) -> ScriptedOpenAIServer:
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()  # wakes stalls and slow streams
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("closing a client connection: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # --- recorded traffic

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received (chat, models, anything else)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only the POSTs to ``/v1/chat/completions``."""
        return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/chat/")]

    @property
    def responses_requests(self) -> list[RecordedRequest]:
        """Only the POSTs to ``/v1/responses`` (the Responses API)."""
        return [
            r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/responses")
        ]

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """Model calls on either route, in arrival order."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.path.startswith(("/v1/chat/", "/v1/responses"))
        ]

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests, the queue and the responder."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._responder = None

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived (for cross-thread tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")

    # --- scripting

    def add(self, *replies: Reply | str) -> None:
        """Queue reply objects (a bare string is a text reply)."""
        with self._lock:
            for r in replies:
                self._queue.append(TextReply(r) if isinstance(r, str) else r)

    def add_text(self, text: str, *, usage: Mapping[str, int] | None = None) -> None:
        self.add(text_reply(text, usage=usage))

    def add_tool_call(
        self,
        name: str,
        arguments: Mapping[str, Any] | str,
        *,
        call_id: str | None = None,
        text: str | None = None,
    ) -> None:
        self.add(tool_call_reply(name, arguments, call_id=call_id, text=text))

    def add_tool_calls(
        self,
        calls: Sequence[
            tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, str]
        ],
        *,
        text: str | None = None,
    ) -> None:
        self.add(tool_calls_reply(calls, text=text))

    def add_error(
        self,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        """An HTTP error. ``code`` picks a real OpenAI error shape (``context_length_exceeded``,
        ``insufficient_quota``, ``model_not_found``...); ``body`` overrides it entirely."""
        self.add(error_reply(status, body, headers, code=code))

    def add_raw(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.add(RawReply(status, data, content_type, dict(headers or {})))

    def add_stall(self, seconds: float, *, partial_text: str | None = None) -> None:
        self.add(StallReply(seconds, partial_text))

    def add_truncated_stream(
        self,
        text: str | None = None,
        *,
        tool_name: str | None = "bash",
        arguments: Mapping[str, Any] | str = '{"cmd": "echo partial"}',
        call_id: str | None = None,
        abort: bool = True,
    ) -> None:
        call = _call(tool_name, arguments, call_id) if tool_name else None
        self.add(TruncatedStreamReply(text, call, abort))

    def add_length_cutoff(
        self,
        text: str | None = None,
        *,
        tool_name: str | None = "write_file",
        arguments: Mapping[str, Any] | str = '{"path": "big.txt", "content": "aaaaaaaaaaaa"}',
        call_id: str | None = None,
    ) -> None:
        call = _call(tool_name, arguments, call_id) if tool_name else None
        self.add(LengthCutoffReply(text, call))

    def add_slow_stream(self, text: str, delay_per_chunk: float = 0.05) -> None:
        self.add(SlowStreamReply(text, delay_per_chunk))

    def set_responder(self, fn: Responder | None) -> None:
        """Answer dynamically: ``fn(request_body)`` returns a reply, a string, or None to
        fall back to the queue. It runs on the server's request thread."""
        with self._lock:
            self._responder = fn

    def load_script(self, items: str | os.PathLike[str] | Sequence[Any]) -> None:
        """Queue replies from a JSON file or a list of script items (see :func:`parse_item`)."""
        if isinstance(items, (str, os.PathLike)):
            items = json.loads(Path(items).read_text(encoding="utf-8"))
        if not isinstance(items, list):
            raise ValueError("a script is a JSON list of items")
        self.add(*(parse_item(i) for i in items))

    # --- internals used by the handler

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            responder = self._responder
        if responder is not None:
            got = responder(body)
            if got is not None:
                return TextReply(got) if isinstance(got, str) else got
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return TextReply(EXHAUSTED_TEXT)

    def _record(self, handler: _Handler, body: Any, raw: bytes) -> RecordedRequest:
        rec = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            raw=raw,
            received_monotonic=handler.arrived[0],
            received_wall=handler.arrived[1],
        )
        with self._lock:
            self._requests.append(rec)
        return rec

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self.connections_opened += 1
            else:
                self._connections.discard(conn)


def parse_item(item: Any) -> Reply:
    """One JSON script item -> a reply object.

    Items: ``{"text": ...}``, ``{"tool_call": {"name", "arguments", "id"?}, "text"?}``,
    ``{"tool_calls": [{"name", "arguments", "id"?}, ...]}``,
    ``{"error": {"status", "headers"?, "body"?, "code"?}}``, ``{"slow_text": ..., "delay"?}``,
    ``{"stall": seconds}``, ``{"raw": {"status", "body", "content_type"?}}``,
    ``{"truncated": {"text"?, "name"?, "arguments"?}}``,
    ``{"length_cutoff": {"text"?, "name"?, "arguments"?}}``.
    """
    if not isinstance(item, Mapping):
        raise ValueError(f"script item is not an object: {item!r}")
    if "tool_call" in item:
        c = item["tool_call"]
        return tool_call_reply(
            c["name"], c.get("arguments", {}), call_id=c.get("id"), text=item.get("text")
        )
    if "tool_calls" in item:
        calls = [(c["name"], c.get("arguments", {}), c.get("id")) for c in item["tool_calls"]]
        return ToolCallsReply(tuple(_call(*c) for c in calls), item.get("text"))
    if "error" in item:
        e = item["error"]
        return error_reply(int(e["status"]), e.get("body"), e.get("headers"), code=e.get("code"))
    if "slow_text" in item:
        return SlowStreamReply(str(item["slow_text"]), float(item.get("delay", 0.05)))
    if "stall" in item:
        return StallReply(float(item["stall"]), item.get("partial_text"))
    if "raw" in item:
        r = item["raw"]
        return RawReply(
            int(r.get("status", 200)), str(r["body"]).encode(), r.get("content_type", "text/html")
        )
    for key, cls in (("truncated", TruncatedStreamReply), ("length_cutoff", LengthCutoffReply)):
        if key in item:
            spec = item[key] or {}
            name = spec.get("name", "bash")
            call = _call(name, spec.get("arguments", {"cmd": "echo partial"})) if name else None
            return cls(spec.get("text"), call)
    if "text" in item:
        return TextReply(str(item["text"]), item.get("usage"))
    raise ValueError(f"unknown script item: {json.dumps(item)[:200]}")


# --------------------------------------------------------------------------- pytest


@pytest.fixture
def openai_server() -> Iterator[ScriptedOpenAIServer]:
    """A started :class:`ScriptedOpenAIServer`, stopped after the test."""
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture
def openai_env(
    openai_server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> ScriptedOpenAIServer:
    """Point the environment at the scripted server; returns the server."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("PYGENT_MODEL", "test-model")
    return openai_server


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.openai_server",
        description="Serve a scripted OpenAI-compatible API (chat completions and Responses) until killed.",
    )
    parser.add_argument("--script", help="JSON file: a list of script items")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the base URL here once listening")
    parser.add_argument("--api-key", help="answer 401 to any other key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = ScriptedOpenAIServer(args.host, args.port, expected_api_key=args.api_key)
    if args.script:
        server.load_script(args.script)
    server.start()
    if args.port_file:
        # Written atomically so a polling reader never sees a half-written URL.
        tmp = Path(f"{args.port_file}.tmp")
        tmp.write_text(server.base_url + "\n", encoding="utf-8")
        os.replace(tmp, args.port_file)
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
