"""A saved conversation as ACP updates, for ``session/load``.

ACP's ``session/load`` streams the whole conversation back before it answers: user
messages as ``user_message_chunk``, replies as ``agent_message_chunk``, each tool call
as a ``tool_call`` followed by a ``tool_call_update`` with its result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from acp import schema as s

from pygent import events as ev
from pygent.acp.updates import (
    CALL_STATUS,
    SessionUpdates,
    Update,
    call_title,
    prompt_updates,
    text_block,
)
from pygent.compaction import ReplayMarker, replay_markers

#: A replayed tool result is cut to its tail, as a live one is.
RESULT_TAIL_CHARS = 4000


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _images(content: Any) -> list[str]:
    """The ``data:`` URLs of a message's image parts."""
    if not isinstance(content, list):
        return []
    urls = [(p.get("image_url") or {}).get("url") if isinstance(p, dict) else None for p in content]
    return [u for u in urls if isinstance(u, str)]


def _compaction(marker: ReplayMarker) -> ev.Compaction:
    """A recorded compaction as the event a live one sends."""
    return ev.Compaction(
        automatic=marker.automatic, summary=marker.summary, replaced=marker.replaced,
        tokens_before=marker.tokens_before, tokens_after=marker.tokens_after, focus=marker.focus,
    )


def history_updates(
    history: list[dict[str, Any]], updates: SessionUpdates, compactions: Sequence[Any] = ()
) -> Iterator[Update]:
    """The updates that show ``history`` (without its system message) to a client, with
    the history file's ``compactions`` (its markers) where they were made, shown as a
    live compaction is."""
    markers = replay_markers(compactions, history)
    for index, message in enumerate(history):
        while markers and markers[0].position <= index:
            yield from updates.updates(_compaction(markers.pop(0)))
        role = message.get("role")
        if role == "user":
            content = message.get("content")
            yield from prompt_updates(_text(content), _images(content))
        elif role == "assistant":
            text = _text(message.get("content"))
            if text:
                yield s.AgentMessageChunk(
                    session_update="agent_message_chunk", content=text_block(text)
                )
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                name = str(function.get("name") or "tool")
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                if not isinstance(arguments, dict):
                    arguments = {}
                call_id = str(call.get("id") or "")
                described = updates.describe_call(call_id, name, arguments)
                yield s.ToolCallStart(
                    session_update="tool_call",
                    tool_call_id=call_id,
                    title=call_title(name, arguments),
                    kind=described.kind,
                    status="pending",
                    content=updates.call_content(described) or None,
                    locations=described.locations or None,
                    raw_input=arguments,
                )
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            output = _text(message.get("content"))[-RESULT_TAIL_CHARS:]
            failed = output.startswith(("error:", "denied:"))
            status = CALL_STATUS["failed" if failed else "completed"]
            yield s.ToolCallProgress(
                session_update="tool_call_update",
                tool_call_id=call_id,
                status=status,
                content=[s.ContentToolCallContent(type="content", content=text_block(output))]
                if output
                else None,
            )
    for marker in markers:  # a compaction after the last message (/compact at the end)
        yield from updates.updates(_compaction(marker))
