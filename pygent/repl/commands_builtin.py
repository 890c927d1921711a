"""The built-in slash commands: /help /cmd /cp /new /save /tools /banned /confirm-bash /usage /exit."""

from __future__ import annotations

import asyncio
import shlex
import time
import uuid
from pathlib import Path

from rich.table import Table
from rich.text import Text

from pygent import events as ev
from pygent.repl import snapshot
from pygent.repl.slash import ReplContext, SlashCommand, SlashCommands


async def cmd_help(ctx: ReplContext, arg: str) -> None:
    COMMANDS.help(ctx, arg)


async def cmd_cmd(ctx: ReplContext, arg: str) -> None:
    if not arg:
        ctx.renderer.error("usage: /cmd COMMAND")
        return
    renderer, runtime = ctx.renderer, ctx.agent.runtime
    call_id = f"cmd-{uuid.uuid4().hex[:8]}"
    # Shown like a tool call of the agent, so output streams and folds the same way.
    renderer.handle(
        ev.ToolCallProposed(call_id=call_id, tool="bash", arguments={"cmd": arg}, preview=arg)
    )
    renderer.handle(ev.ToolCallStarted(call_id=call_id, tool="bash"))

    def on_output(stream: str, text: str) -> None:
        renderer.on_event(ev.ToolOutput(call_id=call_id, text=text, stream=stream))

    timeout = ctx.agent.settings.command_timeout
    try:
        result = await ctx.cancellable(runtime.arun(arg, timeout=timeout, on_output=on_output))
    except asyncio.CancelledError:
        renderer.handle(
            ev.ToolCallFinished(
                call_id=call_id, tool="bash", ok=False, output="[cancelled]", status="cancelled"
            )
        )
        renderer.close()
        return
    await asyncio.sleep(0)  # let output chunks queued from the runtime thread land first
    status = "completed" if result.ok else "failed"
    renderer.handle(
        ev.ToolCallFinished(
            call_id=call_id, tool="bash", ok=result.ok, output=result.format(), status=status
        )
    )
    renderer.close()


async def cmd_cp(ctx: ReplContext, arg: str) -> None:
    try:
        parts = shlex.split(arg)
    except ValueError as exc:
        ctx.renderer.error(f"/cp: {exc}")
        return
    if not 1 <= len(parts) <= 2:
        ctx.renderer.error("usage: /cp SRC [DEST]  (quote paths with spaces)")
        return
    src, dest = parts[0], (parts[1] if len(parts) > 1 else None)
    target = await asyncio.to_thread(ctx.agent.runtime.upload_file, src, dest)
    shown = Path(target).relative_to(ctx.agent.runtime.workspace)
    ctx.renderer.info(f"copied {src} to the workspace as {shown}")


async def cmd_new(ctx: ReplContext, arg: str) -> None:
    ctx.agent.reset()
    ctx.transcript.add("new", "a new conversation started")
    ctx.renderer.info("new conversation (same sandbox and workspace)")


async def cmd_save(ctx: ReplContext, arg: str) -> None:
    if not arg:
        ctx.renderer.error("usage: /save DIR")
        return
    dest = Path(arg).expanduser()
    start = time.monotonic()
    saved = await asyncio.to_thread(
        snapshot.save, dest, ctx.agent, transcript=ctx.transcript, log_file=ctx.log_file
    )
    ctx.renderer.info(
        f"saved the session to {saved} in {time.monotonic() - start:.1f}s; "
        f"resume it with: pygent --load {shlex.quote(str(saved))}"
    )


async def cmd_tools(ctx: ReplContext, arg: str) -> None:
    agent = ctx.agent
    action, _, name = arg.partition(" ")
    name = name.strip()
    if action in ("", "list"):
        table = Table(show_header=False, box=None, padding=(0, 2))
        for tool in agent.tools.tools():
            off = tool.name in agent.disabled_tools
            table.add_row(
                Text(tool.name, style="dim" if off else "bold"),
                Text("disabled" if off else "enabled", style="red" if off else "green"),
                Text(tool.description.split(". ")[0], style="dim"),
            )
        ctx.renderer.console.print(table)
        return
    if action not in ("enable", "disable") or not name:
        ctx.renderer.error("usage: /tools [list|enable NAME|disable NAME]")
        return
    if agent.tools.get(name) is None:
        known = ", ".join(agent.tools.names())
        ctx.renderer.error(f"no tool named {name!r}; tools: {known}")
        return
    if action == "enable":
        agent.disabled_tools.discard(name)
    else:
        agent.disabled_tools.add(name)
    agent.settings.disabled_tools = sorted(agent.disabled_tools)
    agent.refresh_system_message()
    ctx.renderer.info(f"{name} {action}d")


async def cmd_banned(ctx: ReplContext, arg: str) -> None:
    policy = ctx.agent.policy
    action, _, command = arg.partition(" ")
    command = command.strip()
    if action in ("", "list"):
        banned = policy.banned_commands()
        ctx.renderer.info("banned: " + (", ".join(banned) if banned else "(none)"))
        return
    if action not in ("add", "remove") or not command:
        ctx.renderer.error("usage: /banned [list|add CMD|remove CMD]")
        return
    if action == "add":
        policy.ban(command)
        ctx.renderer.info(f"banned {command}: the agent can no longer run it")
    elif policy.unban(command):
        ctx.renderer.info(f"{command} is no longer banned")
    else:
        ctx.renderer.error(f"{command} was not banned")
        return
    ctx.agent.settings.banned_commands = list(policy.banned_commands())


_MODE_WORDS = {
    "auto": "commands ask only where they run without a sandbox",
    "confirm": "every command asks first",
    "never": "nothing asks (except protected paths)",
    "read-only": "only read-only commands run",
    "api": "nothing asks",
}


async def cmd_confirm_bash(ctx: ReplContext, arg: str) -> None:
    policy = ctx.agent.policy
    choice = arg.strip().lower()
    if choice not in ("", "on", "off"):
        ctx.renderer.error("usage: /confirm-bash [on|off]")
        return
    if choice:
        policy.mode = "confirm" if choice == "on" else "never"
        ctx.agent.settings.confirm_bash = choice == "on"
    state = "on" if policy.mode == "confirm" else "off"
    ctx.renderer.info(
        f"confirm-bash {state}: approval mode {policy.mode} "
        f"({_MODE_WORDS.get(policy.mode, '')}; {ctx.agent.runtime.describe()})"
    )


async def cmd_usage(ctx: ReplContext, arg: str) -> None:
    choice = arg.strip().lower()
    if choice in ("on", "off"):
        ctx.renderer.show_usage = choice == "on"
        ctx.renderer.info(f"token usage after each turn: {choice}")
        return
    if choice:
        ctx.renderer.error("usage: /usage [on|off]")
        return
    ctx.renderer.print_usage()


async def cmd_exit(ctx: ReplContext, arg: str) -> None:
    ctx.request_exit()


BUILTINS = [
    SlashCommand("/help", "/help [CMD]", "List the commands, or explain one.", cmd_help),
    SlashCommand(
        "/cmd",
        "/cmd COMMAND",
        "Run a shell command in the sandbox yourself.",
        cmd_cmd,
        "The output streams as it comes; Ctrl-C stops the command. The model does "
        "not see it. It runs in the agent's shell, so `cd` and `export` carry over.",
    ),
    SlashCommand(
        "/cp",
        "/cp SRC [DEST]",
        "Copy a file or folder from this machine into the workspace.",
        cmd_cp,
        "DEST is a path inside the workspace (default: the "
        "name of SRC). Quote paths that contain spaces.",
    ),
    SlashCommand(
        "/new",
        "/new",
        "Start a new conversation in the same sandbox.",
        cmd_new,
        "The workspace, the sandbox and its shell state stay as they are.",
    ),
    SlashCommand(
        "/save",
        "/save DIR",
        "Save the session (workspace, history, settings, log) to DIR.",
        cmd_save,
        "Resume it later with `pygent --load DIR` (or "
        "PYGENT_SNAPSHOT=DIR). Secrets (API keys, -e values) are not saved.",
    ),
    SlashCommand(
        "/tools",
        "/tools [list|enable NAME|disable NAME]",
        "List the tools, or switch one on or off.",
        cmd_tools,
    ),
    SlashCommand(
        "/banned",
        "/banned [list|add CMD|remove CMD]",
        "List, add or remove commands the agent may never run.",
        cmd_banned,
        "A banned command is "
        "refused wherever it appears in a command line (`a && CMD`, `sh -c CMD`).",
    ),
    SlashCommand(
        "/confirm-bash",
        "/confirm-bash [on|off]",
        "Ask before every command (on), or never ask (off).",
        cmd_confirm_bash,
        "Without an argument: show the current approval mode.",
    ),
    SlashCommand(
        "/usage", "/usage [on|off]", "Show token usage; on/off: after every turn.", cmd_usage
    ),
    SlashCommand("/exit", "/exit", "Leave Pygent (the sandbox is removed).", cmd_exit),
]

COMMANDS = SlashCommands(BUILTINS)
