"""The ``bash`` tool: run a command in the sandbox's persistent shell."""

from __future__ import annotations

from pygent.tools.registry import ToolContext, ToolResult

BASH_SCHEMA = {
    "type": "object",
    "properties": {
        "cmd": {"type": "string", "description": "The shell command to run."},
        "timeout": {
            "type": "integer",
            "description": "Seconds before the command (and its children) is killed.",
        },
    },
    "required": ["cmd"],
}


async def bash(ctx: ToolContext, cmd: str, timeout: int | None = None) -> ToolResult:
    """Run ``cmd`` in the workspace; ``cd``/``export`` persist between calls."""
    limit = ctx.runtime.settings.command_timeout
    seconds = min(float(timeout), limit) if timeout and timeout > 0 else limit
    result = await ctx.runtime.arun(cmd, timeout=seconds, on_output=ctx.on_output)
    return ToolResult(
        ok=result.ok,
        content=result.format(),
        data={"exit_code": result.exit_code, "timed_out": result.timed_out,
              "truncated": result.truncated},
    )
