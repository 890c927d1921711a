"""Rendering the agent's events in the terminal with rich: replies, tool panels, spinner.

One live region at a time shows what is in progress (the spinner while the model
thinks, the tail of the reply as it streams, a running command with its latest
output); everything finished is printed above it for good. Events may arrive from
the runtime's thread (command output): they are handed to the REPL's loop first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.text import Text

from pygent import events as ev
from pygent.repl.fold import OutputFold
from pygent.repl.mdstream import RENDER_INTERVAL, MarkdownStream
from pygent.repl.sanitize import make_visible, strip_terminal_codes
from pygent.repl.transcript import Transcript

#: Output lines shown live under a running command.
LIVE_OUTPUT_LINES = 10
LEVEL_STYLES = {"info": "cyan", "warning": "yellow", "error": "bold red"}
#: Tools that end the turn: shown by what follows them, not as a panel.
CONTROL_TOOLS = ("ask_user", "stop")


@dataclass
class _Call:
    """A tool call being shown: what it is, and what it has printed so far."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    preview: str
    started: float | None = None
    output: OutputFold = field(default_factory=OutputFold)

    @property
    def title(self) -> str:
        if self.tool == "bash":
            return "bash"
        path = self.arguments.get("path")
        return f"{self.tool} {path}" if isinstance(path, str) else self.tool

    def command_text(self) -> Text:
        """The first lines of the panel: the command, or a short argument summary."""
        if self.tool == "bash":
            cmd = make_visible(str(self.arguments.get("cmd", self.preview)))
            return Text("$ ", style="bold green") + Text(cmd, style="bold")
        if self.tool in ("write_file", "edit_file"):
            return diff_text(self.preview, max_lines=40)
        shown = {k: v for k, v in self.arguments.items() if k != "path"}
        summary = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return Text(make_visible(summary[:300]), style="dim")


def diff_text(diff: str, *, max_lines: int = 60) -> Text:
    """A unified diff coloured line by line (no lexer: cheap and never surprising)."""
    out = Text()
    lines = make_visible(diff).splitlines()
    for line in lines[:max_lines]:
        style = ""
        if line.startswith("+") and not line.startswith("+++"):
            style = "green"
        elif line.startswith("-") and not line.startswith("---"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        out.append(line + "\n", style=style)
    if len(lines) > max_lines:
        out.append(f"… {len(lines) - max_lines} more diff lines\n", style="dim")
    out.rstrip()
    return out


class _Waiting:
    """The spinner line, re-rendered by Live so the elapsed time and countdown tick."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.since = time.monotonic()
        self.retry_at: float | None = None
        self.spinner = Spinner("dots", style="cyan")

    def __rich_console__(self, console: Console, options: Any) -> Any:
        elapsed = time.monotonic() - self.since
        label = self.label
        if self.retry_at is not None:
            left = max(0.0, self.retry_at - time.monotonic())
            label = f"{self.label}: retrying in {left:.0f}s"
        self.spinner.text = Text.assemble(
            (label, "cyan"), (f"  {elapsed:.0f}s · Ctrl-C to cancel", "dim")
        )
        yield self.spinner


class _RunningCall:
    """The live panel of a running command: its last output lines and elapsed time."""

    def __init__(self, call: _Call) -> None:
        self.call = call

    def __rich_console__(self, console: Console, options: Any) -> Any:
        call = self.call
        _, hidden, tail = call.output.lines(tail_only=LIVE_OUTPUT_LINES)
        body = Text()
        body.append_text(call.command_text())
        if hidden:
            body.append(f"\n… {hidden} lines above", style="dim")
        for line in tail:
            body.append("\n" + line)
        # max: an unstarted call's two clock readings would show as "-0s".
        elapsed = max(0.0, time.monotonic() - (call.started or time.monotonic()))
        state = "running" if call.started else "waiting for approval"
        yield Panel(
            body,
            title=Text(call.title, style="bold"),
            title_align="left",
            subtitle=Text(f"{state} {elapsed:.0f}s · Ctrl-C to cancel", style="dim"),
            subtitle_align="right",
            border_style="blue",
        )


class Renderer:
    """Shows events on ``console``; call :meth:`handle` (any thread) for each event."""

    def __init__(
        self, console: Console, transcript: Transcript, *, show_usage: bool = False
    ) -> None:
        self.console = console
        self.transcript = transcript
        self.show_usage = show_usage
        self._live: Live | None = None
        self._live_body: RenderableType | None = None
        self._paused = 0
        self._stream: MarkdownStream | None = None
        #: The streams of the current model call's reply (a notice can split one in two).
        self._reply: list[MarkdownStream] = []
        self._flush_pending = False
        self._calls: dict[str, _Call] = {}
        self._waiting: _Waiting | None = None
        self._turn_usage = [0, 0]
        self._turn_estimated = False
        self._in_turn = False
        self._mcp_ready: set[str] = set()  # MCP servers whose first "ready" was shown
        self.last_turn_usage = (0, 0)
        self.totals = (0, 0)
        self.last_usage: ev.Usage | None = None  # the latest: cached tokens, cost, context fill
        #: Some figure is Pygent's estimate (the server reported no usage): the last
        #: turn's, and the session's (sticky: the totals include the estimate from then on).
        self.last_turn_estimated = False
        self.totals_estimated = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()

    # --- plumbing --------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Events from other threads are handled on ``loop`` (the REPL's)."""
        self._loop = loop
        self._thread = threading.get_ident()

    def on_event(self, event: ev.Event) -> None:
        """The listener given to ``agent.events.subscribe``."""
        if threading.get_ident() == self._thread or self._loop is None:
            self.handle(event)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.handle, event)

    def _set_live(self, body: RenderableType | None) -> None:
        self._live_body = body
        if not self.console.is_terminal or self._paused:
            return
        if body is None:
            if self._live is not None:
                self._live.stop()
                self._live = None
            return
        if self._live is None:
            self._live = Live(
                body,
                console=self.console,
                transient=True,
                refresh_per_second=12,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        else:
            self._live.update(body)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the live region while something else uses the terminal (an approval)."""
        self._finish_text()
        body = self._live_body
        self._set_live(None)
        self._live_body = body
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            # What is in progress NOW comes back, not what was before the pause: events
            # handled meanwhile (another client answered the approval and the call ran
            # to its end) would otherwise bring back a finished call as "running".
            if not self._paused and self._live_body is not None:
                self._set_live(self._live_body)

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Events that already happened (a transcript replayed on attach) are printed as
        they end, with no live region started and stopped for each: hundreds of them
        would each redraw the terminal. Call :meth:`resume_live` after, for what is
        still in progress."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def resume_live(self) -> None:
        """Show the live region of what is in progress (after :meth:`replaying`)."""
        if not self._paused:
            self._set_live(self._live_body)

    def close(self) -> None:
        """Stop the live region (at the end of a turn or on exit)."""
        self._finish_text()
        self._waiting = None
        self._set_live(None)

    # --- the turn ----------------------------------------------------------------------------

    def wait(self, label: str = "thinking") -> None:
        """Show the spinner (waiting for the model)."""
        self._waiting = _Waiting(label)
        self._set_live(self._waiting)

    def on_retry(self, attempt: int, delay: float, reason: str) -> None:
        """The model layer's retry callback (any thread): a countdown in the spinner."""
        if threading.get_ident() != self._thread and self._loop is not None:
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.on_retry, attempt, delay, reason)
            return
        self.console.print(
            Text(
                f"model request failed ({reason}); attempt {attempt + 1} in {delay:.0f}s",
                style="yellow",
            )
        )
        self._waiting = _Waiting("waiting for the model")
        self._waiting.retry_at = time.monotonic() + delay
        self._set_live(self._waiting)

    def handle(self, event: ev.Event) -> None:
        """Render one event (on the REPL's thread)."""
        if event.task_id is not None and not isinstance(event, (ev.TaskStatus, ev.Notice)):
            return  # a delegated task's inner steps: its status lines are enough
        method = getattr(self, f"_on_{event.type}", None)
        if method is not None:
            method(event)

    def _on_turn_started(self, event: ev.TurnStarted) -> None:
        self._turn_usage = [0, 0]
        self._turn_estimated = False
        self._reply = []
        self._in_turn = True
        if event.prompt:
            self.transcript.add("user", event.prompt)
        self.wait()

    def _on_message_delta(self, event: ev.MessageDelta) -> None:
        if self._stream is None or self._stream.finished:
            self._waiting = None
            self._set_live(None)
            self._stream = MarkdownStream(self.console, self._set_live)
            self._reply.append(self._stream)
        if self._stream.add(event.text) and not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_later(RENDER_INTERVAL, self._flush_stream)

    def _flush_stream(self) -> None:
        self._flush_pending = False
        if self._stream is not None:
            self._stream.flush()

    def _on_message_discarded(self, event: ev.MessageDiscarded) -> None:
        """The reply streamed so far is withdrawn: the model call is retried or re-asked."""
        committed = False
        for stream in self._reply:
            committed = stream.discard() or committed
        self._reply = []
        if committed:
            # Lines already scrolled into the terminal cannot be taken back: say they are void.
            why = f": {make_visible(event.reason)}" if event.reason.strip() else ""
            line = f"(reply discarded{why}; the new answer follows)"
            self.console.print(Text(line, style="dim"), soft_wrap=True)
            self.transcript.add("discarded", line)
        if self._in_turn:
            # Keep a retry countdown that replaced the reply's live window, else wait anew.
            if self._waiting is not None:
                self._set_live(self._waiting)
            else:
                self.wait()

    def _on_message_done(self, event: ev.MessageDone) -> None:
        if self._stream is None or self._stream.finished:  # a model that did not stream
            self._stream = MarkdownStream(self.console, self._set_live)
            self._stream.add(event.text)
        self._finish_text()
        self._reply = []
        self.transcript.add("assistant", event.text)

    def _finish_text(self) -> None:
        if self._stream is not None and not self._stream.finished:
            self._stream.finish()

    def _on_tool_call_proposed(self, event: ev.ToolCallProposed) -> None:
        self._finish_text()
        self._reply = []
        self._waiting = None
        call = _Call(event.call_id, event.tool, dict(event.arguments), event.preview)
        self._calls[event.call_id] = call
        if self.console.is_terminal and call.tool not in CONTROL_TOOLS:
            self._set_live(_RunningCall(call))

    def _on_tool_call_started(self, event: ev.ToolCallStarted) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            return
        call.started = time.monotonic()
        if call.tool in CONTROL_TOOLS:
            return
        if self.console.is_terminal:
            self._set_live(_RunningCall(call))
        else:
            self.console.print(Text.assemble((f"⏵ {call.title}\n", "bold"), call.command_text()))

    def _on_tool_output(self, event: ev.ToolOutput) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            return
        call.output.feed(event.text, event.stream)
        if not self.console.is_terminal:
            self.console.out(strip_terminal_codes(event.text), end="", highlight=False)

    def _on_tool_call_finished(self, event: ev.ToolCallFinished) -> None:
        call = self._calls.pop(event.call_id, None) or _Call(event.call_id, event.tool, {}, "")
        self._set_live(None)
        self.transcript.add(f"tool {call.title} [{event.status}]", self._plain_call(call, event))
        if call.tool in CONTROL_TOOLS and event.ok:
            # The turn ends here: ask_user's question gets its own panel, stop its reason.
            reason = str(call.arguments.get("reason") or "").strip()
            if call.tool == "stop" and reason:
                self.console.print(Text("■ " + make_visible(reason), style="dim"))
            return
        if event.status == "denied":
            self.console.print(
                Panel(
                    Text.assemble(
                        call.command_text(), "\n", (make_visible(event.output), "yellow")
                    ),
                    title=Text(f"{call.title} · denied", style="bold yellow"),
                    title_align="left",
                    border_style="yellow",
                )
            )
        else:
            self.console.print(self._finished_panel(call, event))
        if self._in_turn:
            self.wait()  # the model is called again with the result

    def _finished_panel(self, call: _Call, event: ev.ToolCallFinished) -> Panel:
        body = Text()
        body.append_text(call.command_text())
        output = call.output
        status_lines: list[str] = []
        if output.empty:
            output = OutputFold(head=6 if call.tool != "bash" else 12, tail=6)
            text = event.output
            if call.tool == "bash" and text.startswith("$ "):
                text = text.split("\n", 1)[1] if "\n" in text else ""
            output.feed(text)
        elif call.tool == "bash":
            # The streamed output is complete; the result adds the status lines.
            status_lines = [
                line
                for line in event.output.splitlines()[-3:]
                if line.startswith("[") and line.endswith("]")
            ]
        folded = output.text()
        if folded.strip():
            body.append("\n" + folded.rstrip("\n"), style="" if event.ok else "red")
        for line in status_lines:
            body.append("\n" + line, style="yellow")
        elapsed = time.monotonic() - call.started if call.started else 0.0
        ok = event.ok and event.status == "completed"
        mark = "✓" if ok else ("⏹ cancelled" if event.status == "cancelled" else "✗")
        return Panel(
            body,
            title=Text(call.title, style="bold"),
            title_align="left",
            subtitle=Text(f"{mark} {elapsed:.1f}s", style="green" if ok else "red"),
            subtitle_align="right",
            border_style="green" if ok else "red",
        )

    @staticmethod
    def _plain_call(call: _Call, event: ev.ToolCallFinished) -> str:
        head = f"$ {call.arguments.get('cmd', '')}" if call.tool == "bash" else call.preview
        return f"{head}\n{event.output}"

    def _on_usage(self, event: ev.Usage) -> None:
        self._turn_usage[0] += event.prompt_tokens
        self._turn_usage[1] += event.completion_tokens
        self._turn_estimated = self._turn_estimated or event.estimated
        self.totals = (event.total_prompt_tokens, event.total_completion_tokens)
        self.totals_estimated = self.totals_estimated or event.estimated
        self.last_usage = event

    def _on_compaction(self, event: ev.Compaction) -> None:
        if not event.ok:
            return  # the notice that follows says why; nothing changed
        self._finish_text()
        how = "automatically" if event.automatic else "on request"
        line = (f"⟲ compacted {how}: {event.replaced} older message(s) summarised "
                f"(~{event.tokens_before:,} → ~{event.tokens_after:,} tokens; the history keeps them)")
        self.console.print(Text(line, style="magenta"))
        self.console.print(Text(make_visible(event.summary), style="dim"))
        self.transcript.add("compaction", event.summary)

    def _on_notice(self, event: ev.Notice) -> None:
        self._finish_text()
        style = LEVEL_STYLES.get(event.level, "")
        prefix = {"warning": "warning: ", "error": "error: "}.get(event.level, "")
        self.console.print(Text(prefix + make_visible(event.text), style=style))
        self.transcript.add(event.level, event.text)

    def _on_mcp_server(self, event: ev.McpServer) -> None:
        # Servers start in the background (the app says which are starting): say when
        # each is ready the first time, when one goes down and when it is back.
        if event.state == "restarting":
            line, style = f"MCP server {event.name} exited; restarting ({event.reason})", "yellow"
        elif event.state == "failed":
            line, style = f"MCP server {event.name} failed: {event.reason}", "red"
        elif event.state == "ready" and event.restarts:
            line, style = f"MCP server {event.name} is back ({len(event.tools)} tools)", "dim"
        elif event.state == "ready" and event.name not in self._mcp_ready:
            self._mcp_ready.add(event.name)  # (a later tool-list change is not news here)
            line, style = f"MCP server {event.name} ready ({len(event.tools)} tools)", "dim"
        else:
            return
        self._finish_text()
        self.console.print(Text(make_visible(line), style=style))
        self.transcript.add("mcp", line)

    def _on_task_status(self, event: ev.TaskStatus) -> None:
        who = f" ({event.persona})" if event.persona else ""
        detail = f": {event.detail}" if event.detail else ""
        line = f"task {event.task_id}{who} {event.status}{detail}"
        self.console.print(Text("⇢ " + make_visible(line), style="magenta"))
        self.transcript.add("task", line)

    def _on_turn_ended(self, event: ev.TurnEnded) -> None:
        self._in_turn = False
        self.close()
        self._reply = []
        self.last_turn_usage = (self._turn_usage[0], self._turn_usage[1])
        self.last_turn_estimated = self._turn_estimated
        if event.stop_reason == ev.StopReason.CANCELLED:
            self.console.print(
                Text("⏹ cancelled: the turn was stopped; the session goes on", style="yellow")
            )
            self.transcript.add("cancelled", "the turn was cancelled")
        elif event.stop_reason == ev.StopReason.BUDGET:
            # The error notice above named the limit; say how to go on.
            self.console.print(Text("⏹ stopped by the budget (see /usage; raise it with "
                                    "PYGENT_BUDGET_* or [budget] in pygent.toml)", style="yellow"))
        if self.show_usage:
            self.print_usage()

    def print_usage(self) -> None:
        """One line: the last turn's tokens and the session's totals; ``~`` marks estimates."""
        self.console.print(Text(self.usage_line(), style="dim"))
        extra = self.context_line()
        if extra:  # cost and context fill on a line of their own (docs/long-sessions.md)
            self.console.print(Text(extra, style="dim"))

    def usage_line(self) -> str:
        """``tokens: 1,234 in · 56 out this turn (session: ...)``; estimated counts read
        ``~1,234`` and the line says they are estimated."""

        def count(n: int, estimated: bool) -> str:
            return f"~{n:,}" if estimated else f"{n:,}"

        p, c = self.last_turn_usage
        tp, tc = self.totals
        turn, session = self.last_turn_estimated, self.totals_estimated
        line = (
            f"tokens: {count(p, turn)} in · {count(c, turn)} out this turn "
            f"(session: {count(tp, session)} in · {count(tc, session)} out)"
        )
        if turn or session:
            line += " · estimated: the server reported no token usage"
        return line

    def context_line(self) -> str:
        """``cached 1,200 · cost $0.0019 · context 10% of 10,000 · 2 calls`` (the session's),
        or "" before the first counted model call."""
        last = self.last_usage
        if last is None or not last.total_calls:  # nothing counted yet (or an older producer)
            return ""
        parts = [f"{last.total_calls:,} model call{'' if last.total_calls == 1 else 's'}"]
        if last.total_cached_tokens:
            parts.append(f"cached {last.total_cached_tokens:,}")
        if last.total_cost is not None:
            parts.append(f"cost ${last.total_cost:.4f}")
        if last.context_window:
            fill = last.context_tokens / last.context_window
            parts.append(f"context {fill:.0%} of {last.context_window:,}")
        return " · ".join(parts)

    # --- messages from the REPL itself ------------------------------------------------------

    def info(self, text: str, style: str = "cyan") -> None:
        # soft_wrap: the terminal wraps, so a long path stays one line to copy and paste.
        self.console.print(Text(text, style=style), soft_wrap=True)

    def error(self, text: str) -> None:
        self.console.print(Text(text, style="bold red"), soft_wrap=True)

    def group(self, *items: RenderableType) -> None:
        self.console.print(Group(*items))
