"""Per-session ``pygent/sessionUpdate`` notifications, in order, and ``$/progress`` reports.

Events reach a session's channel from several threads: the agent's turn (the server's
loop), command output (the runtime's loop thread) and delegated tasks (the task
manager's thread). :class:`pygent.handoff.LoopHandoff` queues each update as it is
pushed and the server's loop sends them in that order, numbered, so the client sees a
session's events exactly as they happened.

Command output comes one read at a time (a line, for a program that prints a line at
a time), far too small to be a notification each: the envelope would outweigh the
text and the loop would spend itself encoding them. It is sent in frames instead
(:class:`OutputFrame`): the output of each call and stream is merged for
:data:`FRAME_INTERVAL` seconds or until :data:`FRAME_CHARS` characters wait, and a
frame is always sent before any other update of the session, so the order a client
sees is kept. While the client does not read (the writer holds more than
:data:`WRITER_HIGH_WATER` bytes) output is held back rather than queued; beyond
:data:`MAX_HELD_CHARS` per call and stream its oldest part is dropped and the client
is told so in the text. Other updates are never held back or dropped.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

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

#: Output is merged this long (seconds) before it is sent: about one screen refresh.
FRAME_INTERVAL = 0.016
#: ...or until this many characters wait; no ``tool_output`` carries more.
FRAME_CHARS = 64 * 1024
#: Bytes the writer may hold unread by the client before output is held back.
WRITER_HIGH_WATER = 256 * 1024
#: Output held per call and stream while the client does not read; beyond it the oldest
#: part goes (down to half, so trimming is rare) and the text says how much was dropped.
#: A command streams at most 2 MiB a stream live (``pygent.runtime.shell``): only a client
#: stalled for more than all of it loses any.
MAX_HELD_CHARS = (2 * 1024 + 512) * 1024
#: How often held-back output is retried while the client does not read (seconds).
BACKLOG_RETRY = 0.05


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


class OutputKey(NamedTuple):
    """Output merges only with output of the same task, call and stream."""

    task_id: str | None
    call_id: str
    stream: str


class OutputChunks:
    """Output queued in the hand-off: consecutive chunks of one key, joined when sent.

    ``born`` (the loop's clock, when the first chunk came) starts the frame's 16 ms.
    """

    __slots__ = ("key", "chunks", "size", "born")

    def __init__(self, key: OutputKey, text: str, born: float) -> None:
        self.key = key
        self.chunks = [text]
        self.size = len(text)
        self.born = born

    @staticmethod
    def merge(last: Any, item: Any) -> bool:
        """Fold ``item`` into ``last`` (the hand-off's ``merge``): same key, room left."""
        if (
            type(last) is OutputChunks
            and type(item) is OutputChunks
            and last.key == item.key
            and last.size < FRAME_CHARS
        ):
            last.chunks.extend(item.chunks)
            last.size += item.size
            return True
        return False


class _Held:
    __slots__ = ("chunks", "size", "dropped")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.size = 0
        self.dropped = 0


class OutputFrame:
    """Output waiting to be sent, per key in the order the keys first spoke.

    stdout and stderr of one command merge separately, so within a frame the two are
    grouped; their relative order was never exact anyway (they come through two pipes).
    """

    def __init__(self) -> None:
        self.parts: dict[OutputKey, _Held] = {}
        self.size = 0

    def add(self, chunks: OutputChunks) -> None:
        held = self.parts.get(chunks.key)
        if held is None:
            held = self.parts[chunks.key] = _Held()
        held.chunks.extend(chunks.chunks)
        held.size += chunks.size
        self.size += chunks.size
        if held.size > MAX_HELD_CHARS:
            self._trim(held)

    def _trim(self, held: _Held) -> None:
        text = "".join(held.chunks)
        keep = text[-(MAX_HELD_CHARS // 2) :]
        line = keep.find("\n", 0, 4096)
        if line >= 0:  # resume at a line start
            keep = keep[line + 1 :]
        held.dropped += len(text) - len(keep)
        self.size -= held.size - len(keep)
        held.chunks = [keep]
        held.size = len(keep)

    def take(self) -> list[Any]:
        """The frame as ``tool_output`` updates of at most FRAME_CHARS characters; empties it."""
        updates = []
        for key, held in self.parts.items():
            text = "".join(held.chunks)
            if held.dropped:
                text = (
                    f"\n[output truncated: {held.dropped:,} characters dropped"
                    " while the editor was not reading]\n" + text
                )
            for start in range(0, len(text), FRAME_CHARS):
                updates.append(
                    p.ToolOutputUpdate(
                        task_id=key.task_id,
                        call_id=key.call_id,
                        text=text[start : start + FRAME_CHARS],
                        stream=key.stream,  # type: ignore[arg-type]
                    )
                )
        self.parts.clear()
        self.size = 0
        return updates


class UpdateChannel:
    """The ordered update stream of one session (command output in frames)."""

    def __init__(
        self, server: PygentLanguageServer, session_id: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.loop = loop
        self.seq = 0
        self.progress: ProgressReporter | None = None  # the running prompt's, if any
        self._handoff: LoopHandoff[Any] = LoopHandoff(loop, self._deliver, OutputChunks.merge)
        self._frame = OutputFrame()
        self._frame_born = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: dict[str, asyncio.Queue[Any]] = {}

    @property
    def closed(self) -> bool:
        return self._handoff.closed

    def push_event(self, event: ev.Event) -> None:
        """An event listener (any thread)."""
        if type(event) is ev.ToolOutput:
            # The hot path (once per read of a command's output): no update object yet,
            # and no wake-up of the server's loop per read (it comes once per frame).
            if event.text:
                self._push_output(event.task_id, event.call_id, event.stream, event.text)
            return
        update = convert.event_update(event)
        if update is not None:
            self.push(update)

    def push(self, update: Any) -> None:
        """Queue one update (any thread); it is sent in push order."""
        if isinstance(update, p.ToolOutputUpdate):
            if update.text:
                self._push_output(update.task_id, update.call_id, update.stream, update.text)
            return
        self._handoff.push(update)

    def _push_output(self, task_id: str | None, call_id: str, stream: str, text: str) -> None:
        chunks = OutputChunks(OutputKey(task_id, call_id, stream), text, self.loop.time())
        self._handoff.push(chunks, delay=FRAME_INTERVAL)

    def flush(self) -> None:
        """Send everything queued, output frame included (on the server's loop).

        Called while handling a request (a prompt's end), what was sent goes out
        before that request's reply: replies may pass queued output otherwise.
        """
        self._handoff.flush()
        self._send_frame(force=True)
        self._mark()

    def _mark(self) -> None:
        protocol = self.server.protocol
        mark = getattr(getattr(protocol, "writer", None), "mark", None)
        if mark is not None:
            mark(getattr(protocol, "msg_id", None))

    def _deliver(self, item: Any) -> None:
        if type(item) is OutputChunks:
            if not self._frame.parts:
                self._frame_born = item.born
            self._frame.add(item)
            if self._frame.size >= FRAME_CHARS:
                self._send_frame()
            elif self._timer is None:
                # Due 16 ms after its first chunk came: the rest of this hand-off batch
                # joins it even when that is already past.
                self._timer = self.loop.call_at(self._frame_born + FRAME_INTERVAL, self._frame_due)
            return
        self._send_frame(force=True)  # output first: the order is the client's truth
        self._send(item)

    def _frame_due(self) -> None:
        self._timer = None
        self._send_frame()

    def _client_behind(self) -> bool:
        writer = getattr(self.server.protocol, "writer", None)
        return getattr(writer, "pending_bytes", 0) > WRITER_HIGH_WATER

    def _send_frame(self, force: bool = False) -> None:
        if not self._frame.parts:
            return
        if not force and self._client_behind():
            # Hold the output (bounded by OutputFrame) until the client reads again.
            if self._timer is None:
                self._timer = self.loop.call_later(BACKLOG_RETRY, self._frame_due)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for update in self._frame.take():
            self._send(update)

    def _send(self, update: Any) -> None:
        # Numbered as sent: the hand-off sends in push order, so seq is push order too.
        self.seq += 1
        params = p.SessionUpdateParams(session_id=self.session_id, seq=self.seq, update=update)
        self.server.protocol.notify(p.SESSION_UPDATE, p.unstructure(params))
        self._progress(update)

    def close(self) -> None:
        self._handoff.close()
        self._send_frame(force=True)
        self._mark()
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
