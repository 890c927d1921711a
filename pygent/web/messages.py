"""The chat page's wire messages, mirroring ``editors/vscode/webview/messages.ts``.

``PageMessage`` (page -> host) is parsed and checked here; ``HostMessage`` and the
session events (host -> page) are built here, with exactly the fields messages.ts
parses (``tests/web/test_messages_mirror.py`` reads the TypeScript to keep them equal).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from pygent import events as ev

#: ``PAGE_PROTOCOL_VERSION`` of messages.ts: the page sends it in ``ready``.
PAGE_PROTOCOL_VERSION = 1
#: The parsers of messages.ts cap strings at 4 MiB; so do we.
MAX_STRING = 4 * 1024 * 1024


# --- page -> host: the PageMessage union and its parser ------------------------------------------


class MessageError(ValueError):
    """A page message that does not fit the protocol (it is dropped)."""


Parser = Callable[[Any, str], Any]


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise MessageError(f"{path}: expected a string")
    return value


def _num(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MessageError(f"{path}: expected a number")
    return value


def _nullable(parser: Parser) -> Parser:
    # messages.ts: `null` and a missing key both parse to null.
    return lambda value, path: None if value is None else parser(value, path)


def _literal(*values: str) -> Parser:
    def parse(value: Any, path: str) -> str:
        if value not in values:
            raise MessageError(f"{path}: expected one of {', '.join(values)}")
        return value

    return parse


def _str_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 10_000:
        raise MessageError(f"{path}: expected an array")
    return [_str(item, f"{path}[{i}]") for i, item in enumerate(value)]


_OPTION = _literal("allow_once", "allow_always", "reject_once", "reject_always")
_HOST_ACTION = _literal("setApiKey", "restartServer", "openSettings", "showLogs", "installHelp")
_OPT_STR = _nullable(_str)
_PATHS = _nullable(_str_list)

#: ``PageMessage``: type -> field parsers (``parsePageMessage`` of messages.ts).
PAGE_MESSAGES: dict[str, dict[str, Parser]] = {
    "ready": {"protocol": _num},
    "prompt": {"sessionId": _OPT_STR, "text": _str},
    "cancel": {"sessionId": _str},
    "newSession": {},
    "selectSession": {"sessionId": _str},
    "answerApproval": {"id": _str, "optionId": _OPTION, "message": _OPT_STR},
    "openApprovalDiff": {"id": _str},
    "openChange": {"sessionId": _str, "path": _str},
    "applyChanges": {"sessionId": _str, "paths": _PATHS},
    "discardChanges": {"sessionId": _str, "paths": _PATHS},
    "cancelTask": {"sessionId": _str, "taskId": _str},
    "openTask": {"sessionId": _str, "taskId": _str},
    "runAction": {"action": _HOST_ACTION},
}


def parse_page_message(data: Any) -> dict[str, Any]:
    """A page message with exactly its known keys; :class:`MessageError` for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise MessageError("message: expected an object with a type")
    fields = PAGE_MESSAGES.get(data["type"])
    if fields is None:
        raise MessageError(f"type: a known type, not {data['type']!r}")
    out: dict[str, Any] = {"type": data["type"]}
    for key, parse in fields.items():
        out[key] = parse(data.get(key), key)
    return out


# --- host -> page: the HostMessage union and session events -----------------------------------------

#: ``HostMessage``: type -> its fields (``parseHostMessage`` of messages.ts).
HOST_MESSAGES: dict[str, tuple[str, ...]] = {
    "init": ("host", "capabilities", "status", "sessions", "activeSessionId"),
    "status": ("status",),
    "sessions": ("sessions", "activeSessionId"),
    "transcript": ("sessionId", "events"),
    "event": ("sessionId", "event"),
    "approval": ("approval",),
    "approvalClosed": ("id", "outcome"),
    "tasks": ("sessionId", "tasks"),
    "changes": ("sessionId", "syncMode", "changes"),
    "toast": ("level", "text"),
    "focusPrompt": ("text",),
}

#: Core events the page shows (the same set the language server forwards).
EVENT_CLASSES: tuple[type[ev.Event], ...] = (
    ev.TurnStarted,
    ev.MessageDelta,
    ev.MessageDiscarded,
    ev.MessageDone,
    ev.ToolCallProposed,
    ev.ToolCallStarted,
    ev.ToolOutput,
    ev.ToolCallFinished,
    ev.Usage,
    ev.Notice,
    ev.TaskStatus,
    ev.TurnEnded,
)
_CAMEL = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def _event_fields(cls: type[ev.Event]) -> tuple[str, ...]:
    return tuple(camel(f.name) for f in dataclasses.fields(cls) if f.name != "session_id")


#: ``SessionEvent`` (``parseSessionEvent`` of messages.ts): tag -> fields. ``permission``
#: and ``changes`` are the host's own updates (an approval's state, changes after a turn).
SESSION_EVENTS: dict[str, tuple[str, ...]] = {
    **{cls.type: _event_fields(cls) for cls in EVENT_CLASSES},
    "permission": ("taskId", "callId", "state", "outcome"),
    "changes": ("taskId", "count", "paths"),
}
_SHOWN = frozenset(cls.type for cls in EVENT_CLASSES)


def event_update(event: ev.Event) -> dict[str, Any] | None:
    """The page's session event for a core event (None for kinds the page does not show)."""
    if event.type not in _SHOWN:
        return None
    out: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        if f.name == "session_id":
            continue
        value = getattr(event, f.name)
        out[camel(f.name)] = value.value if isinstance(value, Enum) else value
    return out


def host_message(kind: str, **fields: Any) -> dict[str, Any]:
    """A ``HostMessage``; its fields must be exactly those messages.ts parses."""
    expected = HOST_MESSAGES.get(kind)
    if expected is None or set(fields) != set(expected):
        raise ValueError(f"host message {kind!r} with fields {sorted(fields)}; expected {expected}")
    return {"type": kind, **fields}


def local_update(kind: str, **fields: Any) -> dict[str, Any]:
    """A session event the host makes itself (a notice, a turn it ends, changes)."""
    update = {"type": kind, "taskId": None, **fields}
    assert set(update) - {"type"} == set(SESSION_EVENTS[kind]), kind
    return update


class PagePort(Protocol):
    """A connected page, as the bridge sees it."""

    def post(self, message: dict[str, Any]) -> None: ...
