"""Newline-delimited JSON-RPC over stdio for ``pygent acp``, with answers to bad frames.

The SDK's own reader logs a line that is not JSON and goes on silently; a client then
waits forever for an answer. This transport (the SDK's ``Transport`` seam) answers such
a line with ``-32700`` (``id: null``), a frame that is not a JSON-RPC object with
``-32600``, and a line longer than :data:`MAX_FRAME_BYTES` with ``-32600`` (it is
skipped, the memory it may take is bounded), and keeps serving.

Two notifications the SDK (0.12) has no route for are settled here, before it sees
them, through this same public seam rather than by wrapping the SDK's private router:
``$/cancel_request`` goes to :attr:`StdioTransport.on_cancel_request`, and any other
notification the agent does not serve (not ``session/cancel``, not an ``_`` extension) is
logged and dropped (the SDK would log a traceback for it).

stdout carries only protocol frames: :func:`claim_stdout` moves the real stdout to a
private descriptor and points descriptor 1 at stderr, so a stray ``print`` or a child
process that writes to its inherited stdout cannot corrupt the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

#: The notifications the agent serves (besides ``_`` extensions); others are dropped here.
AGENT_NOTIFICATIONS = frozenset({"session/cancel"})
#: LSP's name and ACP's (draft) name for "cancel the request with this id".
CANCEL_REQUEST = frozenset({"$/cancel_request", "$/cancelRequest"})
#: The longest frame read; a longer line is answered with an error and skipped.
MAX_FRAME_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 1 << 16


def claim_stdout() -> int:
    """Keep stdout for protocol frames: returns a private copy of descriptor 1 and
    points descriptor 1 (and ``sys.stdout``) at stderr."""
    sys.stdout.flush()
    out = os.dup(1)
    os.set_inheritable(out, False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def error_frame(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


class StdioTransport:
    """Moves JSON-RPC messages over a pair of file descriptors, one JSON object a line.

    ``observe_in``/``observe_out`` (optional) see every decoded incoming message and every
    outgoing one (the agent uses them to map ``$/cancel_request`` ids to turns);
    ``on_cancel_request`` (optional) gets the id a ``$/cancel_request`` names.
    """

    def __init__(self, in_fd: int, out_fd: int, *, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.max_frame = max_frame
        self.observe_in: Any = None
        self.observe_out: Any = None
        self.on_cancel_request: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._write_lock = asyncio.Lock()
        self._buffer = bytearray()
        self._skipping = False
        self._eof = False
        self._closed = False

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.max_frame)
        protocol = asyncio.StreamReaderProtocol(reader)
        await loop.connect_read_pipe(
            lambda: protocol, os.fdopen(self.in_fd, "rb", 0, closefd=False)
        )
        transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(self.out_fd, "wb", 0, closefd=False)
        )
        self._reader = reader
        self._writer = transport  # type: ignore[assignment]

    async def start(self) -> None:
        """Attach to the descriptors (on the running loop)."""
        if self._reader is None:
            await self._open()

    async def send(self, message: dict[str, Any]) -> None:
        if self._closed or self._writer is None or self._writer.is_closing():
            raise ConnectionError("the client is gone")
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if self.observe_out is not None:
            self.observe_out(message)
        async with self._write_lock:
            self._writer.write(data)
            # Back-pressure: a client that stops reading holds the writer here, not memory.
            while self._writer.get_write_buffer_size() > 1 << 20 and not self._writer.is_closing():
                await asyncio.sleep(0.01)

    def send_now(self, message: dict[str, Any]) -> bool:
        """Write ``message`` at once when nothing else is being written and the client is
        reading; False (nothing written) otherwise, and the caller queues it."""
        writer = self._writer
        if (
            self._closed
            or writer is None
            or writer.is_closing()
            or self._write_lock.locked()
            or writer.get_write_buffer_size() > 1 << 20
        ):
            return False
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if self.observe_out is not None:
            self.observe_out(message)
        writer.write(data)
        return True

    async def _line(self) -> bytes | None:
        """The next complete line (without the newline), None at EOF; overlong lines are
        answered and dropped here."""
        assert self._reader is not None
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                line = bytes(self._buffer[:nl])
                del self._buffer[: nl + 1]
                if self._skipping:
                    self._skipping = False
                    continue
                return line
            if len(self._buffer) > self.max_frame and not self._skipping:
                self._skipping = True
                await self.send(
                    error_frame(
                        None,
                        -32600,
                        f"Invalid request: a frame longer than {self.max_frame} bytes was skipped",
                    )
                )
            if self._skipping:
                self._buffer.clear()
            if self._eof:
                if self._buffer and not self._skipping:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            try:
                chunk = await self._reader.read(_READ_CHUNK)
            except (ConnectionError, OSError) as exc:  # a socket reset: the client is gone
                log.debug("the client's connection failed: %s", exc)
                chunk = b""
            if not chunk:
                self._eof = True
            self._buffer += chunk

    async def receive(self) -> dict[str, Any] | None:
        while True:
            line = await self._line()
            if line is None:
                return None
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except (ValueError, RecursionError) as exc:
                await self.send(
                    error_frame(
                        None,
                        -32700,
                        "Parse error: the line is not JSON",
                        {"details": str(exc)[:200]},
                    )
                )
                continue
            problem = _invalid(message)
            if problem is not None:
                msg_id = message.get("id") if isinstance(message, dict) else None
                if isinstance(msg_id, (dict, list, bool)):
                    msg_id = None
                if isinstance(message, dict) and "method" in message and "id" not in message:
                    log.warning("ignoring an invalid notification: %s", problem)
                    continue
                await self.send(error_frame(msg_id, -32600, f"Invalid request: {problem}"))
                continue
            if self._settled_here(message):
                continue
            if self.observe_in is not None:
                self.observe_in(message)
            return message

    def _settled_here(self, message: dict[str, Any]) -> bool:
        """True for a notification handled (or dropped) here instead of by the SDK."""
        method = message.get("method")
        if method is None or "id" in message:
            return False
        if method in CANCEL_REQUEST:
            params = message.get("params")
            if isinstance(params, dict) and self.on_cancel_request is not None:
                self.on_cancel_request(params.get("requestId", params.get("id")))
            return True
        if method in AGENT_NOTIFICATIONS or method.startswith("_"):
            return False
        log.warning("ignoring the notification %r: the agent does not serve it", method)
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()



class StreamTransport(StdioTransport):
    """The same framing over an asyncio stream pair: a connection to the session host
    (:mod:`pygent.acp.hosted`), whose first bytes (``preread``) were read already."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        preread: bytes = b"",
        *,
        max_frame: int = MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(-1, -1, max_frame=max_frame)
        self._reader = reader
        self._writer = writer.transport  # type: ignore[assignment]
        self._buffer += preread

    async def _open(self) -> None:  # already open
        return None


def _invalid(message: Any) -> str | None:
    """Why ``message`` is not a JSON-RPC 2.0 request, notification or response (None: it is)."""
    if not isinstance(message, dict):
        return f"a frame must be a JSON object, not {type(message).__name__}"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "'method' must be a string"
        if "params" in message and not isinstance(message["params"], (dict, list, type(None))):
            return "'params' must be an object"
        if "id" in message and isinstance(message["id"], (dict, list, bool, float)):
            return "'id' must be a string, an integer or null"
        return None
    if "id" in message and ("result" in message or "error" in message):
        return None
    return "a frame needs a 'method' (request) or an 'id' with 'result'/'error' (response)"
