"""How many tokens the model's context window holds, and how full a request makes it.

The window of a model is, in order: the configuration (``PYGENT_CONTEXT_WINDOW`` /
``context_window`` in ``pygent.toml``, per model name or ``*`` for any), what the model
server reports (``/models`` metadata such as ``context_length``/``max_model_len``,
llama.cpp's ``/props`` ``n_ctx``), a small table of well-known model names, and
otherwise :data:`DEFAULT_WINDOW`, a conservative guess that Pygent says once.

A request's size is never tokenised locally (no tokenizer download at run time): it is
the server's reported usage of the previous request (prompt + completion) plus an
estimate, four characters a token, for the messages added since (:class:`ContextMeter`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Used when nothing else is known: small enough for most local servers' defaults.
DEFAULT_WINDOW = 8192
#: Characters per token of the estimate (the usual rule of thumb, as openai_model uses).
CHARS_PER_TOKEN = 4
#: Seconds the server gets to answer the metadata questions (once per server and model).
DISCOVERY_TIMEOUT = 3.0

#: Well-known model name prefixes -> context window, longest prefix wins. Deliberately
#: short: a wrong big number is worse than the conservative default.
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-": 200_000,
    "gemini-1.5": 1_048_576,
    "gemini-2": 1_048_576,
    "llama3.1": 131_072,
    "llama3.2": 131_072,
    "llama3.3": 131_072,
    "llama-3.1": 131_072,
    "llama-3.3": 131_072,
    "qwen2.5": 32_768,
    "qwen3": 32_768,
    "mistral": 32_768,
    "deepseek-": 65_536,
    "smollm2": 8_192,
}

#: Keys under which servers put a model's window in their ``/models`` entries.
_MODEL_KEYS = ("context_length", "context_window", "max_context_length", "max_model_len")


@dataclass(frozen=True)
class ContextWindow:
    """A model's window in tokens and where that figure comes from.

    ``source`` is ``config``, ``server``, ``table`` or ``default``.
    """

    tokens: int
    source: str

    @property
    def guessed(self) -> bool:
        return self.source == "default"


def estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text (at least 1)."""
    return max(1, (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


def message_tokens(message: Mapping[str, Any]) -> int:
    """The estimated tokens of one chat message as it goes on the wire."""
    return estimate_tokens(len(json.dumps(message, ensure_ascii=False, separators=(",", ":"))))


def configured_window(configured: Mapping[str, int], model: str) -> int | None:
    """The configured window for ``model`` (its own entry, else ``*``), or None."""
    if model in configured:
        return configured[model]
    return configured.get("*")


def table_window(model: str) -> int | None:
    """The built-in table's window for ``model`` (provider prefixes ignored), or None."""
    name = model.lower().rsplit("/", 1)[-1]
    best = ""
    for prefix in KNOWN_WINDOWS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return KNOWN_WINDOWS[best] if best else None


def window_from_models(payload: Any, model: str) -> int | None:
    """The window a ``GET /models`` answer gives for ``model`` (OpenRouter, vLLM, LM Studio,
    llama.cpp shapes), or None."""
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, Mapping)]
    # llama.cpp serves one model under any name: a single entry counts for every name.
    match = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in match:
        for key in _MODEL_KEYS:
            value = entry.get(key)
            if isinstance(value, int) and value > 0:
                return value
        meta = entry.get("meta")  # llama.cpp's n_ctx_train is the training size: not used
        if isinstance(meta, Mapping) and isinstance(meta.get("n_ctx"), int) and meta["n_ctx"] > 0:
            return int(meta["n_ctx"])
    return None


def window_from_props(payload: Any) -> int | None:
    """llama.cpp's ``GET /props``: the ``n_ctx`` the server really runs with, or None."""
    if not isinstance(payload, Mapping):
        return None
    settings = payload.get("default_generation_settings")
    for where in (settings, payload):
        if isinstance(where, Mapping) and isinstance(where.get("n_ctx"), int) and where["n_ctx"] > 0:
            return int(where["n_ctx"])
    return None


_reported: dict[tuple[str, str], int | None] = {}
_told: set[tuple[str, str]] = set()
_lock = threading.Lock()


async def server_window(model_obj: Any, model: str) -> int | None:
    """Ask the model's server (once per base URL and model, process-wide) for the window.

    Only models with a ``base_url`` and an HTTP client (:class:`~pygent.openai_model.OpenAIModel`)
    are asked; an answer without a figure is remembered as "unknown", a failed request
    (timeout, refused connection) is not.
    """
    base_url = getattr(model_obj, "base_url", None)
    client_of = getattr(model_obj, "_async_client", None)  # the model's own connection pool
    if not isinstance(base_url, str) or not callable(client_of):
        return None
    if "://api.openai.com" in base_url:
        return None  # it reports no window: two round trips saved on the first turn
    key = (base_url, model)
    with _lock:
        if key in _reported:
            return _reported[key]
    found: int | None = None
    try:
        client = client_of()
        # llama.cpp's /props holds the n_ctx it really runs with (its /models only the
        # training size), beside /v1 rather than under it; asked first.
        root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
        for url, read in ((f"{root}/props", window_from_props),
                          (f"{base_url}/models", lambda p: window_from_models(p, model))):
            response = await asyncio.wait_for(client.get(url), DISCOVERY_TIMEOUT)
            if response.status_code == 200:
                found = read(response.json())
                if found:
                    break
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # metadata is optional: any failure means "not reported"
        # Not remembered: a server that was down or busy for a moment (restarting,
        # single-stream) is asked again by the next session instead of being taken for
        # one that reports no window for the rest of the process.
        log.debug("context window discovery at %s failed: %s", base_url, exc)
        return None
    with _lock:
        _reported[key] = found
    return found


def forget_reported() -> None:
    """Forget what servers reported (tests; a server restarted with another n_ctx)."""
    with _lock:
        _reported.clear()
        _told.clear()


async def resolve_window(configured: Mapping[str, int], model_obj: Any, model: str) -> ContextWindow:
    """The window of ``model`` (see the module docstring for the order)."""
    value = configured_window(configured, model)
    if value:
        return ContextWindow(value, "config")
    declared = getattr(model_obj, "context_window", None)  # a custom model may declare it
    if isinstance(declared, int) and declared > 0:
        return ContextWindow(declared, "config")
    value = await server_window(model_obj, model)
    if value:
        return ContextWindow(value, "server")
    value = table_window(model)
    if value:
        return ContextWindow(value, "table")
    return ContextWindow(DEFAULT_WINDOW, "default")


def first_guess(model: str, base_url: str = "") -> bool:
    """True the first time a default window is used for this model (say it once)."""
    with _lock:
        if (base_url, model) in _told:
            return False
        _told.add((base_url, model))
        return True


class ContextMeter:
    """Tokens of the next request: the last reported usage plus an estimate since.

    ``anchor`` is the token count of the first ``anchor_len`` request messages as the
    server counted them (its prompt plus its reply); messages past them are estimated.
    Each call is O(new messages), so a 500-step session costs the same at step 500.
    """

    def __init__(self) -> None:
        self.anchor = 0
        self.anchor_len = 0
        self._tail_len = 0
        self._tail_tokens = 0

    def reset(self, messages: Sequence[Mapping[str, Any]], tools_tokens: int = 0) -> None:
        """Estimate everything afresh (after a compaction changed the request)."""
        self.anchor = tools_tokens + sum(message_tokens(m) for m in messages)
        self.anchor_len = len(messages)
        self._tail_len = self._tail_tokens = 0

    def reported(self, prompt_tokens: int, completion_tokens: int, length: int) -> None:
        """The server counted the request of ``length - 1`` messages plus its reply."""
        if prompt_tokens <= 0:
            return
        self.anchor = prompt_tokens + completion_tokens
        self.anchor_len = length
        self._tail_len = self._tail_tokens = 0

    def tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Estimated tokens of a request made of ``messages`` (the same list, grown)."""
        if len(messages) < self.anchor_len:  # the list shrank (rewind): estimate it all
            self.reset(messages)
        if self._tail_len < self.anchor_len:
            self._tail_len, self._tail_tokens = self.anchor_len, 0
        for message in messages[self._tail_len:]:
            self._tail_tokens += message_tokens(message)
        self._tail_len = len(messages)
        return self.anchor + self._tail_tokens


__all__ = [
    "DEFAULT_WINDOW",
    "KNOWN_WINDOWS",
    "ContextMeter",
    "ContextWindow",
    "configured_window",
    "estimate_tokens",
    "first_guess",
    "forget_reported",
    "message_tokens",
    "resolve_window",
    "server_window",
    "table_window",
    "window_from_models",
    "window_from_props",
]
