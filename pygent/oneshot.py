"""``pygent -p``: one prompt, one turn through the session service, the answer on stdout, an exit status for how it ended.

The peer of ``claude -p``, ``codex exec`` and ``aider --message``. The session is
assembled by :class:`~pygent.service.SessionService` like every front end's (same tools,
delegated tasks, limits, saved history), so ``pygent --resume ID`` can continue it. Nobody
is at a terminal to answer approvals: a call the approval mode would ask about is
denied with a message to the model, unless ``--yes`` allows it. Nothing of the REPL's
(rich, prompt_toolkit) is imported on this path.

Exit statuses (also in docs/repl.md): see :data:`EXIT_STATUSES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import IO, Any

from pygent import events as ev
from pygent.errors import PygentError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MAX_STEPS = 3
EXIT_TIME_LIMIT = 4
EXIT_DENIED = 5
EXIT_ASK_USER = 6
EXIT_BUDGET = 7
EXIT_MAX_TOKENS = 8
EXIT_CANCELLED = 130

#: Stop reason -> exit status. A turn that ended normally but had a tool call denied
#: exits with EXIT_DENIED: its answer may be missing what the call would have done.
EXIT_STATUSES: dict[ev.StopReason, int] = {
    ev.StopReason.END_TURN: EXIT_OK,
    ev.StopReason.STOP_TOOL: EXIT_OK,
    ev.StopReason.ERROR: EXIT_ERROR,
    ev.StopReason.REFUSAL: EXIT_ERROR,
    ev.StopReason.MAX_STEPS: EXIT_MAX_STEPS,
    ev.StopReason.MAX_TIME: EXIT_TIME_LIMIT,
    ev.StopReason.STEP_TIMEOUT: EXIT_TIME_LIMIT,
    ev.StopReason.ASK_USER: EXIT_ASK_USER,
    ev.StopReason.CANCELLED: EXIT_CANCELLED,
    ev.StopReason.BUDGET: EXIT_BUDGET,
    # The answer printed is cut short: a script must not take it for a whole one.
    ev.StopReason.MAX_TOKENS: EXIT_MAX_TOKENS,
}

#: What a denied call tells the model when nobody can approve it.
NO_TERMINAL = "pygent -p runs without anyone to ask; rerun with --yes to allow such calls"


def exit_status(stop_reason: ev.StopReason, *, denied: bool = False) -> int:
    """The exit status for a turn that ended with ``stop_reason``."""
    status = EXIT_STATUSES.get(stop_reason, EXIT_ERROR)
    if status == EXIT_OK and denied:
        return EXIT_DENIED
    return status


def read_prompt(options: Any, stdin: IO[str] | None = None) -> str:
    """The prompt: ``-p TEXT``, else standard input when it is not a terminal. With
    both, stdin is appended to the text (``git diff | pygent -p 'review this'``)."""
    stdin = stdin if stdin is not None else sys.stdin
    text = options.prompt or ""
    if stdin is None or stdin.isatty():
        piped = False
    elif not text:
        piped = True
    else:  # text given: add only real piped or redirected input, never wait on /dev/null & co
        try:
            mode = os.fstat(stdin.fileno()).st_mode
            piped = stat.S_ISFIFO(mode) or stat.S_ISREG(mode)
        except (OSError, ValueError, io.UnsupportedOperation):
            piped = False
    if piped:
        extra = stdin.read()
        text = f"{text}\n\n{extra}" if text.strip() and extra.strip() else (text or extra)
    return text.strip()


class _Output:
    """Writes the chosen format; events arrive from several threads, lines stay whole."""

    def __init__(self, fmt: str, out: IO[str], err: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.err = err
        self.lock = threading.Lock()
        self.denied: list[str] = []

    def _write(self, stream: IO[str], text: str) -> None:
        with self.lock:
            stream.write(text)
            stream.flush()

    def warn(self, text: str) -> None:
        if self.fmt == "stream-json":
            line = ev.event_to_dict(ev.Notice(level="warning", text=text))
            self._write(self.out, json.dumps(line) + "\n")
        else:
            self._write(self.err, f"pygent: warning: {text}\n")

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ToolCallFinished) and event.status == "denied":
            self.denied.append(event.tool)
        if self.fmt == "stream-json":
            self._write(self.out, json.dumps(ev.event_to_dict(event), default=str) + "\n")
            return
        # Text and json: stdout holds only the answer; what a person should know
        # while it runs (denials, warnings) goes to stderr.
        if event.task_id is not None:
            return
        if isinstance(event, ev.ToolCallFinished) and event.status == "denied":
            self._write(self.err, f"pygent: {event.tool} denied: {event.output.strip()}\n")
        elif isinstance(event, ev.Notice) and event.level in ("warning", "error"):
            self._write(self.err, f"pygent: {event.level}: {event.text}\n")

    def result(self, payload: dict[str, Any]) -> None:
        if self.fmt == "text":
            answer = payload["answer"]
            if answer:
                self._write(self.out, answer if answer.endswith("\n") else answer + "\n")
            if payload["error"]:
                self._write(self.err, f"pygent: {payload['error']}\n")
        else:
            self._write(self.out, json.dumps(payload, default=str) + "\n")


class OneShot:
    """One prompt, one session, one turn (``run`` builds and runs it)."""

    def __init__(self, startup: Any, options: Any, prompt: str, output: _Output) -> None:
        self.startup = startup
        self.settings = startup.settings
        self.options = options
        self.prompt = prompt
        self.output = output
        self.service: Any = None
        self.session: Any = None
        self._signal: int | None = None
        self._main: asyncio.Task[Any] | None = None
        self._opening: asyncio.Future[None] | None = None

    def _open(self) -> None:
        """Assemble the session (a worker thread: the sandbox and the core load here)."""
        from pygent.runtime import Runtime

        # Made here, not by the service: it honours --cwd/-w/--docker like the REPL's,
        # and made first: the sandbox starts in the background while the core loads.
        runtime = Runtime(settings=self.settings)
        try:
            from pygent.approval import AllowApprover, DenyApprover
            from pygent.models import get_custom_model
            from pygent.service import SessionOptions, SessionService

            approver = AllowApprover() if self.options.yes else DenyApprover(NO_TERMINAL)
            self.service = SessionService(
                self.settings,
                approver_factory=lambda _session_id: approver,
                model=get_custom_model(),
            )
            self.session = self.service.open_blocking(
                SessionOptions(
                    approval_mode=self.settings.chosen_approval_mode(), sync_mode="none"
                ),
                resume_id=self.startup.resume_id if self.settings.history_file is None else None,
                runtime=runtime,
                history_file=self.settings.history_file,
                meta={
                    "workspace": str(runtime.workspace),
                    "model": self.settings.model,
                    "cwd": str(Path.cwd()),
                    "front_end": "oneshot",
                },
                unsaved_ok=True,
            )
        except BaseException:
            runtime.cleanup()  # idempotent: the service may have removed it already
            raise

    def _on_signal(self, signum: int) -> None:
        first = self._signal is None
        self._signal = signum
        if self.session is not None and first and self.service.cancel(self.session.id):
            return  # the turn ends with "cancelled"; a second signal stops waiting
        task = self._main
        if task is not None and not task.done():
            task.cancel()

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, int(sig))
        try:
            return await self._run()
        except asyncio.CancelledError:
            return 128 + (self._signal or signal.SIGINT)
        finally:
            await self._close()

    async def _run(self) -> int:
        for warning in self.settings.warnings:
            self.output.warn(warning)
        # Shielded: a signal stops the waiting, not the thread; _close waits for it, so
        # a sandbox that was still starting is removed too.
        self._opening = asyncio.ensure_future(asyncio.to_thread(self._open))
        await asyncio.shield(self._opening)
        session = self.session
        for notice in session.notices:
            self.output.warn(notice)
        self.service.subscribe(session.id, self.output.on_event)
        result = await self.service.prompt(session.id, self.prompt)
        agent = session.agent
        status = exit_status(result.stop_reason, denied=bool(self.output.denied))
        if result.stop_reason is ev.StopReason.CANCELLED and self._signal is not None:
            status = 128 + self._signal
        payload: dict[str, Any] = {
            "type": "result",
            "session_id": session.id,
            "stop_reason": result.stop_reason.value,
            "answer": result.text,
            "error": result.error,
            "steps": result.steps,
            # Tokens in/out/cached, calls, cost, context fill, tasks (docs/long-sessions.md).
            "usage": {**agent.usage.to_dict(), "estimated": agent.usage_estimated},
            "denied": list(self.output.denied),
            "exit_status": status,
        }
        if result.stop_reason is ev.StopReason.ASK_USER:
            payload["question"] = result.question
            payload["options"] = list(result.options)
        self.output.result(payload)
        return status

    async def _close(self) -> None:
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(BaseException):
                await self._opening
        if self.session is None:
            return
        aclose = getattr(self.session.agent.model, "aclose", None)
        if callable(aclose):  # its HTTP client lives on this loop: close it here
            with contextlib.suppress(Exception):
                await aclose()
        await asyncio.to_thread(self.service.close_blocking, self.session.id)


def _exit_on_signal(signum: int, frame: Any) -> None:
    # Before the loop's handlers are in place: unwind, so the sandbox is still removed.
    raise SystemExit(128 + signum)


def run(options: Any) -> int:
    """Run ``pygent -p`` for the parsed command-line ``options``; returns the exit status."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    from pygent.repl.preflight import missing_key_message
    from pygent.repl.startup import prepare

    prompt = read_prompt(options)
    if not prompt:
        print(
            "pygent: -p needs a prompt: pygent -p 'what to do', or the prompt on stdin",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        startup = prepare(options)
    except PygentError as exc:
        print(f"pygent: {exc.user_message()}", file=sys.stderr)
        return EXIT_USAGE
    from pygent.models import get_custom_model

    missing = missing_key_message(startup.settings, get_custom_model())
    if missing:
        print(missing, file=sys.stderr)
        return EXIT_USAGE
    from pygent.repl.crashlog import setup_logging

    # Warnings and tracebacks go to the run's log file (like the REPL's): stderr carries
    # only what the user is told, stdout only the answer.
    log_file = setup_logging(startup.settings.data_dir)
    output = _Output(options.output_format, sys.stdout, sys.stderr)
    once = OneShot(startup, options, prompt, output)
    try:
        return asyncio.run(once.main())
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except PygentError as exc:  # the sandbox or the session could not be made
        print(f"pygent: {exc.user_message()}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug: one line here, the traceback in the log file
        log.error("unexpected error in pygent -p", exc_info=exc)
        print(
            f"pygent: unexpected error: {type(exc).__name__}: {exc} (details: {log_file})",
            file=sys.stderr,
        )
        return EXIT_ERROR
