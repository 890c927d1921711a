"""The OpenAI-compatible model on the official ``openai`` SDK: streaming, retries, clear errors.

The SDK's own retries are off (``max_retries=0``); this module retries instead, so it
can honour ``Retry-After``/``retry-after-ms`` with a cap, treat a stream that ends
without a ``finish_reason`` as a failure rather than an answer, report every attempt
to the caller (the REPL shows a countdown) and turn every failure into one of the
:mod:`pygent.errors` model errors, with a message that never contains the API key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import openai

from pygent.errors import (
    ContextTooLongError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelQuotaError,
)
from pygent.models import ModelReply, TextCallback, reply_from_raw
from pygent.openai_compat import Message, ToolCall, ToolCallFunction

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RetryCallback = Callable[[int, float, str], None]

_SECRET_RE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{3,}|\b(Bearer)\s+\S+", re.IGNORECASE)
_CONTEXT_RE = re.compile(
    r"context[ _]length|context window|maximum context|too many tokens|prompt is too long"
    r"|reduce the length",
    re.IGNORECASE,
)


class _StreamEndedEarly(Exception):
    """The stream closed without a finish_reason: its content is not an answer."""


class _BodyReadError(Exception):
    """The transport failed while reading a non-SSE body (httpx or httpx2, by SDK version)."""


@dataclass(frozen=True)
class _Failure:
    error: ModelError  # what the caller gets if no retry is left
    retry: bool
    reason: str  # short, redacted: for on_retry and the log
    wait: float | None = None  # the server's Retry-After hint, seconds


class _Accumulator:
    """Assembles streamed chunks into one message: content, tool calls by index, usage."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.text_len = 0
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, chunk: Any) -> str:
        """Take one chunk; return the assistant text it carried."""
        usage = _get(chunk, "usage")
        if usage is not None:
            self.prompt_tokens = int(_get(usage, "prompt_tokens") or 0)
            self.completion_tokens = int(_get(usage, "completion_tokens") or 0)
        text = ""
        for choice in _get(chunk, "choices") or []:
            if (_get(choice, "index") or 0) != 0:
                continue  # we ask for one choice; ignore any others
            delta = _get(choice, "delta")
            if delta is not None:
                content = _get(delta, "content")
                if isinstance(content, str) and content:
                    self.parts.append(content)
                    self.text_len += len(content)
                    text += content
                for call in _get(delta, "tool_calls") or []:
                    self._add_call(call)
            finish = _get(choice, "finish_reason")
            if finish:
                self.finish = str(finish)
        return text

    def _add_call(self, delta: Any) -> None:
        index = _get(delta, "index")
        call_id = _get(delta, "id")
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
        fn = _get(delta, "function")
        if fn is not None:
            name = _get(fn, "name")
            if name and not slot["name"]:
                slot["name"] = str(name)
            args = _get(fn, "arguments")
            if args:
                slot["args"].append(args if isinstance(args, str) else json.dumps(args))

    def reply(self) -> ModelReply:
        if self.finish is None:
            raise _StreamEndedEarly()
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
        return ModelReply(message, self.finish, self.prompt_tokens, self.completion_tokens)


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
            timeouts and streams that end early. 400/401/403/404/422 are never retried.
        max_retry_wait: the longest single wait, whatever ``Retry-After`` says.
        on_retry: called as ``on_retry(attempt, delay_seconds, reason)`` before each
            wait; ``attempt`` is the attempt that just failed (1-based).
        retry_base_delay: the first back-off step when the server gives no hint.
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
        self._stream_usage = True  # cleared if the server rejects stream_options
        # An AsyncOpenAI's connection pool belongs to the loop that opened it, and the
        # synchronous wrappers may run each turn in a fresh loop: one client per loop.
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._aclients = weakref.WeakKeyDictionary()
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r})"  # never the key

    # ------------------------------------------------------------------ public

    async def astream(
        self,
        messages: Sequence[Any],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        *,
        on_text: TextCallback | None = None,
    ) -> ModelReply:
        """Stream one answer; ``on_text`` gets each piece of assistant text as it arrives.

        Raises a :class:`~pygent.errors.ModelError` subclass when the call fails for good.
        """
        client = self._async_client()
        attempts = self.max_retries + 1
        shown = [0]  # characters already passed to on_text, across retries
        attempt = 0
        while True:
            attempt += 1
            kwargs = self._request(messages, model, tools, stream=True)
            try:
                return await self._stream_once(client, kwargs, on_text, shown)
            except (openai.OpenAIError, _StreamEndedEarly, _BodyReadError) as exc:
                if self._rejects_stream_options(exc, kwargs):
                    attempt -= 1  # our request's fault, not the server's: does not count
                    continue
                failure = self._classify(exc, model, attempt, attempts)
            # Raised outside the except block so the SDK error (whose text may echo
            # the key) is not even attached as __context__.
            delay = self._next_delay(failure, attempt, attempts)
            await asyncio.sleep(delay)

    def chat(
        self, messages: Sequence[Any], model: str, tools: list[dict[str, Any]] | None = None
    ) -> Message:
        """The upstream synchronous call: one non-streaming request, same retries and errors."""
        client = self._sync_client()
        attempts = self.max_retries + 1
        attempt = 0
        while True:
            attempt += 1
            kwargs = self._request(messages, model, tools, stream=False)
            try:
                return self._complete_once(client, kwargs).message
            except openai.OpenAIError as exc:
                failure = self._classify(exc, model, attempt, attempts)
            time.sleep(self._next_delay(failure, attempt, attempts))

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop (others close with their loops)."""
        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Close the synchronous HTTP client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ clients

    def _require_key(self) -> str:
        if not self._api_key:
            raise ModelAuthError(
                f"no API key for the model server at {self.base_url}",
                hint="set OPENAI_API_KEY (any non-empty value for local servers that ignore it)",
            )
        return self._api_key

    def _timeout(self) -> openai.Timeout:
        return openai.Timeout(self.timeout, connect=self.connect_timeout)

    def _async_client(self) -> openai.AsyncOpenAI:
        key = self._require_key()
        loop = asyncio.get_running_loop()
        with self._lock:  # sub-agents may run on loops in other threads
            client = self._aclients.get(loop)
            if client is None:
                client = openai.AsyncOpenAI(
                    api_key=key, base_url=self.base_url, timeout=self._timeout(), max_retries=0
                )
                self._aclients[loop] = client
            return client

    def _sync_client(self) -> openai.OpenAI:
        key = self._require_key()
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(
                    api_key=key, base_url=self.base_url, timeout=self._timeout(), max_retries=0
                )
            return self._client

    def _request(
        self,
        messages: Sequence[Any],
        model: str,
        tools: list[dict[str, Any]] | None,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        wire = [m.to_dict() if isinstance(m, Message) else m for m in messages]
        # The messages are already plain chat-completions JSON. Passed as `messages`, the
        # SDK walks every one against its TypedDicts (~100 ms a request at 1,000
        # messages); `extra_body` keys replace body keys as they are, skipping that walk.
        kwargs: dict[str, Any] = {"model": model, "messages": [], "extra_body": {"messages": wire}}
        if tools:  # OpenAI rejects an empty tools list
            kwargs["tools"] = list(tools)
        if stream:
            kwargs["stream"] = True
            if self._stream_usage:
                kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    # ------------------------------------------------------------------ one attempt

    async def _stream_once(
        self,
        client: openai.AsyncOpenAI,
        kwargs: dict[str, Any],
        on_text: TextCallback | None,
        shown: list[int],
    ) -> ModelReply:
        stream = await client.chat.completions.create(**kwargs)
        try:
            ctype = stream.response.headers.get("content-type", "").lower()
            if ctype and "event-stream" not in ctype:
                reply = await self._non_sse_reply(stream.response, ctype)
                content = reply.message.content
                text = content if isinstance(content, str) else ""
                self._emit(on_text, text, len(text), shown)
                return reply
            acc = _Accumulator()
            try:
                async for chunk in stream:
                    piece = acc.add(chunk)
                    if piece:
                        self._emit(on_text, piece, acc.text_len, shown)
            except json.JSONDecodeError as exc:
                raise self._garbage(ctype or "an event stream", exc.doc.encode()) from None
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError as exc:
                # The answer had begun: report it as a stream cut short, not a refused connection.
                raise _StreamEndedEarly(self._short(str(exc.__cause__ or exc))) from exc
            return acc.reply()
        finally:
            await stream.close()

    @staticmethod
    def _emit(on_text: TextCallback | None, piece: str, total: int, shown: list[int]) -> None:
        """Pass on only text not shown before: a retried stream replays its start."""
        if on_text is None or total <= shown[0]:
            return
        fresh = piece[len(piece) - (total - shown[0]) :]
        shown[0] = total
        on_text(fresh)

    async def _non_sse_reply(self, response: Any, ctype: str) -> ModelReply:
        """A streaming request answered without SSE: a whole JSON completion (servers
        that ignore ``stream``), a JSON error, or garbage such as an HTML page."""
        try:
            raw = await response.aread()
        except Exception as exc:  # the SDK's transport error types vary by version
            raise _BodyReadError(f"{type(exc).__name__}: {exc}") from exc
        if "json" in ctype:
            try:
                data = json.loads(raw)
            except ValueError:
                raise self._garbage(ctype, raw) from None
            if isinstance(data, dict) and data.get("choices"):
                return reply_from_raw(data)
            if isinstance(data, dict) and data.get("error"):
                err = data["error"]
                text = _get(err, "message") if isinstance(err, Mapping) else err
                raise ModelError(
                    f"the model server at {self.base_url} reported an error: {self._short(str(text))}"
                )
        raise self._garbage(ctype, raw)

    def _complete_once(self, client: openai.OpenAI, kwargs: dict[str, Any]) -> ModelReply:
        try:
            resp = client.chat.completions.create(**kwargs)
        except ValueError as exc:  # a JSON content type with a body that is not JSON
            raise self._garbage("application/json", str(exc).encode()) from None
        if isinstance(resp, str):  # the SDK hands back the text of a non-JSON body
            raise self._garbage("a non-JSON body", resp.encode())
        if not _get(resp, "choices"):
            raise self._garbage("a completion without choices", str(resp).encode())
        return reply_from_raw(resp)

    # ------------------------------------------------------------------ failures

    def _rejects_stream_options(self, exc: BaseException, kwargs: dict[str, Any]) -> bool:
        if "stream_options" not in kwargs or not isinstance(exc, openai.APIStatusError):
            return False
        if exc.status_code not in (400, 422):
            return False
        text = (json.dumps(exc.body) if exc.body is not None else str(exc)).lower()
        if "stream_options" in text or "include_usage" in text:
            log.info("%s rejects stream_options; streaming without usage", self.base_url)
            self._stream_usage = False
            return True
        return False

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
        if isinstance(exc, openai.APITimeoutError):
            connecting = "connect" in type(exc.__cause__).__name__.lower()
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
        if isinstance(exc, (openai.APIConnectionError, _BodyReadError)):
            cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else None
            detail = self._short(str(cause or exc) or type(cause or exc).__name__)
            return _Failure(
                ModelConnectionError(
                    f"could not reach the model server at {where} ({tries}): {detail}",
                    hint="check OPENAI_BASE_URL and that the server is running",
                ),
                True,
                f"connection error: {detail}",
            )
        if isinstance(exc, openai.APIStatusError):
            return self._classify_status(exc, model, attempt)
        if isinstance(exc, openai.APIError):
            return self._classify_stream_error(exc, model, tries)
        return _Failure(
            ModelError(f"the model call to {where} failed: {self._short(str(exc))}"), False, ""
        )

    def _classify_status(self, exc: openai.APIStatusError, model: str, attempt: int) -> _Failure:
        where = self.base_url
        status = exc.status_code
        body = exc.body
        kind = _get(body, "type") if isinstance(body, Mapping) else None
        code = exc.code or kind
        server_text = _get(body, "message") if isinstance(body, Mapping) else None
        text = self._short(str(server_text or body or exc.message))
        wait = parse_retry_after(exc.response.headers)
        if status in (400, 413) and (
            code == "context_length_exceeded" or _CONTEXT_RE.search(str(server_text or ""))
        ):
            return _Failure(
                ContextTooLongError(
                    f"the conversation is too long for model {model!r}: {text}",
                    hint="start a new session (/new) or shorten the conversation",
                ),
                False,
                "",
            )
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

    def _classify_stream_error(self, exc: openai.APIError, model: str, tries: str) -> _Failure:
        """An error event inside a stream that had started with HTTP 200."""
        body = exc.body if isinstance(exc.body, Mapping) else {}
        text = self._short(str(_get(body, "message") or exc.message))
        code = _get(body, "code") or _get(body, "type")
        if code == "context_length_exceeded" or _CONTEXT_RE.search(text):
            return _Failure(
                ContextTooLongError(
                    f"the conversation is too long for model {model!r}: {text}",
                    hint="start a new session (/new) or shorten the conversation",
                ),
                False,
                "",
            )
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


__all__ = ["DEFAULT_BASE_URL", "OpenAIModel", "RETRY_STATUSES", "parse_retry_after"]
