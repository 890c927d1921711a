"""``pygent serve`` (the per-user session host process) and ``pygent sessions``.

The host listens on a private Unix socket (:mod:`pygent.lsp.host_socket`) and serves
every connection as one LSP client of one shared service (:class:`SharedSessions`), so
editors (``pygent lsp --stdio`` pipes to it), and later the REPL, open the same live
sessions at once. A connection that starts with the ACP hello (``pygent acp`` pipes to
it) is served by the ACP agent on the same service (:mod:`pygent.acp.hosted`). A session lives on when its clients leave, until it is closed or idle
for ``PYGENT_HOST_IDLE_TIMEOUT`` seconds; the host exits when it has had no session and
no client for ``--exit-grace`` seconds (before its first client: the idle timeout).
SIGTERM, SIGINT and SIGHUP close every session (containers and sandbox folders
removed) and remove the socket. After a SIGKILL the containers' keeper and the next
Pygent clean up, and the next host replaces the stale socket file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pygent.errors import PygentError
from pygent.lsp import host_socket as hs
from pygent.lsp.launch import add_server_flags
from pygent.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: Seconds the host stays up with no session and no client (a reconnecting editor).
EXIT_GRACE = 5.0
#: How often the host looks whether it is empty (seconds).
EMPTY_POLL = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent serve",
        description="Run the session host: sessions that outlive editor windows, shared by "
        "every editor, page and terminal of this user (docs/host.md).",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--background", action="store_true", help="detach; print the socket path and return"
    )
    what.add_argument("--stop", action="store_true", help="stop the running host")
    what.add_argument("--status", action="store_true", help="show the running host")
    add_server_flags(
        parser, "seconds an approval waits for an answer (also while no client is attached)"
    )
    parser.add_argument(
        "--idle-timeout",
        help="close a session with no client and no turn after this many seconds "
        "(default: PYGENT_HOST_IDLE_TIMEOUT or 1800; 0: never)",
    )
    parser.add_argument(
        "--exit-grace",
        type=float,
        default=EXIT_GRACE,
        help=f"seconds to stay up with no session and no client (default {EXIT_GRACE:g})",
    )
    parser.add_argument(
        "--websocket",
        metavar="PORT",
        type=int,
        help="also serve the chat page and its WebSocket on 127.0.0.1:PORT (0: any free "
        "port), with a token; the address is printed and kept in the host folder (needs "
        "the ui extra: aiohttp)",
    )
    return parser


# --- the host ---------------------------------------------------------------------------------


async def run_host(settings: Settings, args: argparse.Namespace, lock_fd: int) -> int:
    """Serve on the socket until stopped by a signal or left empty; returns the status."""
    from pygent.lsp.host import SharedSessions

    loop = asyncio.get_running_loop()
    host_dir = settings.host_dir
    path = hs.socket_path(host_dir)
    hub = SharedSessions(
        settings,
        approval_timeout=args.approval_timeout,
        no_client_grace=args.approval_timeout,
        idle_timeout=settings.host_idle_timeout,
    )
    hub.start()
    connections: set[asyncio.Task[Any]] = set()
    ever_connected = False

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ever_connected
        ever_connected = True
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        log.info("a client connected (%d now)", hub.clients + 1)
        try:
            await _serve_client(hub, reader, writer)
        finally:
            connections.discard(task)
            log.info("a client left (%d now)", hub.clients)

    page = None
    if args.websocket is not None:  # before the socket answers: --background reads page.url
        try:
            page = await _serve_page(hub, host_dir, args.websocket)
        except OSError as exc:
            print(
                f"pygent serve: cannot listen on 127.0.0.1:{args.websocket}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            await hub.aclose()
            os.close(lock_fd)
            return 2
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # stale: the lock says no host serves it
    old_umask = os.umask(0o177)  # the socket is born 0600: no window for others
    try:
        server = await asyncio.start_unix_server(on_client, path=os.fspath(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    hub.status_extra = {"socket": str(path)}
    if page is not None:
        hub.status_extra["page"] = page[1]
    stopping = loop.create_future()

    def on_signal(signum: int) -> None:
        log.info("%s received: closing every session", signal.Signals(signum).name)
        if not stopping.done():
            stopping.set_result(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    print(f"pygent serve: listening on {path} (pid {os.getpid()})", flush=True)
    log.info("session host listening on %s", path)
    startup_grace = settings.host_idle_timeout
    empty_since = loop.time()
    try:
        while not stopping.done():
            await asyncio.wait([stopping], timeout=EMPTY_POLL)
            if hub.clients or hub.service.sessions:
                empty_since = loop.time()
                continue
            grace = args.exit_grace if ever_connected else startup_grace
            if grace is not None and loop.time() - empty_since >= grace:
                log.info("no session and no client for %gs: the host exits", grace)
                break
    finally:
        server.close()
        if page is not None:
            await page[0].cleanup()  # page sockets close first; the hub closes below
            hs.page_url_path(host_dir).unlink(missing_ok=True)
        for conn in [*hub.servers, *hub.peers]:
            conn.stop()  # each connection ends: its client sees the socket close
        if connections:
            await asyncio.wait(list(connections), timeout=10)
        await hub.aclose()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(lock_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


class _Preread:
    """A chunk source that gives ``first`` (bytes read already) before reading on."""

    def __init__(self, source: Any, first: bytes) -> None:
        self.source, self.first = source, first

    async def read(self) -> bytes:
        if self.first:
            first, self.first = self.first, b""
            return first
        data: bytes = await self.source.read()
        return data


async def _serve_client(
    hub: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one connection of the socket: ACP when its first line is the ACP hello
    (:data:`~pygent.lsp.host_socket.ACP_HELLO`), LSP otherwise."""
    from pygent.lsp.transport import StreamSource, StreamWriterAdapter

    source = StreamSource(reader)
    data = b""
    while len(data) < len(hs.ACP_HELLO) and hs.ACP_HELLO.startswith(data):
        chunk = await source.read()
        if not chunk:
            break
        data += chunk
    if data.startswith(hs.ACP_HELLO):
        while b"\n" not in data and len(data) <= hs.MAX_HELLO:
            chunk = await source.read()
            if not chunk:
                break
            data += chunk
        hello, newline, rest = data[len(hs.ACP_HELLO) :].partition(b"\n")
        if not newline:
            log.warning("an ACP hello without its end: closing the connection")
            writer.close()
            return
        try:
            from pygent.acp.hosted import serve_acp
        except ImportError as exc:
            why = f"the ACP SDK is not installed in the host ({exc}): pip install 'pygent[acp]'"
            log.warning("refusing an ACP client: %s", why)
            writer.write(hs.ACP_REFUSED + why.encode() + b"\n")
            writer.close()
            return
        await serve_acp(hub, reader, writer, hello, rest)
        return
    if not data:  # connected and left without a word (a probe: does the host answer?)
        writer.close()
        return
    await hub.serve_stream(_Preread(source, data), StreamWriterAdapter(writer))


async def _serve_page(hub: Any, host_dir: Path, port: int) -> tuple[Any, str]:
    """Serve the chat page on loopback for this host's sessions; returns the runner and the
    page's address, which is also written (mode 0600) to ``page.url`` in the host folder
    for ``pygent serve --status``: the token in it is what lets a page drive the agent."""
    import secrets

    from pygent.web.server import create_host_app, page_url, start_site

    token = secrets.token_urlsafe(24)
    runner, bound = await start_site(create_host_app(hub, token=token), "127.0.0.1", port)
    url = page_url("127.0.0.1", bound, token)
    target = hs.page_url_path(host_dir)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(url + "\n")
    print(f"pygent serve: the chat page is at {url}", flush=True)
    log.info("serving the chat page on 127.0.0.1:%d", bound)
    return runner, url


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"use_docker": args.use_docker, "model": args.model}
    if args.idle_timeout is not None:
        overrides["host_idle_timeout"] = args.idle_timeout
    return load_settings(overrides, config_file=args.config)


def _background(argv: list[str], settings: Settings) -> int:
    """Start a detached host (its own session, no terminal); wait until it answers."""
    log_file = settings.data_dir / "host.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [a for a in argv if a != "--background"]
    if "--log-file" not in argv and not any(a.startswith("--log-file=") for a in argv):
        argv += ["--log-file", str(log_file)]
    with open(log_file, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pygent", "serve", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # setsid: no terminal's signals reach it
        )
    if hs.wait_until_answers(settings.host_dir, 60, alive=lambda: proc.poll() is None):
        print(hs.socket_path(settings.host_dir))
        page = hs.page_url_path(settings.host_dir)
        if "--websocket" in argv or any(a.startswith("--websocket=") for a in argv):
            if page.exists():
                print(page.read_text().strip())
        return 0
    if proc.poll() == 0 and hs.connect(settings.host_dir) is not None:
        print(hs.socket_path(settings.host_dir))  # another host won the race
        return 0
    print(f"pygent serve: the host did not start; see {log_file}", file=sys.stderr)
    return 1


def _stop(settings: Settings) -> int:
    pid = hs.running_pid(settings.host_dir)
    if pid is None:
        print("pygent serve: no session host runs")
        return 0
    if pid <= 0:
        print("pygent serve: a host holds the lock but its pid is unknown", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if hs.running_pid(settings.host_dir) is None:
            print(f"pygent serve: stopped the host (pid {pid})")
            return 0
        time.sleep(0.1)
    print(f"pygent serve: the host (pid {pid}) is still closing its sessions", file=sys.stderr)
    return 1


def host_status(settings: Settings) -> dict[str, Any] | None:
    """The running host's ``pygentHost/status``, or None when no host answers."""
    from pygent.lsp.client import ConnectionLost, RpcClient
    from pygent.lsp.protocol import HOST_STATUS

    sock = hs.connect(settings.host_dir)
    if sock is None:
        return None
    sock.close()
    try:
        status: dict[str, Any] = RpcClient.call_once(hs.socket_path(settings.host_dir), HOST_STATUS)
    except (ConnectionLost, OSError):
        return None  # the host went away between the probe and the call
    return status


def _print_sessions(status: dict[str, Any]) -> None:
    sessions = status.get("sessions") or []
    if not sessions:
        print("  (no live sessions)")
    for s in sessions:
        state = "busy" if s.get("busy") else "idle"
        clients = s.get("clients", 0)
        print(
            f"  {s['sessionId']}  {state:4}  {clients} client{'s' if clients != 1 else ''}  "
            f"{s.get('runtime') or '-':6}  {s.get('workspaceFolder') or '-'}  "
            f"{s.get('title') or ''}".rstrip()
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent serve [--background | --stop | --status]``; returns the exit status."""
    from pygent.logs import configure_logging

    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    if args.websocket is not None and not 0 <= args.websocket <= 65535:
        print(f"pygent serve: --websocket {args.websocket}: not a port (0-65535)", file=sys.stderr)
        return 2
    if args.websocket is not None and importlib.util.find_spec("aiohttp") is None:
        print(
            "pygent serve: --websocket needs aiohttp: pip install 'pygent[ui]'", file=sys.stderr
        )
        return 2
    if args.approval_timeout <= 0 or args.exit_grace < 0:
        print("pygent serve: --approval-timeout must be > 0, --exit-grace >= 0", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
        hs.check_dir(settings.host_dir)
    except PygentError as exc:
        print(f"pygent serve: {exc.user_message()}", file=sys.stderr)
        return 2
    if args.stop:
        return _stop(settings)
    if args.status:
        status = host_status(settings)
        if status is None:
            print(f"pygent serve: no session host runs ({hs.socket_path(settings.host_dir)})")
            return 1
        print(
            f"session host pid {status['pid']} on {status.get('socket')}: "
            f"{status['clients'] - 1} client(s) besides this one, "
            f"idle timeout {status['idleTimeout']}s"
        )
        if status.get("page"):
            print(f"  chat page: {status['page']}")
        pool = status.get("pool")
        if pool:  # the warm pool (pygent.runtime.pool)
            print(
                f"  warm pool: {pool['ready']} ready, {pool['starting']} starting "
                f"(size {pool['size']} per kind, {pool['keys']} kind(s)); "
                f"{pool['hits']} session(s) took one, {pool['misses']} started cold"
            )
        _print_sessions(status)
        return 0
    pid = hs.running_pid(settings.host_dir)
    if pid is not None and hs.wait_until_answers(settings.host_dir, 10):
        print(
            f"pygent serve: a session host already runs (pid {pid}) on "
            f"{hs.socket_path(settings.host_dir)}"
        )
        return 0
    if args.background:
        return _background(raw, settings)
    configure_logging(args.log_file, args.log_level)
    for warning in settings.warnings:
        log.warning("%s", warning)
    lock_fd = hs.take_lock(settings.host_dir)
    if lock_fd is None:
        print("pygent serve: another session host is starting; not starting a second one")
        return 0
    # The host serves many clients while turns run: the same interpreter tuning as
    # `pygent lsp` (see favour_latency), so requests wait less for the turns' work.
    from pygent.lsp.server import favour_latency

    favour_latency()
    try:
        return asyncio.run(run_host(settings, args, lock_fd))
    except KeyboardInterrupt:  # a second Ctrl-C while closing
        return 130


def sessions_main(argv: Sequence[str] | None = None) -> int:
    """``pygent sessions``: the host's live sessions, or the saved ones when no host runs."""
    parser = argparse.ArgumentParser(
        prog="pygent sessions",
        description="List the session host's live sessions (pygent serve), or the saved "
        "sessions when no host runs.",
    )
    parser.add_argument("--config", type=Path, help="a pygent.toml to read")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings(config_file=args.config)
        status = host_status(settings)
    except PygentError as exc:
        print(f"pygent sessions: {exc.user_message()}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"pygent sessions: the session host did not answer: {exc}", file=sys.stderr)
        return 1
    if status is not None:
        print(f"live sessions of the session host (pid {status['pid']}):")
        if status.get("page"):
            print(f"  chat page: {status['page']}")
        _print_sessions(status)
        return 0
    print("no session host runs (start one with: pygent serve --background)")
    from pygent.store import SessionStore

    try:
        saved = SessionStore(settings.sessions_dir).list()
    except (OSError, PygentError) as exc:
        print(f"the saved sessions could not be read: {exc}", file=sys.stderr)
        return 1
    print(f"saved sessions ({settings.sessions_dir}):" if saved else "no saved sessions")
    for info in saved[:50]:
        updated = info.updated.strftime("%Y-%m-%d %H:%M")
        print(f"  {info.id}  {updated}  {info.title or ''}".rstrip())
    return 0
