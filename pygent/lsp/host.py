"""The session host: one :class:`SessionService`, many connections (``pygent serve``, ``pygent ui``).

Editors and pages come and go (a closed window, a reload, a second tab) while their
sessions go on, so :class:`SharedSessions` owns the service for the whole process and
gives each connection a :class:`~pygent.lsp.server.PygentLanguageServer` bound to it
(``service=``; the transport is the caller's: a Unix socket in :mod:`pygent.lsp.serve`,
a WebSocket in :mod:`pygent.web.server`):

* a connection is *attached* to a session once it created, resumed, prompted or read
  the transcript of it (it has an update channel for it), until it closes the session
  or goes away;
* approvals go to every connection attached to the session (the first answer counts;
  the others see the request resolved in the session's updates), and a request still
  waiting when a client reconnects is asked again on the new connection;
* every live session's updates are logged (:class:`~pygent.lsp.transcript.SessionLogs`),
  so a client that attaches late reads the transcript so far
  (``pygent/session/transcript``) and then follows the live updates;
* with ``idle_timeout``, a session that nobody is attached to and that runs no turn is
  closed (its sandbox removed) after that many seconds;
* every connection is told when the live sessions change (``pygent/sessionsChanged``),
  as the service makes the change (:meth:`SessionService.watch_sessions`): nothing polls.

A connection that speaks ACP (``pygent acp`` joined to the host) runs the ACP agent on
this service instead (:mod:`pygent.acp.hosted`); it is one of :attr:`SharedSessions.peers`,
attached to the sessions it follows, and asked their approvals like the LSP clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.errors import PygentError
from pygent.lsp import protocol as p
from pygent.lsp.approver import DEFAULT_TIMEOUT, LspApprover
from pygent.lsp.server import PygentLanguageServer
from pygent.lsp.transcript import SessionLog, SessionLogs
from pygent.lsp.transport import ChunkSource
from pygent.lsp.websocket import WebSocketSource, WebSocketWriter
from pygent.service import SessionService
from pygent.settings import Settings

log = logging.getLogger(__name__)

#: An approval waits this long for a client when none is attached (a reload takes less).
NO_CLIENT_GRACE = 5.0
#: How often attachments are looked at while an approval waits (a client may attach).
ATTACH_POLL = 0.5


def _denied(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


class SharedSessions:
    """One :class:`SessionService` for every connection of a host process.

    Args:
        settings: the base settings of every session.
        approval_timeout: seconds to wait for an answer before denying.
        model: a model object for every agent (tests); default: OpenAI-compatible.
        no_client_grace: seconds an approval waits while no client is attached to its
            session before it is denied (a page reload: a few seconds; a host whose
            editors may reconnect: up to ``approval_timeout``).
        idle_timeout: close a session nobody is attached to, and that runs no turn,
            after this many seconds; None: never.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        approval_timeout: float = DEFAULT_TIMEOUT,
        model: Any = None,
        no_client_grace: float = NO_CLIENT_GRACE,
        idle_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.approval_timeout = approval_timeout
        self.no_client_grace = no_client_grace
        self.idle_timeout = idle_timeout
        self.service = SessionService(settings, approver_factory=self._approver, model=model)
        self.servers: list[PygentLanguageServer] = []
        #: Connections of other protocols (ACP: :class:`pygent.acp.hosted.AcpConnection`).
        self.peers: list[Any] = []
        self.logs = SessionLogs()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Extra fields of the ``pygentHost/status`` answer (the socket path...).
        self.status_extra: dict[str, Any] = {}
        self._idle_since: dict[str, float] = {}
        self._changed: asyncio.Future[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        #: The session ids last sent in ``pygent/sessionsChanged``.
        self._announced: list[str] = []

    def start(self) -> None:
        """Bind to the running loop, log every session's updates, reap idle sessions."""
        self.loop = asyncio.get_running_loop()
        self._unsubscribe = self.service.subscribe_all(self.logs.record)
        self._start_pool()
        if self.idle_timeout is not None:
            self._reaper = asyncio.ensure_future(self._reap())
        self._announced = [s.id for s in self.service.sessions]
        self._unwatch = self.service.watch_sessions(self._sessions_changed)

    def _start_pool(self) -> None:
        """The warm pool (``pool_size`` > 0, an explicit choice): Docker sandboxes for
        sessions to take, started now for the default kind and refilled in the background."""
        s = self.settings
        if s.pool_size <= 0:
            return
        from pygent.runtime.facade import docker_options
        from pygent.runtime.pool import SandboxPool

        pool = SandboxPool(s, size=s.pool_size, idle=s.pool_idle)
        self.service.pool = pool
        pool.start(warm=docker_options(s))

    async def aclose(self) -> None:
        """Cancel every turn and remove every sandbox (the process is stopping)."""
        if self._reaper is not None:
            self._reaper.cancel()
        if self._unwatch is not None:
            self._unwatch()
        await self.service.aclose()
        if self._unsubscribe is not None:
            self._unsubscribe()

    def _log(self, session_id: str) -> SessionLog:
        return self.logs.log(session_id)

    # --- attachments and idle sessions -------------------------------------------------------

    def attached(self, session_id: str) -> list[Any]:
        """The connections attached to a session (see the module docstring): LSP
        servers, then peers."""
        return [s for s in self.servers if s.handlers.attached(session_id)] + [
            c for c in self.peers if c.attached(session_id)
        ]

    def connected(self, connection: Any) -> bool:
        """Whether a connection (a server or a peer) is still there."""
        return connection in self.servers or connection in self.peers

    @property
    def clients(self) -> int:
        """How many connections there are, of either protocol."""
        return len(self.servers) + len(self.peers)

    def add_peer(self, connection: Any) -> None:
        self.peers.append(connection)
        self._notify()

    def remove_peer(self, connection: Any) -> None:
        if connection in self.peers:
            self.peers.remove(connection)
        self._notify()

    def follow_history(self, session_id: str) -> None:
        """Make the session's update log replay its conversation as it is now (after a
        resume, a fork, a rewind or a redo), for the clients that attach later."""
        self.logs.follow_agent(session_id, self.service.get(session_id).agent)

    def status(self) -> dict[str, Any]:
        """``pygentHost/status``: the live sessions and who is attached to them."""
        loop_time = self.loop.time() if self.loop is not None else 0.0
        sessions = []
        for session in self.service.sessions:
            summary = self.service.summary(session)
            since = self._idle_since.get(session.id)
            sessions.append(
                {
                    "sessionId": session.id,
                    "title": summary.title,
                    "workspaceFolder": summary.workspace_folder,
                    "runtime": summary.runtime,
                    "busy": session.busy,
                    "clients": len(self.attached(session.id)),
                    "idleSeconds": round(loop_time - since, 1) if since is not None else 0.0,
                }
            )
        return {
            "pid": os.getpid(),
            "clients": self.clients,
            "idleTimeout": self.idle_timeout,
            "sessions": sessions,
            **({"pool": self.service.pool.status()} if self.service.pool is not None else {}),
            **self.status_extra,
        }

    def sweep(self) -> list[str]:
        """Note which sessions are idle; returns those idle for ``idle_timeout`` or longer."""
        assert self.loop is not None
        now = self.loop.time()
        live = {s.id for s in self.service.sessions}
        for gone in set(self._idle_since) - live:
            del self._idle_since[gone]
        for gone in set(self.logs.logs) - live:
            self.logs.drop(gone)  # closed: its saved history stands in for it
        expired = []
        for session in self.service.sessions:
            if session.busy or self.attached(session.id):
                self._idle_since.pop(session.id, None)
                continue
            since = self._idle_since.setdefault(session.id, now)
            if self.idle_timeout is not None and now - since >= self.idle_timeout:
                expired.append(session.id)
        return expired

    async def _reap(self) -> None:
        assert self.idle_timeout is not None
        tick = max(0.2, min(5.0, self.idle_timeout / 10))
        while True:
            await asyncio.sleep(tick)
            for session_id in self.sweep():
                log.info(
                    "session %s: no client for %gs and no turn running: closing it",
                    session_id,
                    self.idle_timeout,
                )
                try:
                    await self.service.close(session_id)
                except PygentError as exc:
                    log.warning("closing idle session %s: %s", session_id, exc.user_message())
                self._idle_since.pop(session_id, None)

    def _sessions_changed(self) -> None:
        """The service opened or closed a session, on whatever thread did it (sessions
        are built on worker threads): announce it from the loop."""
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._announce)
        except RuntimeError:  # the loop is closed: the host is stopping, nobody to tell
            log.debug("sessions changed after the host's loop closed")

    def _announce(self) -> None:
        """Tell every connection the live sessions (``pygent/sessionsChanged``): a page open
        before an editor opened a session lists it without a reload. Sessions open and close
        from any connection, a fork, the reaper or a delegated task, so the service says
        when; changes made together are told once (the same list is not sent twice)."""
        now = [s.id for s in self.service.sessions]
        if now == self._announced:
            return
        self._announced = now
        params = p.unstructure(p.SessionsChangedParams(session_ids=now))
        for server in list(self.servers):
            try:
                server.protocol.notify(p.SESSIONS_CHANGED, params)
            except Exception as exc:  # a connection going away must not stop the others
                log.debug("sessionsChanged to a closing connection: %s", exc)

    # --- connections ----------------------------------------------------------------------

    async def serve(
        self, receive: Callable[[], Awaitable[str | None]], send: Callable[[str], Awaitable[None]]
    ) -> None:
        """Serve one WebSocket (a page) until it closes; its sessions go on."""
        await self.serve_stream(WebSocketSource(receive), WebSocketWriter(send))

    async def serve_stream(self, source: ChunkSource, writer: Any) -> None:
        """Serve one connection (framed LSP bytes from ``source``, pygls' writer
        interface in ``writer``) until it ends; its sessions go on (it detaches)."""
        server = PygentLanguageServer(
            self.settings, approval_timeout=self.approval_timeout, service=self.service
        )
        server.handlers.logs = self.logs

        async def host_status(_raw: Any) -> dict[str, Any]:
            return self.status()

        server.feature(p.HOST_STATUS)(host_status)
        self.servers.append(server)
        self._notify()
        try:
            await server.serve(source, writer)
        finally:
            self.servers.remove(server)
            server.handlers.detach()
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

    # --- approvals ------------------------------------------------------------------------

    def _approver(self, session_id: str) -> SharedApprover:
        return SharedApprover(self, session_id)

    async def ask(self, session_id: str, request: ApprovalRequest) -> ApprovalResponse:
        """Ask every connection attached to the session (on the loop); connections that
        attach while it waits are asked too, and the first answer wins. Denied when
        nobody answers in time, or when no client is attached for ``no_client_grace``
        seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.approval_timeout
        alone_since: float | None = None
        asks: dict[Any, asyncio.Task[ApprovalResponse]] = {}
        answer: ApprovalResponse | None = None
        #: Clients that could not answer (no approval UI, an error, a timeout of their
        #: own): not asked again; their denial decides only when no one else can answer.
        unable: dict[Any, ApprovalResponse] = {}

        def policy_of() -> Any:
            try:
                return self.service.get(session_id).agent.policy
            except PygentError:
                return None

        try:
            while (remaining := deadline - loop.time()) > 0:
                attached = self.attached(session_id)
                for server in attached:
                    if server not in asks and server not in unable and server.loop is not None:
                        approver: Any = (
                            LspApprover(server, session_id, timeout=remaining, policy_of=policy_of)
                            if isinstance(server, PygentLanguageServer)
                            else server.approver(session_id, remaining)
                        )
                        asks[server] = asyncio.ensure_future(approver._ask(request))
                for server in [s for s in asks if not self.connected(s) and not asks[s].done()]:
                    asks.pop(server).cancel()  # its client left: the next one is asked
                if not asks and attached and all(server in unable for server in attached):
                    answer = unable[attached[-1]]
                    return answer
                if not asks:
                    alone_since = loop.time() if alone_since is None else alone_since
                    if loop.time() - alone_since >= self.no_client_grace:
                        return _denied(
                            f"no client was attached for {self.no_client_grace:g}s to answer it"
                        )
                else:
                    alone_since = None
                waiting: list[asyncio.Future[Any]] = [*asks.values(), self._change()]
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=min(remaining, ATTACH_POLL),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for server, task in list(asks.items()):
                    if task not in done:
                        continue
                    asks.pop(server)
                    if task.cancelled():
                        continue
                    result = task.result()
                    # A client's own answer counts even when it left right after giving
                    # it; an automatic denial (its connection went away, it has no way
                    # to ask) leaves the question to the other clients.
                    if not result.automatic:
                        answer = result
                        return answer
                    if self.connected(server):
                        unable[server] = result
            return _denied(
                f"nobody answered the approval request within {self.approval_timeout:g}s"
            )
        finally:
            for task in asks.values():
                task.cancel()
            if asks:
                await asyncio.gather(*asks.values(), return_exceptions=True)
            if answer is not None:
                # The other clients' requests were withdrawn ("cancelled"): show them
                # how the first answer decided it.
                outcome = answer.message if answer.automatic else answer.option.value
                for server in asks:
                    if not isinstance(server, PygentLanguageServer):
                        continue  # an ACP client's request was withdrawn: nothing to show
                    channel = server.channels.get(session_id)
                    if channel is not None and not channel.closed:
                        channel.push(
                            p.PermissionUpdate(
                                task_id=request.task_id,
                                call_id=request.call_id,
                                state="resolved",
                                outcome=outcome,
                            )
                        )


class SharedApprover:
    """The :class:`~pygent.approval.Approver` of one session of :class:`SharedSessions`;
    the session's log records the request as the clients see it (pending, resolved)."""

    def __init__(self, hub: SharedSessions, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        loop = self.hub.loop
        if loop is None:
            return _denied("no client is connected")
        if asyncio.get_running_loop() is loop:
            return await self._ask(request)
        # A delegated task asks from its manager's thread: the clients are asked from the loop.
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
