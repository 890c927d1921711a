"""The REPL itself: start-up, the prompt loop, turns, Ctrl-C, signals and clean exits.

Every exit path (``/exit``, Ctrl-D, Ctrl-C at the prompt, SIGTERM/SIGHUP, an
unexpected error) goes through :meth:`Repl.shutdown`, which removes the sandbox.
An unexpected error also saves the session and says how to resume it; its
traceback goes to the log file, never to the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pygent.errors import PygentError, SessionError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _data_dir(settings: Any) -> Path:
    # The sessions directory sits in Pygent's data dir (XDG_DATA_HOME/pygent/sessions);
    # the REPL keeps its input history and logs next to it.
    return Path(settings.sessions_dir).parent


def run(options: Any) -> int:
    """Start the REPL for the parsed command-line ``options``; returns the exit status."""
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
        from rich.console import Console

        from pygent.repl.crashlog import setup_logging
        from pygent.repl.transcript import Transcript

        self.startup = startup
        self.settings = startup.settings
        self.options = options
        self.custom_model = custom_model
        self.probe = probe
        self.console = Console(highlight=False)
        self.transcript = Transcript()
        self.log_file: Path | None = setup_logging(_data_dir(self.settings))
        self.agent: Any = None
        self.runtime: Any = None
        self._runtimes: list[Any] = []
        self._current: asyncio.Future[Any] | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._exiting = False
        self._exit_code = 0
        self._terminated = False
        self._interrupts = 0
        self._unsubscribe: Any = None
        self._session_dir: Path | None = None
        self._lazy_model: Any = None
        self._closed = False

    # --- start-up ----------------------------------------------------------------------------

    def _banner(self) -> None:
        from rich.text import Text

        s = self.settings
        line = Text()
        line.append(s.persona_name, style="bold magenta")
        line.append(" · model ", style="dim")
        line.append(s.model, style="bold")
        line.append(" · ", style="dim")
        line.append(
            self.runtime.describe(),
            style="bold green" if self.runtime.use_docker else "bold yellow",
        )
        self.console.print(line)
        self.console.print(Text(f"workspace {self.runtime.workspace}", style="dim"))
        for notice in self.runtime.notices:
            self.console.print(Text(f"⚠ {notice}", style="bold yellow"))
        for warning in s.warnings:
            self.console.print(Text(f"warning: {warning}", style="yellow"))
        if self.startup.snapshot is not None:
            for warning in self.startup.snapshot.warnings:
                self.console.print(Text(f"warning: {warning}", style="yellow"))

    def _open_history(self) -> tuple[Path | None, str | None]:
        """The history file: the configured or resumed one, else a new saved session."""
        if self.settings.history_file is not None:
            return self.settings.history_file, None
        from pygent.store import SessionStore

        meta = {
            "workspace": str(self.runtime.workspace),
            "model": self.settings.model,
            "cwd": str(Path.cwd()),
            "front_end": "repl",
        }
        try:
            record = SessionStore(self.settings.sessions_dir).create(meta)
        except SessionError as exc:
            self.console.print(
                f"warning: the conversation is not saved: {exc}", style="yellow", markup=False
            )
            return None, None
        record.history.close()  # the agent opens (and locks) it itself
        self._session_dir = record.path.parent
        return record.path, record.id

    def _build(self, loop: asyncio.AbstractEventLoop) -> None:
        from pygent.agent import Agent
        from pygent.approval import DenyApprover
        from pygent.repl.commands_builtin import COMMANDS
        from pygent.repl.lines import PipeReader, TerminalReader
        from pygent.repl.render import Renderer
        from pygent.runtime import Runtime

        self.runtime = Runtime(settings=self.settings)  # the sandbox starts in the background
        self._runtimes.append(self.runtime)
        self._banner()
        self.renderer = Renderer(self.console, self.transcript, show_usage=self.options.show_usage)
        self.renderer.attach(loop)
        self.commands = COMMANDS
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        if interactive:
            from pygent.repl.approver import TerminalApprover

            self.reader: Any = TerminalReader(
                _data_dir(self.settings) / "repl-history", self.commands.names
            )
            self.approver: Any = TerminalApprover(self.reader, self.renderer, loop, self.interrupt)
        else:
            self.reader = PipeReader()
            self.approver = DenyApprover("stdin is not a terminal")
        model = self.custom_model
        if model is None:
            from pygent.repl.lazy_model import LazyOpenAIModel

            model = self._lazy_model = LazyOpenAIModel(
                self.settings, on_retry=self.renderer.on_retry
            )
        history_file, session_id = self._open_history()
        self.agent = Agent(
            runtime=self.runtime,
            model=model,
            settings=self.settings,
            approver=self.approver,
            history_file=history_file,
            session_id=session_id,
            approval_mode=self.settings.effective_approval_mode(),
        )
        self._unsubscribe = self.agent.events.subscribe(self.renderer.on_event)
        earlier = len(self.agent.history) - 1
        if self.startup.snapshot is not None:
            self.renderer.info(
                f"resumed {self.startup.snapshot.directory}: {earlier} earlier messages"
            )
        problem = self.probe.result() if self.probe is not None else None
        if problem:
            self.renderer.info(f"warning: {problem}", style="bold yellow")
        mode = self.agent.policy.mode
        ask = {
            "confirm": "every command asks",
            "never": "nothing asks",
            "auto": "asks before commands and writes"
            if not self.runtime.use_docker
            else "commands run without asking",
        }.get(mode, mode)
        self.renderer.info(
            f"approvals: {ask} · /help for commands · Ctrl-C stops a turn · Ctrl-D quits",
            style="dim",
        )

    # --- the loop ----------------------------------------------------------------------------

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        try:
            self._build(loop)
            self._install_signals(loop)
            if self._lazy_model is not None:
                self._lazy_model.warm_up()
            await self._prompt_loop()
        except asyncio.CancelledError:
            if not self._terminated:
                raise
        except PygentError as exc:  # start-up failures (Docker asked for but absent...)
            self.console.print(f"pygent: {exc.user_message()}", style="bold red", markup=False)
            self._exit_code = 2
        except Exception as exc:
            self._exit_code = self._crash(exc)
        finally:
            await self.shutdown()
        return self._exit_code

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_terminate, sig)

    async def _prompt_loop(self) -> None:
        from pygent.events import StopReason
        from pygent.repl import slash

        pending: str | None = None
        while not self._exiting:
            if pending is None:
                try:
                    text = await self.reader.read()
                except (EOFError, KeyboardInterrupt):
                    break
                if not text.strip():
                    continue
                parsed = slash.parse(text)
                if parsed is not None:
                    self.transcript.add("command", text)
                    await self.commands.dispatch(self, *parsed)
                    continue
                prompt = slash.unescape(text)
            else:
                prompt, pending = pending, None
            result = await self._turn(prompt)
            if result is not None and result.stop_reason == StopReason.ASK_USER:
                pending = await self._ask_user(result)

    async def _turn(self, prompt: str) -> Any:
        self._interrupts = 0
        task = asyncio.ensure_future(self.agent.arun(prompt))
        self._current = task
        try:
            with self.reader.busy():
                return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if self._terminated or (me is not None and me.cancelling()):
                raise  # the REPL itself is stopping
            return None  # only the turn was cancelled
        finally:
            self._current = None
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

    async def cancellable(self, coro: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(coro)
        self._current = task
        try:
            with self.reader.busy():
                return await task
        finally:
            self._current = None

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
            # No turn runs (a piped session waiting for input): Ctrl-C quits.
            self._terminate(0)
            return
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
            # soft_wrap: paths stay on one line, to copy and paste.
            self.console.print(text, style=style, markup=False, soft_wrap=True)

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
        if self._lazy_model is not None:
            with contextlib.suppress(Exception):
                await self._lazy_model.aclose()
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self.agent is not None:
            try:
                self.agent.close()
            except Exception:
                log.exception("closing the agent failed")
            if self._session_dir is not None and len(self.agent.history) <= 1:
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
