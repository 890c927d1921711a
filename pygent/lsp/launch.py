"""``pygent lsp``: the command line, and an ``initialize`` answer before the server has loaded.

An editor waits for the answer to ``initialize`` before it shows the server as ready.
The server itself needs pygls and ``lsprotocol.types``, which take longer to import
than everything else in its start-up. So on stdio this module, which imports only the
standard library and Pygent's settings, starts that import on a thread, reads the
client's first message itself and, when it is ``initialize``, answers at once from
:mod:`pygent.lsp.capabilities`. The loaded server then handles that same message
(its answer dropped, see ``PygentProtocol.answered_early``) and reads on from where
this module stopped, so nothing the client sent is lost or handled twice.

When a session host runs (``pygent serve``, :mod:`pygent.lsp.serve`) and unless
``--in-process`` or ``PYGENT_LSP_HOST=never``, ``pygent lsp --stdio`` loads no server at
all: it becomes a byte pipe between stdin/stdout and the host's socket (the host
answers ``initialize``), so this editor shares the host's sessions with every other
client. The pipe ends when either side closes; for the host that is a client leaving
(its sessions go on). ``PYGENT_LSP_HOST=require`` fails when no host answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The longest first message read here; anything longer is left to the server's reader.
_FIRST_MESSAGE_LIMIT = 1 << 20
_HEADER_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
#: The approval timeout's default; pygent.lsp.approver.DEFAULT_TIMEOUT (checked by a test).
DEFAULT_APPROVAL_TIMEOUT = 120.0


def add_server_flags(parser: argparse.ArgumentParser, approval_help: str) -> None:
    """The flags every process that serves sessions takes (``pygent lsp``, ``pygent serve``)."""
    parser.add_argument("--log-file", type=Path, help="write the log here instead of stderr")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--approval-timeout", type=float, default=DEFAULT_APPROVAL_TIMEOUT, help=approval_help
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
    add_server_flags(
        parser,
        "seconds to wait for an approval answer before denying "
        f"(default {DEFAULT_APPROVAL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the sessions in this process even when a session host (pygent serve) "
        "runs (the same as PYGENT_LSP_HOST=never)",
    )
    return parser


def _pipe(read: Any, write: Any, done: threading.Event) -> None:
    try:
        while chunk := read():
            write(chunk)
    except OSError as exc:
        log.debug("the pipe to the session host ended: %s", exc)
    finally:
        done.set()


def proxy(sock: socket.socket, in_fd: int = 0, out_fd: int = 1) -> int:
    """Copy bytes stdin -> ``sock`` and ``sock`` -> stdout until either side closes.

    Nothing else is written to ``out_fd``: the bytes are the host's LSP messages. The end
    of stdin half-closes the socket (the host sees the client leave and closes its side);
    the host closing ends the pipe at once.
    """
    # Whatever else might print (a warning of a library) goes to stderr, not the protocol.
    out_fd = os.dup(out_fd)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ended = threading.Event()

    def write_all(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view) :]

    def to_host() -> None:
        _pipe(lambda: os.read(in_fd, 65536), sock.sendall, threading.Event())
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            ended.set()

    threading.Thread(target=to_host, name="pygent-proxy-in", daemon=True).start()
    back = threading.Thread(
        target=_pipe,
        args=(lambda: sock.recv(65536), write_all, ended),
        name="pygent-proxy-out",
        daemon=True,
    )
    back.start()

    def on_signal(_signum: int, _frame: Any) -> None:
        ended.set()  # the host sees the socket close: this client detaches

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while not ended.wait(0.5):
        pass
    sock.close()
    return 0


def _join_host(settings: Any, args: argparse.Namespace) -> socket.socket | None | int:
    """The host's socket when ``pygent lsp --stdio`` should pipe to it, None to serve in
    process, or an exit status (``PYGENT_LSP_HOST=require`` and no host)."""
    if args.tcp or args.in_process or settings.lsp_host == "never":
        return None
    from pygent.errors import PygentError
    from pygent.lsp.host_socket import connect

    try:
        sock = connect(settings.host_dir)
    except PygentError as exc:
        if settings.lsp_host == "require":
            print(f"pygent lsp: {exc.user_message()}", file=sys.stderr)
            return 2
        log.warning("not joining a session host: %s", exc.user_message())
        return None
    if sock is None and settings.lsp_host == "require":
        print(
            f"pygent lsp: no session host answers in {settings.host_dir} "
            "(PYGENT_LSP_HOST=require); start one with: pygent serve --background",
            file=sys.stderr,
        )
        return 2
    if sock is not None:
        log.info("joining the session host in %s", settings.host_dir)
    return sock


class _Importer(threading.Thread):
    """Imports the server module in the background; :meth:`module` waits for it."""

    def __init__(self) -> None:
        super().__init__(name="pygent-lsp-import", daemon=True)
        self._module: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            import pygent.lsp.server as server

            self._module = server
        except BaseException as exc:  # re-raised in the main thread
            self._error = exc

    def module(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._module


def read_first_message(fd: int) -> tuple[dict[str, Any] | None, bytes]:
    """Read the client's first message from ``fd``; returns it (None when it is not a
    well-formed JSON object) and every byte read, which the server reads again."""
    data = b""
    while _HEADER_END not in data and len(data) < _FIRST_MESSAGE_LIMIT:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, data
        data += chunk
    header, _, rest = data.partition(_HEADER_END)
    match = _LENGTH.search(header)
    if match is None or int(match.group(1)) > _FIRST_MESSAGE_LIMIT:
        return None, data
    length = int(match.group(1))
    while len(rest) < length:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, data
        data += chunk
        rest += chunk
    try:
        message = json.loads(rest[:length])
    except ValueError:
        return None, data
    return (message if isinstance(message, dict) else None), data


def answer_early(message: dict[str, Any] | None, out_fd: int) -> Any:
    """Answer ``message`` on ``out_fd`` when it is ``initialize``; returns its id (or None)."""
    if message is None or message.get("method") != "initialize" or "id" not in message:
        return None
    params = message.get("params")
    try:
        from pygent.lsp.capabilities import early_answer

        result = early_answer(params if isinstance(params, dict) else {})
    except (OSError, ValueError, KeyError) as exc:  # no stored answer: the server answers
        log.warning("no early initialize answer (%s)", exc)
        return None
    body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
    os.write(out_fd, b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return message["id"]


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent lsp [--stdio | --tcp --host H --port N]``; returns the exit status."""
    from pygent.errors import PygentError
    from pygent.logs import configure_logging
    from pygent.settings import load_settings

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_file, args.log_level)
    try:
        settings = load_settings(
            {"use_docker": args.use_docker, "model": args.model}, config_file=args.config
        )
    except PygentError as exc:
        print(f"pygent lsp: {exc.user_message()}", file=sys.stderr)
        return 2
    # A running session host serves this editor: no server is loaded here at all.
    joined = _join_host(settings, args)
    if isinstance(joined, int):
        return joined
    if joined is not None:
        return proxy(joined)
    importer = _Importer()  # from here on the import runs while this thread waits
    for warning in settings.warnings:
        log.warning("%s", warning)
    if args.approval_timeout <= 0:
        print("pygent lsp: --approval-timeout must be > 0", file=sys.stderr)
        return 2
    preread, answered = b"", None
    if not args.tcp:
        message, preread = read_first_message(0)
        answered = answer_early(message, 1)
    try:
        server_module = importer.module()
    except ImportError as exc:
        print(f"pygent lsp: the language server for editors is not available ({exc}); "
              "install it with: pip install pygent", file=sys.stderr)
        return 2
    server = server_module.create_server(settings, approval_timeout=args.approval_timeout)
    if args.tcp:
        return int(server.run_tcp(args.host, args.port))
    if answered is not None:
        server.protocol.answered_early.add(answered)
    return int(server.run_stdio(preread))
