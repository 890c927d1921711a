"""The ``bash`` tool: run a command in the sandbox's persistent shell.

What the model gets back is plain text: terminal escape sequences (colours, cursor
moves, OSC titles and links), bells and other control characters are removed, and a
line redrawn with ``\\r`` (a progress bar, a spinner) shows as a terminal shows it, so a
command cannot fill the context with control codes or hide text from the reader.
"""

from __future__ import annotations

import re

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

# OSC (ESC ] ... BEL or ESC \), DCS/SOS/PM/APC strings, CSI sequences, other ESC pairs,
# and the 8-bit CSI/OSC forms.
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_output(text: str) -> str:
    """``text`` as a terminal would leave it, without escape sequences or control codes."""
    if "\x1b" in text or "\x9b" in text:
        text = _ESCAPES.sub("", text)
    if "\r" in text:
        text = "\n".join(_overwrite(line) if "\r" in line else line
                         for line in text.replace("\r\n", "\n").split("\n"))
    return _CONTROLS.sub("", text)


def _overwrite(line: str) -> str:
    """What a terminal shows for a line redrawn with ``\r``: each part overwrites the start."""
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part):]
    return shown


async def bash(ctx: ToolContext, cmd: str, timeout: int | None = None) -> ToolResult:
    """Run ``cmd`` in the workspace; ``cd``/``export`` persist between calls."""
    limit = ctx.runtime.settings.command_timeout
    seconds = min(float(timeout), limit) if timeout and timeout > 0 else limit
    result = await ctx.runtime.arun(cmd, timeout=seconds, on_output=ctx.on_output)
    return ToolResult(
        ok=result.ok,
        content=clean_output(result.format()),
        data={"exit_code": result.exit_code, "timed_out": result.timed_out,
              "truncated": result.truncated},
    )
