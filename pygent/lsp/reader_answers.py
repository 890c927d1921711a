"""Requests answered on the stdin reader's thread, so ``session/list`` never waits for the event loop.

The event loop of ``pygent lsp`` also runs the sessions' turns (agent steps, model
streams, command output): a request handled there needs four passes of the loop (the
reader thread's hand-over, the frame reader, the handler's task, its done callback),
each as long as the work ready at that moment, so with 20 sessions streaming a
``session/list`` took hundreds of milliseconds. :class:`AnsweringSource` reads stdin on
its own thread (as :class:`~pygent.lsp.transport.ThreadedSource` does), splits it into
messages there, answers the read-only requests it can on that thread and hands every
other message to the loop unchanged and in order.

It only splits what it can read with certainty: from the first byte that is not a
well-formed frame (a bad header, an over-size message, the rest of a body whose
``Content-Length`` was too short) every byte goes to the loop as read, whose
:class:`~pygent.lsp.transport.FrameReader` reports it exactly as before.

Answering here is safe because the answer reads plain attributes, and copies the dicts
and lists it walks in one C call under the GIL (the loop only appends to them or replaces
them whole); it is correct because the reply of every request that changes that state
(``session/new``, ``session/close``) is sent after the change: a client never sees a
list older than an answer it has already received. A list may arrive before replies to
requests sent earlier that are still running (docs/protocol.md says so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pygent.lsp import convert
from pygent.lsp import protocol as p
from pygent.lsp.transport import MAX_HEADER_LINE, MAX_QUEUED_CHUNKS

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer
    from pygent.service import SessionSummary

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_TOKEN = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]*")

#: Answers one message body on the reader thread; False hands it to the loop instead.
Answer = Callable[[bytes], bool]

#: The split position is unknown: the bytes from here on are not a readable frame.
_UNREADABLE = -1


def frame_bounds(
    buf: bytes | bytearray, max_bytes: int = p.MAX_MESSAGE_BYTES
) -> tuple[int, int] | int | None:
    """Where the first message in ``buf`` is: ``(body start, body end)``; None when more
    bytes are needed; ``_UNREADABLE`` (-1) when ``buf`` does not start with a frame that
    the loop's reader would accept (it then reports why)."""
    pos = 0
    length: int | None = None
    seen_header = False
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            partial = bytes(buf[pos:])
            if len(partial) > MAX_HEADER_LINE:
                return _UNREADABLE
            if not _TOKEN.fullmatch(partial.split(b":", 1)[0].rstrip(b"\r")):
                return _UNREADABLE  # the loop's reader fails at once on this
            return None
        text = bytes(buf[pos:nl]).rstrip(b"\r\n")
        pos = nl + 1
        if not text:
            if not seen_header:
                continue  # blank lines between messages: the loop's reader skips them too
            break
        seen_header = True
        name, sep, value = text.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            return _UNREADABLE
        if name.strip().lower() == b"content-length":
            raw = value.strip()
            if not raw.isdigit() or int(raw) > max_bytes:
                return _UNREADABLE
            length = int(raw)
    if length is None:
        return _UNREADABLE
    if len(buf) < pos + length:
        return None
    return pos, pos + length


class AnsweringSource:
    """A chunk source for :func:`~pygent.lsp.transport.serve_connection` that reads a file
    descriptor on a daemon thread and answers there the messages ``answer`` takes.

    Back-pressure is :class:`~pygent.lsp.transport.ThreadedSource`'s: at most
    :data:`~pygent.lsp.transport.MAX_QUEUED_CHUNKS` hand-overs wait for the loop before
    the thread stops reading. ``preread``: bytes read before the server started
    (:mod:`pygent.lsp.launch`), split and handed over first.
    """

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        answer: Answer,
        preread: bytes = b"",
        max_bytes: int = p.MAX_MESSAGE_BYTES,
    ) -> None:
        self.fd = fd
        self.loop = loop
        self.answer = answer
        self.max_bytes = max_bytes
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        #: Messages answered on this thread (tests and the log read it).
        self.answered = 0
        self._slots = threading.BoundedSemaphore(MAX_QUEUED_CHUNKS)
        self._buf = bytearray(preread)
        self._passthrough = False  # set at the first byte that is not a readable frame
        self._thread = threading.Thread(target=self._main, name="pygent-lsp-stdin", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        if self._buf and not self._hand(self._split()):  # the preread bytes first
            return
        while True:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except OSError as exc:
                log.error("reading the client's input failed: %s", exc)
                chunk = b""
            if not chunk:  # end of input: what is left goes to the loop, then the end
                rest = bytes(self._buf)
                self._buf.clear()
                if self._hand(rest):
                    self._hand(b"", end=True)
                return
            self._buf += chunk
            if not self._hand(self._split()):
                return

    def _hand(self, data: bytes, *, end: bool = False) -> bool:
        """Queue ``data`` (nothing to do when empty, unless it is the ``end``) for the
        loop; False when the loop is closed (the server is exiting)."""
        if not data and not end:
            return True
        self._slots.acquire()
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)
        except RuntimeError:
            return False
        return True

    def _split(self) -> bytes:
        """Take the complete messages off the buffer; returns the bytes for the loop."""
        if self._passthrough:
            out = bytes(self._buf)
            self._buf.clear()
            return out
        forward = bytearray()
        while self._buf:
            bounds = frame_bounds(self._buf, self.max_bytes)
            if bounds is None:
                break
            if isinstance(bounds, int):  # not a frame: from here on the loop reads as is
                self._passthrough = True
                forward += self._buf
                self._buf.clear()
                break
            start, end = bounds
            if not self._answered(bytes(self._buf[start:end])):
                forward += self._buf[:end]
            del self._buf[:end]
        return bytes(forward)

    def _answered(self, body: bytes) -> bool:
        try:
            done = self.answer(body)
        except Exception:  # the loop answers it instead (answer writes nothing before success)
            log.exception("answering a message on the reader thread failed")
            return False
        if done:
            self.answered += 1
        return done

    async def read(self) -> bytes:
        chunk = await self.queue.get()
        self._slots.release()
        return chunk


# --- the read-only requests answered here -------------------------------------------------

_PROBE = json.dumps(p.SESSION_LIST).encode()
#: Where the list goes in the reply's JSON: its last occurrence (an id may hold it too).
_SLOT = "\0"
_SLOT_JSON = json.dumps(_SLOT)


def _valid_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def session_list_answer(server: PygentLanguageServer) -> Answer:
    """Answers ``pygent/session/list`` of the live sessions on the reader thread.

    Everything else, and every list request that is not the plain case (saved
    sessions, which read the disk; params the loop must reject with ``-32602``; after
    ``shutdown``) goes to the loop, which answers as it always did.

    Each session's JSON is kept with the summary it was made from, and made again only
    when the summary differs (a pure function of it, so never stale): the conversion to
    the wire types took most of an answer's time, and an answer that runs past the GIL's
    switch interval (1 ms, :func:`~pygent.lsp.server.favour_latency`) is made to wait for
    the turns' threads in the middle.
    """
    made: dict[str, tuple[SessionSummary, str]] = {}  # session id -> (summary, its JSON)

    def session_json(summary: SessionSummary) -> str:
        kept = made.get(summary.session_id)
        if kept is not None and kept[0] == summary:
            return kept[1]
        text = json.dumps(p.unstructure(convert.session_info(summary)))
        made[summary.session_id] = (summary, text)
        return text

    def answer(body: bytes) -> bool:
        if _PROBE not in body:  # most messages: no JSON parsing here at all
            return False
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return False
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return False
        if message.get("method") != p.SESSION_LIST or not _valid_id(message.get("id")):
            return False
        params = message.get("params")
        if params not in (None, [], {}) and params != {"includeSaved": False}:
            return False
        protocol = server.protocol
        write_reply = getattr(protocol.writer, "write_reply", None)
        if write_reply is None or protocol.shutdown_requested or protocol.exit_requested:
            return False
        summaries = server.service.list_sessions()
        sessions = ",".join([session_json(s) for s in summaries])
        if len(made) > len(summaries):  # closed sessions: forget them
            live = {s.session_id for s in summaries}
            for gone in [k for k in made if k not in live]:
                del made[gone]
        # p.ListSessionsResult's shape, with the sessions' JSON made above in its list.
        result = {**p.unstructure(p.ListSessionsResult([])), "sessions": _SLOT}
        envelope = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        before, _, after = envelope.rpartition(_SLOT_JSON)  # the last: the id comes first
        reply = f"{before}[{sessions}]{after}"
        # Ahead of queued replies too: this state is at least as new as theirs.
        write_reply(protocol._frame(reply), message["id"], first=True)
        return True

    return answer
