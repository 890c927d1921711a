"""``pygent acp``: the command line of the ACP agent, and its stdio loop.

Logs go to stderr or ``--log-file``; stdout carries only ACP frames (see
:func:`pygent.acp.transport.claim_stdout`). The process ends when the client closes
stdin or on SIGTERM/SIGINT, after every session's turn is cancelled (its command's
process group killed) and its sandbox removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

# The flags every process that serves sessions takes (standard library only, like this).
from pygent.lsp.launch import DEFAULT_APPROVAL_TIMEOUT, add_server_flags

log = logging.getLogger(__name__)

#: Seconds a permission request waits for the client before the call is denied.


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
    return parser


def _wrap_handler(conn: Any, agent: Any) -> None:
    """Serve ``$/cancel_request`` and keep unknown notifications out of the error log.

    The SDK (0.12) routes neither: it logs a traceback for any notification it has no
    route for. Its connection keeps the router as ``_handler``; this wraps it.
    """
    from acp import RequestError

    inner = conn._conn._handler

    async def handler(method: str, params: Any, is_notification: bool) -> Any:
        if method == "$/cancel_request":
            if isinstance(params, dict):
                agent.cancel_request(params.get("requestId", params.get("id")))
            return None
        if is_notification:
            try:
                return await inner(method, params, is_notification)
            except RequestError as exc:
                log.warning("ignoring the notification %r: %s", method, exc)
                return None
        return await inner(method, params, is_notification)

    conn._conn._handler = handler


async def serve(settings: Any, args: argparse.Namespace, in_fd: int, out_fd: int) -> int:
    """Serve one client on ``in_fd``/``out_fd`` until it leaves or a signal arrives."""
    from acp import AgentSideConnection
    from acp.schema import SessionNotification

    from pygent.acp.agent import PygentAcpAgent
    from pygent.acp.transport import StdioTransport

    transport = StdioTransport(in_fd, out_fd)
    await transport.start()
    agent = PygentAcpAgent(settings, sync_mode=args.sync, approval_timeout=args.approval_timeout)

    def seen(message: dict[str, Any]) -> None:
        if message.get("method") == "session/prompt" and "id" in message:
            params = message.get("params")
            if isinstance(params, dict) and isinstance(params.get("sessionId"), str):
                agent.prompt_ids[message["id"]] = params["sessionId"]

    def sent(message: dict[str, Any]) -> None:
        if "method" not in message and "id" in message:
            agent.prompt_ids.pop(message["id"], None)

    transport.observe_in, transport.observe_out = seen, sent

    def send_now(session_id: str, update: Any) -> bool:
        params = SessionNotification(session_id=session_id, update=update)
        message = {
            "jsonrpc": "2.0",
            "method": "session/update",
            "params": params.model_dump(
                mode="json", by_alias=True, exclude_none=True, exclude_unset=True
            ),
        }
        return transport.send_now(message)

    agent.outbox.send_now = send_now
    conn = AgentSideConnection(agent, transport, listening=False, use_unstable_protocol=True)
    _wrap_handler(conn, agent)
    loop = asyncio.get_running_loop()
    listen = asyncio.ensure_future(conn.listen())
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, listen.cancel)
    try:
        await listen
    except asyncio.CancelledError:
        log.info("stopping on a signal")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await agent.close()
        await conn._conn.close()
        await transport.close()
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
