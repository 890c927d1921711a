"""``pygent lsp``: the language server for editors (stdio or TCP), its factory and entry point.

``create_server(settings)`` builds a fresh :class:`PygentLanguageServer` (tests build
many); ``main(argv)`` parses ``--stdio`` / ``--tcp --host H --port N`` and serves one
client. Whatever ends the connection (``exit``, end of input, a framing error, the
client process dying) every session is closed and every container removed before the
process exits. Nothing but the protocol is ever written to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from pygent import __version__
from pygent.errors import PygentError
from pygent.logs import configure_logging
from pygent.lsp.approver import DEFAULT_TIMEOUT, LspApprover
from pygent.lsp.handlers import Handlers
from pygent.lsp.rpc import PygentProtocol, converter_factory
from pygent.lsp.transport import (
    ChunkSource,
    StreamSource,
    StreamWriterAdapter,
    ThreadedSource,
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
    """

    protocol: PygentProtocol

    def __init__(
        self, settings: Settings, *, approval_timeout: float = DEFAULT_TIMEOUT, model: Any = None
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
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, UpdateChannel] = {}
        #: Set when the client answered pygent/requestPermission with "method not found".
        self.permission_request_unsupported = False
        self.service = SessionService(settings, approver_factory=self._approver, model=model)
        self.handlers = Handlers(self)
        self.handlers.register()
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
        """Cancel every turn and remove every sandbox (shutdown, exit, lost client)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.service.aclose())
        await asyncio.shield(self._closing)
        for channel in list(self.channels.values()):
            channel.close()
        self.channels.clear()

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
        log.info("connection ended (%s): closing %d session(s)", reason, len(self.service.sessions))
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

    def run_stdio(self) -> int:
        """Serve on stdin/stdout; stdout is reserved for the protocol."""
        out_fd = os.dup(1)
        # Anything else writing to fd 1 (a library, a child process) goes to stderr.
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        writer = ThreadedWriter(out_fd)

        async def run() -> int:
            source = ThreadedSource(0, asyncio.get_running_loop())
            return await self.serve(source, writer)

        try:
            return asyncio.run(run())
        finally:
            writer.close()

    def run_tcp(self, host: str, port: int) -> int:
        """Serve one client on a TCP port (port 0 picks one; it is logged)."""

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
            async with server:
                return await finished

        return asyncio.run(run())


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent lsp", description="Pygent's language server for editors."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    mode.add_argument("--tcp", action="store_true", help="listen on a TCP port")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=2087, help="TCP port (default 2087; 0 picks one)"
    )
    parser.add_argument("--log-file", type=Path, help="write the log here instead of stderr")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--approval-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for an approval answer before denying (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--docker",
        dest="use_docker",
        action="store_true",
        default=None,
        help="require Docker for sessions that ask for runtime auto",
    )
    parser.add_argument(
        "--no-docker",
        dest="use_docker",
        action="store_false",
        help="run sessions on this machine unless they ask for docker",
    )
    parser.add_argument("--config", type=Path, help="a pygent.toml to read")
    parser.add_argument("--model", help="the default model name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent lsp [--stdio | --tcp --host H --port N]``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_file, args.log_level)
    try:
        settings = load_settings(
            {"use_docker": args.use_docker, "model": args.model}, config_file=args.config
        )
    except PygentError as exc:
        print(f"pygent lsp: {exc.user_message()}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        log.warning("%s", warning)
    if args.approval_timeout <= 0:
        print("pygent lsp: --approval-timeout must be > 0", file=sys.stderr)
        return 2
    server = create_server(settings, approval_timeout=args.approval_timeout)
    if args.tcp:
        return server.run_tcp(args.host, args.port)
    return server.run_stdio()


if __name__ == "__main__":
    raise SystemExit(main())
