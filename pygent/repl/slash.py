"""Slash commands: recognising them, dispatching to built-in or custom handlers, help and hints.

Built-in commands live in :mod:`pygent.repl.commands_builtin`; custom ones are
registered with :func:`pygent.commands.register_command` (``handler(agent, arg)``,
which may return a new Agent). A line counts as a command when its first word is
``/name`` with no other slash (so ``/usr/bin/env is broken`` is a prompt); ``//text``
sends ``/text`` to the model.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rich.table import Table
from rich.text import Text

from pygent import commands as custom
from pygent.errors import PygentError
from pygent.repl.render import Renderer
from pygent.repl.transcript import Transcript

log = logging.getLogger(__name__)
T = TypeVar("T")


class ReplContext(Protocol):
    """What a slash command may use of the running REPL."""

    agent: Any
    renderer: Renderer
    transcript: Transcript
    log_file: Path | None

    def request_exit(self) -> None:
        """Leave the REPL after this command."""

    def replace_agent(self, agent: Any) -> None:
        """Make ``agent`` the session's agent (a custom command returned it)."""

    async def cancellable(self, coro: Coroutine[Any, Any, T], *, quiet: bool = True) -> T:
        """Run ``coro`` so that Ctrl-C cancels it (raises CancelledError then).

        ``quiet`` stops the terminal echoing keys meanwhile; a command that may read
        the terminal itself (a custom one calling ``input()``) passes False.
        """


Handler = Callable[[ReplContext, str], Awaitable[None]]


@dataclass(frozen=True)
class SlashCommand:
    name: str
    usage: str
    summary: str
    handler: Handler
    details: str = ""


def parse(text: str) -> tuple[str, str] | None:
    """``("/name", "arg text")`` when ``text`` is a command line, else None."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    word, _, arg = stripped.partition(" ")
    if len(word) < 2 or "/" in word[1:] or "\n" in word:
        return None
    return word.lower(), arg.strip()


def unescape(text: str) -> str:
    """A prompt starting with ``//`` is sent with one slash."""
    stripped = text.lstrip()
    return stripped[1:] if stripped.startswith("//") else text


class SlashCommands:
    """The command table: built-ins first, then the custom registry (read live)."""

    def __init__(self, builtins: list[SlashCommand]) -> None:
        self._builtins = {c.name: c for c in builtins}

    def names(self) -> list[str]:
        return sorted({*self._builtins, *custom.COMMANDS})

    def suggest(self, name: str) -> str | None:
        """The closest known command name, for "did you mean ...?"."""
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        if close:
            return close[0]
        prefixed = [n for n in names if n.startswith(name) or name.startswith(n)]
        return prefixed[0] if prefixed else None

    async def dispatch(self, ctx: ReplContext, name: str, arg: str) -> None:
        """Run one command; errors are printed, never raised (except cancellation)."""
        command = self._builtins.get(name)
        try:
            if command is not None:
                await command.handler(ctx, arg)
            elif name in custom.COMMANDS:
                await self._run_custom(ctx, custom.COMMANDS[name], arg)
            else:
                hint = self.suggest(name)
                extra = f" did you mean {hint}?" if hint else ""
                ctx.renderer.error(f"unknown command {name}.{extra} (/help lists the commands)")
        except PygentError as exc:
            ctx.renderer.error(f"{name}: {exc.user_message()}")
        except OSError as exc:
            ctx.renderer.error(
                f"{name}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            )

    async def _run_custom(self, ctx: ReplContext, command: custom.Command, arg: str) -> None:
        # A custom handler is synchronous upstream code (it may call agent.step()):
        # it runs in a worker thread so the loop keeps rendering events and approvals.
        try:
            if inspect.iscoroutinefunction(command.handler):
                call = command.handler(ctx.agent, arg)
            else:
                call = asyncio.to_thread(command.handler, ctx.agent, arg)
            result = await ctx.cancellable(call, quiet=False)
        except asyncio.CancelledError:
            raise
        except PygentError:
            raise
        except Exception as exc:  # a user's command must not end the session
            log.exception("custom command %s failed", command.name)
            ctx.renderer.error(f"{command.name} failed: {type(exc).__name__}: {exc}")
            return
        if result is not None and hasattr(result, "arun") and result is not ctx.agent:
            ctx.replace_agent(result)

    def help(self, ctx: ReplContext, topic: str = "") -> None:
        """Print the command list, or the details of one command."""
        console = ctx.renderer.console
        if topic:
            name = "/" + topic.lstrip("/").lower()
            command = self._builtins.get(name)
            if command is not None:
                console.print(Text(command.usage, style="bold cyan"))
                console.print(Text(command.summary))
                if command.details:
                    console.print(Text(command.details, style="dim"))
                return
            if name in custom.COMMANDS:
                extra = custom.COMMANDS[name]
                console.print(Text(f"{name} ARG", style="bold cyan"))
                console.print(Text(extra.description or "(a custom command)"))
                return
            hint = self.suggest(name)
            ctx.renderer.error(f"no command {name}" + (f"; did you mean {hint}?" if hint else ""))
            return
        table = Table(show_header=False, box=None, padding=(0, 2))
        widest = max(len(c.usage) for c in self._builtins.values())
        table.add_column(style="bold cyan", no_wrap=True, min_width=widest)
        table.add_column()
        # Text cells: "[list|enable NAME]" must not be read as rich markup.
        for command in self._builtins.values():  # in the order they were declared
            table.add_row(Text(command.usage), Text(command.summary))
        for name in sorted(custom.COMMANDS):
            if name not in self._builtins:
                description = custom.COMMANDS[name].description or "(custom)"
                table.add_row(Text(f"{name} ARG"), Text(description))
        console.print(Text("Commands", style="bold"))
        console.print(table)
        console.print(
            Text(
                "Keys: Enter sends · Alt+Enter (or Esc, Enter) or a trailing \\ adds a line · "
                "Ctrl-C stops the running turn · Ctrl-D or /exit quits · //text sends /text",
                style="dim",
            )
        )
