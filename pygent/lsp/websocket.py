"""The language server's framing over WebSockets (``pygent ui``): one JSON-RPC message per text frame.

A browser page runs the same chat controller as the VS Code extension and speaks the
same ``pygent/*`` requests; only the transport differs. Every page is one connection of
the session host (:class:`pygent.lsp.host.SharedSessions`), so a reload or a second tab
finds its sessions. The WebSocket itself is the caller's (aiohttp in
:mod:`pygent.web.server`): this module only needs a coroutine that receives a text
frame and one that sends one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class WebSocketSource:
    """A :class:`~pygent.lsp.transport.ChunkSource` over text frames: each frame is one
    message, handed on with the header the framing reader expects."""

    def __init__(self, receive: Callable[[], Awaitable[str | None]]) -> None:
        self.receive = receive

    async def read(self) -> bytes:
        text = await self.receive()
        if text is None:
            return b""
        body = text.encode("utf-8")
        return b"Content-Length: %d\r\n\r\n" % len(body) + body


class WebSocketWriter:
    """pygls' writer interface over text frames: the framed stream the protocol writes is
    split into message bodies, sent in order by one task (pygls writes synchronously; a
    page that stops reading only grows ``backlog``)."""

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self.send = send
        self.closed = False
        self._buffer = b""
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            headers = self._buffer[:end].decode("ascii", "replace").lower().split("\r\n")
            length = next(
                int(h.split(":", 1)[1]) for h in headers if h.startswith("content-length:")
            )
            start = end + 4
            if len(self._buffer) < start + length:
                return
            body = self._buffer[start : start + length]
            self._buffer = self._buffer[start + length :]
            self._queue.put_nowait(body.decode("utf-8"))

    async def _run(self) -> None:
        while (text := await self._queue.get()) is not None:
            try:
                await self.send(text)
            except (ConnectionError, RuntimeError) as exc:  # the socket went away
                log.debug("a page disconnected while sending: %r", exc)
                self.closed = True
                return

    def close(self, timeout: float = 5.0) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)
