"""One ordered stream of ``session/update`` notifications, and each session's part of it.

Core events reach a session's :class:`Channel` from several threads (the turn on the
connection's loop, command output from the runtime's thread, delegated tasks from their
manager's thread); :class:`~pygent.handoff.LoopHandoff` hands them to the loop in the order
they happened, :class:`~pygent.acp.updates.SessionUpdates` translates them, and the
:class:`Outbox` writes them in that order: at once when the line is free, else through a
queue and one writer task. Command output is merged for :data:`OUTPUT_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pygent import events as ev
from pygent.acp.updates import SessionUpdates, Update, prompt_updates
from pygent.handoff import LoopHandoff

log = logging.getLogger(__name__)

#: Command output is merged this long (seconds) before a ``tool_call_update`` carries it.
OUTPUT_INTERVAL = 0.02


class Outbox:
    """Every update of every session, sent in order by one writer task."""

    def __init__(self, send: Callable[[str, Update], Awaitable[None]]) -> None:
        self.send = send
        #: Writes an update at once when the line is free (True), else it is queued; the
        #: common case (a streamed token) then costs no task switch.
        self.send_now: Callable[[str, Update], bool] | None = None
        self.queue: asyncio.Queue[tuple[str, Update]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self._sending = False

    def put(self, session_id: str, update: Update) -> None:
        if (
            self.send_now is not None
            and not self._sending
            and self.queue.empty()
            and self.send_now(session_id, update)
        ):
            return
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())
        self.queue.put_nowait((session_id, update))

    async def _run(self) -> None:
        while True:
            session_id, update = await self.queue.get()
            self._sending = True
            try:
                await self.send(session_id, update)
            except ConnectionError:
                log.debug("dropping an update: the client is gone")
            except Exception:  # one bad update must not stop the ones after it
                log.exception("sending an update failed")
            finally:
                self._sending = False
                self.queue.task_done()

    async def drain(self) -> None:
        if self.task is not None:
            await self.queue.join()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Channel:
    """One session's event translation: events from any thread, updates in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, outbox: Outbox, session_id: str) -> None:
        self.loop = loop
        self.outbox = outbox
        self.session_id = session_id
        self.updates = SessionUpdates(folder=None)
        self.handoff: LoopHandoff[ev.Event] = LoopHandoff(loop, self._deliver)
        self.unsubscribe: Callable[[], None] | None = None
        self.notices: list[str] = []
        #: Tokens (prompt, completion) of the model calls since :meth:`reset_usage`: a
        #: turn's usage, counted from its events (the same from either backend).
        self.used: tuple[int, int] = (0, 0)
        #: True while this client's own prompt runs: a turn that starts otherwise was
        #: prompted by another client of a session host, and its prompt is shown too.
        self.own_turn = False
        self._output_due = False

    def push(self, event: ev.Event) -> None:
        self.handoff.push(event)

    def _deliver(self, event: ev.Event) -> None:
        if isinstance(event, ev.ToolOutput):
            self.updates.updates(event)
            if not self._output_due:
                self._output_due = True
                self.loop.call_later(OUTPUT_INTERVAL, self._send_output)
            return
        self._send_output()
        if isinstance(event, ev.TurnStarted) and not event.task_id:
            if not self.own_turn:
                for update in prompt_updates(event.prompt, event.images):
                    self.outbox.put(self.session_id, update)
            return
        if isinstance(event, ev.Usage) and not event.task_id:
            self.used = (self.used[0] + event.prompt_tokens, self.used[1] + event.completion_tokens)
            if event.context_window:  # the agent resolves its model's window at its first call
                self.updates.context_size = event.context_window
        for update in self.updates.updates(event):
            self.outbox.put(self.session_id, update)

    def _send_output(self) -> None:
        self._output_due = False
        for update in self.updates.pending_output():
            self.outbox.put(self.session_id, update)

    def reset_usage(self) -> None:
        self.handoff.flush()  # what came before belongs to earlier turns
        self.used = (0, 0)

    def send(self, update: Update) -> None:
        self.outbox.put(self.session_id, update)

    async def flush(self) -> None:
        """Send everything this session has queued (before an answer that follows it)."""
        self.handoff.flush()
        self._send_output()
        await self.outbox.drain()

    def close(self) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
        self.handoff.close()
