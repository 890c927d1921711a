"""``pygent lsp``: the language server for editors (stdio or TCP), its factory and entry point.

``create_server(settings)`` builds a fresh :class:`PygentLanguageServer` (tests build
many); ``main(argv)`` parses ``--stdio`` / ``--tcp --host H --port N`` and serves one
client. Whatever ends the connection (``exit``, end of input, a framing error, the
client process dying) every session is closed and every container removed before the
process exits. Nothing but the protocol is ever written to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from pygent import __version__
from pygent.errors import PygentError
from pygent.lsp.approver import DEFAULT_TIMEOUT, LspApprover
from pygent.lsp.code_actions import register as register_code_actions
from pygent.lsp.configuration import ClientConfiguration
from pygent.lsp.diagnostics import SandboxDiagnostics
from pygent.lsp.diagnostics import register as register_diagnostics
from pygent.lsp.handlers import Handlers
from pygent.lsp.reader_answers import AnsweringSource, session_list_answer
from pygent.lsp.rpc import PygentProtocol, converter_factory
from pygent.lsp.transport import (
    PIPE_BYTES,
    ChunkSource,
    StreamSource,
    StreamWriterAdapter,
    ThreadedWriter,
    serve_connection,
)
from pygent.lsp.updates import UpdateChannel
from pygent.service import SessionService
from pygent.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: How often the client process named in ``initialize`` is checked (seconds).
PARENT_POLL = 3.0


class PygentLanguageServer(LanguageServer):
    """The Pygent language server: pygls plus a :class:`SessionService`.

    Args:
        settings: the base settings of every session.
        approval_timeout: seconds to wait for the editor's answer to a permission
            request before denying the call.
        model: a model object for every agent (tests); default: OpenAI-compatible.
        service: a service shared with other connections (``pygent ui``): its sessions
            outlive this connection and its owner closes them; default: a service of
            this server's own, closed when the connection ends.
    """

    protocol: PygentProtocol

    def __init__(
        self,
        settings: Settings,
        *,
        approval_timeout: float = DEFAULT_TIMEOUT,
        model: Any = None,
        service: SessionService | None = None,
    ) -> None:
        super().__init__(
            "pygent",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=PygentProtocol,
            converter_factory=converter_factory,
        )
        self.settings = settings
        self.approval_timeout = approval_timeout
        #: The editor's configuration over ``settings`` (pygent.lsp.configuration).
        self.configuration = ClientConfiguration(settings, approval_timeout)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, UpdateChannel] = {}
        #: Set when the client answered pygent/requestPermission with "method not found".
        self.permission_request_unsupported = False
        self.owns_service = service is None
        self.service = (
            service
            if service is not None
            else SessionService(settings, approver_factory=self._approver, model=model)
        )
        if self.owns_service and settings.pool_size > 0:
            # A long-running `pygent lsp` keeps its own warm pool (pygent.runtime.pool);
            # the service closes it with the sessions.
            from pygent.runtime.facade import docker_options
            from pygent.runtime.pool import SandboxPool

            pool = SandboxPool(settings, size=settings.pool_size, idle=settings.pool_idle)
            self.service.pool = pool
            pool.start(warm=docker_options(settings))
        #: Problems both ways: the sandbox's to the editor, the editor's to the agent.
        self.diagnostics = SandboxDiagnostics(self)
        self.handlers = Handlers(self)
        self.handlers.register()
        register_diagnostics(self)
        register_code_actions(self)
        self._connection: asyncio.Future[str] | None = None
        self._closing: asyncio.Future[None] | None = None

    def _approver(self, session_id: str) -> LspApprover:
        def policy_of() -> Any:
            try:
                return self.service.get(session_id).agent.policy
            except PygentError:
                return None

        return LspApprover(self, session_id, timeout=self.approval_timeout, policy_of=policy_of)

    # --- life cycle ------------------------------------------------------------------------

    async def close_sessions(self) -> None:
        """Cancel every turn and remove every sandbox (shutdown, exit, lost client); a
        shared service's sessions stay (only this connection's update channels close)."""
        if self._closing is None and self.owns_service:
            self._closing = asyncio.ensure_future(self.service.aclose())
        if self._closing is not None:
            await asyncio.shield(self._closing)
        for channel in list(self.channels.values()):
            channel.close()
        self.channels.clear()
        self.diagnostics.close()

    def stop(self) -> None:
        """End the connection (the ``exit`` notification, a dead client)."""
        if self._connection is not None and not self._connection.done():
            self._connection.cancel()

    async def serve(self, source: ChunkSource, writer: Any) -> int:
        """Serve one client until it leaves; returns the process exit status."""
        self.loop = asyncio.get_running_loop()
        self.protocol.set_writer(writer)
        self.protocol.on_exit = self.stop
        log_handler = WindowLogHandler(self)
        logging.getLogger("pygent").addHandler(log_handler)

        async def framing_error(reason: str) -> None:
            self.window_show_message(
                lsp.ShowMessageParams(
                    type=lsp.MessageType.Error,
                    message=f"Pygent: protocol error ({reason}); restart the server",
                )
            )

        self._connection = asyncio.ensure_future(
            serve_connection(source, self.protocol, on_framing_error=framing_error)
        )
        watcher = asyncio.ensure_future(self._watch_parent())
        try:
            reason = await self._connection
        except asyncio.CancelledError:
            reason = "exit" if self.protocol.exit_requested else "client gone"
        finally:
            watcher.cancel()
        sessions = len(self.service.sessions) if self.owns_service else 0  # shared: they go on
        log.info("connection ended (%s): closing %d session(s)", reason, sessions)
        logging.getLogger("pygent").removeHandler(log_handler)
        await self.close_sessions()
        if reason.startswith("framing"):
            return 1
        if self.protocol.exit_requested and not self.protocol.shutdown_requested:
            return 1
        return 0

    async def _watch_parent(self) -> None:
        # An editor that crashes may leave our stdin open (E13): watch its process.
        while True:
            await asyncio.sleep(PARENT_POLL)
            pid = self.process_id
            if not pid:
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.warning("the editor process %s is gone: shutting down", pid)
                self.stop()
                return
            except PermissionError:
                continue  # alive, owned by someone else

    @contextlib.contextmanager
    def _stopped_by_signals(self, idle: asyncio.Future[int] | None = None) -> Iterator[None]:
        """SIGTERM, SIGINT and SIGHUP end the connection like ``exit`` does, so every
        session is closed and every container and sandbox folder removed before the
        process exits (Python's default for SIGTERM would end it on the spot). ``idle``:
        the TCP server's result, ended directly when no client is connected yet."""
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            log.info("%s received: closing the sessions", signal.Signals(signum).name)
            if self._connection is None and idle is not None and not idle.done():
                idle.set_result(0)
            self.stop()

        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no signals on this platform
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def run_stdio(self, preread: bytes = b"") -> int:
        """Serve on stdin/stdout; stdout is reserved for the protocol. ``preread``: bytes
        already read from stdin (:mod:`pygent.lsp.launch`), read again first."""
        out_fd = os.dup(1)
        # Anything else writing to fd 1 (a library, a child process) goes to stderr.
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        writer = ThreadedWriter(out_fd, pipe_bytes=PIPE_BYTES)
        favour_latency()

        async def run() -> int:
            # `session/list` is answered on the stdin thread: it never waits for the
            # turns' work on this loop (pygent.lsp.reader_answers).
            source = AnsweringSource(
                0, asyncio.get_running_loop(), session_list_answer(self), preread
            )
            with self._stopped_by_signals():
                return await self.serve(source, writer)

        try:
            return asyncio.run(run())
        finally:
            writer.close()

    def run_tcp(self, host: str, port: int) -> int:
        """Serve one client on a TCP port (port 0 picks one; it is logged)."""
        favour_latency()

        async def run() -> int:
            finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            busy = threading.Lock()

            async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if not busy.acquire(blocking=False):
                    writer.close()  # one editor per server process
                    return
                try:
                    code = await self.serve(StreamSource(reader), StreamWriterAdapter(writer))
                finally:
                    writer.close()
                if not finished.done():
                    finished.set_result(code)

            server = await asyncio.start_server(on_client, host, port)
            bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
            log.warning("pygent lsp listening on %s", bound)
            with self._stopped_by_signals(finished):
                async with server:
                    return await finished

        return asyncio.run(run())


def favour_latency() -> None:
    """Tune this process's interpreter so requests are not held up by the turns' work.

    Call it once, before serving. Both settings act on the GIL, which the thread that
    answers ``session/list`` (:mod:`pygent.lsp.reader_answers`) and the one that writes
    replies must take back from the event loop running the turns:

    - What start-up made is frozen out of the garbage collector's full passes
      (``gc.freeze``): a full pass walks every tracked object holding the GIL, and took
      60-350 ms here, three times a run of bench/bench_channel.py, against 14-50 ms
      with the modules, classes and server object (alive as long as the process)
      frozen. No ``gc.collect()`` first: it would cost every start-up ~50 ms.
    - A thread waiting for the GIL asks for it after 1 ms instead of 5 ms: the streaming
      ``session/list`` p99 of that bench went from 39-45 ms to 25-49 ms (median 28),
      in back-to-back runs on this shared 2-core machine.
    """
    gc.freeze()
    sys.setswitchinterval(0.001)


class WindowLogHandler(logging.Handler):
    """Warnings and errors of Pygent also go to the editor (``window/logMessage``)."""

    def __init__(self, server: PygentLanguageServer) -> None:
        super().__init__(logging.WARNING)
        self.server = server
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False) or record.name.startswith("pygent.lsp.transport"):
            return
        loop = self.server.loop
        if loop is None or loop.is_closed():
            return
        kind = lsp.MessageType.Error if record.levelno >= logging.ERROR else lsp.MessageType.Warning
        params = lsp.LogMessageParams(type=kind, message=self.format(record))

        def send() -> None:
            self._local.busy = True
            try:
                self.server.protocol.notify(lsp.WINDOW_LOG_MESSAGE, params)
            finally:
                self._local.busy = False

        try:
            loop.call_soon_threadsafe(send)
        except RuntimeError:
            pass  # the loop closed while logging: stderr still has it


def create_server(
    settings: Settings | None = None,
    *,
    approval_timeout: float = DEFAULT_TIMEOUT,
    model: Any = None,
) -> PygentLanguageServer:
    """A fresh language server (tests build one per case)."""
    return PygentLanguageServer(
        settings or load_settings(), approval_timeout=approval_timeout, model=model
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent lsp``: see :mod:`pygent.lsp.launch` (which answers ``initialize`` early)."""
    from pygent.lsp.launch import main as launch

    return launch(argv)


if __name__ == "__main__":
    raise SystemExit(main())
