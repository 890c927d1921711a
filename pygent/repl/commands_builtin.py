"""The built-in slash commands: /help /cmd /problems /cp /new /save /tools /mcp /banned
/confirm-bash /usage /compact /undo /rewind /redo /fork /exit."""

from __future__ import annotations

import asyncio
import shlex
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from pygent import events as ev
from pygent.diagnostics.runs import CommandProblems
from pygent.errors import PygentError
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
    # Tests, linters and compilers the user runs are read as in an editor session (#20);
    # with no editor to mark the files, a summary line says what they found.
    problems = _problems(ctx.agent)
    found = await asyncio.to_thread(problems.read, arg, result.output)
    if found is not None:
        hint = " (/problems lists them)" if found.problems else ""
        renderer.info(found.text() + hint, style="yellow" if found.problems else "green")


#: Each session's problems from /cmd, by agent (a fork or a resumed session is a new one).
_PROBLEMS: weakref.WeakKeyDictionary[Any, CommandProblems] = weakref.WeakKeyDictionary()


def _problems(agent: Any) -> CommandProblems:
    found = _PROBLEMS.get(agent)
    if found is None:
        found = _PROBLEMS[agent] = CommandProblems.for_runtime(agent.runtime)
    return found


async def cmd_problems(ctx: ReplContext, arg: str) -> None:
    problems = _PROBLEMS.get(ctx.agent)
    listing = problems.listing() if problems is not None else []
    wanted = arg.strip()
    if wanted:
        listing = [(path, found) for path, found in listing if path == wanted]
    if not listing:
        where = f" in {wanted}" if wanted else ""
        ctx.renderer.info(f"no problems{where} from the commands you ran with /cmd")
        return
    for path, found in listing:
        for p in found:
            where = f"{path}:{p.line}:{p.column}" if p.column else f"{path}:{p.line}"
            code = f" {p.code}" if p.code else ""
            message = p.message.replace("\n", " | ")
            ctx.renderer.info(f"{where}: {p.severity} [{p.tool}{code}] {message}",
                              style="red" if p.severity == "error" else "yellow")


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


async def cmd_mcp(ctx: ReplContext, arg: str) -> None:
    """The session's MCP servers: state, where they run, tools, why one failed."""
    manager = getattr(ctx.agent, "mcp", None)
    if manager is None:
        ctx.renderer.info("no MCP servers: add [mcp.servers.NAME] to pygent.toml (docs/mcp.md)")
        return
    styles = {"ready": "green", "failed": "red", "restarting": "yellow", "starting": "yellow"}
    table = Table(show_header=False, box=None, padding=(0, 2))
    for st in manager.status():
        where = Text(st.where, style="bold red" if st.where == "host" else "dim")
        count = f"{len(st.tools)} tools" if st.state == "ready" else ""
        table.add_row(Text(st.name, style="bold"), Text(st.state, style=styles.get(st.state, "dim")),
                      where, Text(count), Text(st.description, style="dim"))
        if st.reason:
            table.add_row("", Text(st.reason.splitlines()[0], style="red"), "", "", "")
        for note in st.disabled_tools:
            table.add_row("", Text("left out", style="yellow"), "", "", Text(note, style="dim"))
    ctx.renderer.console.print(table)


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
        from pygent.service import save_approval_mode

        policy.mode = "confirm" if choice == "on" else "never"
        ctx.agent.settings.confirm_bash = choice == "on"
        save_approval_mode(ctx.agent)
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


async def cmd_compact(ctx: ReplContext, arg: str) -> None:
    # The compaction event draws the marker with the summary; a failure is a notice.
    try:
        await ctx.cancellable(ctx.agent.acompact(arg.strip()))
    except PygentError as exc:
        ctx.renderer.error(exc.user_message())


# --- the timeline: /undo /rewind /redo /fork (pygent/timeline.py) -------------------------

_WHAT = {"files": (True, False), "conversation": (False, True), "both": (True, True)}


def _changed(files: tuple, limit: int = 6) -> str:
    shown = ", ".join(f"{'+' if f.kind == 'added' else '-' if f.kind == 'deleted' else '~'}{f.path}"
                      for f in files[:limit])
    more = f" (+{len(files) - limit} more)" if len(files) > limit else ""
    return (shown + more) if files else "no file changes"


async def _rewind(ctx: ReplContext, turn: int | str, what: str, confirmed: bool, again: str) -> None:
    files, conversation = _WHAT[what]
    agent = ctx.agent
    if files:
        try:
            changes, kept = await asyncio.to_thread(agent.turn_log.preview, turn)
        except PygentError as exc:
            if conversation:  # no checkpoint: the conversation alone can still go back
                ctx.renderer.info(f"{exc}; rewinding the conversation only", "yellow")
                files = False
            else:
                ctx.renderer.error(exc.user_message())
                return
        else:
            if changes and agent.turn_log.guard_user_edits and not confirmed:
                # Your real folder (-w): say what will be written before writing it.
                ctx.renderer.info(f"this rewinds files in {agent.runtime.workspace}: "
                                  + _changed(tuple(changes), limit=12))
                if kept:
                    ctx.renderer.info("kept as you edited them since: " + ", ".join(kept), "yellow")
                ctx.renderer.info(f"type `{again} yes` to go ahead")
                return
    try:
        result = await asyncio.to_thread(agent.rewind, turn, files, conversation)
    except PygentError as exc:
        ctx.renderer.error(exc.user_message())
        return
    done = []
    if result.files:
        done.append(f"{len(result.restored)} file(s) restored, {len(result.removed)} removed")
    if result.conversation:
        done.append(f"{result.messages_removed} message(s) taken off the conversation")
        ctx.transcript.add("rewind", f"rewound to before turn {result.turn}")
    ctx.renderer.info(f"rewound to before turn {result.turn}: " + "; ".join(done)
                      + " (/redo undoes it)")
    if result.kept:
        ctx.renderer.info("kept as you edited them since: " + ", ".join(result.kept), "yellow")
    if result.failed:
        ctx.renderer.error("could not restore: " + ", ".join(result.failed))


async def cmd_undo(ctx: ReplContext, arg: str) -> None:
    turns = ctx.agent.timeline()
    if not turns:
        ctx.renderer.error("nothing to undo: no turn yet")
        return
    parts = arg.split()
    confirmed = "yes" in parts
    what = ([p for p in parts if p != "yes"] or ["both"])[0]
    if what not in _WHAT:
        ctx.renderer.error("usage: /undo [files|conversation|both] [yes]")
        return
    await _rewind(ctx, turns[-1].turn, what, confirmed, f"/undo {what}")


async def cmd_rewind(ctx: ReplContext, arg: str) -> None:
    parts = arg.split()
    if not parts:
        turns = await asyncio.to_thread(ctx.agent.timeline)
        if not turns:
            ctx.renderer.info("no turns yet")
            return
        table = Table(box=None, show_header=True, pad_edge=False)
        table.add_column("turn", justify="right")
        table.add_column("prompt")
        table.add_column("changed")
        for t in turns:
            changed = _changed(t.files) if t.can_restore_files else f"(files: {t.note})"
            table.add_row(str(t.turn), Text(t.prompt.splitlines()[0][:50] if t.prompt else ""),
                          Text(changed))
        ctx.renderer.group(table, Text("/rewind N [files|conversation|both] goes back to "
                                       "before turn N (default both)", style="dim"))
        return
    confirmed = parts[-1] == "yes" and len(parts) > 1
    if confirmed:
        parts = parts[:-1]
    what = parts[1] if len(parts) > 1 else "both"
    if what not in _WHAT or len(parts) > 2:
        ctx.renderer.error("usage: /rewind [N [files|conversation|both] [yes]]")
        return
    turn: int | str = int(parts[0]) if parts[0].isdigit() else parts[0]
    await _rewind(ctx, turn, what, confirmed, f"/rewind {parts[0]} {what}")


async def cmd_redo(ctx: ReplContext, arg: str) -> None:
    try:
        result = await asyncio.to_thread(ctx.agent.redo)
    except PygentError as exc:
        ctx.renderer.error(exc.user_message())
        return
    ctx.renderer.info(f"redone: back to where you were before rewinding to turn {result.turn}")


async def cmd_fork(ctx: ReplContext, arg: str) -> None:
    turns = ctx.agent.timeline()
    text = arg.strip()
    if not turns:
        ctx.renderer.error("nothing to fork: no turn yet")
        return
    turn: int | str = int(text) if text.isdigit() else (text or turns[-1].turn)
    from pygent.store import SessionStore

    store = SessionStore(ctx.agent.settings.sessions_dir)
    history = store.path(store.new_id())
    history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        agent = await ctx.cancellable(asyncio.to_thread(ctx.agent.fork, turn,
                                                        history_file=history))
    except PygentError as exc:
        ctx.renderer.error(exc.user_message())
        return
    ctx.replace_agent(agent)
    ctx.renderer.info(f"forked before turn {turn} into a new session with its own sandbox "
                      f"({agent.runtime.workspace}); the old one is kept as it was")


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
        "not see it. It runs in the agent's shell, so `cd` and `export` carry over. "
        "Output of tests, linters and compilers (pytest, ruff, mypy, gcc...) is read "
        "for problems: a line says how many, `/problems` lists them.",
    ),
    SlashCommand(
        "/problems",
        "/problems [FILE]",
        "List the problems the tests and linters you ran with /cmd reported.",
        cmd_problems,
        "A tool's next run replaces its problems (a clean run clears them). FILE is "
        "workspace-relative.",
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
        "/mcp",
        "/mcp",
        "Show the MCP servers: state, where they run, their tools.",
        cmd_mcp,
        "Their tools are named mcp__SERVER__TOOL in /tools. Servers run in the sandbox "
        "unless configured with where = \"host\" (see docs/mcp.md).",
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
    SlashCommand(
        "/compact",
        "/compact [FOCUS]",
        "Summarise the older conversation to free context; FOCUS: what to keep.",
        cmd_compact,
        "The model writes the summary; recent turns stay verbatim and the history file "
        "keeps everything. Sessions also compact on their own near the context limit.",
    ),
    SlashCommand(
        "/undo",
        "/undo [files|conversation|both] [yes]",
        "Undo the last turn: its file changes and its messages.",
        cmd_undo,
        "The same as /rewind N for the last turn. /redo puts it back.",
    ),
    SlashCommand(
        "/rewind",
        "/rewind [N [files|conversation|both] [yes]]",
        "List the turns with what each changed, or go back to before turn N.",
        cmd_rewind,
        "Restores the workspace's files, the conversation, or both (default). In your own "
        "folder (-w) it first lists the files it would write: add `yes` to go ahead. "
        "Files you edited since the last turn are kept (listed). /redo undoes it.",
    ),
    SlashCommand("/redo", "/redo", "Undo the last /rewind or /undo.", cmd_redo),
    SlashCommand(
        "/fork",
        "/fork [N]",
        "Continue in a new session as this one was before turn N (default: the last).",
        cmd_fork,
        "The new session has its own sandbox and workspace; this one is kept as it is.",
    ),
    SlashCommand("/exit", "/exit", "Leave Pygent (the sandbox is removed).", cmd_exit),
]

COMMANDS = SlashCommands(BUILTINS)
