"""Robust LSP framing: reads ``Content-Length`` frames with a size cap, writes without blocking the loop.

pygls 2.1.1's reader goes deaf on a bad ``Content-Length``, has no size cap, answers
nothing to a request without ``params`` and loses the id of a message it cannot
parse. This module replaces it: every body is parsed here, bad JSON gets ``-32700``,
a request without ``params`` gets ``params: null`` (so it is answered), a message with
an ``id`` but no ``method``, ``result`` or ``error`` gets ``-32600`` with its id, a
request that cannot be structured gets ``-32602`` with its id, and any framing error or an
over-size message ends the connection with a logged error (an editor then restarts
the server) instead of leaving it alive but deaf.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pygent.lsp.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_MESSAGE_BYTES,
    PARSE_ERROR,
)

log = logging.getLogger(__name__)

#: The longest header line accepted (real headers are a few dozen bytes).
MAX_HEADER_LINE = 8 * 1024
#: Writes queued beyond this make new ``$/progress`` notifications be dropped.
MAX_BACKLOG = 2000
#: Chunks read from stdin that may wait for the loop before the reader thread pauses.
MAX_QUEUED_CHUNKS = 64
_CHUNK = 64 * 1024
#: What the pipe to a stdio client holds (Linux: 64 KiB by default). Its content is what a
#: reply queued first still waits behind: the client reads and parses it all before the
#: reply. bench/bench_channel.py --trace, alternating runs at load 10-17: the part of the
#: streaming ``session/list`` from the reply's queueing to the client's read went from a
#: p99 of 27-36 ms to 10-28 ms (docs/performance.md, "Editor channel").
PIPE_BYTES = 16 * 1024


class FramingError(Exception):
    """The byte stream is not LSP framing (or a message is too large): the connection ends."""


class ChunkSource(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" at end of stream."""


_TOKEN = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]*")


def _check_header_start(partial: bytes) -> None:
    """Fail at once when buffered bytes cannot begin a header line (e.g. the rest of a
    body whose Content-Length was too short), instead of waiting for a newline."""
    name = partial.split(b":", 1)[0].rstrip(b"\r\n")
    if not _TOKEN.fullmatch(name):
        shown = partial[:60].decode("utf-8", "replace")
        raise FramingError(f"expected a header line, got {shown!r} (is a Content-Length wrong?)")


class FrameReader:
    """Splits a byte stream into message bodies."""

    def __init__(self, source: ChunkSource, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self.source.read()
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    async def _line(self) -> bytes | None:
        while True:
            at = self._buf.find(b"\n")
            if at >= 0:
                line = bytes(self._buf[: at + 1])
                del self._buf[: at + 1]
                return line
            if len(self._buf) > MAX_HEADER_LINE:
                raise FramingError(f"a header line is longer than {MAX_HEADER_LINE} bytes")
            _check_header_start(bytes(self._buf))
            if not await self._fill():
                if self._buf:
                    raise FramingError("the stream ended inside a header")
                return None

    async def next_body(self) -> bytes | None:
        """The next message body, or None at a clean end of stream."""
        length: int | None = None
        seen_header = False
        while True:
            line = await self._line()
            if line is None:
                if seen_header:
                    raise FramingError("the stream ended inside a header block")
                return None
            text = line.rstrip(b"\r\n")
            if not text:
                if not seen_header:
                    continue  # stray blank lines between messages are harmless
                break
            seen_header = True
            name, sep, value = text.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                shown = text[:60].decode("utf-8", "replace")
                raise FramingError(f"expected a 'Name: value' header line, got {shown!r}")
            if name.strip().lower() == b"content-length":
                raw = value.strip()
                if not raw.isdigit():
                    raise FramingError(
                        f"invalid Content-Length {raw[:40].decode('utf-8', 'replace')!r}"
                    )
                length = int(raw)
                if length > self.max_bytes:
                    raise FramingError(
                        f"message of {length} bytes exceeds the {self.max_bytes // (1024 * 1024)} MiB limit"
                    )
        if length is None:
            raise FramingError("a message without a Content-Length header")
        while len(self._buf) < length:
            if not await self._fill():
                raise FramingError(
                    f"the stream ended {length - len(self._buf)} bytes into a message body"
                )
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return body


class ThreadedSource:
    """Reads a file descriptor on a daemon thread (stdin may be a pipe, a file or a tty).

    At most :data:`MAX_QUEUED_CHUNKS` chunks wait for the loop (back-pressure: a client
    flooding the server is read only as fast as messages are handled, so memory stays
    flat). A chunk is handed over with one ``call_soon_threadsafe``: when the loop is
    busy, every extra turn of it before a request is read adds to that request's time.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, preread: bytes = b"") -> None:
        self.fd = fd
        self.loop = loop
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(MAX_QUEUED_CHUNKS)
        if preread:  # read before the server started (pygent.lsp.launch): first in line
            self._slots.acquire()  # read() gives every chunk's slot back
            self.queue.put_nowait(preread)
        self._thread = threading.Thread(target=self._main, name="pygent-lsp-stdin", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while True:
            self._slots.acquire()
            try:
                chunk = os.read(self.fd, _CHUNK)
            except OSError as exc:
                log.error("reading the client's input failed: %s", exc)
                chunk = b""
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)
            except RuntimeError:
                return  # the loop is closed: the server is exiting
            if not chunk:
                return

    async def read(self) -> bytes:
        chunk = await self.queue.get()
        self._slots.release()
        return chunk


class StreamSource:
    """Chunks from an asyncio ``StreamReader`` (TCP)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def read(self) -> bytes:
        try:
            return await self.reader.read(_CHUNK)
        except (ConnectionError, OSError) as exc:
            log.info("the client connection failed: %s", exc)
            return b""


#: A message the writer's thread encodes itself: the encoder (None: drop it) and about
#: how many bytes it will be.
Deferred = tuple[Callable[[], "bytes | None"], int]


class ThreadedWriter:
    """Writes frames to a file descriptor from a thread, so a slow client never blocks
    the event loop; ``backlog`` lets the protocol drop progress notifications and
    ``pending_bytes`` lets the update channels hold command output back.
    :meth:`write_later` also moves a message's encoding onto that thread.

    Replies (:meth:`write_reply`) go ahead of queued notifications: a client reading
    megabytes of command output must not wait for all of it to see the answer to
    ``session/list``. A reply never passes what its own request's handling sent (a
    prompt's result comes after the turn's updates) nor anything queued before a
    :meth:`mark` made while handling it (``UpdateChannel.flush()``); notifications
    keep their order among themselves.
    """

    def __init__(self, fd: int, *, pipe_bytes: int | None = None) -> None:
        self.fd = fd
        if pipe_bytes is not None:
            shrink_pipe(fd, pipe_bytes)
        self._queue: collections.deque[bytes | Deferred | None] = collections.deque()
        self._taken = 0  # items ever taken off the queue: the absolute index of _queue[0]
        self._floor = 0  # absolute index no reply may be queued before (mark(None))
        self._after: dict[Any, int] = {}  # request id -> absolute index its reply follows
        self._replies = 0  # absolute index just past the last reply: replies keep their order
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self.broken = False
        self._thread = threading.Thread(target=self._main, name="pygent-lsp-stdout", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet handed to the client's pipe."""
        return self._bytes

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append(data)
            self._bytes += len(data)
            self._cond.notify()

    def mark(self, request_id: Any = None) -> None:
        """Everything queued now goes out before the reply to ``request_id`` (None:
        before every reply written from now on)."""
        with self._cond:
            end = self._taken + len(self._queue)
            if request_id is None:
                self._floor = end
            else:
                self._after[request_id] = end
                if len(self._after) > 256:  # ids answered without a reply; they bind nothing
                    self._after = {k: v for k, v in self._after.items() if v > self._taken}

    def write_reply(self, data: bytes, request_id: Any, *, first: bool = False) -> None:
        """Queue the reply to ``request_id`` ahead of the notifications it may pass.

        ``first``: a reply computed off the loop from state that every reply queued
        before it already reflects (:mod:`pygent.lsp.reader_answers`): it goes out next,
        ahead of queued replies too (a prompt's reply waits behind its turn's updates),
        held back only by a :meth:`mark` made outside any request.
        """
        with self._cond:
            if self._closed:
                return
            if first:
                at = max(self._floor, self._taken)
                if self._replies > at:  # the replies it passes move one place on
                    self._replies += 1
            else:
                at = max(self._floor, self._replies, self._after.pop(request_id, 0), self._taken)
            if at >= self._taken + len(self._queue):
                at = self._taken + len(self._queue)
                self._queue.append(data)
            else:
                self._queue.insert(at - self._taken, data)
                # What was at or after ``at`` moved one place on: so do the marks past it.
                for key, end in self._after.items():
                    if end > at:
                        self._after[key] = end + 1
                if self._floor > at:
                    self._floor += 1
            if not first:
                self._replies = at + 1
            self._bytes += len(data)
            self._cond.notify()

    def write_later(self, encode: Callable[[], bytes | None], size: int) -> None:
        """Queue a message that this writer's thread encodes (``encode()``) when its turn
        comes, after everything queued before it; ``size`` (an estimate of its length)
        counts in :attr:`pending_bytes` until then."""
        with self._cond:
            if self._closed:
                return
            self._queue.append((encode, size))
            self._bytes += size
            self._cond.notify()

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                self._taken += 1
                if item is None:
                    self._cond.notify_all()
                    return
                if isinstance(item, tuple):
                    encode, size = item
                    self._bytes -= size
                else:
                    data = item
                    self._bytes -= len(data)
            if isinstance(item, tuple):
                try:
                    encoded = encode()
                except Exception:  # one bad message must not stop the writer
                    log.exception("encoding a message failed")
                    encoded = None
                if encoded is None:
                    continue
                data = encoded
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
            except OSError as exc:
                if not self.broken:
                    log.error("writing to the client failed: %s", exc)
                self.broken = True

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued (up to ``timeout`` seconds) and stop."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.append(None)
            self._cond.notify()
        self._thread.join(timeout)


def shrink_pipe(fd: int, size: int) -> None:
    """Make the pipe ``fd`` writes to hold about ``size`` bytes (never more than it holds
    now); nothing happens when ``fd`` is not a pipe or the platform cannot say."""
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if get_size is None or set_size is None:  # not Linux
        return
    with contextlib.suppress(OSError):  # a file, a terminal, a socket: left as it is
        if fcntl.fcntl(fd, get_size) > size:
            fcntl.fcntl(fd, set_size, size)


class StreamWriterAdapter:
    """pygls' writer interface over an asyncio ``StreamWriter`` (TCP)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @property
    def backlog(self) -> int:
        return self.pending_bytes // 4096

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered by the transport and not yet sent."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self, timeout: float = 5.0) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class MessageSink(Protocol):
    """What the framing loop hands messages to (``PygentProtocol``)."""

    def handle_raw(self, data: Any) -> None: ...

    def send_error(self, msg_id: Any, code: int, message: str) -> None: ...


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))


def dispatch_body(body: bytes, sink: MessageSink) -> None:
    """Parse one body and hand it over; every malformed message gets a JSON-RPC error."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        log.warning("a message that is not JSON was received: %s", detail)
        sink.send_error(None, PARSE_ERROR, f"parse error: the message is not valid JSON ({detail})")
        return
    if not isinstance(data, dict):
        what = "a batch (array)" if isinstance(data, list) else type(data).__name__
        sink.send_error(
            None,
            INVALID_REQUEST,
            f"invalid request: expected a JSON-RPC object, got {what} (batches are not supported)",
        )
        return
    msg_id = data.get("id")
    if not _valid_id(msg_id):
        sink.send_error(None, INVALID_REQUEST, "invalid request: 'id' must be a string or a number")
        return
    if data.get("jsonrpc") != "2.0":
        if "method" in data or "id" in data:
            sink.send_error(
                msg_id if "method" in data else None,
                INVALID_REQUEST,
                "invalid request: 'jsonrpc' must be \"2.0\"",
            )
        return
    if "method" in data:
        if not isinstance(data["method"], str):
            sink.send_error(msg_id, INVALID_REQUEST, "invalid request: 'method' must be a string")
            return
        if "params" not in data:
            # Legal JSON-RPC; pygls would drop it without a reply.
            data["params"] = None
        elif data["params"] is not None and not isinstance(data["params"], (dict, list)):
            if "id" in data:
                sink.send_error(
                    msg_id, INVALID_PARAMS, "invalid params: 'params' must be an object or an array"
                )
            return
    elif "id" not in data:
        sink.send_error(
            None,
            INVALID_REQUEST,
            "invalid request: neither a request, a notification nor a response",
        )
        return
    elif "result" not in data and "error" not in data:
        # Neither a request nor a response: unanswered, its sender would wait forever.
        sink.send_error(
            msg_id,
            INVALID_REQUEST,
            "invalid request: a message with an 'id' needs a 'method' (a request) or a"
            " 'result' or 'error' (a response)",
        )
        return
    sink.handle_raw(data)


async def serve_connection(
    source: ChunkSource,
    sink: MessageSink,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    on_framing_error: Callable[[str], Awaitable[None]] | None = None,
) -> str:
    """Read and dispatch messages until the stream ends. Returns why it stopped:
    ``eof`` or ``framing: <reason>``."""
    reader = FrameReader(source, max_bytes)
    while True:
        try:
            body = await reader.next_body()
        except FramingError as exc:
            log.error("protocol error, closing the connection: %s", exc)
            if on_framing_error is not None:
                await on_framing_error(str(exc))
            return f"framing: {exc}"
        if body is None:
            return "eof"
        try:
            dispatch_body(body, sink)
        except Exception:  # one bad message must never stop the server
            log.exception("handling a message failed")
        # Let handlers started by this message run before reading the next one.
        await asyncio.sleep(0)
