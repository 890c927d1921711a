"""The model seam: the ``Model`` protocol, the process-wide custom model, and ``complete()``.

A model is anything with ``chat(messages, model, tools)`` returning an
:class:`~pygent.openai_compat.Message`, a chat-completions dict or an ``openai`` SDK
message (the upstream contract, kept so existing custom models work unchanged). A
model that can stream also has ``async astream(messages, model, tools, *, on_text)``
returning a :class:`ModelReply`; :class:`pygent.openai_model.OpenAIModel` does.
The agent calls :func:`complete`, which picks the best of the two.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pygent.errors import ModelError, PygentError
from pygent.openai_compat import Message, normalize_message

log = logging.getLogger(__name__)

TextCallback = Callable[[str], None]
#: ``on_discard(reason)``: withdraw the text streamed so far; a new answer follows.
DiscardCallback = Callable[[str], None]


@runtime_checkable
class Model(Protocol):
    """What the agent needs from a model (the upstream custom-model contract)."""

    def chat(
        self, messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]] | None
    ) -> Any:
        """Answer the conversation; return a Message, a dict, or an SDK message."""
        ...


@runtime_checkable
class StreamingModel(Protocol):
    """A model that streams its answer; :func:`complete` prefers this path."""

    async def astream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None,
        *,
        on_text: TextCallback | None = None,
    ) -> ModelReply: ...


@dataclass(frozen=True)
class ModelReply:
    """One complete assistant answer.

    ``finish_reason`` is what the provider said (``"stop"``, ``"tool_calls"``,
    ``"length"``...), or None when it said nothing. When it is ``"length"`` the
    message carries no tool calls: a call cut off by the token limit is never run.
    Token counts are zero when the model does not report usage, unless the model
    estimated them, which ``usage_estimated`` says.
    """

    message: Message
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    cached_tokens: int = 0  # of prompt_tokens, served from the server's prompt cache


def cached_tokens(usage: Any) -> int:
    """Prompt tokens a server says it took from its cache (OpenAI, DeepSeek, Anthropic shapes)."""
    details = _get(usage, "prompt_tokens_details")
    for value in (_get(details, "cached_tokens") if details is not None else None,
                  _get(usage, "prompt_cache_hit_tokens"), _get(usage, "cache_read_input_tokens")):
        if isinstance(value, int) and value > 0:
            return value
    return 0


_custom_model: Model | None = None
_custom_lock = threading.Lock()


def set_custom_model(model: Model | None) -> None:
    """Make ``model`` the default for every new agent and task (None restores OpenAI).

    An agent or task given a model explicitly ignores this default.
    """
    global _custom_model
    if model is not None and not (
        callable(getattr(model, "chat", None)) or callable(getattr(model, "astream", None))
    ):
        raise TypeError(
            f"{type(model).__name__} is not a model: it needs a chat(messages, model, tools) method"
        )
    with _custom_lock:
        _custom_model = model


def get_custom_model() -> Model | None:
    """The model set with :func:`set_custom_model`, or None."""
    with _custom_lock:
        return _custom_model


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def reply_from_raw(raw: Any) -> ModelReply:
    """Normalise what a custom ``chat()`` returned into a :class:`ModelReply`.

    Accepts a Message, a message dict or SDK message, a string, or a whole
    chat-completion (dict or SDK object with ``choices``), whose finish reason and
    usage are then kept.
    """
    if isinstance(raw, ModelReply):
        return raw
    finish: str | None = None
    prompt = done = cached = 0
    choices = None if isinstance(raw, (str, Message)) else _get(raw, "choices")
    if choices:
        usage = _get(raw, "usage")
        if usage is not None:
            prompt = int(_get(usage, "prompt_tokens") or 0)
            done = int(_get(usage, "completion_tokens") or 0)
            cached = cached_tokens(usage)
        finish = _get(choices[0], "finish_reason")
        raw = _get(choices[0], "message")
    message = normalize_message(raw)
    if finish is None:
        finish = "tool_calls" if message.tool_calls else "stop"
    if finish == "length" and message.tool_calls:
        # A call cut off by the token limit has partial arguments: never run it.
        message = Message(role=message.role, content=message.content)
    return ModelReply(message, finish, prompt, done, cached_tokens=cached)


def _takes_discard(astream: Callable[..., Any]) -> bool:
    """Whether a model's ``astream`` accepts ``on_discard`` (custom models may not)."""
    func = getattr(astream, "__func__", astream)
    known = _discard_support.get(func)
    if known is None:
        try:
            params = inspect.signature(astream).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        known = "on_discard" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        try:
            _discard_support[func] = known
        except TypeError:  # not hashable or not weak-referenceable: just ask again next time
            pass
    return known


_discard_support: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


async def complete(
    model_obj: Any,
    messages: Sequence[dict[str, Any]],
    model_name: str,
    tools: list[dict[str, Any]] | None,
    *,
    on_text: TextCallback | None = None,
    on_discard: DiscardCallback | None = None,
) -> ModelReply:
    """Ask ``model_obj`` for the next assistant message.

    Parameters:
        model_obj: a :class:`Model`; its ``astream`` is used when it has one, else its
            synchronous ``chat`` runs in a worker thread so the event loop stays free.
        messages: the conversation in chat-completions form.
        model_name: the provider's model name (e.g. ``gpt-4.1-mini``).
        tools: the tool schemas, or None.
        on_text: called with each piece of assistant text as it arrives (once with
            the whole text for models that do not stream).
        on_discard: called with a reason when the text passed to ``on_text`` so far
            is withdrawn because the answer is asked again (only models whose
            ``astream`` takes an ``on_discard`` argument do that).

    Errors a custom model raises that are not Pygent errors become a
    :class:`~pygent.errors.ModelError` naming the model, so the turn ends cleanly.
    """
    astream = getattr(model_obj, "astream", None)
    chat = getattr(model_obj, "chat", None)
    try:
        if callable(astream):
            extra = {"on_discard": on_discard} if _takes_discard(astream) else {}
            return reply_from_raw(
                await astream(list(messages), model_name, tools, on_text=on_text, **extra)
            )
        if not callable(chat):
            raise ModelError(f"{type(model_obj).__name__} is not a model: it has no chat() method")
        raw = await asyncio.to_thread(chat, list(messages), model_name, tools)
    except PygentError:
        raise
    except Exception as exc:  # a custom model's own bug must end the turn, not the session
        log.warning("model %s failed", type(model_obj).__name__, exc_info=True)
        raise ModelError(
            f"the model {type(model_obj).__name__} failed: {type(exc).__name__}: {exc}"
        ) from exc
    reply = reply_from_raw(raw)
    content = reply.message.content
    if on_text is not None and isinstance(content, str) and content:
        on_text(content)
    return reply


__all__ = [
    "DiscardCallback",
    "Model",
    "ModelReply",
    "StreamingModel",
    "TextCallback",
    "cached_tokens",
    "complete",
    "get_custom_model",
    "reply_from_raw",
    "set_custom_model",
]
