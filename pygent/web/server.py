"""``pygent ui``: a local aiohttp server for the chat page, its WebSocket, and the command-line entry point.

The page is the VS Code chat front end and its host, the extension's own
``ChatController`` (``static/ui.js`` and ``chat.css``, built from ``editors/vscode`` by
:mod:`pygent.web.build_static`), booted by ``static/index.html``. The controller
speaks ``pygent/*`` JSON-RPC over the WebSocket to the language server
(:mod:`pygent.lsp.websocket`), as it does over stdio in VS Code; this module only
serves the files, guards the doors and offers the changes as a patch.

Security: the server binds to loopback unless ``--allow-remote`` is given, and a random
token in the URL is required for the page, the WebSocket and downloads, so other local
users and web pages cannot drive it; the WebSocket upgrade must also come from the
page's own origin, and a loopback server only answers requests addressed to a
loopback name (no DNS rebinding). Ctrl-C or SIGTERM cancels every turn and removes
every sandbox before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from pygent.errors import PygentError
from pygent.logs import configure_logging
from pygent.lsp.approver import DEFAULT_TIMEOUT
from pygent.lsp.host import SharedSessions
from pygent.service import Session
from pygent.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: Files served under /static/ (the built chat bundle and the page's own stylesheet).
STATIC_TYPES = {
    "ui.js": "text/javascript",
    "chat.css": "text/css",
    "ui.css": "text/css",
}
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
FORBIDDEN = (
    "403 Forbidden: this Pygent UI needs the address with its token, as printed by "
    "`pygent ui` when it started.\n"
)


@dataclass(frozen=True)
class UiConfig:
    """What the handlers check: the token, and whether only loopback names are answered."""

    token: str
    loopback_only: bool = True
    folder: Path | None = None


HUB = web.AppKey("hub", SharedSessions)
CONFIG = web.AppKey("config", UiConfig)


@dataclass
class _Sockets:
    """The open page sockets, closed first when the server stops."""

    open: set[web.WebSocketResponse] = field(default_factory=set)


SOCKETS = web.AppKey("sockets", _Sockets)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (the names that stay on this machine)."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes | None:
    try:
        return resources.files("pygent.web").joinpath("static").joinpath(name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


def _token_ok(request: web.Request) -> bool:
    given = request.query.get("token", "")
    return hmac.compare_digest(given.encode(), request.app[CONFIG].token.encode())


def _forbidden(why: str, request: web.Request) -> web.Response:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, why)
    return web.Response(status=403, text=FORBIDDEN, content_type="text/plain")


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Loopback servers answer loopback names only; every response gets safe headers."""
    config = request.app[CONFIG]
    host = urlsplit(f"//{request.host}").hostname or ""
    if config.loopback_only and not is_loopback(host):
        return _forbidden(f"Host {request.host!r} is not a loopback name", request)
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


async def _index(request: web.Request) -> web.Response:
    if not _token_ok(request):
        return _forbidden("no or wrong token", request)
    page = _static("index.html")
    script = _static("ui.js")
    if page is None or script is None:
        return web.Response(
            status=500,
            content_type="text/plain",
            text="The chat page is not built: run `python -m pygent.web.build_static` "
            "(needs Node), or install a released pygent.\n",
        )
    version = hashlib.sha256(script).hexdigest()[:12]
    text = (
        page.decode("utf-8")
        .replace("__PYGENT_VERSION__", version)
        .replace("__PYGENT_BAR__", _bar(request))
        .replace("__PYGENT_CONFIG__", html.escape(json.dumps(_page_config(request))))
    )
    return web.Response(
        text=text,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP},
    )


def _page_config(request: web.Request) -> dict[str, Any]:
    """What the page's host needs to know: the folder, and the defaults sessions get."""
    settings = request.app[HUB].settings
    folder = request.app[CONFIG].folder
    return {
        "folder": None
        if folder is None
        else {"name": folder.name, "uri": folder.as_uri(), "fsPath": str(folder)},
        "runtime": {None: "auto", True: "docker", False: "local"}[settings.use_docker],
        "model": settings.model,
        "approvalMode": settings.effective_approval_mode(),
        "hasApiKey": bool(settings.api_key),
    }


def _bar(request: web.Request) -> str:
    """The bar above the chat page: the folder, and the patch download when there is one.

    Plain HTML, no script: the chat page itself has no download button (yet).
    """
    folder = request.app[CONFIG].folder
    parts = [
        '<nav class="ui-bar" aria-label="pygent ui">',
        '<span class="ui-name">pygent ui</span>',
    ]
    if folder is None:
        parts.append(
            '<span class="ui-folder">no folder: each session works in a scratch sandbox</span>'
        )
    else:
        shown = html.escape(str(folder))
        href = html.escape(f"/download/changes.patch?token={request.app[CONFIG].token}")
        parts.append(f'<span class="ui-folder" title="{shown}">{shown}</span>')
        parts.append(
            f'<a class="ui-download" href="{href}" target="_blank" rel="noopener" '
            'title="The changes of the session shown, as a patch for git apply or patch -p1">'
            "Download changes (.patch)</a>"
        )
    parts.append("</nav>")
    return "".join(parts)


async def _static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = STATIC_TYPES.get(name)
    data = _static(name) if kind else None
    if data is None:
        raise web.HTTPNotFound()
    # Public code (the same files ship in the package): no token needed; the version
    # in the page's URLs busts the cache after an upgrade.
    return web.Response(
        body=data,
        content_type=kind,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def _download_patch(request: web.Request) -> web.Response:
    if not _token_ok(request):
        return _forbidden("no or wrong token", request)
    found = await _patch(request.app[HUB], request.query.get("session") or None)
    if found is None:
        return web.Response(
            status=404,
            content_type="text/plain",
            text="No changes to download: the session has no folder or the "
            "agent changed nothing.\n",
        )
    name, text = found
    return web.Response(
        text=text,
        content_type="text/x-diff",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def _patch(hub: SharedSessions, session_id: str | None) -> tuple[str, str] | None:
    """(file name, patch text) of a session's pending changes (default: the newest live
    session with a folder); None when there is no such session or it changed nothing."""
    live = [s for s in hub.service.sessions if s.sync is not None]
    session: Session | None = (
        next((s for s in live if s.id == session_id), None)
        if session_id
        else max(live, key=lambda s: s.created, default=None)
    )
    if session is None:
        return None
    text = _patch_text(await hub.service.changes(session.id))
    return (f"pygent-{session.id}.patch", text) if text else None


def _patch_text(changes: list[Any]) -> str:
    """One patch (``git apply`` / ``patch -p1``) from a change set's unified diffs."""
    parts = []
    for change in changes:
        diff = change.diff
        if not diff:
            continue
        # The change set diffs against an empty text for added and deleted files; a
        # patch says /dev/null there so that tools create and delete the files.
        if change.status == "added":
            diff = diff.replace(f"--- a/{change.path}\n", "--- /dev/null\n", 1)
        elif change.status == "deleted":
            diff = diff.replace(f"+++ b/{change.path}\n", "+++ /dev/null\n", 1)
        parts.append(diff if diff.endswith("\n") else diff + "\n")
    return "".join(parts)


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _websocket(request: web.Request) -> web.StreamResponse:
    if not _token_ok(request):
        return _forbidden("no or wrong token on the WebSocket", request)
    origin = request.headers.get("Origin")
    expected = {f"http://{request.host}", f"https://{request.host}"}
    if origin not in expected:
        return _forbidden(f"WebSocket Origin {origin!r} is not this server's", request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)

    async def receive() -> str | None:
        """The next JSON-RPC message; None when the page is gone."""
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                return str(msg.data)
            if msg.type == WSMsgType.BINARY:
                log.warning("dropped a binary frame: messages are JSON text")
                continue
            if msg.type == WSMsgType.ERROR:
                log.info("page socket error: %r", ws.exception())
            return None

    sockets = request.app[SOCKETS].open
    sockets.add(ws)
    try:
        await request.app[HUB].serve(receive, ws.send_str)
    finally:
        sockets.discard(ws)
        await ws.close()
    return ws


async def _on_startup(app: web.Application) -> None:
    app[HUB].start()


async def _on_shutdown(app: web.Application) -> None:
    for ws in list(app[SOCKETS].open):
        await ws.close(code=1001, message=b"server shutting down")


async def _on_cleanup(app: web.Application) -> None:
    await app[HUB].aclose()


def _routes(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/static/{name}", _static_file)
    app.router.add_get("/download/changes.patch", _download_patch)
    app.router.add_get("/favicon.ico", _no_icon)
    app.on_shutdown.append(_on_shutdown)


def create_app(
    settings: Settings,
    *,
    token: str,
    folder: Path | None = None,
    approval_timeout: float = DEFAULT_TIMEOUT,
    model: Any = None,
    loopback_only: bool = True,
) -> web.Application:
    """The ``pygent ui`` application (tests build their own).

    Args:
        settings: the base settings of every session.
        token: the secret the page URL, the WebSocket and downloads must carry.
        folder: the folder new sessions work on (None: a scratch sandbox only).
        approval_timeout: seconds to wait for an answer in the page before denying.
        model: a model object for every agent (tests); default: OpenAI-compatible.
        loopback_only: answer only requests addressed to a loopback name.
    """
    if not token:
        raise ValueError("the token must not be empty")
    app = web.Application(middlewares=[_guard], client_max_size=MAX_MESSAGE_BYTES)
    app[HUB] = SharedSessions(settings, approval_timeout=approval_timeout, model=model)
    app[CONFIG] = UiConfig(token=token, loopback_only=loopback_only, folder=folder)
    app[SOCKETS] = _Sockets()
    _routes(app)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


def create_host_app(hub: SharedSessions, *, token: str) -> web.Application:
    """The page on a running session host (``pygent serve --websocket``): the host's own
    sessions, so the page shares them with every editor and terminal. The hub belongs to
    the host, which starts and closes it; sessions opened from the page get a scratch
    sandbox (the host serves many folders)."""
    if not token:
        raise ValueError("the token must not be empty")
    app = web.Application(middlewares=[_guard], client_max_size=MAX_MESSAGE_BYTES)
    app[HUB] = hub
    app[CONFIG] = UiConfig(token=token, loopback_only=True, folder=None)
    app[SOCKETS] = _Sockets()
    _routes(app)
    return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner (``cleanup()`` stops it) and the bound port.
    Raises OSError when the address cannot be bound."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def page_url(host: str, port: int, token: str) -> str:
    """The address to open: the page with its token."""
    return _url(host, port, token)


# --- the command ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent ui",
        description="Serve Pygent's chat page on this machine (the same page as the VS Code panel).",
    )
    add = parser.add_argument
    add(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; others need --allow-remote)",
    )
    add("--port", type=int, default=0, help="port (default 0: any free port)")
    add(
        "--open",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open the page in a browser (default: yes, when a display is available)",
    )
    add(
        "--allow-remote",
        action="store_true",
        help="allow binding to a non-loopback address (anyone who can reach it and has the "
        "token can run commands)",
    )
    add(
        "--folder",
        type=Path,
        metavar="DIR",
        help="the folder sessions work on: copied into the sandbox, changes come back for review",
    )
    add("--cwd", action="store_true", help="use the current directory as --folder")
    add(
        "--docker",
        dest="use_docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require Docker (--no-docker: run commands on this machine, asking before each)",
    )
    add("--model", help="the model name (default: PYGENT_MODEL or the configured one)")
    add("-c", "--config", type=Path, metavar="FILE", help="a pygent.toml to read")
    add(
        "--confirm-bash",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask before every command (--no-confirm-bash: never ask)",
    )
    add(
        "--approval-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deny an approval nobody answers within this time (default {DEFAULT_TIMEOUT:g})",
    )
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add("--log-file", type=Path, help="write the log here instead of stderr")
    return parser


def _url(host: str, port: int, token: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def _can_open_browser() -> bool:
    # Without a display, webbrowser may start a console browser that takes over the terminal.
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_browser(url: str) -> None:
    def run() -> None:
        try:
            if not webbrowser.open(url):
                log.info("no browser could be started: open the address above")
        except webbrowser.Error as exc:
            log.info("could not open a browser (%s): open the address above", exc)

    threading.Thread(target=run, name="pygent-ui-browser", daemon=True).start()


async def serve(
    app: web.Application, host: str, port: int, *, token: str, open_browser: bool
) -> int:
    """Serve until SIGINT, SIGTERM or SIGHUP (its terminal closed), then close every session;
    returns the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner, bound = await start_site(app, host, port)
    except OSError as exc:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        print(f"pygent ui: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        url = _url(host, bound, token)
        print(f"Pygent UI: {url}", flush=True)  # the one stdout line: what to open
        log.info("serving; Ctrl-C stops the server and removes its sandboxes")
        if open_browser:
            if _can_open_browser():
                _open_browser(url)
            else:
                log.info("no display: open the address above in a browser")
        await stop.wait()
        log.info("stopping: cancelling turns and removing sandboxes")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent ui [--host H] [--port N] [--open/--no-open] ...``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_file, args.log_level)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"pygent ui: {args.host} is not a loopback address; anyone who can reach it could "
            "drive the agent. Pass --allow-remote to bind to it anyway.",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(args.host):
        log.warning(
            "listening on %s: anyone on the network with the token can run commands "
            "through this server, and plain HTTP shows the token to the network",
            args.host,
        )
    if args.approval_timeout <= 0:
        print("pygent ui: --approval-timeout must be > 0", file=sys.stderr)
        return 2
    folder = Path.cwd() if args.cwd else args.folder
    if folder is not None:
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            print(f"pygent ui: --folder {folder} is not a directory", file=sys.stderr)
            return 2
    try:
        settings = load_settings(
            {"use_docker": args.use_docker, "model": args.model, "confirm_bash": args.confirm_bash},
            config_file=args.config,
        )
    except PygentError as exc:
        print(f"pygent ui: {exc.user_message()}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        log.warning("%s", warning)
    token = secrets.token_urlsafe(24)
    app = create_app(
        settings,
        token=token,
        folder=folder,
        approval_timeout=args.approval_timeout,
        loopback_only=is_loopback(args.host),
    )
    try:
        return asyncio.run(serve(app, args.host, args.port, token=token, open_browser=args.open))
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
