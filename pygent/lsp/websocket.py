"""The language server over WebSockets (``pygent ui``): one JSON-RPC message per text frame, every connection on one shared :class:`SessionService`.

A browser page runs the same chat controller as the VS Code extension and speaks the
same ``pygent/*`` requests; only the transport differs. Unlike an editor, a page comes
and goes (a reload, a second tab) while its sessions go on, so :class:`SharedSessions`
owns the service for the whole process and gives each connection a
:class:`~pygent.lsp.server.PygentLanguageServer` bound to it:

* approvals go to every attached connection (the first answer counts), and a request
  still waiting when a page reloads is asked again on the new connection;
* each live session's updates are logged, so a page that attaches late asks for the
  transcript so far (``pygentUi/transcript``, a saved session's history likewise) and
  then follows the live updates.

The WebSocket itself is the caller's (aiohttp in :mod:`pygent.web.server`): this module
only needs a coroutine that receives a text frame and one that sends one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from pygent import events as ev
from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.errors import PygentError
from pygent.lsp import convert
from pygent.lsp import protocol as p
from pygent.lsp.approver import DEFAULT_TIMEOUT, LspApprover
from pygent.lsp.server import PygentLanguageServer
from pygent.lsp.transcript import SessionLog, history_updates
from pygent.service import SessionService
from pygent.settings import Settings

log = logging.getLogger(__name__)

#: The one request a page adds to ``pygent/*``: ``{sessionId}`` -> ``{events, seq}``, the
#: session's updates so far (merged as the editors merge them) and the ``seq`` of the
#: last one this connection was sent; later updates follow as ``pygent/sessionUpdate``.
TRANSCRIPT = "pygentUi/transcript"
#: An approval waits this long for a page when none is attached (a reload takes less).
NO_PAGE_GRACE = 5.0


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


def _denied(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


class SharedSessions:
    """One :class:`SessionService` for every connection of a ``pygent ui`` process.

    Args:
        settings: the base settings of every session.
        approval_timeout: seconds to wait for an answer in a page before denying.
        model: a model object for every agent (tests); default: OpenAI-compatible.
    """

    def __init__(
        self, settings: Settings, *, approval_timeout: float = DEFAULT_TIMEOUT, model: Any = None
    ) -> None:
        self.settings = settings
        self.approval_timeout = approval_timeout
        self.service = SessionService(settings, approver_factory=self._approver, model=model)
        self.servers: list[PygentLanguageServer] = []
        self.logs: dict[str, SessionLog] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Future[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Bind to the running loop and start logging every session's updates."""
        self.loop = asyncio.get_running_loop()
        self._unsubscribe = self.service.subscribe_all(self._record)

    async def aclose(self) -> None:
        """Cancel every turn and remove every sandbox (the process is stopping)."""
        await self.service.aclose()
        if self._unsubscribe is not None:
            self._unsubscribe()

    def _record(self, event: ev.Event) -> None:
        update = convert.event_update(event)
        if update is not None and event.session_id:
            self._log(event.session_id).append(p.unstructure(update))

    def _log(self, session_id: str) -> SessionLog:
        return self.logs.setdefault(session_id, SessionLog())

    # --- connections ----------------------------------------------------------------------

    async def serve(
        self, receive: Callable[[], Awaitable[str | None]], send: Callable[[str], Awaitable[None]]
    ) -> None:
        """Serve one page until its socket closes; its sessions go on."""
        server = PygentLanguageServer(
            self.settings, approval_timeout=self.approval_timeout, service=self.service
        )

        async def transcript(raw: Any) -> dict[str, Any]:
            try:
                params = p.structure(raw, p.SessionIdParams)
            except p.ParamsError as exc:
                raise JsonRpcInvalidParams(str(exc)) from None
            return await self.transcript(server, params.session_id)

        server.feature(TRANSCRIPT)(transcript)
        writer = WebSocketWriter(send)
        self.servers.append(server)
        self._notify()
        try:
            await server.serve(WebSocketSource(receive), writer)
        finally:
            self.servers.remove(server)
            self._notify()
            writer.close()

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def _change(self) -> asyncio.Future[None]:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def transcript(self, server: PygentLanguageServer, session_id: str) -> dict[str, Any]:
        """A live session's updates so far (this connection follows it from now on), or a
        saved session's history as updates."""
        if any(s.id == session_id for s in self.service.sessions):
            channel = server.handlers._channel(session_id)
            channel.flush()
            return {"events": self._log(session_id).snapshot(), "seq": channel.seq}
        try:
            events = await asyncio.to_thread(self._history, session_id)
        except PygentError as exc:
            log.warning("reading saved session %s: %s", session_id, exc)
            text = f"The saved conversation could not be read: {exc.user_message()}"
            events = [p.unstructure(p.NoticeUpdate(level="warning", text=text))]
        return {"events": events, "seq": 0}

    def _history(self, session_id: str) -> list[dict[str, Any]]:
        reader = self.service.store.read(session_id)
        try:
            return history_updates(reader.load(repair=False))
        finally:
            reader.close()

    # --- approvals ------------------------------------------------------------------------

    def _approver(self, session_id: str) -> SharedApprover:
        return SharedApprover(self, session_id)

    async def ask(self, session_id: str, request: ApprovalRequest) -> ApprovalResponse:
        """Ask every attached page (on the loop); pages that attach while it waits are asked
        too, and the first answer wins. Denied when nobody answers in time, or when no
        page is attached for :data:`NO_PAGE_GRACE` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.approval_timeout
        asks: dict[PygentLanguageServer, asyncio.Task[ApprovalResponse]] = {}

        def policy_of() -> Any:
            try:
                return self.service.get(session_id).agent.policy
            except PygentError:
                return None

        try:
            while (remaining := deadline - loop.time()) > 0:
                for server in self.servers:
                    if server not in asks and server.loop is not None:
                        approver = LspApprover(
                            server, session_id, timeout=remaining, policy_of=policy_of
                        )
                        asks[server] = asyncio.ensure_future(approver._ask(request))
                for server in [s for s in asks if s not in self.servers]:
                    asks.pop(server).cancel()  # its page left: the next one is asked
                waiting: list[asyncio.Future[Any]] = [*asks.values(), self._change()]
                if not self.servers:
                    done, _ = await asyncio.wait(waiting, timeout=min(remaining, NO_PAGE_GRACE))
                    if not self.servers:
                        return _denied(f"no page was open for {NO_PAGE_GRACE:g}s to answer it")
                    continue
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for server, task in list(asks.items()):
                    if task not in done:
                        continue
                    if server in self.servers and not task.cancelled():
                        return task.result()
                    asks.pop(server)
            return _denied(
                f"nobody answered the approval request within {self.approval_timeout:g}s"
            )
        finally:
            for task in asks.values():
                task.cancel()


class SharedApprover:
    """The :class:`~pygent.approval.Approver` of one session of :class:`SharedSessions`;
    the session's log records the request as the pages see it (pending, resolved)."""

    def __init__(self, hub: SharedSessions, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        loop = self.hub.loop
        if loop is None:
            return _denied("no page is connected")
        if asyncio.get_running_loop() is loop:
            return await self._ask(request)
        # A delegated task asks from its manager's thread: the pages are asked from the loop.
        future = asyncio.run_coroutine_threadsafe(self._ask(request), loop)
        return await asyncio.wrap_future(future)

    def _status(self, request: ApprovalRequest, state: str, outcome: str = "") -> None:
        update = p.PermissionUpdate(
            task_id=request.task_id,
            call_id=request.call_id,
            state=state,  # type: ignore[arg-type]
            outcome=outcome,
        )
        self.hub._log(self.session_id).append(p.unstructure(update))

    async def _ask(self, request: ApprovalRequest) -> ApprovalResponse:
        self._status(request, "pending")
        try:
            response = await self.hub.ask(self.session_id, request)
        except asyncio.CancelledError:
            self._status(request, "resolved", "cancelled")
            raise
        self._status(
            request, "resolved", response.message if response.automatic else response.option.value
        )
        return response
