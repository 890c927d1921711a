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
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent import events as ev
from pygent.lsp.client import ConnectionLost, RpcClient, RpcError

if TYPE_CHECKING:  # imported where used: the approval policy is not needed to show a screen
    pass

#: What the prompt says while attached, so it is not mistaken for a REPL of one's own.
PROMPT = "attached> "
#: The last turns of the transcript replayed in full (as the REPL shows them); older
#: ones are written as plain lines in one go, so attaching to a long session is quick.
FULL_TURNS = 5
_DIM, _GREEN, _RESET = "\x1b[2m", "\x1b[1;32m", "\x1b[0m"
#: How another client's answer to an approval asked here is shown.
ANSWERS_SHOWN = {"allow_once": "allowed", "allow_always": "always allowed",
                 "reject_once": "denied", "reject_always": "always denied", "cancelled": "cancelled"}
_HELP = "type a prompt; /cancel stops the running turn; /exit (or Ctrl-D) detaches"


def _is_turn_start(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "turn_started" and item.get("taskId") is None


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def plain_history(items: list[Any], color: bool) -> str:
    """Older turns as plain lines, from the transcript's JSON as the host sent it: the
    prompt, each command or tool call with how it ended, and the answer's text (untrusted
    text made visible: no escape reaches the terminal). Read straight from the wire dicts
    (not structured into events: that costs more than the whole screen for 1,000
    messages); an item this version does not know shows nothing."""
    from pygent.repl.sanitize import make_visible, strip_terminal_codes

    dim, green, reset = (_DIM, _GREEN, _RESET) if color else ("", "", "")
    out: list[str] = []
    calls: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("taskId") is not None:
            continue
        kind = item.get("type")
        if kind == "turn_started":
            out.append(f"{green}>{reset} {make_visible(_text(item, 'prompt'))}")
        elif kind == "tool_call_proposed":
            calls[_text(item, "callId")] = _text(item, "preview") or _text(item, "tool")
        elif kind == "tool_call_finished":
            tool = _text(item, "tool")
            what = make_visible(calls.pop(_text(item, "callId"), tool)).splitlines() or [tool]
            mark = "ok" if item.get("ok") is True else (_text(item, "status") or "failed")
            out.append(f"{dim}  $ {what[0][:200]}  ({mark}){reset}")
        elif kind == "message_done" and _text(item, "text").strip():
            out.append(strip_terminal_codes(_text(item, "text")).rstrip())
        elif kind == "turn_ended" and item.get("stopReason", "end_turn") != "end_turn":
            reason = make_visible(str(item.get("stopReason")))
            out.append(f"{dim}  [{reason}] {make_visible(_text(item, 'error'))}{reset}")
    return "\n".join(out) + "\n" if out else ""


def _without_finished_deltas(events: list[ev.Event]) -> list[ev.Event]:
    """The events to replay, less the streamed text of replies that are complete: their
    ``message_done`` holds the whole text, so each reply is rendered once instead of
    twice. A reply still streaming keeps its deltas."""
    drop: set[int] = set()
    pending: list[int] = []  # the current reply's deltas
    for i, event in enumerate(events):
        if event.task_id is not None:
            continue
        if isinstance(event, ev.MessageDelta):
            pending.append(i)
        elif isinstance(event, (ev.MessageDone, ev.MessageDiscarded)):
            drop.update(pending)
            pending = []
        elif isinstance(event, (ev.TurnStarted, ev.ToolCallProposed, ev.TurnEnded)):
            pending = []
    return [event for i, event in enumerate(events) if i not in drop]


def _preload() -> None:
    """What showing the transcript needs (rich, the renderer, the Markdown parser: a
    third of attaching when imported in turn), imported on a thread while the host is
    asked for the transcript and prepares it."""
    # A missing piece is reported where it is used (on the main thread), not here.
    with contextlib.suppress(ImportError):
        import rich.markdown  # noqa: F401

        import pygent.repl.render  # noqa: F401
        import pygent.repl.update_reader  # noqa: F401


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
        #: Approvals being asked here, by call id: another client may answer first.
        self._asking: dict[str, asyncio.Task[Any]] = {}
        self._withdrawn: set[str] = set()

    def start_input(self) -> None:
        """Load the line editor (prompt_toolkit): after the transcript is shown, so the
        screen fills first; updates that arrived meanwhile are shown now, in order."""
        from pygent.repl.approver import TerminalApprover
        from pygent.repl.lines import TerminalReader

        self.reader = TerminalReader(None, lambda: ["/cancel", "/exit", "/help"])
        self.approver = TerminalApprover(self.reader, self.renderer, self.loop, self.cancel)

    # --- what the host sends -------------------------------------------------------------

    def on_update(self, params: Any) -> None:
        from pygent.repl.update_reader import UnreadableUpdate, read_update

        if not isinstance(params, dict) or params.get("sessionId") != self.session_id:
            return
        seq = params.get("seq")
        if isinstance(seq, int):
            if seq <= self._last_seq:
                return  # already in the transcript
            self._last_seq = seq
        try:
            update = read_update(params.get("update"))
        except UnreadableUpdate:  # a newer host's update: skip it, keep going
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
        if isinstance(event, ev.Permission) and event.state == "resolved":
            self._answered_elsewhere(event)
        self.renderer.handle(event)
        if isinstance(event, ev.TurnEnded) and event.task_id is None:
            self.busy = False
            self._turn_idle.set()

    async def on_permission(self, params: Any) -> dict[str, Any]:
        """A tool call to approve: asked here like the REPL asks (first answer wins)."""
        from pygent.approval import request_from_wire

        request = request_from_wire(params)
        # The prompt's line editor must be gone before the question's starts: two
        # prompt_toolkit applications on one terminal race for stdin, and the first one's
        # teardown can unhook the second's reader (the answer typed is then never read).
        await self._input_stopped()
        task = asyncio.current_task()
        if task is not None:
            self._asking[request.call_id] = task
        try:
            answer = await self.approver.request_approval(request)
        finally:
            self._asking.pop(request.call_id, None)
        result: dict[str, Any] = {"optionId": answer.option.value}
        if answer.message:
            result["message"] = answer.message
        return result

    def _answered_elsewhere(self, event: ev.Permission) -> None:
        """Another client answered first: the host withdraws the question asked here
        (a first ``resolved`` update, outcome ``cancelled``), then says how it was decided.
        Stop asking (the question would stay on screen, unanswerable) and say so."""
        task = self._asking.pop(event.call_id, None)
        if task is not None and not task.done():
            task.cancel()
            self._withdrawn.add(event.call_id)
        if event.outcome != "cancelled" and event.call_id in self._withdrawn:
            self._withdrawn.discard(event.call_id)
            how = ANSWERS_SHOWN.get(event.outcome, event.outcome) or "answered"
            self.renderer.info(f"answered in another window: {how}", style="yellow")

    # --- what the user does ----------------------------------------------------------------

    def cancel(self) -> None:
        asyncio.ensure_future(self._request("pygent/session/cancel", {"sessionId": self.session_id}))

    def _interrupt_input(self) -> None:
        if self._input is not None and not self._input.done():
            self._input.cancel()

    async def _input_stopped(self) -> None:
        self._interrupt_input()
        if self._input is not None:
            await asyncio.wait({self._input})

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
        updates it had. Everything but the last ``FULL_TURNS`` turns is written as plain
        lines straight from the JSON; those turns are rendered as the REPL shows them
        (panels, Markdown), and the whole screen goes out in one write. An update of
        those turns this version cannot read (a newer host's) is left out and counted in
        one line, rather than losing the whole transcript (the plain lines show what they
        can of older ones)."""
        from pygent.repl.update_reader import UnreadableUpdate, read_update

        raw = raw if isinstance(raw, dict) else {}
        seq = raw.get("seq")
        self._last_seq = max(self._last_seq, seq if isinstance(seq, int) else 0)
        items = raw.get("events")
        items = items if isinstance(items, list) else []
        starts = [i for i, item in enumerate(items) if _is_turn_start(item)]
        cut = starts[-FULL_TURNS] if len(starts) > FULL_TURNS else 0
        earlier = plain_history(items[:cut], self.console.is_terminal) if cut else ""
        events: list[ev.Event] = []
        unread = 0
        for item in items[cut:]:
            try:
                events.append(read_update(item))
            except UnreadableUpdate:
                unread += 1
        # Finished turns are printed, not animated: no live region starts and stops per
        # event; a turn still running shows its live region once the screen is written.
        with self.renderer.replaying(), self.console.capture() as screen:
            for event in _without_finished_deltas(events):
                self.show(event)
            if unread:
                self.renderer.info(f"{unread} update(s) of the transcript could not be read "
                                   "(the host runs a newer Pygent)", style="yellow")
        if earlier:
            self.renderer.transcript.add("history", earlier)
        self.console.file.write(earlier + screen.get())
        self.console.file.flush()
        self.renderer.resume_live()
        return cut + len(events)

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
    preload = threading.Thread(target=_preload, name="pygent-attach-preload", daemon=True)
    preload.start()
    client = await RpcClient.connect_unix(socket)
    try:
        await client.initialize("pygent-attach")
        session_id = await _choose(client, wanted)
        # Ask for the transcript first: the host prepares it while this process loads
        # the renderer (on the thread). Updates sent after it are queued until it is shown.
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
        raw = await transcript
        preload.join()
        session = Attached(client, session_id)
        count = session.replay(raw)
        for params in early:
            session.on_update(params)
        client.on_notification("pygent/sessionUpdate", session.on_update)
        if os.environ.get("PYGENT_ATTACH_TIMING"):  # bench/bench_attach.py reads this line
            # The CPU time since launch too: unlike the wall clock, a loaded machine
            # hardly changes it.
            print(f"[attach] {count} updates on screen in "
                  f"{(time.perf_counter() - started) * 1000:.1f} ms "
                  f"(cpu {time.process_time() * 1000:.0f} ms since launch)", file=sys.stderr)
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
