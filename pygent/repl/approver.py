"""The terminal's answer to approval requests: show the command or diff, ask y/n/a/d/m.

Implements :class:`pygent.approval.Approver`. Requests may come from the REPL's own
loop (the agent's turn) or from another thread (a custom command driving the agent
synchronously): they are always asked on the REPL's loop, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rich.panel import Panel
from rich.text import Text

from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.policy import command_patterns
from pygent.repl.lines import LineReader
from pygent.repl.render import Renderer, diff_text
from pygent.repl.sanitize import make_visible

_ANSWERS = {
    "y": ApprovalOption.ALLOW_ONCE,
    "yes": ApprovalOption.ALLOW_ONCE,
    "n": ApprovalOption.REJECT_ONCE,
    "no": ApprovalOption.REJECT_ONCE,
    "a": ApprovalOption.ALLOW_ALWAYS,
    "always": ApprovalOption.ALLOW_ALWAYS,
    "d": ApprovalOption.REJECT_ALWAYS,
    "deny": ApprovalOption.REJECT_ALWAYS,
}


def always_scope(request: ApprovalRequest) -> str:
    """What an "always" answer would cover, in words the user recognises."""
    args = request.arguments
    if request.tool == "bash" and isinstance(args.get("cmd"), str):
        patterns = command_patterns(args["cmd"])
        if any(exact for _, exact in patterns):
            return "exactly this command"
        return "commands starting with " + ", ".join(f"`{p}`" for p, _ in patterns)
    path = args.get("path")
    if isinstance(path, str):
        return f"{request.tool} on {path}"
    return f"every {request.tool} call"


class TerminalApprover:
    """Asks on the terminal. ``on_cancel`` is called when the user presses Ctrl-C."""

    def __init__(
        self,
        reader: LineReader,
        renderer: Renderer,
        loop: asyncio.AbstractEventLoop,
        on_cancel: Callable[[], Any],
    ) -> None:
        self.reader = reader
        self.renderer = renderer
        self.loop = loop
        self.on_cancel = on_cancel
        self._lock = asyncio.Lock()

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        if asyncio.get_running_loop() is not self.loop:
            future = asyncio.run_coroutine_threadsafe(self._ask(request), self.loop)
            return await asyncio.wrap_future(future)
        return await self._ask(request)

    async def _ask(self, request: ApprovalRequest) -> ApprovalResponse:
        async with self._lock:
            with self.renderer.paused():
                self._show(request)
                return await self._answer(request)

    def _show(self, request: ApprovalRequest) -> None:
        console = self.renderer.console
        if request.tool == "bash":
            body = Text("$ ", style="bold green") + Text(
                make_visible(request.preview), style="bold"
            )
        elif request.preview.startswith(("---", "@@")) or "\n@@" in request.preview:
            body = diff_text(request.preview, max_lines=200)
        else:
            body = Text(make_visible(request.preview))
        who = f" (task {request.task_id})" if request.task_id else ""
        console.print(
            Panel(
                body,
                title=Text(f"approve {request.tool}{who}?", style="bold yellow"),
                title_align="left",
                subtitle=Text(make_visible(request.reason), style="dim"),
                subtitle_align="left",
                border_style="yellow",
            )
        )
        choices = [("y", "yes"), ("n", "no")]
        if ApprovalOption.ALLOW_ALWAYS in request.options:
            choices.append(("a", f"always allow {always_scope(request)}"))
        if ApprovalOption.REJECT_ALWAYS in request.options:
            choices.append(("d", "always deny"))
        choices.append(("m", "no, and tell the model why"))
        line = Text("  ")
        for i, (key, label) in enumerate(choices):
            if i:
                line.append(" · ", style="dim")
            line.append(key, style="bold cyan")
            line.append(f" {label}")
        console.print(line)

    async def _answer(self, request: ApprovalRequest) -> ApprovalResponse:
        while True:
            try:
                raw = await self.reader.ask("allow? [y/n/a/d/m] ")
            except KeyboardInterrupt:
                self.on_cancel()
                return ApprovalResponse(ApprovalOption.CANCELLED)
            except EOFError:
                return ApprovalResponse(ApprovalOption.REJECT_ONCE, "no answer (end of input)")
            text = raw.strip()
            word, _, rest = text.partition(" ")
            key = word.lower().rstrip(",:")
            if key in ("m", "message") or (key in ("n", "no") and rest.strip()):
                message = rest.strip() or await self._message()
                if message is None:
                    continue
                return ApprovalResponse(ApprovalOption.REJECT_ONCE, message)
            option = _ANSWERS.get(key)
            if option is None:
                self.renderer.info(
                    "answer y (yes), n (no), a (always), d (always deny) or m (no, with a message)",
                    style="yellow",
                )
                continue
            if option not in request.options:
                self.renderer.info(
                    '"always" is not offered for this call: answer y or n', style="yellow"
                )
                continue
            return ApprovalResponse(option)

    async def _message(self) -> str | None:
        try:
            text = await self.reader.ask("message to the model: ")
        except (KeyboardInterrupt, EOFError):
            return None
        return text.strip() or "no reason given"
