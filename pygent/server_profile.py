"""What a chat-completions request carries, and what each model server was seen to accept.

Real OpenAI-compatible servers differ (see docs/models.md for the tested table):
llama-cpp-python drops the tools unless ``tool_choice`` is sent, cannot stream an
automatic tool choice and rejects ``"content": null``; others ignore
``stream_options`` or reject fields they do not know. :class:`RequestOptions` is what
the user configured; a :class:`ServerProfile` is what Pygent learned from the server's
answers, remembered per base URL and model for the life of the process (so every
agent, sub-agent and session on that server benefits from one detection), and
:func:`build_body` turns a conversation into the request body a server will take.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

ToolChoice = Literal["auto", "required", "none", "omit"]
TOOL_CHOICES: tuple[str, ...] = ("auto", "required", "none", "omit")

#: Request fields Pygent adds on its own and can do without when a server rejects them.
OPTIONAL_FIELDS = ("stream_options", "tool_choice", "parallel_tool_calls")


@dataclass(frozen=True)
class RequestOptions:
    """What the user asked every request to carry (settings ``PYGENT_TOOL_CHOICE``...).

    Attributes:
        tool_choice: sent whenever tools are sent; ``"omit"`` sends none (for servers
            that reject the field).
        temperature: sent when set; None leaves the server's default.
        stream_tools: False never streams a request that carries tools, True always
            does, None (auto) streams until the server shows it cannot.
        parallel_tool_calls: False asks for one call per reply and sends earlier
            parallel calls one at a time; True/None send the history as it is.
    """

    tool_choice: ToolChoice = "auto"
    temperature: float | None = None
    stream_tools: bool | None = None
    parallel_tool_calls: bool | None = None


@dataclass
class ServerProfile:
    """What one server (base URL + model) was seen to accept; None means not known yet."""

    base_url: str
    model: str
    stream_tools: bool | None = None  # can it stream a reply to a request with tools?
    parallel_calls: bool | None = None  # does it take several tool calls in one message?
    null_content: bool = False  # True: it wants content null (not "") beside tool calls
    dropped: set[str] = field(default_factory=set)  # OPTIONAL_FIELDS it rejected
    told: set[str] = field(default_factory=set)  # notices already given for this server

    def first_time(self, what: str) -> bool:
        """True once per ``what``: for notices that are said once, not every request."""
        with _lock:
            if what in self.told:
                return False
            self.told.add(what)
            return True


_profiles: dict[tuple[str, str], ServerProfile] = {}
_lock = threading.Lock()


def profile_for(base_url: str, model: str) -> ServerProfile:
    """The shared profile of ``model`` at ``base_url`` (made on first use)."""
    key = (base_url.rstrip("/"), model)
    with _lock:
        profile = _profiles.get(key)
        if profile is None:
            profile = _profiles[key] = ServerProfile(*key)
        return profile


def forget_profiles() -> None:
    """Forget every server's learned behaviour (tests; a server that was upgraded)."""
    with _lock:
        _profiles.clear()


def streams(options: RequestOptions, profile: ServerProfile, has_tools: bool) -> bool:
    """Whether to stream this request: always without tools, else as known or asked."""
    if not has_tools or options.stream_tools is True:
        return True
    if options.stream_tools is False:
        return False
    return profile.stream_tools is not False


def build_body(
    messages: list[Any],
    model: str,
    tools: list[dict[str, Any]] | None,
    *,
    stream: bool,
    options: RequestOptions,
    profile: ServerProfile,
    split_calls: bool = False,
    null_content: bool | None = None,
) -> dict[str, Any]:
    """The JSON body of one chat-completions request.

    ``split_calls`` sends every assistant message with several tool calls as one
    message per call, each followed by its result (for servers that take one call at
    a time); it is also implied by ``parallel_tool_calls=False``. ``null_content``
    overrides the profile's content form (to try the other one).
    """
    if null_content is None:
        null_content = profile.null_content
    split = (
        split_calls or options.parallel_tool_calls is False or profile.parallel_calls is False
    )
    body: dict[str, Any] = {
        "model": model,
        "messages": wire_messages(messages, null_content=null_content, split=split),
    }
    if tools:  # OpenAI rejects an empty tools list
        body["tools"] = tools
        if options.tool_choice != "omit" and "tool_choice" not in profile.dropped:
            body["tool_choice"] = options.tool_choice
        if split and "parallel_tool_calls" not in profile.dropped:
            body["parallel_tool_calls"] = False
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if stream:
        body["stream"] = True
        if "stream_options" not in profile.dropped:
            body["stream_options"] = {"include_usage": True}
    return body


def wire_messages(messages: list[Any], *, null_content: bool = False, split: bool = False) -> list:
    """The conversation as servers take it.

    An assistant message that only calls tools carries ``"content": ""`` (the form
    every server tested accepts; llama-cpp-python answers ``null`` with HTTP 500), or
    null for a server seen to want that. With ``split``, parallel calls are unrolled.
    Messages are not copied unless they change: a long history costs one pass.
    """
    out: list[Any] = []
    i = 0
    n = len(messages)
    while i < n:
        message = messages[i]
        if not isinstance(message, dict):
            message = message.to_dict()  # an openai_compat.Message
        i += 1
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            out.append(message)
            continue
        content = message.get("content")
        if content is None and not null_content:
            message = {**message, "content": ""}
        elif content == "" and null_content:
            message = {**message, "content": None}
        if not split or len(calls) < 2:
            out.append(message)
            continue
        # The results follow the calling message; pair each call with its own result.
        results: dict[str, Any] = {}
        while i < n and _role(messages[i]) == "tool":
            result = messages[i] if isinstance(messages[i], dict) else messages[i].to_dict()
            results[str(result.get("tool_call_id"))] = result
            i += 1
        for k, call in enumerate(calls):
            call_id = str(call.get("id") if isinstance(call, dict) else call.id)
            part = {**message, "tool_calls": [call]}
            if k:  # the text, if any, goes with the first call only
                part["content"] = None if null_content else ""
            out.append(part)
            if call_id in results:
                out.append(results.pop(call_id))
        out.extend(results.values())  # results whose call id matched none, kept in order
    return out


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


__all__ = [
    "OPTIONAL_FIELDS",
    "RequestOptions",
    "ServerProfile",
    "TOOL_CHOICES",
    "ToolChoice",
    "build_body",
    "forget_profiles",
    "profile_for",
    "streams",
    "wire_messages",
]
