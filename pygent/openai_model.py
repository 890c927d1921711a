"""The OpenAI-compatible model: streaming, capability fallbacks, retries, clear errors.

It speaks the chat-completions API through ``httpcore2``, the transport the ``openai``
SDK itself is built on (:mod:`pygent.http_stack`), instead of through the SDK: importing
the SDK costs ~0.6 s of start-up and ~0.2 s at exit, and every request would walk the
whole history against its TypedDicts.

What a request carries and which server quirks are known live in
:mod:`pygent.server_profile`. This module decides, per call:

- **Fallbacks, learned once per server:** a stream that comes back empty or cut short
  is not blindly retried; the same request is asked once without streaming to learn
  the server's real answer (a reply: the server cannot stream tool calls, so tool
  requests stop streaming; "too long": :class:`ContextTooLongError`; a bad request:
  what was bad). A field the server rejects (``stream_options``, ``tool_choice``...) is
  dropped; ``""`` vs null content beside tool calls and parallel calls (sent one at a
  time when refused) are detected the same way. Replies without usage get an estimate,
  marked as such.
- **Retries** (429/5xx, connection errors, timeouts, streams cut twice) with back-off
  honouring ``Retry-After``/``retry-after-ms``, reported to ``on_retry``.
- **No splicing:** when text was already shown and the answer is asked again,
  ``on_discard`` says so first; what the caller is shown is then exactly the answer.
- Every failure becomes one of the :mod:`pygent.errors` model errors, whose message
  never contains the API key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import re
import ssl
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from pygent import http_stack
from pygent.errors import (
    ContextTooLongError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelQuotaError,
)
from pygent.models import DiscardCallback, ModelReply, TextCallback, cached_tokens, reply_from_raw
from pygent.openai_compat import Message, ToolCall, ToolCallFunction
from pygent.request_body import RequestEncoder
from pygent.server_profile import (
    OPTIONAL_FIELDS,
    RequestOptions,
    ServerProfile,
    build_body,
    profile_for,
    streams,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RetryCallback = Callable[[int, float, str], None]
NoticeCallback = Callable[[str], None]
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and code
MAX_ERROR_BODY = 64 * 1024  # bytes of an error body worth reading

_SECRET_RE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{3,}|\b(Bearer)\s+\S+", re.IGNORECASE)
_CONTEXT_RE = re.compile(
    r"context[ _]length|context window|context size|maximum context|too many tokens"
    r"|prompt is too long|reduce the length|exceeds the available context",
    re.IGNORECASE,
)
_TOOL_RE = re.compile(r"tool", re.IGNORECASE)
_CONTENT_RE = re.compile(r"content", re.IGNORECASE)



#: How long the end of a stream is read after ``[DONE]`` (normally: at once).
STREAM_END_WAIT = 1.0


async def _read_rest(events: Any) -> None:
    """Read a stream to its end after ``[DONE]``: a response read to its end leaves its
    connection in the pool for the next request (one TCP connection per session instead
    of one per model call); a server that keeps sending is left after STREAM_END_WAIT."""

    async def rest() -> None:
        async for _ in events:
            pass

    try:
        await asyncio.wait_for(rest(), STREAM_END_WAIT)
    except (asyncio.TimeoutError, *http_stack.TRANSPORT_ERRORS):
        pass  # the connection is closed instead of reused; the answer is complete

class _StreamEndedEarly(Exception):
    """The stream closed without a finish_reason: its content is not an answer."""

    def __init__(self, detail: str = "", *, empty: bool = False) -> None:
        super().__init__(detail)
        self.empty = empty  # nothing at all came: typical of a request the server refused


class _HTTPStatus(Exception):
    """A non-2xx answer: status, parsed body (or text) and headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers

    def error_text(self) -> str:
        err = _get(self.body, "error") if isinstance(self.body, Mapping) else None
        if isinstance(err, Mapping):
            return str(_get(err, "message") or json.dumps(err))
        if err:
            return str(err)
        if isinstance(self.body, Mapping):
            return str(_get(self.body, "message") or _get(self.body, "detail") or self.body)
        return str(self.body or "")

    def error_code(self) -> str | None:
        err = _get(self.body, "error") if isinstance(self.body, Mapping) else None
        source = err if isinstance(err, Mapping) else self.body
        if not isinstance(source, Mapping):
            return None
        code = _get(source, "code") or _get(source, "type")
        return str(code) if code else None


class _StreamError(Exception):
    """An error event inside a stream that had started with HTTP 200."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__("error in the stream")
        self.body = body


class _Garbage(Exception):
    """The server answered something that is not a chat completion."""

    def __init__(self, what: str, raw: bytes) -> None:
        super().__init__(what)
        self.what = what
        self.raw = raw


@dataclass(frozen=True)
class _Failure:
    error: ModelError  # what the caller gets if no retry is left
    retry: bool
    reason: str  # short, redacted: for on_retry, the log and the discard notice
    wait: float | None = None  # the server's Retry-After hint, seconds


class _Accumulator:
    """Assembles streamed chunks into one message: content, tool calls by index, usage."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.chunks = 0

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take one chunk; return the assistant text it carried."""
        self.chunks += 1
        usage = chunk.get("usage")
        if isinstance(usage, Mapping) and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            self.cached_tokens = cached_tokens(usage)
        text = ""
        for choice in chunk.get("choices") or ():
            if (choice.get("index") or 0) != 0:
                continue  # we ask for one choice; ignore any others
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self.parts.append(content)
                    text += content
                for call in delta.get("tool_calls") or ():
                    self._add_call(call)
            finish = choice.get("finish_reason")
            if finish:
                self.finish = str(finish)
        return text

    def _add_call(self, delta: Mapping[str, Any]) -> None:
        index = delta.get("index")
        call_id = delta.get("id")
        if index is None:
            # Some servers omit the index: a new id opens a call, anything else continues one.
            known = {slot["id"] for slot in self.calls.values()}
            index = (
                len(self.calls) if call_id and call_id not in known else max(self.calls, default=0)
            )
        slot = self.calls.setdefault(int(index), {"id": None, "name": "", "args": []})
        # id and name normally come only in the first delta; some servers repeat them.
        if call_id and not slot["id"]:
            slot["id"] = str(call_id)
        fn = delta.get("function")
        if isinstance(fn, Mapping):
            name = fn.get("name")
            if name and not slot["name"]:
                slot["name"] = str(name)
            args = fn.get("arguments")
            if args:
                slot["args"].append(args if isinstance(args, str) else json.dumps(args))

    def reply(self) -> ModelReply:
        if self.finish is None:
            raise _StreamEndedEarly(empty=not self.parts and not self.calls)
        calls = [
            ToolCall(
                id=slot["id"] or f"call_{index}",
                function=ToolCallFunction(
                    name=slot["name"], arguments="".join(slot["args"]) or "{}"
                ),
            )
            for index, slot in sorted(self.calls.items())
        ]
        if self.finish == "length" and calls:
            # The token limit cut the call's arguments: never hand a partial call on.
            log.info("dropping %d tool call(s) cut off by the length limit", len(calls))
            calls = []
        message = Message(
            role="assistant", content="".join(self.parts) or None, tool_calls=calls or None
        )
        return ModelReply(message, self.finish, self.prompt_tokens, self.completion_tokens,
                          cached_tokens=self.cached_tokens)


class _View:
    """What the caller was shown of the current answer; withdraws it before a new one."""

    def __init__(self, on_text: TextCallback | None, on_discard: DiscardCallback | None) -> None:
        self.on_text = on_text
        self.on_discard = on_discard
        self.shown = 0

    def text(self, piece: str) -> None:
        if piece and self.on_text is not None:
            self.shown += len(piece)
            self.on_text(piece)

    def discard(self, reason: str) -> None:
        """Withdraw what was shown (a new answer follows); no-op when nothing was."""
        if self.shown and self.on_discard is not None:
            self.on_discard(reason)
        self.shown = 0

    def whole(self, reply: ModelReply, reason: str) -> None:
        """Show a reply that did not stream, replacing any partial text shown before."""
        self.discard(reason)
        content = reply.message.content
        self.text(content if isinstance(content, str) else "")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            log.debug("ignoring a bad retry-after-ms header: %r", ms)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not seconds: an HTTP-date is the other form the header may take
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        log.debug("ignoring a bad Retry-After header: %r", value)
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


_tls: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the process: building one costs ~0.2 s."""
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = http_stack.default_tls_context()
        return _tls


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate was not verified."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, by the usual rule of thumb (at least 1)."""
    return max(1, (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


class OpenAIModel:
    """A model behind any OpenAI-compatible chat-completions endpoint.

    Parameters:
        api_key: the key; defaults to ``OPENAI_API_KEY``. A missing key is reported
            by the first call (ModelAuthError), not by the constructor.
        base_url: the API root, e.g. ``http://localhost:11434/v1``; defaults to
            ``OPENAI_BASE_URL``, then OpenAI's.
        timeout: seconds to wait for bytes from the server (read/write/pool).
        connect_timeout: seconds to wait for the connection.
        max_retries: retries after the first attempt, for 429/5xx, connection errors,
            timeouts and streams cut short twice. 400/401/403/404/422 are never retried.
        max_retry_wait: the longest single wait, whatever ``Retry-After`` says.
        on_retry: called as ``on_retry(attempt, delay_seconds, reason)`` before each
            wait; ``attempt`` is the attempt that just failed (1-based).
        retry_base_delay: the first back-off step when the server gives no hint.
        options: what every request carries (``tool_choice``, ``temperature``...).
        on_notice: hears, once per server, what Pygent learned about it (no usage
            reported, tool requests no longer streamed...).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        max_retry_wait: float = 60.0,
        on_retry: RetryCallback | None = None,
        retry_base_delay: float = 0.5,
        options: RequestOptions | None = None,
        on_notice: NoticeCallback | None = None,
    ) -> None:
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max(0, int(max_retries))
        self.max_retry_wait = float(max_retry_wait)
        self.on_retry = on_retry
        self.retry_base_delay = float(retry_base_delay)
        self.options = options or RequestOptions()
        self.on_notice = on_notice
        #: Called once, when a model request's body is first on the wire (or sending it
        #: failed): the REPL loads its display behind its first request. None: untraced.
        self.on_request_sent: Callable[[], None] | None = None
        # A client's connection pool belongs to the loop that opened it, and the
        # synchronous wrappers may run each turn in a fresh loop: one client per loop.
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, http_stack.Client]
        self._aclients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        # Each message is JSON-encoded once, not at every step (pygent/request_body.py).
        self._encoder = RequestEncoder()

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r})"  # never the key

    def profile(self, model: str) -> ServerProfile:
        """What is known about ``model`` at this model's server (shared process-wide)."""
        return profile_for(self.base_url, model)

    # ------------------------------------------------------------------ public

    async def astream(
        self,
        messages: Sequence[Any],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        *,
        on_text: TextCallback | None = None,
        on_discard: DiscardCallback | None = None,
    ) -> ModelReply:
        """One answer, streamed where the server can; ``on_text`` gets each piece of
        text as it arrives and ``on_discard(reason)`` withdraws what it got before the
        answer is asked again (a cut stream, a retry).

        Raises a :class:`~pygent.errors.ModelError` subclass when the call fails for good.
        """
        return await self._call(list(messages), model, tools, _View(on_text, on_discard))

    def chat(
        self, messages: Sequence[Any], model: str, tools: list[dict[str, Any]] | None = None
    ) -> Message:
        """The upstream synchronous call: one answer, same fallbacks, retries and errors."""

        async def run() -> ModelReply:
            try:
                return await self._call(
                    list(messages), model, tools, _View(None, None), allow_stream=False
                )
            finally:
                await self.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run()).message
        # Called from inside a running loop (a sync tool, a callback): not on that loop.
        box: list[Any] = []

        def worker() -> None:
            try:
                box.append(asyncio.run(run()))
            except BaseException as exc:  # handed to the caller's thread below
                box.append(exc)

        thread = threading.Thread(target=worker, name="pygent-chat", daemon=True)
        thread.start()
        thread.join()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0].message

    async def check_key(self) -> str | None:
        """Ask ``GET /models`` once; a user-facing problem if the key is refused, else None.

        Anything else (no such route, a timeout) is left to the first real call.
        """
        try:
            client = self._async_client()
            response = await client.get(f"{self.base_url}/models", timeout=3.0)
        except (ModelAuthError, *http_stack.TRANSPORT_ERRORS):
            return None
        if response.status_code in (401, 403):
            return (
                f"the model server at {self.base_url} rejected the API key "
                f"(HTTP {response.status_code}): check OPENAI_API_KEY"
            )
        return None

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop (others close with their loops)."""
        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Kept for the upstream API: the synchronous path holds no client between calls."""

    # ------------------------------------------------------------------ one call

    async def _call(
        self,
        messages: list[Any],
        model: str,
        tools: list[dict[str, Any]] | None,
        view: _View,
        *,
        allow_stream: bool = True,
    ) -> ModelReply:
        client = self._async_client()
        profile = self.profile(model)
        attempts = self.max_retries + 1
        attempt = 0
        probed = False  # asked once without streaming after a stream came back cut
        tried: set[str] = set()  # request-shape fallbacks already tried in this call
        while True:
            attempt += 1
            stream = allow_stream and streams(self.options, profile, bool(tools))
            split = "split" in tried and profile.parallel_calls is not True
            body = build_body(
                messages, model, tools, stream=stream, options=self.options, profile=profile,
                split_calls=split,
                null_content=profile.null_content != ("content" in tried),
            )
            try:
                if stream:
                    reply = await self._stream_once(client, body, view)
                else:
                    reply = await self._complete_once(client, body)
                    view.whole(reply, "the answer was asked again")
                self._learned_from_success(profile, tried, split)
                return self._with_usage(reply, body, profile)
            except _StreamEndedEarly as exc:
                if probed:
                    failure = self._classify(exc, model, attempt, attempts)
                else:
                    probed = True
                    outcome = await self._probe(client, body, view, exc, profile, bool(tools))
                    if isinstance(outcome, ModelReply):
                        return self._with_usage(outcome, body, profile)
                    if isinstance(outcome, _HTTPStatus) and self._adapt(
                        outcome, body, profile, tried
                    ):
                        attempt -= 1
                        continue
                    failure = self._classify(outcome, model, attempt, attempts)
            except _HTTPStatus as exc:
                if self._adapt(exc, body, profile, tried):
                    attempt -= 1  # our request's fault, not the server's: does not count
                    continue
                failure = self._classify(exc, model, attempt, attempts)
            except (*http_stack.TRANSPORT_ERRORS, _StreamError, _Garbage) as exc:
                failure = self._classify(exc, model, attempt, attempts)
            # Raised outside the except blocks so the transport error (whose text may
            # echo the key) is not even attached as __context__.
            delay = self._next_delay(failure, attempt, attempts)
            view.discard(f"{failure.reason}; retrying")
            await asyncio.sleep(delay)

    async def _probe(
        self,
        client: http_stack.Client,
        body: dict[str, Any],
        view: _View,
        cut: _StreamEndedEarly,
        profile: ServerProfile,
        has_tools: bool,
    ) -> ModelReply | Exception:
        """Ask a cut stream's request again without streaming: its answer, or the error."""
        plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        log.info("the stream from %s ended early; asking once without streaming", self.base_url)
        for attempt in (1, 2):
            try:
                reply = await self._complete_once(client, plain)
                break
            except (_HTTPStatus, _StreamError, _Garbage) as exc:
                return exc
            except http_stack.TRANSPORT_ERRORS:
                # The server may have closed the pooled connection after the bad stream
                # (uvicorn does, after llama-cpp-python's empty one): once more, on a
                # new connection (the pool has dropped the dead one).
                if attempt == 2:
                    return cut  # says nothing new: retried as a cut stream
        if cut.empty and has_tools and self.options.stream_tools is None:
            # It answers the same request whole but streamed nothing: it cannot stream
            # tool requests (llama-cpp-python with tool_choice "auto").
            profile.stream_tools = False
            self._notice(
                profile,
                "stream_tools",
                f"the model server at {self.base_url} cannot stream replies to requests "
                "with tools; Pygent asks for them whole from now on",
            )
        view.whole(reply, "the stream was cut short; the answer was asked again")
        return reply

    def _learned_from_success(self, profile: ServerProfile, tried: set[str], split: bool) -> None:
        if "content" in tried:
            profile.null_content = not profile.null_content
        if split and profile.parallel_calls is None:
            profile.parallel_calls = False
            self._notice(
                profile,
                "parallel",
                f"the model server at {self.base_url} refused several tool calls in one "
                "message; Pygent sends them one at a time",
            )

    def _adapt(
        self, exc: _HTTPStatus, body: dict[str, Any], profile: ServerProfile, tried: set[str]
    ) -> bool:
        """Change the request's shape after a rejection that names it; True to ask again.

        A dropped optional field is remembered at once (the server named it); the other
        shapes are only remembered once a request in that shape succeeded.
        """
        if exc.status not in (400, 422, 500):
            return False
        text = exc.error_text().lower()
        if _CONTEXT_RE.search(text):
            return False
        for name in OPTIONAL_FIELDS:
            if name in body and name not in profile.dropped and (
                name in text or (name == "stream_options" and "include_usage" in text)
            ):
                log.info("%s rejects %s; leaving it out", self.base_url, name)
                profile.dropped.add(name)
                return True
        calls = [m for m in body["messages"] if isinstance(m, dict) and m.get("tool_calls")]
        if calls and "content" not in tried and _CONTENT_RE.search(text):
            # "" vs null beside tool calls: each server accepts one of them.
            tried.add("content")
            log.info("%s rejects the tool-call content form; trying the other", self.base_url)
            return True
        if any(len(m["tool_calls"]) > 1 for m in calls) and "split" not in tried and (
            _TOOL_RE.search(text)
        ):
            tried.add("split")
            return True
        return False

    def _with_usage(self, reply: ModelReply, body: dict[str, Any], profile: ServerProfile) -> ModelReply:
        """The reply, with token counts estimated (and marked so) when the server gave none."""
        if reply.prompt_tokens or reply.completion_tokens:
            return reply
        self._notice(
            profile,
            "usage",
            f"the model server at {self.base_url} reports no token usage; token counts "
            "are estimated (~4 characters a token)",
        )
        message = reply.message
        out = len(message.content) if isinstance(message.content, str) else 0
        for call in message.tool_calls or ():
            out += len(call.function.name) + len(str(call.function.arguments))
        sent = len(self._encoder.encode({"messages": body["messages"]}))  # cached: no re-encoding
        sent += len(json.dumps(body["tools"])) if "tools" in body else 0
        return replace(
            reply,
            prompt_tokens=estimate_tokens(sent),
            completion_tokens=estimate_tokens(out),
            usage_estimated=True,
        )

    def _notice(self, profile: ServerProfile, what: str, text: str) -> None:
        if not profile.first_time(what):
            return
        log.warning("%s", text)
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:  # a broken front end must not break the model call
                log.exception("on_notice callback failed")

    # ------------------------------------------------------------------ one attempt

    async def _stream_once(
        self, client: http_stack.Client, body: dict[str, Any], view: _View
    ) -> ModelReply:
        url = f"{self.base_url}/chat/completions"
        async with client.stream(
            "POST", url, content=self._encoder.encode(body),
            headers={"Accept": "text/event-stream", "Content-Type": "application/json"},
            trace=self._trace(),
        ) as response:
            if response.status_code >= 300:
                raise await self._status_error(response)
            ctype = response.headers.get("content-type", "").lower()
            if "event-stream" not in ctype:
                reply = self._whole_reply(await self._read(response), ctype)
                view.whole(reply, "the answer was asked again")
                return reply
            acc = _Accumulator()
            events = aiter(http_stack.event_data(response.aiter_bytes()))
            try:
                async for data in events:
                    if data == "[DONE]":
                        await _read_rest(events)
                        break
                    if not data.strip():
                        continue
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise _Garbage("an event stream with a line that is not JSON", data.encode()) from None
                    if not isinstance(chunk, dict):
                        raise _Garbage("an event stream with a line that is not an object", data.encode())
                    if "error" in chunk and not chunk.get("choices"):
                        raise _StreamError(chunk["error"] if isinstance(chunk["error"], Mapping) else chunk)
                    piece = acc.add(chunk)
                    if piece:
                        view.text(piece)
            except (http_stack.ReadTimeout, http_stack.PoolTimeout):
                raise
            except (http_stack.RemoteProtocolError, http_stack.ReadError) as exc:
                # The answer had begun: a stream cut short, not a refused connection.
                raise _StreamEndedEarly(
                    self._short(str(exc) or type(exc).__name__), empty=acc.chunks == 0
                ) from exc
            return acc.reply()

    async def _complete_once(self, client: http_stack.Client, body: dict[str, Any]) -> ModelReply:
        response = await client.request("POST", f"{self.base_url}/chat/completions",
                                        content=self._encoder.encode(body),
                                        headers={"Content-Type": "application/json"},
                                        trace=self._trace())
        if response.status_code >= 300:
            raise self._parse_status(response.status_code, response.content, response.headers)
        return self._whole_reply(response.content, response.headers.get("content-type", "").lower())

    def _trace(self) -> http_stack.Trace | None:
        return None if self.on_request_sent is None else self._sent

    async def _sent(self, event: str, info: dict[str, Any]) -> None:
        # httpcore2's trace of one request: its body is on the wire, or it failed first.
        if event.endswith(("send_request_body.complete", ".failed")):
            callback, self.on_request_sent = self.on_request_sent, None
            if callback is not None:
                callback()

    async def _read(self, response: http_stack.Response, limit: int | None = None) -> bytes:
        if limit is None:
            return await response.aread()
        out = bytearray()
        async for piece in response.aiter_bytes():
            out += piece
            if len(out) >= limit:
                break
        return bytes(out[:limit])

    async def _status_error(self, response: http_stack.Response) -> _HTTPStatus:
        try:
            raw = await self._read(response, MAX_ERROR_BODY)
        except http_stack.TRANSPORT_ERRORS:
            raw = b""
        return self._parse_status(response.status_code, raw, response.headers)

    @staticmethod
    def _parse_status(status: int, raw: bytes, headers: Mapping[str, str]) -> _HTTPStatus:
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return _HTTPStatus(status, body, dict(headers))

    def _whole_reply(self, raw: bytes, ctype: str) -> ModelReply:
        """A whole JSON completion (or a JSON error, or garbage such as an HTML page)."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise _Garbage(ctype or "a body that is not JSON", raw) from None
        if isinstance(data, dict) and data.get("choices"):
            return reply_from_raw(data)
        if isinstance(data, dict) and data.get("error"):
            raise _StreamError(data["error"] if isinstance(data["error"], Mapping) else data)
        raise _Garbage("a completion without choices", raw)

    # ------------------------------------------------------------------ clients

    def _require_key(self) -> str:
        if not self._api_key:
            raise ModelAuthError(
                f"no API key for the model server at {self.base_url}",
                hint="set OPENAI_API_KEY (any non-empty value for local servers that ignore it)",
            )
        return self._api_key

    def _async_client(self) -> http_stack.Client:
        key = self._require_key()
        loop = asyncio.get_running_loop()
        with self._lock:  # sub-agents may run on loops in other threads
            client = self._aclients.get(loop)
            if client is None:
                # Plain http needs no TLS context (and skips building one: ~0.2 s).
                tls = tls_context() if self.base_url.startswith("https:") else None
                client = http_stack.Client(
                    self.base_url,
                    headers={"Authorization": f"Bearer {key}", "User-Agent": "pygent"},
                    timeout=self.timeout,
                    connect_timeout=self.connect_timeout,
                    tls=tls,
                )
                self._aclients[loop] = client
            return client

    # ------------------------------------------------------------------ failures

    def _next_delay(self, failure: _Failure, attempt: int, attempts: int) -> float:
        """Raise the final error, or return how long to wait before the next attempt."""
        if not failure.retry or attempt >= attempts:
            log.info("model call failed: %s", failure.error)
            raise failure.error
        if failure.wait is not None:
            # Never sooner than the server asked; a little later so clients spread out.
            delay = min(self.max_retry_wait, failure.wait * random.uniform(1.0, 1.1))
        else:
            step = min(self.max_retry_wait, self.retry_base_delay * 2 ** (attempt - 1))
            delay = step * random.uniform(0.5, 1.0)
        log.warning(
            "model call failed (%s); attempt %d/%d, retrying in %.1fs",
            failure.reason,
            attempt,
            attempts,
            delay,
        )
        if self.on_retry is not None:
            try:
                self.on_retry(attempt, delay, failure.reason)
            except Exception:  # a broken progress display must not break the model call
                log.exception("on_retry callback failed")
        return delay

    def _classify(self, exc: BaseException, model: str, attempt: int, attempts: int) -> _Failure:
        where = self.base_url
        tries = f"attempt {attempt}/{attempts}"
        if isinstance(exc, _StreamEndedEarly):
            detail = f": {exc}" if str(exc) else ""
            return _Failure(
                ModelConnectionError(
                    f"the model stream ended early ({tries}) from {where}{detail}",
                    hint="the server closed the answer before finishing it; try again (/retry)",
                ),
                True,
                "the stream ended early",
            )
        if isinstance(exc, http_stack.TimeoutException):
            connecting = isinstance(exc, http_stack.ConnectTimeout)
            secs = self.connect_timeout if connecting else self.timeout
            what = "connecting to" if connecting else "waiting for"
            return _Failure(
                ModelConnectionError(
                    f"model API timed out after {secs:g}s ({tries}) {what} {where}",
                    hint="check the network and the server, or raise the request timeout",
                ),
                True,
                f"timed out after {secs:g}s",
            )
        if isinstance(exc, http_stack.TRANSPORT_ERRORS) and _untrusted_certificate(exc):
            # Not transient: asking again only repeats the refusal (5 attempts, ~5 s).
            return _Failure(
                ModelConnectionError(
                    f"the model server at {where} has a certificate this machine does not "
                    f"trust: {self._short(str(exc))}",
                    hint="for a private CA, point SSL_CERT_FILE at its certificate (PEM)",
                ),
                False,
                "",
            )
        if isinstance(exc, http_stack.TRANSPORT_ERRORS):
            detail = self._short(str(exc) or type(exc).__name__)
            proxy = self._proxy()
            return _Failure(
                ModelConnectionError(
                    f"could not reach the model server at {where}"
                    f"{f' through the proxy {proxy}' if proxy else ''} ({tries}): {detail}",
                    hint="check OPENAI_BASE_URL and that the server is running"
                    + (", and the proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)" if proxy else ""),
                ),
                True,
                f"connection error: {detail}",
            )
        if isinstance(exc, _HTTPStatus):
            return self._classify_status(exc, model, attempt)
        if isinstance(exc, _StreamError):
            return self._classify_stream_error(exc.body, model, tries)
        if isinstance(exc, _Garbage):
            return _Failure(self._garbage(exc.what, exc.raw), False, "")
        return _Failure(
            ModelError(f"the model call to {where} failed: {self._short(str(exc))}"), False, ""
        )

    def _proxy(self) -> str | None:
        """The proxy this loop's requests go through (no login), if any."""
        try:
            client = self._aclients.get(asyncio.get_running_loop())
        except RuntimeError:
            return None
        return client.proxy if client is not None else None

    def _too_long(self, model: str, text: str) -> _Failure:
        return _Failure(
            ContextTooLongError(
                f"the conversation is too long for model {model!r}: {text}",
                hint="start a new session (/new) or shorten the conversation",
            ),
            False,
            "",
        )

    def _classify_status(self, exc: _HTTPStatus, model: str, attempt: int) -> _Failure:
        where = self.base_url
        status = exc.status
        code = exc.error_code()
        server_text = exc.error_text()
        text = self._short(server_text or f"HTTP {status}")
        wait = parse_retry_after(exc.headers)
        if status in (400, 413, 500) and (
            code == "context_length_exceeded" or _CONTEXT_RE.search(server_text)
        ):
            return self._too_long(model, text)
        if status in (401, 403):
            # Never the server's text: providers echo (part of) the rejected key in it.
            return _Failure(
                ModelAuthError(
                    f"the model server rejected the API key ({status})",
                    hint=f"set OPENAI_API_KEY to a valid key for {where}",
                ),
                False,
                "",
            )
        if status == 404:
            if code == "model_not_found" or "model" in text.lower():
                error = ModelNotFoundError(
                    f"model {model!r} was not found at {where} (404)",
                    hint=f"check PYGENT_MODEL; GET {where}/models lists the server's models",
                )
            else:
                error = ModelNotFoundError(
                    f"{where}/chat/completions does not exist (404; model {model!r})",
                    hint="check OPENAI_BASE_URL: OpenAI-compatible servers usually serve it under /v1",
                )
            return _Failure(error, False, "")
        if status == 407:
            proxy = self._proxy() or "the proxy"
            return _Failure(
                ModelConnectionError(
                    f"the proxy {proxy} refused the request to {where}: it asks for a login (407)",
                    hint="put the proxy's user and password in its URL "
                    "(HTTPS_PROXY=http://user:password@host:port)",
                ),
                False,
                "",
            )
        if status == 405:
            return _Failure(
                ModelNotFoundError(
                    f"{where}/chat/completions does not take chat requests (405)",
                    hint="check OPENAI_BASE_URL: OpenAI-compatible servers usually serve it under /v1",
                ),
                False,
                "",
            )
        if status == 429:
            if code == "insufficient_quota":
                return _Failure(
                    ModelQuotaError(
                        f"the quota for {where} is exhausted (429): {text}",
                        hint="check your plan and billing with the provider",
                    ),
                    False,
                    "",
                )
            return _Failure(
                ModelQuotaError(
                    f"rate limited by {where} (429) after {attempt} attempt(s): {text}",
                    hint="wait a minute and try again (/retry), or use a key with a higher limit",
                ),
                True,
                "rate limited (429)",
                wait,
            )
        if status in RETRY_STATUSES:
            return _Failure(
                ModelError(
                    f"the model server at {where} failed with HTTP {status} after {attempt} attempt(s): {text}",
                    hint="the provider is having trouble; try again later (/retry)",
                ),
                True,
                f"server error ({status})",
                wait,
            )
        return _Failure(
            ModelError(f"the model server at {where} refused the request (HTTP {status}): {text}"),
            False,
            "",
        )

    def _classify_stream_error(self, body: Mapping[str, Any], model: str, tries: str) -> _Failure:
        """An error event inside a stream that had started with HTTP 200 (or a 200 JSON error)."""
        text = self._short(str(_get(body, "message") or json.dumps(body)))
        code = _get(body, "code") or _get(body, "type")
        if code == "context_length_exceeded" or _CONTEXT_RE.search(text):
            return self._too_long(model, text)
        transient = _get(body, "type") in (None, "server_error", "overloaded_error")
        return _Failure(
            ModelError(f"the model server at {self.base_url} failed mid-stream ({tries}): {text}"),
            transient,
            "error in the stream",
        )

    def _garbage(self, what: str, raw: bytes) -> ModelError:
        preview = " ".join(raw[:400].decode("utf-8", "replace").split())
        return ModelError(
            f"the model server at {self.base_url} sent {what} instead of a chat completion: "
            f"{self._short(preview, 120)!r}",
            hint="check OPENAI_BASE_URL: it must point at an OpenAI-compatible API (usually ending in /v1)",
        )

    def _short(self, text: str, limit: int = 300) -> str:
        """Redact secrets and cap the length of server-provided text."""
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        text = _SECRET_RE.sub(lambda m: "Bearer ***" if m.group(1) else "sk-***", text)
        return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIModel",
    "RETRY_STATUSES",
    "estimate_tokens",
    "parse_retry_after",
    "tls_context",
]
