"""Per-session ``pygent/sessionUpdate`` notifications, in order, and ``$/progress`` reports.

Events reach a session's channel from several threads: the agent's turn (the server's
loop), command output (the runtime's loop thread) and delegated tasks (the task
manager's thread). :class:`pygent.handoff.LoopHandoff` queues each update as it is
pushed and the server's loop sends them in that order, numbered, so the client sees a
session's events exactly as they happened.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from pygent import events as ev
from pygent.handoff import LoopHandoff
from pygent.lsp import convert
from pygent.lsp import protocol as p

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer

log = logging.getLogger(__name__)

#: How long to wait for the client to accept a progress token before going without.
PROGRESS_CREATE_TIMEOUT = 3.0
_TERMINAL = {"finished", "failed", "timeout", "cancelled"}


def client_supports_progress(server: PygentLanguageServer) -> bool:
    caps = getattr(server.protocol, "client_capabilities", None)
    window = getattr(caps, "window", None)
    return bool(getattr(window, "work_done_progress", False))


class ProgressReporter:
    """One work-done progress (a prompt, or a delegated task) shown by generic clients."""

    def __init__(self, server: PygentLanguageServer, token: str | int | None) -> None:
        self.server = server
        self.token = token

    @classmethod
    async def start(
        cls, server: PygentLanguageServer, token: str | int | None, title: str, message: str = ""
    ) -> ProgressReporter:
        """Begin a progress: with the client's token, or one we create when supported."""
        if token is None and client_supports_progress(server):
            candidate = f"pygent-{uuid.uuid4().hex[:12]}"
            try:
                await asyncio.wait_for(
                    server.work_done_progress.create_async(candidate), PROGRESS_CREATE_TIMEOUT
                )
                token = candidate
            except Exception as exc:  # no progress is better than no turn
                log.info("the client did not accept a progress token: %r", exc)
        reporter = cls(server, token)
        if token is not None:
            server.work_done_progress.begin(
                token,
                lsp.WorkDoneProgressBegin(title=title, message=message or None, cancellable=False),
            )
        return reporter

    def report(self, message: str) -> None:
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, lsp.WorkDoneProgressReport(message=message[:200])
            )

    def end(self, message: str) -> None:
        if self.token is not None:
            self.server.work_done_progress.end(
                self.token, lsp.WorkDoneProgressEnd(message=message[:200])
            )
            self.server.work_done_progress.tokens.pop(self.token, None)
            self.token = None


class UpdateChannel:
    """The ordered update stream of one session."""

    def __init__(
        self, server: PygentLanguageServer, session_id: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.loop = loop
        self.seq = 0
        self.progress: ProgressReporter | None = None  # the running prompt's, if any
        self._handoff: LoopHandoff[Any] = LoopHandoff(loop, self._send)
        self._tasks: dict[str, asyncio.Queue[Any]] = {}

    @property
    def closed(self) -> bool:
        return self._handoff.closed

    def push_event(self, event: ev.Event) -> None:
        """An event listener (any thread)."""
        update = convert.event_update(event)
        if update is not None:
            self.push(update)

    def push(self, update: Any) -> None:
        """Queue one update (any thread); it is sent in push order."""
        self._handoff.push(update)

    def flush(self) -> None:
        """Send everything queued (on the server's loop)."""
        self._handoff.flush()

    def _send(self, update: Any) -> None:
        # Numbered as sent: the hand-off sends in push order, so seq is push order too.
        self.seq += 1
        params = p.SessionUpdateParams(session_id=self.session_id, seq=self.seq, update=update)
        self.server.protocol.notify(p.SESSION_UPDATE, p.unstructure(params))
        self._progress(update)

    def close(self) -> None:
        self._handoff.close()
        for queue in self._tasks.values():
            queue.put_nowait(None)
        self._tasks.clear()

    # --- work-done progress ---------------------------------------------------------------

    def _progress(self, update: Any) -> None:
        reporter = self.progress
        if isinstance(update, p.ToolCallStartedUpdate) and reporter is not None:
            who = f"task {update.task_id}: " if update.task_id else ""
            reporter.report(f"{who}running {update.tool}")
        elif isinstance(update, p.TaskStatusUpdate) and update.task_id:
            if reporter is not None:
                reporter.report(f"task {update.task_id}: {update.status}")
            self._task_progress(update)

    def _task_progress(self, update: p.TaskStatusUpdate) -> None:
        if not client_supports_progress(self.server) or update.task_id is None:
            return
        queue = self._tasks.get(update.task_id)
        if queue is None:
            if update.status in _TERMINAL:
                return
            queue = asyncio.Queue()
            self._tasks[update.task_id] = queue
            asyncio.ensure_future(self._run_task_progress(update, queue))
        else:
            queue.put_nowait(update)
        if update.status in _TERMINAL:
            self._tasks.pop(update.task_id, None)

    async def _run_task_progress(
        self, first: p.TaskStatusUpdate, queue: asyncio.Queue[Any]
    ) -> None:
        title = f"Pygent task {first.task_id} ({first.persona or 'agent'})"
        reporter = await ProgressReporter.start(self.server, None, title, first.status)
        while True:
            update = await queue.get()
            if update is None:
                reporter.end("session closed")
                return
            if update.status in _TERMINAL:
                reporter.end(f"{update.status}{': ' + update.detail if update.detail else ''}")
                return
            reporter.report(f"{update.status}, step {update.steps}")
