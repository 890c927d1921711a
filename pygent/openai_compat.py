"""Plain message and tool-call types that custom models may return.

A custom model's ``chat(messages, model, tools)`` can return these objects, a dict
in the chat-completions shape, or an ``openai`` SDK message; :func:`normalize_message`
turns any of them into a :class:`Message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCallFunction:
    name: str
    arguments: str = "{}"


@dataclass
class ToolCall:
    id: str
    type: str = "function"
    function: ToolCallFunction = field(default_factory=lambda: ToolCallFunction(name=""))


@dataclass
class Message:
    role: str
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The chat-completions dict for this message."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": c.type,
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in self.tool_calls
            ]
        return out


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def normalize_message(raw: Any) -> Message:
    """Turn a dict, an SDK object or a :class:`Message` into a :class:`Message`."""
    if isinstance(raw, Message):
        return raw
    if isinstance(raw, str):
        return Message(role="assistant", content=raw)
    calls = []
    for i, c in enumerate(_get(raw, "tool_calls") or []):
        fn = _get(c, "function") or {}
        args = _get(fn, "arguments", "{}")
        if not isinstance(args, str):
            import json

            args = json.dumps(args)
        calls.append(
            ToolCall(
                id=str(_get(c, "id") or f"call_{i}"),
                type=str(_get(c, "type") or "function"),
                function=ToolCallFunction(name=str(_get(fn, "name") or ""), arguments=args),
            )
        )
    return Message(
        role=str(_get(raw, "role") or "assistant"),
        content=_get(raw, "content"),
        tool_calls=calls or None,
    )


__all__ = ["Message", "ToolCall", "ToolCallFunction", "normalize_message"]
