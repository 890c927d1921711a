"""``pygent attach [SESSION]``: the terminal on a live session of the session host.

The session lives in ``pygent serve``; an editor, the web page and this terminal are
all clients of it. Attaching replays the session's transcript (``pygent/session/transcript``),
then shows its live updates as the REPL shows its own. Any client may prompt, cancel or
answer an approval: a turn another client starts is shown as it runs (its prompt
first), Ctrl-C cancels the running turn whoever started it, an approval is asked here
as in the REPL (the first client to answer wins), and Ctrl-D or ``/exit`` detaches,
leaving the session and its sandbox to the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from pygent import events as ev
from pygent.approval import ApprovalOption, ApprovalRequest
from pygent.lsp.client import ConnectionLost, RpcClient, RpcError

#: What the prompt says while attached, so it is not mistaken for a REPL of one's own.
PROMPT = "attached> "
#: The last turns of the transcript replayed in full (as the REPL shows them); older
#: ones are written as plain lines in one go, so attaching to a long session is quick.
FULL_TURNS = 5
_DIM, _GREEN, _RESET = "\x1b[2m", "\x1b[1;32m", "\x1b[0m"
_HELP = "type a prompt; /cancel stops the running turn; /exit (or Ctrl-D) detaches"


def _turn_starts(events: list[ev.Event]) -> list[int]:
    return [i for i, e in enumerate(events) if isinstance(e, ev.TurnStarted) and e.task_id is None]


def plain_history(events: list[ev.Event], color: bool) -> str:
    """Older turns as plain lines: the prompt, each command or tool call with how it
    ended, and the answer's text (untrusted text made visible: no escape reaches the
    terminal). One write instead of a render per update."""
    from pygent.repl.sanitize import make_visible, strip_terminal_codes

    dim, green, reset = (_DIM, _GREEN, _RESET) if color else ("", "", "")
    out: list[str] = []
    calls: dict[str, str] = {}
    for event in events:
        if event.task_id is not None:
            continue
        if isinstance(event, ev.TurnStarted):
            out.append(f"{green}>{reset} {make_visible(event.prompt)}")
        elif isinstance(event, ev.ToolCallProposed):
            calls[event.call_id] = event.preview or event.tool
        elif isinstance(event, ev.ToolCallFinished):
            what = make_visible(calls.pop(event.call_id, event.tool)).splitlines() or [event.tool]
            mark = "ok" if event.ok else event.status
            out.append(f"{dim}  $ {what[0][:200]}  ({mark}){reset}")
        elif isinstance(event, ev.MessageDone) and event.text.strip():
            out.append(strip_terminal_codes(event.text).rstrip())
        elif isinstance(event, ev.TurnEnded) and event.stop_reason != ev.StopReason.END_TURN:
            out.append(f"{dim}  [{event.stop_reason.value}] {make_visible(event.error)}{reset}")
    return "\n".join(out) + "\n" if out else ""


def _wire_options(options: Any) -> tuple[ApprovalOption, ...]:
    offered = []
    for option in options or ():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            offered.append(ApprovalOption(option.get("optionId")))
    return tuple(offered) or (ApprovalOption.ALLOW_ONCE, ApprovalOption.REJECT_ONCE)


class Attached:
    """One terminal attached to one live session of the host."""

    def __init__(self, client: RpcClient, session_id: str) -> None:
        from rich.console import Console

        from pygent.repl.render import Renderer
        from pygent.repl.transcript import Transcript

        self.client = client
        self.session_id = session_id
        self.console = Console(highlight=False)
        self.renderer = Renderer(self.console, Transcript())
        self.loop = asyncio.get_running_loop()
        self.renderer.attach(self.loop)
        self.reader: Any = None  # the line editor: made after the transcript is on screen
        self.approver: Any = None
        self.busy = False
        self._turn_idle = asyncio.Event()
        self._turn_idle.set()
        self._own_prompt: str | None = None
        self._input: asyncio.Task[str] | None = None
        self._last_seq = 0

    def start_input(self) -> None:
        """Load the line editor (prompt_toolkit): after the transcript is shown, so the
        screen fills first; updates that arrived meanwhile are shown now, in order."""
        from pygent.repl.approver import TerminalApprover
        from pygent.repl.lines import TerminalReader

        self.reader = TerminalReader(None, lambda: ["/cancel", "/exit", "/help"])
        self.approver = TerminalApprover(self.reader, self.renderer, self.loop, self.cancel)

    # --- what the host sends -------------------------------------------------------------

    def on_update(self, params: Any) -> None:
        from pygent.lsp import protocol as p

        if not isinstance(params, dict) or params.get("sessionId") != self.session_id:
            return
        seq = params.get("seq")
        if isinstance(seq, int):
            if seq <= self._last_seq:
                return  # already in the transcript
            self._last_seq = seq
        try:
            update = p.structure(params, p.SessionUpdateParams).update
        except Exception:  # noqa: BLE001 - a newer host's update: skip it, keep going
            return
        self.show(update)

    def show(self, event: ev.Event) -> None:
        from rich.text import Text

        from pygent.repl.sanitize import make_visible

        if isinstance(event, ev.TurnStarted) and event.task_id is None:
            self.busy = True
            self._turn_idle.clear()
            if event.prompt and event.prompt != self._own_prompt:
                self._interrupt_input()
                self.console.print(Text("> ", style="bold green") + Text(make_visible(event.prompt)))
            self._own_prompt = None
        self.renderer.handle(event)
        if isinstance(event, ev.TurnEnded) and event.task_id is None:
            self.busy = False
            self._turn_idle.set()

    async def on_permission(self, params: Any) -> dict[str, Any]:
        """A tool call to approve: asked here like the REPL asks (first answer wins)."""
        call = params.get("toolCall") or {}
        request = ApprovalRequest(
            session_id=str(params.get("sessionId", "")),
            call_id=str(call.get("callId", "")),
            tool=str(call.get("tool", "")),
            arguments=dict(call.get("arguments") or {}),
            preview=str(call.get("preview", "")),
            reason=str(params.get("reason", "")),
            task_id=params.get("taskId"),
            options=_wire_options(params.get("options")),
        )
        self._interrupt_input()
        answer = await self.approver.request_approval(request)
        result: dict[str, Any] = {"optionId": answer.option.value}
        if answer.message:
            result["message"] = answer.message
        return result

    # --- what the user does ----------------------------------------------------------------

    def cancel(self) -> None:
        asyncio.ensure_future(self._request("pygent/session/cancel", {"sessionId": self.session_id}))

    def _interrupt_input(self) -> None:
        if self._input is not None and not self._input.done():
            self._input.cancel()

    async def _request(self, method: str, params: Any) -> Any:
        try:
            return await self.client.request(method, params)
        except RpcError as exc:
            self.renderer.info(f"pygent: {exc}", style="bold red")
        except ConnectionLost:
            pass
        return None

    def replay(self, raw: Any) -> int:
        """Show the transcript so far (``raw``: the host's answer); returns how many
        updates it had. An update this version cannot read (a newer host's) is left out
        and counted in one line, rather than losing the whole transcript."""
        from pygent.lsp import protocol as p

        raw = raw if isinstance(raw, dict) else {}
        seq = raw.get("seq")
        self._last_seq = max(self._last_seq, seq if isinstance(seq, int) else 0)
        events: list[ev.Event] = []
        unread = 0
        for item in raw.get("events") or []:
            try:
                events.append(p.structure({"sessionId": self.session_id, "seq": 0,
                                           "update": item}, p.SessionUpdateParams).update)
            except p.ParamsError:
                unread += 1
        starts = _turn_starts(events)
        cut = starts[-FULL_TURNS] if len(starts) > FULL_TURNS else 0
        if cut:
            earlier = plain_history(events[:cut], self.console.is_terminal)
            self.console.file.write(earlier)
            self.console.file.flush()
            self.renderer.transcript.add("history", earlier)
        for event in events[cut:]:
            self.show(event)
        if unread:
            self.renderer.info(f"{unread} update(s) of the transcript could not be read "
                               "(the host runs a newer Pygent)", style="yellow")
        return len(events)

    async def run(self) -> int:
        lost = self.client.closed
        while not lost.done():
            if self.busy:  # a turn runs (ours or another client's): watch it
                with self.reader.busy():
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(self._turn_idle.wait())
                    watched: set[asyncio.Future[Any]] = {waiter, lost}
                    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                continue
            self._input = asyncio.ensure_future(self.reader.read(PROMPT))
            try:
                text = await self._input
            except asyncio.CancelledError:
                # Task.cancelling() is Python 3.11+: without it, only our own cancel happens.
                cancelling = getattr(asyncio.current_task(), "cancelling", None)
                if cancelling is not None and cancelling():
                    raise
                continue  # another client started a turn or asks: show it
            except (EOFError, KeyboardInterrupt):
                break
            text = text.strip()
            if not text:
                continue
            if text in ("/exit", "/quit", "/detach"):
                break
            if text == "/help":
                self.renderer.info(_HELP)
                continue
            if text == "/cancel":
                await self._request("pygent/session/cancel", {"sessionId": self.session_id})
                continue
            self._own_prompt = text
            self.busy = True
            self._turn_idle.clear()
            prompt = asyncio.ensure_future(
                self._request("pygent/session/prompt", {"sessionId": self.session_id, "prompt": text})
            )
            prompt.add_done_callback(lambda _: self._turn_done())
        if lost.done():
            self.renderer.close()
            self.renderer.info(f"detached: {lost.result()}", style="yellow")
            return 1
        self.renderer.close()
        self.renderer.info("detached; the session goes on in the host (pygent attach to return)")
        return 0

    def _turn_done(self) -> None:
        # The prompt request ended (answered, refused as busy, or failed).
        if self.busy and self._own_prompt is not None:
            self._own_prompt = None
            self.busy = False
            self._turn_idle.set()


async def _choose(client: RpcClient, wanted: str | None) -> str:
    from pygent.errors import ConfigError

    listed = await client.request("pygent/session/list", {})
    live = [s for s in (listed or {}).get("sessions", []) if s.get("live")]
    if wanted:
        matches = [s for s in live if str(s.get("sessionId", "")).startswith(wanted)]
        if len(matches) == 1:
            return str(matches[0]["sessionId"])
        what = "no live session" if not matches else f"{len(matches)} live sessions"
        raise ConfigError(f"{what} in the host matches {wanted!r}",
                          hint="pygent sessions lists them")
    if not live:
        raise ConfigError("the host has no live session to attach to",
                          hint="start one from an editor, the web page or pygent -p")
    if len(live) == 1 or not sys.stdin.isatty():
        return str(live[0]["sessionId"])
    for i, s in enumerate(live, 1):
        state = "busy" if s.get("busy") else "idle"
        print(f"{i:>3}. {s['sessionId']}  {state:<4}  {s.get('title') or '(no title)'}")
    choice = input(f"attach to which (1-{len(live)})? ").strip()
    if choice.isdigit() and 1 <= int(choice) <= len(live):
        return str(live[int(choice) - 1]["sessionId"])
    raise ConfigError(f"{choice!r} is not one of 1-{len(live)}")


async def attach(socket: Path, wanted: str | None) -> int:
    """Attach to a session of the host listening on ``socket``; returns the exit status."""
    started = time.perf_counter()
    client = await RpcClient.connect_unix(socket)
    try:
        await client.initialize("pygent-attach")
        session_id = await _choose(client, wanted)
        # Ask for the transcript first: the host prepares it while this process loads
        # the renderer. Updates sent after it are queued until it is shown.
        transcript = asyncio.ensure_future(
            client.request("pygent/session/transcript", {"sessionId": session_id}))
        early: list[Any] = []
        client.on_notification("pygent/sessionUpdate", early.append)
        ready: asyncio.Future[Attached] = asyncio.get_running_loop().create_future()

        async def on_permission(params: Any) -> dict[str, Any]:
            # A pending approval is asked as soon as the transcript is answered: it waits
            # here for the line editor instead of being refused.
            return await (await ready).on_permission(params)

        client.on_request("pygent/requestPermission", on_permission)
        session = Attached(client, session_id)
        count = session.replay(await transcript)
        for params in early:
            session.on_update(params)
        client.on_notification("pygent/sessionUpdate", session.on_update)
        if os.environ.get("PYGENT_ATTACH_TIMING"):  # bench/bench_attach.py reads this line
            print(f"[attach] {count} updates on screen in "
                  f"{(time.perf_counter() - started) * 1000:.1f} ms", file=sys.stderr)
        session.start_input()
        ready.set_result(session)
        session.renderer.info(f"attached to {session_id}: {_HELP}", style="dim")
        return await session.run()
    finally:
        await client.aclose()


def main(argv: list[str]) -> int:
    """``pygent attach [SESSION]``."""
    import argparse

    from pygent.errors import PygentError

    parser = argparse.ArgumentParser(prog="pygent attach", description=__doc__.splitlines()[0])
    parser.add_argument("session", nargs="?", help="a live session's id (or a unique prefix)")
    parser.add_argument("--socket", type=Path, help="the host's socket (default: the user's)")
    args = parser.parse_args(argv)
    try:
        from pygent.lsp.host_socket import socket_path
        from pygent.settings import load_settings

        socket = args.socket or socket_path(load_settings().host_dir)
        if not socket.exists():
            print(f"pygent attach: no session host runs (no {socket}); start one with pygent serve",
                  file=sys.stderr)
            return 2
        return asyncio.run(attach(socket, args.session))
    except PygentError as exc:
        print(f"pygent attach: {exc.user_message()}", file=sys.stderr)
        return 2
    except (ConnectionRefusedError, FileNotFoundError):
        print("pygent attach: no session host answers; start one with pygent serve", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
