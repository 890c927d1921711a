"""Byte pipes to MCP servers: a process in the session's sandbox, on the host, or a URL.

Every function here is an async context manager yielding the SDK's transport streams
(``(read_stream, write_stream)`` of :class:`mcp.shared.message.SessionMessage`), so
:class:`mcp.ClientSession` does all the protocol work. Messages are parsed with the
SDK's own JSON-RPC model, one per line, as its stdio transport does.

* Docker sandbox: ``docker exec`` with stdin attached through the engine's socket (the
  same :class:`~pygent.runtime.docker_transport.ExecStream` the persistent shell uses),
  as the sandbox user, with the sandbox's environment plus the server's own ``env``,
  under the container's network and resource limits.
* Local sandbox and ``where = "host"``: the SDK's ``stdio_client`` with a scrubbed
  environment (the sandbox's allow-list, never the host's secrets) in its own process
  group, which the SDK kills as a tree on close.
* URL servers: the SDK's streamable-HTTP client from the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shlex
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from pygent.errors import SandboxError

log = logging.getLogger(__name__)

#: A single message larger than this is refused (the server is stopped, the call fails).
MAX_LINE_BYTES = 32 * 1024 * 1024
#: How long a server may take to exit after its stdin closes, before it is killed.
EXIT_GRACE = 1.0
_PID = b"__PYGENT_MCP_PID:"
_MISSING = b"__PYGENT_MCP_MISSING:"
_EXEC = b"__PYGENT_MCP_EXEC"
#: Run in the container in front of the server: report its pid (to kill it later) and
#: say clearly when the command is not installed in the image.
_LAUNCH = (
    'printf "__PYGENT_MCP_PID:%s\\n" "$$" >&2; '
    'command -v "$1" >/dev/null 2>&1 || { printf "__PYGENT_MCP_MISSING:%s\\n" "$1" >&2; exit 127; }; '
    'printf "__PYGENT_MCP_EXEC\\n" >&2; exec "$@"'
)


class StderrTail:
    """The last lines a server wrote to stderr: the reason shown when it fails."""

    def __init__(self, lines: int = 20) -> None:
        self.lines: deque[str] = deque(maxlen=lines)
        self._partial = b""
        #: Set when the stream ended: a crash's last words are in by then.
        self.ended = asyncio.Event()

    def feed(self, data: bytes) -> None:
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()[-4096:]
        for part in parts:
            self.lines.append(part.decode("utf-8", "replace")[:500])

    def text(self) -> str:
        tail = list(self.lines)
        if self._partial:
            tail.append(self._partial.decode("utf-8", "replace")[:500])
        return "\n".join(t for t in tail if t.strip())


def parse_message(line: bytes) -> SessionMessage | Exception:
    """One line of server output -> a message (or the parse error, as the SDK reports it)."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


class _ExecReceiver:
    """Receives the exec's demultiplexed output on the loop: stdout lines become messages."""

    def __init__(self, stderr: StderrTail) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[SessionMessage | Exception](
            math.inf
        )
        self.stderr = stderr
        self.pid: int | None = None
        self.missing: str | None = None
        self.launched = asyncio.Event()  # the launcher's verdict came: exec'd, missing or gone
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._err = bytearray()

    def _launcher_line(self, line: bytes) -> None:
        if line.startswith(_PID) and self.pid is None:
            with contextlib.suppress(ValueError):
                self.pid = int(line[len(_PID) :].strip())
        elif line.startswith(_MISSING):
            self.missing = line[len(_MISSING) :].decode("utf-8", "replace").strip()
            self.launched.set()
        elif line == _EXEC:
            self.launched.set()
        else:  # the shell's own complaint (a bad cwd...): the reason shown on failure
            self.stderr.feed(line + b"\n")

    def shell_output(self, stream: int, data: bytes) -> None:
        if stream != 1:
            if self.launched.is_set():
                self.stderr.feed(data)
                return
            # The launcher's marker lines come first: read whole lines until its verdict.
            self._err += data
            while not self.launched.is_set() and b"\n" in self._err:
                line, _, rest = bytes(self._err).partition(b"\n")
                self._err = bytearray(rest)
                self._launcher_line(line)
            if self.launched.is_set() and self._err:
                self.stderr.feed(bytes(self._err))
                self._err = bytearray()
            return
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if line.strip():
                self._deliver(parse_message(line))
        if len(self._buf) > MAX_LINE_BYTES:
            self._buf.clear()
            self._deliver(ValueError(f"the server sent a message over {MAX_LINE_BYTES} bytes"))
            self.shell_closed()

    def _deliver(self, item: SessionMessage | Exception) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.send.send_nowait(item)

    def shell_closed(self) -> None:
        self.closed.set()
        self.launched.set()
        self.stderr.ended.set()
        self.send.close()

    def shell_exited(self) -> None:
        self.shell_closed()


@asynccontextmanager
async def docker_exec_transport(
    backend: Any,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    stderr: StderrTail,
) -> AsyncIterator[TransportStreams]:
    """A server started with ``docker exec -i`` in the backend's container.

    Args:
        backend: a started :class:`~pygent.runtime.docker_backend.DockerBackend`.
        argv: the server's command and arguments.
        env: variables on top of the sandbox's environment (the server's own ``env``).
        cwd: the working directory in the container (default ``/workspace``).
        stderr: collects what the server writes to stderr.

    Raises:
        SandboxError: the command is not installed in the image, or no exec could start.
    """
    from pygent.runtime.docker_transport import ExecStream

    client = backend._client
    container = backend.container_id
    if client is None or container is None:
        raise SandboxError("the Docker sandbox is not running")
    receiver = _ExecReceiver(stderr)
    stream = await ExecStream.open(
        client,
        container,
        ["/bin/sh", "-c", _LAUNCH, "pygent-mcp", *argv],
        user=backend.user,
        workdir=cwd or "/workspace",
        environment={**backend._env, **env},
    )
    stream.attach(receiver)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)

    async def writer() -> None:
        async with write_receive:
            async for message in write_receive:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    await stream.send(data.encode() + b"\n")
                except (ConnectionError, OSError):
                    receiver.shell_closed()
                    return

    task = asyncio.ensure_future(writer())
    try:
        # A missing command says so at once: wait for the launcher's verdict (the
        # caller's start timeout bounds this wait).
        await receiver.launched.wait()
        if receiver.missing is not None:
            raise SandboxError(
                f"{receiver.missing!r} is not installed in the sandbox image {backend.options.image}",
                hint="add it to the image (a Dockerfile RUN pip/npm install ...) or set "
                "where = \"host\" for this server",
            )
        yield receiver.receive, write_send
    finally:
        task.cancel()
        write_send.close()
        await _stop_exec(backend, stream, receiver)


async def _stop_exec(backend: Any, stream: Any, receiver: _ExecReceiver) -> None:
    """Close the server's stdin, give it a moment, then kill what is left of its process
    tree: nothing is left behind. (The engine may end the exec's stream when stdin
    closes, so a closed stream does not prove the process is gone.)"""
    with contextlib.suppress(OSError, RuntimeError, AttributeError):
        stream._transport.write_eof()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(receiver.closed.wait(), EXIT_GRACE)
    if receiver.pid is not None:
        await _kill_in_container(backend, receiver.pid)
    stream.close()


#: Kill a process and all its descendants: collect the tree first (a killed parent's
#: children are re-parented at once), stop them so none forks meanwhile, then kill.
_KILL_TREE = r"""
pids=" $1 "; changed=1
while [ "$changed" = 1 ]; do
  changed=0
  for s in /proc/[0-9]*/status; do
    p=${s#/proc/}; p=${p%/status}
    case "$pids" in *" $p "*) continue ;; esac
    pp=
    while read -r k v; do [ "$k" = "PPid:" ] && { pp=$v; break; }; done < "$s" 2>/dev/null
    case "$pids" in *" $pp "*) pids="$pids$p "; changed=1 ;; esac
  done
done
kill -STOP $pids 2>/dev/null; kill -KILL $pids 2>/dev/null; true
"""


async def _kill_in_container(backend: Any, pid: int) -> None:
    client, container = backend._client, backend.container_id
    if client is None or container is None:
        return

    def kill() -> None:
        try:
            exec_id = client.api.exec_create(
                container, ["/bin/sh", "-c", _KILL_TREE, "pygent-mcp-kill", str(pid)], user=backend.user
            )["Id"]
            client.api.exec_start(exec_id)
        except Exception as exc:  # docker SDK errors: the container may be gone already
            log.debug("killing MCP server %s in %s: %s", pid, container[:12], exc)

    await asyncio.to_thread(kill)


@asynccontextmanager
async def process_transport(
    argv: list[str], env: dict[str, str], cwd: str | None, errlog: TextIO
) -> AsyncIterator[TransportStreams]:
    """A server as a host process (local sandbox or ``where = "host"``) via the SDK.

    ``env`` is the whole environment the server gets (the SDK adds only HOME, LOGNAME,
    PATH, SHELL, TERM and USER, which ``env`` overrides).
    """
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
    try:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams
    except FileNotFoundError as exc:
        raise SandboxError(
            f"cannot start MCP server: {shlex.join(argv)}: command not found",
            hint="install it on this machine or fix `command` in the configuration",
        ) from exc


@asynccontextmanager
async def http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[TransportStreams]:
    """A streamable-HTTP server reached from the host."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams[0], streams[1]
