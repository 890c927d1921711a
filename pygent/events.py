"""Typed, frozen events that the agent core emits while a turn runs.

The REPL renders them, the LSP server forwards them as notifications, the web UI
sends them over its socket and API callers subscribe to them. Every event has a
``type`` tag and serialises with :func:`event_to_dict` to a camelCase-free JSON
object (the wire layers rename keys where they need to).

These classes ARE the session updates of the editor protocol: the ``pygent/sessionUpdate``
union is :data:`SESSION_EVENTS` (each event's fields but ``session_id``, camelCase, plus
its ``type`` tag), the JSON Schema and the VS Code extension's types are generated from
them (``python scripts/gen_protocol.py``). Fields with a closed set of values are typed
with the ``Literal`` aliases below, never a free string (``Annotated[str, Alias]`` where
callers still pass a plain ``str``: the wire and its schema take the alias either way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

#: A delegated task's state (``pygent.task_info`` names each one).
TaskState = Literal["queued", "running", "finished", "failed", "timeout", "cancelled"]
#: How a tool call ended.
ToolCallStatus = Literal["completed", "failed", "denied", "cancelled"]
NoticeLevel = Literal["info", "warning", "error"]
#: Which stream of a command a chunk of output comes from.
OutputStream = Literal["stdout", "stderr"]
#: A permission request was sent and awaits an answer, or it was answered (or timed out).
PermissionState = Literal["pending", "resolved"]
#: An MCP server's state (docs/mcp.md).
McpServerState = Literal["starting", "ready", "restarting", "failed", "disabled", "stopped"]
#: Where an MCP server runs: in the session's sandbox, on the host, or at a URL.
McpServerWhere = Literal["sandbox", "host", "remote"]


class StopReason(str, Enum):
    """Why a turn ended (borrowed from ACP's prompt response)."""

    END_TURN = "end_turn"  # the model answered without tools
    STOP_TOOL = "stop"  # the model called the `stop` tool
    ASK_USER = "ask_user"  # the model asked the user a question
    MAX_STEPS = "max_steps"
    MAX_TIME = "max_time"
    STEP_TIMEOUT = "step_timeout"
    CANCELLED = "cancelled"
    ERROR = "error"  # model/runtime error; message in TurnEnded.error
    BUDGET = "budget"  # a budget limit (tokens, cost, calls, time) is spent; TurnEnded.error names it
    MAX_TOKENS = "max_tokens"  # the model's reply was cut at its length limit (finish_reason "length")
    REFUSAL = "refusal"


@dataclass(frozen=True)
class Event:
    """Base event. ``session_id`` and ``task_id`` say where it comes from."""

    type: ClassVar[str] = "event"
    session_id: str = ""
    task_id: str | None = None


@dataclass(frozen=True)
class TurnStarted(Event):
    """A turn began with this prompt."""

    type: ClassVar[str] = "turn_started"
    prompt: str = ""
    #: The ``data:`` URLs of the images sent with the prompt (:mod:`pygent.prompt_images`):
    #: a client that joins later (an ACP ``session/load`` through a host) shows them too.
    images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MessageDelta(Event):
    """A chunk of the assistant's reply text, as it streams."""

    type: ClassVar[str] = "message_delta"
    text: str = ""


@dataclass(frozen=True)
class MessageDiscarded(Event):
    """Forget the reply text streamed since the last model call began.

    Sent when a model call that already streamed text is retried or re-asked (a cut
    stream, a server that cannot stream tools): the answer that follows replaces the
    partial one, so a front end removes what it showed and never splices the two.
    ``reason`` says why, for front ends that show it.
    """

    type: ClassVar[str] = "message_discarded"
    reason: str = ""


@dataclass(frozen=True)
class MessageDone(Event):
    """The whole assistant message of one model call."""

    type: ClassVar[str] = "message_done"
    text: str = ""


@dataclass(frozen=True)
class ToolCallProposed(Event):
    """The model asked for a tool call (before approval)."""

    type: ClassVar[str] = "tool_call_proposed"
    call_id: str = ""
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    preview: str = ""
    #: The files the call reads or writes, relative to the session's folder ("." for
    #: the folder itself), for clients to link to; empty for commands.
    locations: list[str] = field(default_factory=list)
    #: The text of the file a ``write_file``/``edit_file`` call replaces, read when the
    #: call was proposed (None: a new file, another tool, not UTF-8 text, or over
    #: :data:`pygent.tools.preview.OLD_TEXT_LIMIT`): clients that show a change whole
    #: (ACP's ``diff``) need it and may not be able to read the sandbox (a session host's).
    old_text: str | None = None


@dataclass(frozen=True)
class ToolCallStarted(Event):
    """An approved tool call began running."""

    type: ClassVar[str] = "tool_call_started"
    call_id: str = ""
    tool: str = ""


@dataclass(frozen=True)
class ToolOutput(Event):
    """A chunk of a running tool's output (stdout/stderr of a command)."""

    type: ClassVar[str] = "tool_output"
    call_id: str = ""
    text: str = ""
    stream: Annotated[str, OutputStream] = "stdout"


@dataclass(frozen=True)
class ToolCallFinished(Event):
    """A tool call ended: ``output`` holds its last 4000 characters."""

    type: ClassVar[str] = "tool_call_finished"
    call_id: str = ""
    tool: str = ""
    ok: bool = True
    output: str = ""
    status: Annotated[str, ToolCallStatus] = "completed"


@dataclass(frozen=True)
class Usage(Event):
    """Token usage of one model call plus the running totals for the session.

    ``estimated`` is True when the server reported no usage for this call and the
    counts are Pygent's estimate (about four characters a token); front ends mark
    such figures (``~``). Once a call is estimated the totals are estimates too.
    """

    type: ClassVar[str] = "usage"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    estimated: bool = False
    # Long sessions (docs/long-sessions.md): cached prompt tokens, USD cost (None: the
    # model has no price), model calls, and the context fill of this call's request.
    cached_tokens: int = 0
    total_cached_tokens: int = 0
    cost: float | None = None
    total_cost: float | None = None
    total_calls: int = 0
    context_tokens: int = 0
    context_window: int = 0


@dataclass(frozen=True)
class Compaction(Event):
    """The older part of the conversation was (``ok``) or could not be summarised.

    On success ``summary`` replaces ``replaced`` older messages in the next requests
    (the history file keeps them all); ``tokens_before``/``tokens_after`` are the
    request's estimated size. On failure ``error`` says why and nothing changed.
    """

    type: ClassVar[str] = "compaction"
    ok: bool = True
    automatic: bool = False
    summary: str = ""
    replaced: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    focus: str = ""
    error: str = ""


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should know that is not part of the conversation."""

    type: ClassVar[str] = "notice"
    level: NoticeLevel = "info"
    text: str = ""


@dataclass(frozen=True)
class TaskStatus(Event):
    """Status of a delegated task (queued, running, finished, failed, timeout, cancelled)."""

    type: ClassVar[str] = "task_status"
    status: Annotated[str, TaskState] = "queued"
    persona: str = ""
    prompt: str = ""
    steps: int = 0
    detail: str = ""


@dataclass(frozen=True)
class TurnEnded(Event):
    """The turn ended: why, its final text (or the ``ask_user`` question) and any error."""

    type: ClassVar[str] = "turn_ended"
    stop_reason: StopReason = StopReason.END_TURN
    text: str = ""
    error: str = ""


@dataclass(frozen=True)
class Permission(Event):
    """A permission request was sent (``pending``) or answered / timed out (``resolved``).

    ``outcome`` is the option chosen, or why the call was denied (``denied: <why>``).
    """

    type: ClassVar[str] = "permission"
    call_id: str = ""
    state: PermissionState = "pending"
    outcome: str = ""


@dataclass(frozen=True)
class Changes(Event):
    """After a turn in copy mode: the agent's changes not applied to the folder yet.

    ``count`` files; ``paths`` lists at most the first 200 of them.
    """

    type: ClassVar[str] = "changes"
    count: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class McpServer(Event):
    """An MCP server of the session changed: its state, where it runs, its tools.

    Sent when a server starts (servers start in the background: the session does not
    wait for them), becomes ready, its tool list changes, it exits and is being
    restarted, or it fails (``reason`` says why, without secrets). The state now is in
    ``pygent/mcp/status``; these updates keep it current.
    """

    type: ClassVar[str] = "mcp_server"
    name: str = ""
    state: Annotated[str, McpServerState] = "starting"
    where: Annotated[str, McpServerWhere] = "sandbox"
    tools: list[str] = field(default_factory=list)
    reason: str = ""
    restarts: int = 0


#: The events a session streams (the ``pygent/sessionUpdate`` union), in documentation order.
SESSION_EVENTS: tuple[type[Event], ...] = (
    TurnStarted,
    MessageDelta,
    MessageDiscarded,
    MessageDone,
    ToolCallProposed,
    ToolCallStarted,
    ToolOutput,
    ToolCallFinished,
    Usage,
    Compaction,
    Notice,
    TaskStatus,
    TurnEnded,
    Permission,
    Changes,
    McpServer,
)
#: ``type`` tag -> event class.
EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in SESSION_EVENTS}

EventListener = Callable[[Event], None]


def event_to_dict(event: Event) -> dict[str, Any]:
    """Serialise an event to a JSON-ready dict with its ``type`` tag."""
    out: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Enum):
            value = value.value
        out[f.name] = value
    return out


class EventHub:
    """Fan-out of events to listeners; a failing listener never breaks the turn."""

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken front end must not kill the agent
                import logging

                logging.getLogger(__name__).exception("event listener failed")
