"""The REPL itself: start-up, the prompt loop, turns, Ctrl-C, signals and clean exits.

Every exit path (``/exit``, Ctrl-D, Ctrl-C at the prompt, SIGTERM/SIGHUP, an
unexpected error) goes through :meth:`Repl.shutdown`, which removes the sandbox.
An unexpected error also saves the session and says how to resume it; its
traceback goes to the log file, never to the terminal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pygent.errors import PygentError, SessionError

log = logging.getLogger(__name__)
T = TypeVar("T")


#: Seconds the display waits for a typed prompt's request to be on the wire, at most.
VIEW_HOLD = 3.0


def _data_dir(settings: Any) -> Path:
    # The sessions directory sits in Pygent's data dir (XDG_DATA_HOME/pygent/sessions);
    # the REPL keeps its input history and logs next to it.
    return Path(settings.sessions_dir).parent


def _exit_on_signal(signum: int, frame: Any) -> None:
    # Until the loop's own handlers take over: unwind, so the sandbox is still removed.
    raise SystemExit(128 + signum)


def run(options: Any) -> int:
    """Start the REPL for the parsed command-line ``options``; returns the exit status."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    from pygent.models import get_custom_model
    from pygent.repl import preflight
    from pygent.repl.startup import prepare

    try:
        startup = prepare(options)
    except PygentError as exc:
        print(f"pygent: {exc.user_message()}", file=sys.stderr)
        return 2
    custom_model = get_custom_model()
    missing = preflight.missing_key_message(startup.settings, custom_model)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    probe = None
    if custom_model is None:
        probe = preflight.ServerProbe(startup.settings.base_url, startup.settings.api_key)
    repl = Repl(startup, options, custom_model=custom_model, probe=probe)
    try:
        return asyncio.run(repl.main())
    except KeyboardInterrupt:  # a Ctrl-C that landed outside the loop (during start-up)
        repl.shutdown_sync()
        return 130


class Repl:
    """One terminal session: an agent, its runtime, the renderer and the input reader."""

    def __init__(self, startup: Any, options: Any, *, custom_model: Any, probe: Any) -> None:
        from pygent.repl.banner import Plain
        from pygent.repl.crashlog import setup_logging

        self.startup = startup
        self.settings = startup.settings
        self.options = options
        self.custom_model = custom_model
        self.probe = probe
        self.plain = Plain()
        self.console: Any = None  # rich, loaded once the prompt is up
        self.renderer: Any = None
        self.transcript: Any = None
        self.log_file: Path | None = setup_logging(_data_dir(self.settings))
        self.agent: Any = None
        self.service: Any = None  # the SessionService that assembled self.session
        self.session: Any = None
        self.runtime: Any = None
        self._runtimes: list[Any] = []
        self._current: asyncio.Future[Any] | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._setup: asyncio.Task[None] | None = None
        self._line_waiting = False  # a line was typed before the session was ready
        self._exiting = False
        self._exit_code = 0
        self._terminated = False
        self._interrupts = 0
        self._unsubscribe: Any = None
        self._session_dir: Path | None = None
        self._lazy_model: Any = None
        self.view: Any = None  # the renderer's stand-in while it loads (late_view.PendingView)
        self._approver: Any = None  # the terminal's approver, once the display is built
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: asyncio.Future[None]
        self._sent: asyncio.Event
        self._hold_view = False  # a typed prompt's request goes before the display loads
        self._closed = False
        self._kept = False  # a crash report named the session directory: keep it

    # --- start-up ----------------------------------------------------------------------------
    #
    # Before the first prompt: the settings, the sandbox (it starts in the background),
    # the banner in plain ANSI, the server check and prompt_toolkit. Everything else
    # (rich, the agent core, the session file) loads in a worker thread while the
    # prompt is already on screen: a person needs longer than that to type a line.

    def _start(self) -> None:
        from pygent.repl.banner import describe_approvals, print_banner
        from pygent.runtime import Runtime

        self.runtime = Runtime(settings=self.settings)
        self._runtimes.append(self.runtime)
        self._begin_setup()  # the session's core loads while the banner and prompt are drawn
        print_banner(
            self.plain,
            persona=self.settings.persona_name,
            model=self.settings.model,
            where=self.runtime.describe(),
            isolated=self.runtime.isolated,
            workspace=str(self.runtime.workspace),
            notices=self.runtime.notices,
        )
        warnings = list(self.settings.warnings)
        if self.startup.snapshot is not None:
            warnings += self.startup.snapshot.warnings
        for warning in warnings:
            self.plain.line((f"warning: {warning}", "yellow"))
        self.interactive = sys.stdin.isatty() and sys.stdout.isatty()
        history = _data_dir(self.settings) / "repl-history"
        if self.interactive and os.name == "posix":
            from pygent.repl.early_prompt import EarlyTerminalReader

            # The prompt shows before prompt_toolkit is loaded; it loads after the core.
            self.reader: Any = EarlyTerminalReader(
                history, self._command_names, load_after=self._input_gate)
        elif self.interactive:  # no cooked terminal to read early (Windows' console)
            from pygent.repl.lines import TerminalReader

            self.reader = TerminalReader(history, self._command_names)
        else:
            from pygent.repl.lines import PipeReader

            self.reader = PipeReader()
        problem = self.probe.result() if self.probe is not None else None
        if problem:
            self.plain.line((f"warning: {problem}", "bold yellow"))
        ask = describe_approvals(self.settings.effective_approval_mode(), self.runtime.isolated)
        self.plain.line(
            (f"approvals: {ask} · /help for commands · Ctrl-C stops a turn · Ctrl-D quits", "dim")
        )

    def _command_names(self) -> list[str]:
        from pygent.repl.commands_builtin import COMMANDS

        return COMMANDS.names()

    def _open_session(self, model: Any) -> None:
        """Ask the session service for this terminal's session: a new saved one, the one
        ``--resume``/``--continue`` named, or a snapshot's history (``--load``)."""
        from pygent.service import SessionOptions, SessionService

        self.service = SessionService(
            self.settings, approver_factory=lambda _session_id: self.approver, model=model
        )
        # A resumed session keeps the approval mode it was left in unless one is chosen now.
        options = SessionOptions(approval_mode=self.settings.chosen_approval_mode(), sync_mode="none")
        resume_id = self.startup.resume_id
        history_file = self.settings.history_file
        meta = {
            "workspace": str(self.runtime.workspace),
            "model": self.settings.model,
            "cwd": str(Path.cwd()),
            "front_end": "repl",
        }
        self.session = self.service.open_blocking(
            options,
            resume_id=resume_id if history_file is None else None,
            runtime=self.runtime,
            history_file=history_file,
            meta=meta,
            unsaved_ok=True,
        )
        self.agent = self.session.agent
        shown = set(self.runtime.notices)  # the banner said these already
        late = [n for n in self.session.notices if n not in shown]
        self._history_warning = "\n".join(f"warning: {n}" for n in late)
        from pygent.policy import normalize_mode

        if self.agent.policy.mode != normalize_mode(self.settings.effective_approval_mode()):
            from pygent.repl.banner import describe_approvals

            # The banner said the configured mode; the resumed session kept its own.
            ask = describe_approvals(self.agent.policy.mode, self.runtime.isolated)
            self._history_warning = "\n".join(filter(None, [
                self._history_warning,
                f"approvals: {ask} (the mode this session was left in; --approval-mode to change)",
            ]))
        if history_file is None and resume_id is None and self.agent.history_store is not None:
            self._session_dir = self.service.store.path(self.session.id).parent

    def _prepare_core(self) -> None:
        """Import and build what a prompt's request needs: the session and its model (runs
        in a worker thread). The display comes next (:meth:`_prepare_view`)."""
        from pygent.repl.late_view import LateApprover, PendingView

        self._history_warning = ""
        self.view = PendingView()  # the renderer's events, kept until it is attached
        self.approver: Any = LateApprover(self._terminal_approver)
        model = self.custom_model
        if model is None:
            from pygent.repl.lazy_model import LazyOpenAIModel

            model = self._lazy_model = LazyOpenAIModel(
                self.settings, on_retry=self.view.on_retry, on_notice=self._model_notice,
                on_request_sent=self._request_sent,
            )  # fmt: skip
        self._open_session(model)

    def _prepare_view(self, loop: asyncio.AbstractEventLoop) -> None:
        """Import and build the display: rich, the renderer, the approver (worker thread)."""
        from rich.console import Console

        from pygent.approval import DenyApprover
        from pygent.repl.render import Renderer
        from pygent.repl.transcript import Transcript

        self.console = Console(highlight=False)
        self.transcript = Transcript()
        self.renderer = Renderer(self.console, self.transcript, show_usage=self.options.show_usage)
        if self.interactive:
            from pygent.repl.approver import TerminalApprover

            self._approver = TerminalApprover(self.reader, self.renderer, loop, self.interrupt)
        else:
            self._approver = DenyApprover("stdin is not a terminal")

    async def _terminal_approver(self) -> Any:
        await self._session_ready()
        return self._approver

    def _request_sent(self) -> None:
        """The first model request is on the wire (from whichever thread sent it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._sent.set)

    @property
    def commands(self) -> Any:
        """The slash commands: loaded at the first one, not on the way to the first request."""
        from pygent.repl.commands_builtin import COMMANDS

        return COMMANDS

    def _model_notice(self, text: str) -> None:
        """What the model layer learned about the server, shown like the agent's notices."""
        from pygent import events as ev

        self.view.on_event(ev.Notice(level="info", text=text))

    async def _setup_session(self, core: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await core
            # The session's events: the agent's, and its delegated tasks' (the renderer
            # shows a task's status and notices, not its whole conversation).
            self._unsubscribe = self.service.subscribe(self.session.id, self.view.on_event)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._core.cancel()
            elif not self._core.done():
                self._core.set_exception(exc)
            self._open_input_gate()
            raise
        self._core.set_result(None)
        if self._hold_view:
            # A prompt was typed before the session was ready: its request goes out first
            # and the display loads behind it, while the server works on the answer.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sent.wait(), VIEW_HOLD)
        self._open_input_gate()
        await asyncio.to_thread(self._prepare_view, loop)
        self.renderer.attach(loop)  # events from other threads are handed to this loop
        self.view.attach(self.renderer)  # what the session said meanwhile, in order

        def warn(text: str) -> None:  # from a worker thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._late_warning, text)

        if self._lazy_model is not None and self.interactive and not self._line_waiting:
            # Warm up while the user types. Piped input, or a line typed before the
            # session was ready, has its first prompt ready at once: the key check would
            # only delay that prompt's request, which tells of a rejected key anyway.
            self._lazy_model.warm_up(on_problem=warn)
        threading.Thread(target=self._watch_sandbox, args=(warn,), daemon=True).start()
        if self._history_warning and self.interactive:
            # The session's start-up notices (an MCP server on the host, one that failed
            # to start...): above the prompt as soon as the session is ready, not only
            # when the first line is typed.
            text, self._history_warning = self._history_warning, ""
            self._show_above_prompt(text)
        mcp = self.session.mcp
        if mcp is not None and mcp.starting and self.interactive:
            # They start in the background: each one's "ready" (or "failed") line follows.
            names = ", ".join(st.name for st in mcp.status() if st.state == "starting")
            if names:
                self._show_above_prompt(f"MCP server(s) starting: {names} (/mcp shows their state)")

    def _open_input_gate(self) -> None:
        if not self._input_gate.done():
            self._input_gate.set_result(None)

    def _show_above_prompt(self, text: str) -> None:
        def show() -> None:
            self.renderer.info(text, style="yellow")

        asyncio.ensure_future(self.reader.above_prompt(show))

    def _watch_sandbox(self, warn: Callable[[str], None]) -> None:
        """Say so as soon as the sandbox fails to start (it starts in the background)."""
        runtime = self.runtime
        try:
            runtime.wait_ready()
        except concurrent.futures.CancelledError:
            return  # the session ended before the sandbox was up
        except PygentError as exc:
            warn(f"the sandbox did not start: {exc.user_message()}")
        except Exception as exc:  # any start-up failure: the user must hear of it now
            log.warning("the sandbox did not start", exc_info=exc)
            warn(f"the sandbox did not start: {type(exc).__name__}: {exc}")

    def _late_warning(self, text: str) -> None:
        """A warning found once the prompt is up: printed above it, not through it."""
        message = f"warning: {text}"
        if not self.interactive:
            self.renderer.info(message, style="bold yellow")
            return
        def show() -> None:
            self.renderer.info(message, style="bold yellow")

        asyncio.ensure_future(self.reader.above_prompt(show))

    def _begin_setup(self) -> None:
        if self._setup is None:
            # The core's thread starts now, not when the task first runs: called while
            # the banner is drawn, it loads the core beside it.
            loop = asyncio.get_running_loop()
            core = loop.run_in_executor(
                None, functools.partial(contextvars.copy_context().run, self._prepare_core))
            self._setup = loop.create_task(self._setup_session(core))

    async def _core_ready(self) -> None:
        """Wait for what a prompt's request needs (not the display); errors surface here."""
        self._begin_setup()
        await asyncio.shield(self._core)

    async def _session_ready(self) -> None:
        """Wait for the session parts; their errors surface here."""
        self._begin_setup()
        assert self._setup is not None
        await self._setup
        if self._history_warning:
            self.renderer.info(self._history_warning, style="yellow")
            self._history_warning = ""

    # --- the loop ----------------------------------------------------------------------------

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self._loop = loop
        self._core = loop.create_future()  # set once the session's core is built
        self._core.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen by the setup task
        self._sent = asyncio.Event()  # the first model request is on the wire
        # prompt_toolkit loads once this is done: after the core, and after the request
        # of a line typed at the early prompt (pygent/repl/early_prompt.py).
        self._input_gate: asyncio.Future[None] = loop.create_future()
        try:
            self._start()
            self._install_signals(loop)
            resuming = self.startup.snapshot is not None or self.startup.resume_id is not None
            if resuming or not self.interactive:
                await self._session_ready()  # nothing to hide the loading behind, or a resume
            if resuming:
                earlier = len(self.agent.history) - 1
                what = (
                    self.startup.snapshot.directory
                    if self.startup.snapshot is not None
                    else f"session {self.startup.resume_id}"
                )
                self.renderer.info(f"resumed {what}: {earlier} earlier messages")
                self._show_compaction()
            await self._prompt_loop()
        except asyncio.CancelledError:
            if not self._terminated:
                raise
        except PygentError as exc:  # start-up failures (Docker asked for but absent...)
            self.plain.line((f"pygent: {exc.user_message()}", "bold red"))
            self._exit_code = 2
        except Exception as exc:
            self._exit_code = self._crash(exc)
        finally:
            await self.shutdown()
        return self._exit_code

    def _show_compaction(self) -> None:
        """A resumed session that was compacted: the marker, with the summary the model
        now reads instead of the older messages (#18: front ends show it on resume too)."""
        from pygent import compaction as cx
        from pygent.events import Compaction

        store = self.agent.history_store
        if store is None or self.agent.compacted is None:
            return
        shown = cx.replay_markers(store.meta_log.get("compaction", []), self.agent.history[1:])
        if shown:
            last = shown[-1]
            self.renderer.handle(Compaction(
                ok=True, automatic=last.automatic, summary=last.summary, replaced=last.replaced,
                tokens_before=last.tokens_before, tokens_after=last.tokens_after,
                focus=last.focus))

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_terminate, sig)

    async def _prompt_loop(self) -> None:
        from pygent.events import StopReason

        pending: str | None = None
        while not self._exiting:
            if pending is None:
                try:
                    text = await self.reader.read(on_shown=self._begin_setup)
                except (EOFError, KeyboardInterrupt):
                    break
                self._line_waiting = True
                if self.custom_model is None and text.strip() and not text.lstrip().startswith("/"):
                    # A prompt (slash.parse would say None, slash.unescape change nothing):
                    # its request needs the session's core, not rich or the renderer.
                    self._hold_view = True
                    await self._core_ready()
                    prompt = text
                else:
                    await self._session_ready()
                    # Here, not before the first prompt: it loads rich, which the session's
                    # set-up (a worker thread, while the user types) has loaded by now.
                    from pygent.repl import slash

                    if not text.strip():
                        continue
                    parsed = slash.parse(text)
                    if parsed is not None:
                        self.transcript.add("command", text)
                        try:
                            await self.cancellable(self.commands.dispatch(self, *parsed), quiet=False)
                        except asyncio.CancelledError:
                            if self._terminated:
                                raise
                            self.renderer.info("interrupted", style="yellow")
                        continue
                    prompt = slash.unescape(text)
            else:
                prompt, pending = pending, None
            result = await self._turn(prompt)
            if result is not None and result.stop_reason == StopReason.ASK_USER:
                pending = await self._ask_user(result)

    async def _turn(self, prompt: str) -> Any:
        self._interrupts = 0
        if self.session is not None and self.agent is self.session.agent:
            # Through the service: the same limits (steps, step time) as every front end.
            turn = self.service.prompt(self.session.id, prompt)
        else:  # an agent a /command put in place (register_command's upstream contract)
            turn = self.agent.arun(prompt, step_timeout=self.settings.step_timeout)
        task = asyncio.ensure_future(turn)
        self._current = task
        try:
            with self.reader.busy():
                result = await task
                await self._session_ready()  # the display has shown the whole turn
                return result
        except asyncio.CancelledError:
            # Task.cancelling() is Python 3.11+; on 3.10 our own exits set _terminated.
            cancelling = getattr(asyncio.current_task(), "cancelling", None)
            if self._terminated or (cancelling is not None and cancelling()):
                raise  # the REPL itself is stopping
            return None  # only the turn was cancelled
        finally:
            self._current = None
            if self.renderer is not None:  # None: cancelled before the display loaded
                self.renderer.close()

    async def _ask_user(self, result: Any) -> str | None:
        """Show the model's question; the answer becomes the next prompt (None: no answer)."""
        from rich.panel import Panel
        from rich.text import Text

        from pygent.repl.sanitize import make_visible

        question = make_visible(result.question or result.text or "(the model asked for input)")
        options = [make_visible(str(o)) for o in result.options]
        body = Text(question)
        for i, option in enumerate(options, 1):
            body.append(f"\n  {i}. ", style="bold cyan")
            body.append(option)
        self.console.print(
            Panel(
                body,
                title=Text(f"{self.agent.persona.name} asks", style="bold"),
                title_align="left",
                border_style="magenta",
            )
        )
        self.transcript.add("question", question + "".join(f"\n  - {o}" for o in options))
        ask = f"answer (1-{len(options)} or your own words): " if options else "answer: "
        try:
            answer = (await self.reader.ask(ask)).strip()
        except (EOFError, KeyboardInterrupt):
            self.renderer.info("no answer: back to the prompt", style="dim")
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            answer = result.options[int(answer) - 1]
        return answer or None

    # --- what slash commands use (ReplContext) -------------------------------------------------

    def request_exit(self) -> None:
        self._exiting = True

    def replace_agent(self, agent: Any) -> None:
        old = self.agent
        if self._unsubscribe is not None:
            self._unsubscribe()
        if getattr(agent.gate, "approver", None) is None:
            agent.gate.approver = self.approver  # nobody else can answer in this terminal
        self._unsubscribe = agent.events.subscribe(self.renderer.on_event)
        self.agent = agent
        if agent.runtime is not old.runtime:
            self._runtimes.append(agent.runtime)
        self.renderer.info(f"now talking to {agent.persona.name} ({agent.runtime.describe()})")

    async def cancellable(self, coro: Coroutine[Any, Any, T], *, quiet: bool = True) -> T:
        task = asyncio.ensure_future(coro)
        outer, self._current = self._current, task  # nested: /cmd inside a command
        try:
            with self.reader.busy() if quiet else contextlib.nullcontext():
                return await task
        finally:
            self._current = outer

    # --- interrupts and signals ------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop what runs now: the agent's turn (model stream and command) or a /cmd."""
        current = self._current
        if current is None or current.done():
            return
        if self.agent is not None and self.agent.busy:
            self.agent.cancel()
        else:
            current.cancel()

    def _on_sigint(self) -> None:
        current = self._current
        if current is None or current.done():
            if not self.interactive:  # a piped session waiting for input: Ctrl-C quits
                self._terminate(130)
            elif hasattr(self.reader, "interrupt"):  # at the prompt drawn before prompt_toolkit
                self.reader.interrupt()
            return  # between two steps on a terminal: nothing to stop
        self._interrupts += 1
        if self._interrupts >= 3:  # cancelling is stuck: leave anyway (cleanup still runs)
            self._terminate(130)
            return
        self.interrupt()

    def _on_terminate(self, sig: signal.Signals) -> None:
        self._terminate(128 + int(sig))

    def _terminate(self, code: int) -> None:
        self._terminated = True
        self._exiting = True
        self._exit_code = code
        if self.agent is not None and self.agent.busy:
            self.agent.cancel()
        if self._main_task is not None and not self._main_task.done():
            self._main_task.cancel()

    # --- exits ---------------------------------------------------------------------------------

    def _crash(self, exc: BaseException) -> int:
        from pygent.repl import snapshot

        def say(text: str, style: str = "") -> None:
            # Plain lines: rich may be what failed; a path stays on one line to copy.
            self.plain.line((text, style))

        log.error("unexpected error; the session is being saved", exc_info=exc)
        with contextlib.suppress(Exception):
            self.renderer.close()
        say(f"pygent stopped after an unexpected error: {type(exc).__name__}: {exc}", "bold red")
        if self.agent is not None:
            own = self.settings.sessions_dir / f"{self.agent.session_id}-crash"
            try:
                saved = snapshot.save(
                    self._session_dir or own,
                    self.agent,
                    transcript=self.transcript,
                    include_workspace=self.settings.workspace is None,
                )
                self._kept = True
                say(
                    f"the session was saved to {saved}; resume it with: "
                    f"pygent --load {shlex.quote(str(saved))}"
                )
            except Exception as save_exc:  # report both; the traceback is in the log
                log.error("saving the session after the crash failed", exc_info=save_exc)
                say(f"saving the session failed too: {save_exc}", "bold red")
        say(f"details (traceback): {self.log_file}", "dim")
        return 1

    async def shutdown(self) -> None:
        """Stop the turn, close the agent, remove every sandbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.renderer.close()
        if self._current is not None and not self._current.done():
            self.interrupt()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._current), 10)
        if self._setup is not None and not self._setup.done():
            with contextlib.suppress(BaseException):  # its thread cannot be stopped: let it end
                await self._setup
        if self._lazy_model is not None:
            with contextlib.suppress(Exception):
                await self._lazy_model.aclose()
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self.session is not None:
            try:  # its tasks stop, its sandbox goes, its agent closes
                self.service.close_blocking(self.session.id)
            except Exception:
                log.exception("closing the session failed")
        if self.agent is not None:
            if self.session is None or self.agent is not self.session.agent:
                try:
                    self.agent.close()
                except Exception:
                    log.exception("closing the agent failed")
            if self._session_dir is not None and len(self.agent.history) <= 1 and not self._kept:
                self._forget_empty_session()
        for runtime in self._runtimes:
            try:
                runtime.cleanup()
            except Exception:
                log.exception("removing the sandbox failed")

    def _forget_empty_session(self) -> None:
        from pygent.store import SessionStore

        try:
            SessionStore(self.settings.sessions_dir).delete(self._session_dir.name)  # type: ignore[union-attr]
        except (SessionError, OSError) as exc:
            log.warning("could not remove the empty session: %s", exc)

    def shutdown_sync(self) -> None:
        """Last-resort cleanup when the loop is gone."""
        if not self._closed:
            self._closed = True
            self._release()
