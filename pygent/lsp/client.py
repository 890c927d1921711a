"""A small JSON-RPC client with LSP framing, for Pygent's own terminal clients of a session host.

``pygent attach`` and ``pygent sessions`` talk to ``pygent serve`` over its Unix socket
as any editor does: ``Content-Length`` frames, ``initialize``, then ``pygent/*``
requests. This module holds only the connection (no pygls, no lsprotocol: a terminal
client starts in the time of a Python start-up): requests with ids, notifications, and
the server's requests (``pygent/requestPermission``) answered by registered handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

#: The largest frame read from the host (a transcript of a long session is large).
MAX_FRAME = 256 * 1024 * 1024
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603

NotificationHandler = Callable[[Any], None]
RequestHandler = Callable[[Any], Awaitable[Any]]


#: The most bytes a frame's header may take (``Content-Length`` and maybe a type).
MAX_HEADER = 4096


def _content_length(header: bytes) -> int | None:
    """The ``Content-Length`` of a frame's header (None: missing or not a number)."""
    for line in header.split(b"\r\n"):
        name, _, value = line.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


class _Frames:
    """``Content-Length`` frames out of the bytes as they arrive."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> tuple[list[bytes], str]:
        """The bodies of the frames ``data`` completes, and what is wrong with the next
        one ("" while nothing is)."""
        self.buffer += data
        out: list[bytes] = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _content_length(bytes(self.buffer[:end]))
            if length is None or length > MAX_FRAME:
                return out, "no readable Content-Length"
            if len(self.buffer) < end + 4 + length:
                break
            out.append(bytes(self.buffer[end + 4 : end + 4 + length]))
            del self.buffer[: end + 4 + length]
        if len(self.buffer) > MAX_HEADER and self.buffer.find(b"\r\n\r\n") < 0:
            return out, "a frame header without its end"
        return out, ""


class _PushReader(asyncio.StreamReader):
    """A stream reader that passes what arrives to ``on_data`` at once (in the
    transport's callback) instead of keeping it for a task to read."""

    on_data: Callable[[bytes], None] | None = None

    def feed_data(self, data: Any) -> None:
        if self.on_data is None:
            super().feed_data(data)
        else:
            self.on_data(bytes(data))


class RpcError(Exception):
    """An error answer: ``code`` and ``message`` as the server sent them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class ConnectionLost(Exception):
    """The server closed the connection (or it broke) before answering."""


class RpcClient:
    """One connection. Call :meth:`start` once; :meth:`request` and :meth:`notify` after."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        self._requests: dict[str, RequestHandler] = {}
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set when the connection ends; the reason (``None`` while open).
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._frames = _Frames()
        self._broken = ""  # why the connection is being ended by this side

    @classmethod
    async def connect_unix(cls, path: str | os.PathLike[str]) -> RpcClient:
        # asyncio.open_unix_connection, with a reader that hands frames on as they arrive.
        loop = asyncio.get_running_loop()
        reader = _PushReader(limit=MAX_FRAME, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_unix_connection(lambda: protocol, os.fspath(path))
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        client = cls(reader, writer)
        client.start()
        return client

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._notifications[method] = handler

    def on_request(self, method: str, handler: RequestHandler) -> None:
        self._requests[method] = handler

    def start(self) -> None:
        if isinstance(self._reader, _PushReader):
            # Set before the loop runs again: nothing that arrives is kept unread.
            self._reader.on_data = self._take
        self._task = asyncio.ensure_future(self._read_loop())

    async def initialize(self, client_name: str) -> dict[str, Any]:
        """The LSP handshake; returns the server's ``initialize`` result."""
        result = await self.request(
            "initialize",
            {"processId": os.getpid(), "clientInfo": {"name": client_name},
             "rootUri": None, "capabilities": {}},
        )
        self.notify("initialized", {})
        return dict(result or {})

    async def request(self, method: str, params: Any = None) -> Any:
        if self.closed.done():
            raise ConnectionLost(self.closed.result())
        self._next += 1
        msg_id = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        try:
            return await future
        finally:
            self._pending.pop(msg_id, None)

    def notify(self, method: str, params: Any = None) -> None:
        if not self.closed.done():
            self._send({"jsonrpc": "2.0", "method": method, "params": params})

    @classmethod
    def call_once(cls, path: str | os.PathLike[str], method: str, params: Any = None,
                  *, client_name: str = "pygent-cli", timeout: float = 10.0) -> Any:
        """Connect, shake hands, make one request and say goodbye, from synchronous code
        (``pygent sessions``, ``pygent serve --status``); raises :class:`RpcError`,
        :class:`ConnectionLost` or ``TimeoutError``."""

        async def once() -> Any:
            client = await cls.connect_unix(path)
            try:
                await client.initialize(client_name)
                return await client.request(method, params)
            finally:
                await client.aclose()

        async def bounded() -> Any:
            return await asyncio.wait_for(once(), timeout)

        return asyncio.run(bounded())

    async def aclose(self) -> None:
        """Say goodbye (``shutdown``, ``exit``) and close; safe to call twice."""
        if not self.closed.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request("shutdown"), 5)
            self.notify("exit")
            self._end("closed")
        with contextlib.suppress(Exception):
            self._writer.close()
            await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # --- the wire ---------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        try:
            self._writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (ConnectionError, RuntimeError) as exc:
            self._end(f"the connection broke ({exc})")

    async def _read_loop(self) -> None:
        try:
            if isinstance(self._reader, _PushReader):
                # Frames are taken in the transport's callback as bytes arrive (a streamed
                # reply is a frame a token: no task wake-up for each; bench/bench_acp.py,
                # ``pygent acp`` joined to a host, reads here); this waits for the end.
                await self._reader.read()
                return
            while not self._broken:
                chunk = await self._reader.read(1 << 16)
                if not chunk:
                    return
                self._take(chunk)
        except ConnectionError as exc:
            self._broken = self._broken or f"the connection broke ({exc})"
        finally:
            self._end(self._broken or "the host closed the connection")

    def _take(self, data: bytes) -> None:
        """Dispatch every whole frame ``data`` completes; a frame that cannot be read ends
        the connection."""
        if self._broken:
            return
        bodies, wrong = self._frames.feed(data)
        try:
            for body in bodies:
                self._dispatch(json.loads(body))
        except ValueError as exc:  # not JSON
            wrong = str(exc)
        if wrong:
            self._broken = f"the host sent a frame Pygent cannot read ({wrong})"
            if isinstance(self._reader, _PushReader):  # its read loop waits for the end
                self._reader.feed_eof()
                self._writer.close()

    def _end(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # an answer
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                return
            error = message.get("error")
            if error is not None:
                future.set_exception(
                    RpcError(int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")),
                             error.get("data"))
                )
            else:
                future.set_result(message.get("result"))
            return
        if "id" not in message:
            handler = self._notifications.get(method)
            if handler is not None:
                handler(message.get("params"))
            return
        task = asyncio.ensure_future(self._answer(message["id"], method, message.get("params")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg_id: Any, method: str, params: Any) -> None:
        handler = self._requests.get(method)
        if handler is None:
            self._send({"jsonrpc": "2.0", "id": msg_id,
                        "error": {"code": METHOD_NOT_FOUND, "message": f"{method} is not supported"}})
            return
        try:
            result = await handler(params)
        except Exception as exc:  # the handler's failure is the server's answer
            log.debug("answering %s failed", method, exc_info=True)
            self._send({"jsonrpc": "2.0", "id": msg_id,
                        "error": {"code": INTERNAL_ERROR, "message": str(exc)}})
            return
        self._send({"jsonrpc": "2.0", "id": msg_id, "result": result})
