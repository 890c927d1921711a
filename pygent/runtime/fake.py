"""A scriptable fake backend: commands answer from a script, files are real.

For users testing their own tools and models without a shell or a container:

    rt = Runtime(backend=FakeBackend(workspace, {"pytest -q": "3 passed"}))

Unscripted commands answer with exit code 127 and say so, so a test sees what the
agent tried to run (``backend.commands`` records every command in order).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from pygent.runtime.base import CommandResult, OutputCallback

Answer = str | CommandResult | Callable[[str], "str | CommandResult"]


class FakeBackend:
    kind = "fake"

    def __init__(self, workspace: Path, script: dict[str, Answer] | None = None, *,
                 delay: float = 0.0) -> None:
        """
        Args:
            workspace: the (real) workspace folder file tools use.
            script: command -> answer; a key starting with ``re:`` is a regular expression.
            delay: seconds each command "runs" (to test cancellation and timeouts).
        """
        self.workspace = workspace
        self.script = dict(script or {})
        self.delay = delay
        self.commands: list[str] = []
        self.closed = False

    def describe(self) -> str:
        return "fake"

    async def start(self) -> None:
        return None

    def _answer(self, cmd: str) -> Answer | None:
        if cmd in self.script:
            return self.script[cmd]
        for key, answer in self.script.items():
            if key.startswith("re:") and re.fullmatch(key[3:], cmd):
                return answer
        return None

    async def run(self, cmd: str, *, timeout: float | None,
                  on_output: OutputCallback | None = None) -> CommandResult:
        self.commands.append(cmd)
        if self.delay:
            try:
                await asyncio.wait_for(asyncio.sleep(self.delay), timeout)
            except asyncio.TimeoutError:
                return CommandResult(cmd, None, timed_out=True, duration=timeout or 0.0)
        answer = self._answer(cmd)
        if callable(answer):
            answer = answer(cmd)
        if answer is None:
            result = CommandResult(cmd, 127, stderr=f"fake runtime: no scripted answer for {cmd!r}\n")
        elif isinstance(answer, CommandResult):
            result = answer
        else:
            result = CommandResult(cmd, 0, stdout=answer)
        if on_output is not None and result.stdout:
            on_output("stdout", result.stdout)
        return result

    async def close(self) -> None:
        self.closed = True
