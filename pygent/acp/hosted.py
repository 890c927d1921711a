"""``pygent acp`` joined to a session host: the host runs the ACP agent for the connection.

``pygent acp`` (:mod:`pygent.acp.launch`) sends :data:`~pygent.lsp.host_socket.ACP_HELLO`
with its options on the host's socket and then only copies bytes, as ``pygent lsp
--stdio`` does. The host (:mod:`pygent.lsp.serve`) hands such a connection to
:func:`serve_acp`: the same :class:`~pygent.acp.agent.PygentAcpAgent` as in process,
over the socket's streams, on a :class:`HostedBackend`, the host's shared
:class:`~pygent.service.SessionService`. So:

* a session made from the ACP client is a session of the host, in its update logs
  (an editor or page attaching later reads its transcript), shown in VS Code,
  ``pygent attach`` and the web page, and theirs show here (``session/list``,
  ``session/load``);
* its approvals go through the host's approval broker
  (:meth:`pygent.lsp.host.SharedSessions.ask`) to every client following the session,
  this one included (:class:`AcpConnection`); the first answer counts;
* the sandbox is readable where the agent runs, so diffs and locations are made exactly
  as in process; the sessions go on in the host when the client leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from pygent.acp.agent import PygentAcpAgent
from pygent.acp.approver import AcpApprover
from pygent.acp.backend import LocalBackend, SessionView, _rewind_answer
from pygent.acp.launch import run_agent
from pygent.acp.transport import StreamTransport
from pygent.changes import COW, MOUNT
from pygent.service import SessionOptions

if TYPE_CHECKING:
    from pygent.lsp.host import SharedSessions

log = logging.getLogger(__name__)


class HostedBackend(LocalBackend):
    """The host's shared service, seen by one ACP connection: its sessions outlive the
    connection, and the host's update log follows every conversation changed other than
    by a turn (a resume, a fork, a rewind), as for the host's LSP clients."""

    hosted = True

    def __init__(self, hub: SharedSessions) -> None:
        super().__init__(hub.service)
        self.hub = hub

    async def open(self, session_id: str, options: SessionOptions) -> tuple[SessionView, bool]:
        view, live = await super().open(session_id, options)
        if not live:  # the log starts with the saved conversation
            self.hub.follow_history(session_id)
        return view, live

    async def rewind(
        self, session_id: str, turn_id: str, *, files: bool, conversation: bool
    ) -> dict[str, Any]:
        result = await self.service.rewind(
            session_id, turn_id, files=files, conversation=conversation
        )
        if result.conversation:
            self.hub.follow_history(session_id)
        return _rewind_answer(result)

    async def redo(self, session_id: str) -> dict[str, Any]:
        result = await self.service.redo(session_id)
        if result.conversation:
            self.hub.follow_history(session_id)
        return _rewind_answer(result)

    async def fork(self, session_id: str, turn_id: str) -> SessionView:
        view = await super().fork(session_id, turn_id)
        self.hub.follow_history(view.id)  # the log starts with the turns it keeps
        return view

    async def aclose(self) -> None:
        """The client left: the host's sessions go on (the agent's channels close)."""


class AcpConnection:
    """One ACP client of the host, as the host's approval broker and status see it."""

    def __init__(self, agent: PygentAcpAgent) -> None:
        self.agent = agent
        self.loop: asyncio.AbstractEventLoop | None = agent.loop
        self._listen: asyncio.Future[Any] | None = None

    def attached(self, session_id: str) -> bool:
        return self.agent.follows(session_id)

    def approver(self, session_id: str, timeout: float) -> AcpApprover:
        """Asks this client about one of the session's calls (``session/request_permission``),
        waiting at most ``timeout`` seconds (and no longer than ``pygent acp`` was told)."""
        return self.agent._approver(session_id, min(timeout, self.agent.approval_timeout))

    def listening(self, task: asyncio.Future[Any]) -> None:
        self._listen = task

    def stop(self) -> None:
        """End the connection (the host is stopping)."""
        if self._listen is not None and not self._listen.done():
            self._listen.cancel()


def _options(raw: bytes) -> dict[str, Any]:
    """The options ``pygent acp`` sent with its hello (only the known ones, checked)."""
    try:
        given = json.loads(raw.decode("utf-8") or "{}")
    except ValueError:
        given = {}
    if not isinstance(given, dict):
        given = {}
    out: dict[str, Any] = {}
    if given.get("syncMode") in (COW, MOUNT):
        out["sync_mode"] = given["syncMode"]
    timeout = given.get("approvalTimeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        out["approval_timeout"] = float(timeout)
    models = given.get("models")
    if isinstance(models, list) and all(isinstance(m, str) for m in models):
        out["extra_models"] = [m for m in models if m.strip()]
    return out


async def serve_acp(
    hub: SharedSessions,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hello: bytes,
    preread: bytes = b"",
) -> None:
    """Serve one ACP client on the host's socket until it leaves; its sessions go on.

    ``hello`` is the JSON of options after :data:`~pygent.lsp.host_socket.ACP_HELLO`;
    ``preread`` any bytes read after the hello line. The ready answer is written here.
    """
    from pygent.lsp.host_socket import ACP_READY

    options = _options(hello)
    options.setdefault("approval_timeout", hub.approval_timeout)
    transport = StreamTransport(reader, writer, preread)
    agent = PygentAcpAgent(hub.settings, backend=HostedBackend(hub), **options)
    connection = AcpConnection(agent)
    writer.write(ACP_READY + b"\n")
    hub.add_peer(connection)
    try:
        await run_agent(agent, transport, connection.listening)
    finally:
        hub.remove_peer(connection)
