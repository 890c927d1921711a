"""Core events -> ACP ``session/update`` payloads, for one session.

Pygent's events (:mod:`pygent.events`) already borrow ACP's shapes; this module is the
translation table and the little state it needs: the text streamed since the model
call began (a reply that was only sent whole is sent whole), each tool call's arguments
(for titles, locations and diffs), the output a running command has printed (ACP's
``tool_call_update`` replaces a call's content, so each update carries the tail so far)
and the delegated tasks, shown as the session's ``plan``.

Paths in ``locations`` and ``diff`` content are the client's: the session's folder
joined with the workspace-relative path, never the sandbox's ``/workspace/...``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from acp import schema as s

from pygent import events as ev
from pygent.errors import PygentError, ToolError
from pygent.tools.file_tools import apply_edit
from pygent.tools.preview import PATH_ARGUMENTS

log = logging.getLogger(__name__)

#: The most output a ``tool_call_update`` carries (its tail); the full output is the tool's.
OUTPUT_TAIL_CHARS = 16 * 1024

ToolKind = Literal[
    "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"
]
#: Pygent tool names -> ACP tool kinds (anything else: by the tool's own kind, else other).
TOOL_KINDS: dict[str, ToolKind] = {
    "bash": "execute",
    "write_file": "edit",
    "edit_file": "edit",
    "read_file": "read",
    "download_file": "read",
    "read_image": "read",
    "delegate_task": "think",
    "delegate_persona_task": "think",
}
_KIND_OF_REGISTRY: dict[str, ToolKind] = {
    "exec": "execute",
    "shell": "execute",
    "write": "edit",
    "read": "read",
}
#: How a Pygent tool call ended -> ACP's tool call status.
CALL_STATUS: dict[str, Literal["completed", "failed"]] = {
    "completed": "completed",
    "failed": "failed",
    "denied": "failed",
    "cancelled": "failed",
}
#: A delegated task's state -> ACP plan entry status (the exact state is in ``_meta``).
PLAN_STATUS: dict[str, Literal["pending", "in_progress", "completed"]] = {
    "queued": "pending",
    "running": "in_progress",
    "finished": "completed",
    "failed": "completed",
    "timeout": "completed",
    "cancelled": "completed",
}

Update = (
    s.AgentMessageChunk
    | s.AgentThoughtChunk
    | s.UserMessageChunk
    | s.ToolCallStart
    | s.ToolCallProgress
    | s.AgentPlanUpdate
    | s.UsageUpdate
    | s.SessionInfoUpdate
    | s.CurrentModeUpdate
    | s.ConfigOptionUpdate
)


def text_block(text: str) -> s.TextContentBlock:
    return s.TextContentBlock(type="text", text=text)


def image_block(url: str) -> s.ImageContentBlock | None:
    """A prompt image's ``data:`` URL as an ACP image block (None: not a base64 data URL)."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, _, data = url.partition(";base64,")
    return s.ImageContentBlock(type="image", mime_type=head[len("data:") :], data=data)


def prompt_updates(text: str, images: list[str] | tuple[str, ...] = ()) -> list[Update]:
    """A user's prompt as ``user_message_chunk`` updates: its text, then each image."""
    out: list[Update] = []
    if text:
        out.append(s.UserMessageChunk(session_update="user_message_chunk", content=text_block(text)))
    for url in images:
        block = image_block(url)
        if block is not None:
            out.append(s.UserMessageChunk(session_update="user_message_chunk", content=block))
    return out


def tool_kind(tool: str, registry_kind: str | None = None) -> ToolKind:
    """The ACP kind of a Pygent tool (by name, else by its registry kind)."""
    if tool in TOOL_KINDS:
        return TOOL_KINDS[tool]
    return _KIND_OF_REGISTRY.get(registry_kind or "", "other")


def call_title(tool: str, arguments: dict[str, Any]) -> str:
    """What a client shows for a call: the command, or the verb and the path."""
    if tool == "bash":
        cmd = str(arguments.get("cmd") or arguments.get("command") or "").strip()
        first = cmd.splitlines()[0] if cmd else ""
        more = " ..." if len(cmd.splitlines()) > 1 or len(first) > 120 else ""
        return (first[:120] + more) if first else "bash"
    path = _path_argument(arguments)
    verb = {
        "write_file": "Write",
        "edit_file": "Edit",
        "read_file": "Read",
        "download_file": "Read",
        "read_image": "View",
    }.get(tool)
    if verb and path:
        return f"{verb} {path}"
    if tool.startswith("delegate") and arguments.get("prompt"):
        return f"Delegate: {str(arguments['prompt'])[:100]}"
    return tool


def _path_argument(arguments: dict[str, Any]) -> str | None:
    for key in PATH_ARGUMENTS:
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _edit_diff(
    host: str, arguments: dict[str, Any], before: str | None
) -> s.FileEditToolCallContent:
    """An ``edit_file`` call's diff: the whole file before and after when its text is
    known (ACP's ``oldText``/``newText`` are the file's), else the snippets it swaps."""
    old, new = arguments.get("old_text"), str(arguments["new_text"])
    if before is not None and isinstance(old, str):
        try:
            after = apply_edit(before, old, new, host)
        except ToolError:  # the edit will fail: show what it asked for
            pass
        else:
            return s.FileEditToolCallContent(type="diff", path=host, old_text=before, new_text=after)
    return s.FileEditToolCallContent(
        type="diff", path=host, old_text=old if isinstance(old, str) else None, new_text=new
    )


@dataclass
class _Call:
    tool: str
    arguments: dict[str, Any]
    kind: ToolKind
    locations: list[s.ToolCallLocation]
    diff: s.FileEditToolCallContent | None = None
    output: str = ""


@dataclass
class SessionUpdates:
    """Translates one session's events to ACP updates.

    Args:
        folder: the client's folder of the session (None: the sandbox's own folder).
        files: the session's workspace (``runtime.files``): maps model paths to the client's.
        kinds: tool name -> registry kind, for tools this module does not name.
    """

    folder: Path | None
    files: Any = None
    kinds: dict[str, str] = field(default_factory=dict)
    #: The context window reported in ``usage_update.size`` (the agent's resolved window
    #: once known; this figure before the first model call).
    context_size: int = 128_000
    _calls: dict[str, _Call] = field(default_factory=dict)
    _streamed: bool = False
    _dirty: set[str] = field(default_factory=set)
    _tasks: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    # --- paths ---------------------------------------------------------------------------

    def host_path(self, path: str) -> str | None:
        """A model path (relative, or ``/workspace/...``) as a path on the client's machine."""
        if self.files is None:
            return None
        try:
            rel = self.files.relpath(path)
        except (PygentError, ValueError):
            return None
        base = self.folder if self.folder is not None else Path(self.files.root)
        return str(base / rel) if rel else str(base)

    # --- tool calls -----------------------------------------------------------------------

    def _call_id(self, event: ev.Event, call_id: str) -> str:
        # A delegated task's calls get their own ids: its model may reuse the main one's.
        return f"{event.task_id}:{call_id}" if event.task_id else call_id

    def describe_call(
        self,
        call_id: str,
        tool: str,
        arguments: dict[str, Any],
        before: str | None = None,
    ) -> _Call:
        """Remember a call and work out its kind, locations and diff. ``before``: the text
        the call replaces, as the core read it (the event's ``old_text``)."""
        kind = tool_kind(tool, self.kinds.get(tool))
        path = _path_argument(arguments)
        host = self.host_path(path) if path else None
        locations = [s.ToolCallLocation(path=host)] if host else []
        diff = None
        if host and path and tool == "write_file" and isinstance(arguments.get("content"), str):
            # The core's event says what the file held (None: nothing, too big, or a
            # replayed call: the file now is not the file then, so it is not read here).
            diff = s.FileEditToolCallContent(
                type="diff", path=host, old_text=before, new_text=arguments["content"]
            )
        elif host and tool == "edit_file" and isinstance(arguments.get("new_text"), str):
            diff = _edit_diff(host, arguments, before)
        call = _Call(tool, dict(arguments), kind, locations, diff)
        self._calls[call_id] = call
        return call

    def call_for(self, call_id: str, tool: str, arguments: dict[str, Any]) -> _Call:
        """The call as its proposal described it (an approval asks after the proposal,
        whose event carried the replaced text), else described now."""
        known = self._calls.get(call_id)
        if known is not None and known.tool == tool:
            return known
        return self.describe_call(call_id, tool, arguments)

    def call_content(self, call: _Call, preview: str = "") -> list[Any]:
        """A call's content: its diff, or the command (and what it printed so far)."""
        content: list[Any] = []
        if call.diff is not None:
            content.append(call.diff)
        elif call.tool == "bash" and preview:
            content.append(s.ContentToolCallContent(type="content", content=text_block(preview)))
        if call.output:
            content.append(
                s.ContentToolCallContent(type="content", content=text_block(call.output))
            )
        return content

    # --- the table ------------------------------------------------------------------------

    def updates(self, event: ev.Event) -> list[Update]:
        """The ACP updates for one core event (often none, sometimes several)."""
        handler = getattr(self, "_on_" + event.type, None)
        if handler is None:
            return []
        return list(handler(event))

    def _on_message_delta(self, event: ev.MessageDelta) -> list[Update]:
        if event.task_id or not event.text:
            return []  # a sub-agent's reply is its task's result, not the main reply
        self._streamed = True
        return [
            s.AgentMessageChunk(
                session_update="agent_message_chunk", content=text_block(event.text)
            )
        ]

    def _on_message_discarded(self, event: ev.MessageDiscarded) -> list[Update]:
        if event.task_id or not self._streamed:
            return []
        self._streamed = False
        # ACP cannot take text back: say plainly that what follows replaces it.
        why = f" ({event.reason})" if event.reason else ""
        return [
            s.AgentMessageChunk(
                session_update="agent_message_chunk",
                content=text_block(
                    f"\n\n[the reply above was cut off{why}; it is asked for again]\n\n"
                ),
            )
        ]

    def _on_message_done(self, event: ev.MessageDone) -> list[Update]:
        if event.task_id:
            return []
        streamed, self._streamed = self._streamed, False
        if streamed or not event.text:
            return []
        # A reply that arrived whole (a server that does not stream) is sent whole.
        return [
            s.AgentMessageChunk(
                session_update="agent_message_chunk", content=text_block(event.text)
            )
        ]

    def _on_tool_call_proposed(self, event: ev.ToolCallProposed) -> list[Update]:
        call_id = self._call_id(event, event.call_id)
        call = self.describe_call(call_id, event.tool, event.arguments, event.old_text)
        meta = (
            {"pygent": {"tool": event.tool, "taskId": event.task_id}}
            if event.task_id
            else {"pygent": {"tool": event.tool}}
        )
        return [
            s.ToolCallStart(
                session_update="tool_call",
                tool_call_id=call_id,
                title=call_title(event.tool, event.arguments),
                kind=call.kind,
                status="pending",
                content=self.call_content(call, event.preview) or None,
                locations=call.locations or None,
                raw_input=event.arguments,
                field_meta=meta,
            )
        ]

    def _on_tool_call_started(self, event: ev.ToolCallStarted) -> list[Update]:
        return [
            s.ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=self._call_id(event, event.call_id),
                status="in_progress",
            )
        ]

    def _on_tool_output(self, event: ev.ToolOutput) -> list[Update]:
        # Output is merged here and sent by :meth:`pending_output` (a command prints a
        # line at a time; one update per line would flood the client).
        call_id = self._call_id(event, event.call_id)
        call = self._calls.get(call_id)
        if call is not None and event.text:
            call.output = (call.output + event.text)[-OUTPUT_TAIL_CHARS:]
            self._dirty.add(call_id)
        return []

    def pending_output(self) -> list[Update]:
        """One ``tool_call_update`` per call that printed since the last call of this."""
        out: list[Update] = []
        for call_id in sorted(self._dirty):
            call = self._calls.get(call_id)
            if call is not None:
                out.append(
                    s.ToolCallProgress(
                        session_update="tool_call_update",
                        tool_call_id=call_id,
                        content=self.call_content(call),
                    )
                )
        self._dirty.clear()
        return out

    def _on_tool_call_finished(self, event: ev.ToolCallFinished) -> list[Update]:
        call_id = self._call_id(event, event.call_id)
        call = self._calls.pop(call_id, None)
        self._dirty.discard(call_id)
        status = CALL_STATUS.get(event.status, "completed" if event.ok else "failed")
        content: list[Any] = []
        if call is not None and call.diff is not None and status == "completed":
            content.append(call.diff)
        if event.output:
            content.append(
                s.ContentToolCallContent(type="content", content=text_block(event.output))
            )
        return [
            s.ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=call_id,
                status=status,
                content=content or None,
                raw_output={"ok": event.ok, "status": event.status, "output": event.output},
                field_meta={"pygent": {"status": event.status}},
            )
        ]

    def _on_usage(self, event: ev.Usage) -> list[Update]:
        if event.task_id:
            return []
        used = event.prompt_tokens + event.completion_tokens
        return [
            s.UsageUpdate(
                session_update="usage_update",
                used=used,
                size=max(used, self.context_size),
                field_meta={
                    "pygent": {
                        "promptTokens": event.prompt_tokens,
                        "completionTokens": event.completion_tokens,
                        "totalPromptTokens": event.total_prompt_tokens,
                        "totalCompletionTokens": event.total_completion_tokens,
                        "estimated": event.estimated,
                    }
                },
            )
        ]

    def _on_notice(self, event: ev.Notice) -> list[Update]:
        if event.level == "info" and event.task_id:
            return []
        prefix = {"warning": "Warning: ", "error": "Error: "}.get(event.level, "")
        return [
            s.AgentThoughtChunk(
                session_update="agent_thought_chunk",
                content=text_block(f"{prefix}{event.text}\n"),
                field_meta={"pygent": {"notice": event.level}},
            )
        ]

    def _on_compaction(self, event: ev.Compaction) -> list[Update]:
        # ACP has no compaction update: a thought, as the other front ends show a marker.
        # A failed one is not repeated: its notice (a warning or error thought) says why.
        if event.task_id or not event.ok:
            return []
        how = "automatically " if event.automatic else ""
        focus = f" (focus: {event.focus})" if event.focus else ""
        text = (
            f"Conversation {how}compacted: {event.replaced} older message(s) summarised"
            f"{focus}.\nSummary: {event.summary}\n"
        )
        meta = {"automatic": event.automatic, "replaced": event.replaced,
                "tokensBefore": event.tokens_before, "tokensAfter": event.tokens_after}
        return [
            s.AgentThoughtChunk(
                session_update="agent_thought_chunk",
                content=text_block(text),
                field_meta={"pygent": {"compaction": meta}},
            )
        ]

    def _on_task_status(self, event: ev.TaskStatus) -> list[Update]:
        if not event.task_id:
            return []
        self._tasks[event.task_id] = (
            event.prompt or self._tasks.get(event.task_id, ("", "", ""))[0],
            event.status,
            event.detail,
        )
        return [self.plan()]

    def plan(self) -> s.AgentPlanUpdate:
        """Every delegated task of the session as a plan entry, with its live status."""
        entries = [
            s.PlanEntry(
                content=(prompt or task_id)[:200],
                priority="medium",
                status=PLAN_STATUS.get(status, "pending"),
                field_meta={"pygent": {"taskId": task_id, "state": status, "detail": detail}},
            )
            for task_id, (prompt, status, detail) in self._tasks.items()
        ]
        return s.AgentPlanUpdate(session_update="plan", entries=entries)

    def _on_changes(self, event: ev.Changes) -> list[Update]:
        if event.task_id or not event.count:
            return []
        shown = ", ".join(event.paths[:10]) + (" ..." if event.count > 10 else "")
        return [
            s.AgentThoughtChunk(
                session_update="agent_thought_chunk",
                content=text_block(
                    f"{event.count} file(s) changed in the sandbox, not yet in your "
                    f"folder: {shown} (review with _pygent/changes, then "
                    "_pygent/apply or _pygent/discard)\n"
                ),
                field_meta={"pygent": {"changes": {"count": event.count, "paths": event.paths}}},
            )
        ]


def notification(session_id: str, update: Update) -> dict[str, Any]:
    """The params of a ``session/update`` notification, as the SDK writes them.

    A plain reply chunk (most of a turn's updates) is written directly: the SDK's
    model dump cost as much as the rest of a token's way through ``pygent acp``
    (bench/bench_acp.py); tests/acp/test_notification.py checks both give the same.
    """
    if (
        type(update) is s.AgentMessageChunk
        and type(update.content) is s.TextContentBlock
        and update.model_fields_set == {"session_update", "content"}
        and update.content.model_fields_set == {"type", "text"}
    ):
        return {
            "sessionId": session_id,
            "update": {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": update.content.text},
            },
        }
    return s.SessionNotification(session_id=session_id, update=update).model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude_unset=True
    )


def dump(update: Update) -> dict[str, Any]:
    """An update as its JSON object (the SDK's own serialisation)."""
    return update.model_dump(mode="json", by_alias=True, exclude_none=True)
