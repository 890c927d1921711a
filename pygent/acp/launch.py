"""``pygent acp``: the command line of the ACP agent, and its stdio loop.

Logs go to stderr or ``--log-file``; stdout carries only ACP frames (see
:func:`pygent.acp.transport.claim_stdout`). The process ends when the client closes
stdin or on SIGTERM/SIGINT, after every session's turn is cancelled (its command's
process group killed) and its sandbox removed.

When a session host runs (``pygent serve``) and unless ``--in-process`` or
``PYGENT_LSP_HOST=never`` (the setting ``pygent lsp --stdio`` follows too), ``pygent acp``
loads no agent at all: it asks the host to serve ACP on its connection
(:func:`pygent.lsp.host_socket.join_acp`) and becomes a byte pipe between stdin/stdout
and the host's socket, exactly as ``pygent lsp --stdio`` does. The host runs this
module's agent on its shared sessions (:mod:`pygent.acp.hosted`): an ACP client then sees
the same live sessions as VS Code, the REPL's ``pygent attach`` and the web page, and they
go on in the host when the client leaves. ``PYGENT_LSP_HOST=require`` fails when no
host answers (or it cannot serve ACP).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

# The flags every process that serves sessions takes (standard library only, like this).
from pygent.lsp.launch import DEFAULT_APPROVAL_TIMEOUT, add_server_flags

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent acp",
        description="Pygent as an Agent Client Protocol agent over stdio (Zed, JetBrains, "
        "Neovim, Emacs, acpx...).",
    )
    add_server_flags(
        parser,
        "seconds a session/request_permission waits for the client before the call is "
        f"denied (default {DEFAULT_APPROVAL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--sync",
        choices=["cow", "mount"],
        default="cow",
        help="how the client's folder reaches the sandbox: cow (copy-on-write, the agent's "
        "edits are reviewed before they reach the folder; default) or mount (edits land "
        "in the folder at once)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the sessions in this process even when a session host (pygent serve) "
        "runs (the same as PYGENT_LSP_HOST=never)",
    )
    return parser


def models_from_env() -> list[str]:
    """The models of ``PYGENT_ACP_MODELS`` (comma-separated), offered besides the configured one."""
    extra = os.environ.get("PYGENT_ACP_MODELS", "")
    return [m.strip() for m in extra.split(",") if m.strip()]


def host_socket(settings: Any, args: argparse.Namespace) -> socket.socket | None | int:
    """A connection to the session host to pipe to, None to serve in process, or an exit
    status (``PYGENT_LSP_HOST=require`` and no host answers, or it cannot serve ACP). As
    ``pygent lsp --stdio``; the host is asked to run the ACP agent for this connection
    (:func:`pygent.lsp.host_socket.join_acp`), with this command's options."""
    if args.in_process or settings.lsp_host == "never":
        return None
    from pygent.errors import PygentError
    from pygent.lsp.host_socket import connect, join_acp

    try:
        sock = connect(settings.host_dir)
    except PygentError as exc:
        if settings.lsp_host == "require":
            print(f"pygent acp: {exc.user_message()}", file=sys.stderr)
            return 2
        log.warning("not joining a session host: %s", exc.user_message())
        return None
    if sock is None:
        if settings.lsp_host == "require":
            print(
                f"pygent acp: no session host answers in {settings.host_dir} "
                "(PYGENT_LSP_HOST=require); start one with: pygent serve --background",
                file=sys.stderr,
            )
            return 2
        return None
    options = {
        "syncMode": args.sync,
        "approvalTimeout": args.approval_timeout,
        "models": models_from_env(),
    }
    refused = join_acp(sock, options)
    if refused is None:
        log.info("piping to the session host in %s (it runs the ACP agent)", settings.host_dir)
        return sock
    sock.close()
    if settings.lsp_host == "require":
        print(f"pygent acp: the session host cannot serve ACP: {refused}", file=sys.stderr)
        return 2
    log.warning("not joining the session host (%s): serving in process", refused)
    return None


def attach_agent(agent: Any, transport: Any) -> Any:
    """Wire ``agent`` to ``transport`` (``$/cancel_request``, reply chunks written at once)
    and return its SDK connection, not yet listening."""
    from acp import AgentSideConnection

    from pygent.acp.updates import notification

    def seen(message: dict[str, Any]) -> None:
        if message.get("method") == "session/prompt" and "id" in message:
            params = message.get("params")
            if isinstance(params, dict) and isinstance(params.get("sessionId"), str):
                agent.prompt_ids[message["id"]] = params["sessionId"]

    def sent(message: dict[str, Any]) -> None:
        if "method" not in message and "id" in message:
            agent.prompt_ids.pop(message["id"], None)

    transport.observe_in, transport.observe_out = seen, sent
    transport.on_cancel_request = agent.cancel_request

    def send_now(session_id: str, update: Any) -> bool:
        params = notification(session_id, update)
        message = {"jsonrpc": "2.0", "method": "session/update", "params": params}
        return transport.send_now(message)

    agent.outbox.send_now = send_now
    return AgentSideConnection(agent, transport, listening=False, use_unstable_protocol=True)


async def run_agent(agent: Any, transport: Any, on_listen: Any = None) -> None:
    """Serve one client with ``agent`` over ``transport`` until it leaves (or the listening
    task given to ``on_listen`` is cancelled); then the agent, connection and transport close."""
    conn = attach_agent(agent, transport)
    listen = asyncio.ensure_future(conn.listen())
    if on_listen is not None:
        on_listen(listen)
    try:
        await listen
    except asyncio.CancelledError:
        log.info("the ACP connection was stopped")
    finally:
        await agent.close()
        await conn.close()
        await transport.close()


async def serve(settings: Any, args: argparse.Namespace, in_fd: int, out_fd: int) -> int:
    """Serve one client on ``in_fd``/``out_fd`` until it leaves or a signal arrives."""
    from pygent.acp.agent import PygentAcpAgent
    from pygent.acp.transport import StdioTransport

    transport = StdioTransport(in_fd, out_fd)
    await transport.start()
    agent = PygentAcpAgent(
        settings, sync_mode=args.sync, approval_timeout=args.approval_timeout
    )
    loop = asyncio.get_running_loop()

    def on_listen(listen: asyncio.Future[Any]) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, listen.cancel)

    try:
        await run_agent(agent, transport, on_listen)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``pygent acp``; returns the exit status."""
    from pygent.errors import PygentError
    from pygent.logs import configure_logging
    from pygent.settings import load_settings

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_file, args.log_level)
    if args.approval_timeout <= 0:
        print("pygent acp: --approval-timeout must be > 0", file=sys.stderr)
        return 2
    try:
        settings = load_settings(
            {"use_docker": args.use_docker, "model": args.model}, config_file=args.config
        )
    except PygentError as exc:
        print(f"pygent acp: {exc.user_message()}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        log.warning("%s", warning)
    # A running session host serves this client: it runs the agent, this process only
    # copies bytes (as `pygent lsp --stdio` joined to it), and loads no SDK at all.
    host = host_socket(settings, args)
    if isinstance(host, int):
        return host
    if host is not None:
        from pygent.lsp.launch import proxy

        return proxy(host)
    try:
        import acp  # noqa: F401
    except ImportError as exc:
        print(
            f"pygent acp: the ACP SDK is not installed ({exc}); install it with: "
            "pip install 'pygent[acp]'",
            file=sys.stderr,
        )
        return 2
    from pygent.acp.transport import claim_stdout

    out_fd = claim_stdout()
    return asyncio.run(serve(settings, args, 0, out_fd))
