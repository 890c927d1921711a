"""Tool-call integrity: every assistant tool call gets a result, so a history a crash cut short is still a valid request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pygent.history.disk import INTERRUPTED_RESULT

# --- tool-call integrity -------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def repair_tool_calls(
    messages: Iterable[dict[str, Any]], *, note: str = INTERRUPTED_RESULT
) -> list[dict[str, Any]]:
    """``messages`` with a synthetic tool result for every tool call that has none.

    The chat API rejects a request in which an assistant's ``tool_calls`` are not each
    answered by a ``tool`` message right after it; a crash or a cancel between running
    a tool and recording its result leaves exactly that. Each missing result is added
    after the tool results the assistant message does have, with ``note`` as its content
    (the agent passes its own note after a cancel).
    The input is not modified.
    """
    source = list(messages)
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(source):
        message = source[i]
        out.append(message)
        i += 1
        calls = _get(message, "tool_calls") if _get(message, "role") == "assistant" else None
        if not calls:
            continue
        answered: set[Any] = set()
        while i < len(source) and _get(source[i], "role") == "tool":
            answered.add(_get(source[i], "tool_call_id"))
            out.append(source[i])
            i += 1
        for call in calls:
            call_id = _get(call, "id")
            if call_id and call_id not in answered:
                out.append({"role": "tool", "tool_call_id": call_id, "content": note})
                answered.add(call_id)
    return out
