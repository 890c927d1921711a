"""Control tools: ``stop`` ends the task, ``ask_user`` hands the turn back with a question."""

from __future__ import annotations

from pygent.tools.registry import ToolContext, ToolResult

STOP_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "description": "Why the work is finished."}},
}
ASK_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "The question for the user."},
        "options": {"type": "array", "items": {"type": "string"}, "description": "Choices to offer, if any."},
    },
    "required": ["prompt"],
}


async def stop(ctx: ToolContext, reason: str = "") -> ToolResult:
    """Tell the agent loop the task is complete."""
    return ToolResult(True, "Stopping." + (f" {reason}" if reason else ""), control="stop",
                      data={"reason": reason})


async def ask_user(ctx: ToolContext, prompt: str, options: list[str] | None = None) -> ToolResult:
    """End the turn with a question; the user's next message is the answer."""
    return ToolResult(True, "Question sent to the user; their answer will be the next message.",
                      control="ask_user", data={"prompt": prompt, "options": list(options or [])})
