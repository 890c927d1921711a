"""A session's MCP servers: started together, their tools in the session's registry, stopped together.

The manager lives on the session runtime's private event loop (where the sandbox's
Docker exec streams and local processes belong); agents on any other loop reach it
through :meth:`McpManager.acall`, with cancellation carried across, so cancelling a
turn cancels the in-flight call and the SDK sends ``notifications/cancelled``.

Each server's tools are registered as ``mcp__SERVER__TOOL`` in the session's tool
registry whenever its tool list changes (ready, ``list_changed``, a restart, a
failure), in one atomic swap, so the agent sees the new list at its next step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.client._transport import TransportStreams

from pygent.errors import ConfigError, PygentError, SandboxError
from pygent.mcp import tools as mt
from pygent.mcp.config import McpServerSpec
from pygent.mcp.connection import (
    READY,
    RESTARTING,
    STARTING,
    McpCallError,
    McpConnection,
    ServerStatus,
)
from pygent.mcp.transport import (
    StderrTail,
    docker_exec_transport,
    http_transport,
    process_transport,
)
from pygent.runtime.sandbox_env import sandbox_environment
from pygent.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult

log = logging.getLogger(__name__)

#: Tool kinds the policy knows for MCP tools (see :mod:`pygent.policy`).
KIND_READ = "mcp_read"  # a sandboxed server's tool that declares readOnlyHint
KIND_OTHER = "mcp"  # a sandboxed server's tool that declares destructiveHint false
KIND_DESTRUCTIVE = "mcp_destructive"  # anything else (MCP's default is destructive)
KIND_HOST = "mcp_host"  # any tool of a server on the host or at a URL: always asks


def tool_kind(spec: McpServerSpec, annotations: Any) -> str:
    """The policy kind of one tool, from where its server runs and its annotations."""
    if spec.runs_on_host:
        return KIND_HOST
    if annotations is not None and annotations.read_only_hint:
        return KIND_READ
    if annotations is not None and annotations.destructive_hint is False:
        return KIND_OTHER
    return KIND_DESTRUCTIVE


class McpManager:
    """The MCP servers of one session (or one delegated task's sandbox).

    Args:
        specs: the servers (disabled ones are listed as such, never started).
        runtime: the session's :class:`~pygent.runtime.Runtime` (its loop and backend).
        registry: the tool registry the agent reads (its own copy, not the default one).
        host_cwd: where host-side servers start (the user's folder, else the workspace).
        environ: the host environment ``$VAR`` references resolve from.
        on_change: called (on the runtime's loop) with a server's status when its state or
            tools change (front ends show it: the ``mcp_server`` session update).
    """

    def __init__(
        self,
        specs: list[McpServerSpec],
        runtime: Any,
        registry: ToolRegistry,
        *,
        host_cwd: Path | None = None,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[ServerStatus], None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"MCP server name(s) given twice: {', '.join(dupes)}")
        self.specs = list(specs)
        self.runtime = runtime
        self.registry = registry
        self.host_cwd = host_cwd
        self._environ = os.environ if environ is None else environ
        self._on_change = on_change
        self._secrets: list[str] = []
        for spec in specs:
            with contextlib.suppress(ConfigError):
                self._secrets.extend(spec.secret_values(self._environ))
        self.connections: dict[str, McpConnection] = {
            s.name: McpConnection(
                s, self._opener(s), on_tools=self._tools_changed, redact=self.redact, roots=self._roots(s)
            )
            for s in specs
        }
        self.notices: list[str] = []
        self.tool_notices: dict[str, list[str]] = {}
        self._started = False
        self._launched: concurrent.futures.Future[None] | None = None
        self._shown: dict[str, ServerStatus] = {}  # what status() answers (see there)
        self._status_lock = threading.Lock()

    # -- secrets -----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` without any value of a server's env or headers."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _roots(self, spec: McpServerSpec) -> list[types.Root] | None:
        """The folder a server works in, for ``roots/list``: the sandbox's workspace as the
        server sees it (``/workspace`` in a container), the user's folder for a host-side
        server; none for a URL server (it cannot reach any folder here)."""
        if spec.url:
            return None
        if spec.where == "host":
            folder = str(self.host_cwd or self.runtime.workspace)
        elif self.runtime.backend.kind == "docker":
            folder = "/workspace"
        else:
            folder = str(getattr(self.runtime.backend, "workspace", None) or self.runtime.workspace)
        return [types.Root(uri=Path(folder).as_uri(), name="workspace")]  # type: ignore[arg-type]

    # -- transports --------------------------------------------------------------

    def _opener(self, spec: McpServerSpec) -> Callable[[StderrTail], AbstractAsyncContextManager[TransportStreams]]:
        def open_(stderr: StderrTail) -> AbstractAsyncContextManager[TransportStreams]:
            return self._open(spec, stderr)

        return open_

    @contextlib.asynccontextmanager
    async def _open(self, spec: McpServerSpec, stderr: StderrTail) -> Any:
        if spec.url:
            async with http_transport(spec.url, spec.resolved_headers(self._environ)) as streams:
                yield streams
            return
        assert spec.command is not None
        argv = [spec.command, *spec.args]
        env = spec.resolved_env(self._environ)
        backend = self.runtime.backend
        if spec.where == "host":
            home = self._environ.get("HOME", str(Path.home()))
            base = sandbox_environment(None, host=True, home=home)
            cwd = spec.cwd or str(self.host_cwd or self.runtime.workspace)
            async with _stderr_pipe(stderr) as errlog, process_transport(argv, {**base, **env}, cwd, errlog) as streams:
                yield streams
            return
        if backend.kind == "docker":
            await self._sandbox_ready()
            async with docker_exec_transport(backend, argv, env, spec.cwd, stderr) as streams:
                yield streams
            return
        if backend.kind == "local":
            base = dict(getattr(backend, "_env", {}))
            root = Path(backend.workspace)
            cwd = str(root / spec.cwd) if spec.cwd else str(root)
            async with _stderr_pipe(stderr) as errlog, process_transport(argv, {**base, **env}, cwd, errlog) as streams:
                yield streams
            return
        raise SandboxError(
            f"MCP server {spec.name!r} cannot run in a {backend.kind} sandbox",
            hint="use the docker or local runtime, or where = \"host\"",
        )

    async def _sandbox_ready(self) -> None:
        started = getattr(self.runtime, "_started", None)
        if started is not None and not started.done():
            await asyncio.wrap_future(started)
        if started is not None:
            started.result()

    # -- lifecycle ---------------------------------------------------------------

    def _host_notices(self) -> None:
        for spec in self.specs:
            if spec.runs_on_host and spec.url is None and spec.enabled:
                self.notices.append(
                    f"MCP server {spec.name!r} runs on the host, outside the sandbox "
                    "(where = \"host\"): its tools can reach your files and network"
                )

    def _launch_all(self) -> None:
        """Launch every enabled server's supervisor (on the runtime's loop) and tell the
        front ends each one is starting."""
        for conn in self.connections.values():
            conn.launch()
            if conn.spec.enabled:
                status = self._publish(conn)
                if self._on_change is not None:
                    self._on_change(status)

    def start_soon(self) -> None:
        """Start every enabled server in the background, in parallel, and return at once.

        The session is usable meanwhile: each server's ``mcp_server`` update goes out as
        it becomes starting, then ready (its tools registered) or failed (why);
        :meth:`await_started` lets a turn wait for the ones still starting.
        """
        if self._started:
            return
        self._started = True
        self._host_notices()

        async def launch() -> None:
            self._launch_all()

        self._launched = self.runtime._loop.submit(launch())

    async def start(self) -> None:
        """Start every enabled server in parallel; each one's wait is its start timeout."""
        self._started = True
        self._host_notices()
        self._launch_all()
        await asyncio.gather(*(c.start() for c in self.connections.values()))
        for conn in self.connections.values():
            if conn.state not in (READY, "disabled"):
                self.notices.append(f"MCP server {conn.spec.name!r} {conn.state}: {conn.status().reason}")

    async def _wait_started(self) -> list[ServerStatus]:
        """On the runtime's loop: wait for the servers still starting, each at most its
        start timeout (counted from its launch, or from now while its sandbox is still
        being made); the statuses of those that are not ready afterwards."""
        if self._launched is not None:
            await asyncio.wrap_future(self._launched)
        pending = [c for c in self.connections.values() if not c.settled]
        if pending:
            now = time.monotonic()
            deadline = max((c.launched_at or now) + c.spec.start_timeout for c in pending)
            await asyncio.gather(*(c.wait_settled(deadline - now) for c in pending))
        return [self._status_of(c) for c in pending if c.state != READY]

    async def await_started(self) -> list[ServerStatus]:
        """From any event loop: wait until no server is starting (bounded by the start
        timeouts); returns the statuses of the servers waited for that are not ready
        (still starting, or failed). Cancelling the caller stops only the wait."""
        if not self._started:
            return []
        return await self.runtime._loop.run(self._wait_started())

    @property
    def starting(self) -> bool:
        """True while some server's first start is not over."""
        return self._started and any(not c.settled for c in self.connections.values())

    async def stop(self) -> None:
        """Stop every server; no process is left in the sandbox or on the host."""
        if self._launched is not None and not self._launched.done():
            await asyncio.wrap_future(self._launched)
        await asyncio.gather(*(c.stop() for c in self.connections.values()), return_exceptions=True)
        self._swap({})
        for conn in self.connections.values():
            self._publish(conn)

    async def aclose(self) -> None:
        """:meth:`stop` from any event loop (the servers live on the runtime's)."""
        if self._started:
            await self.runtime._loop.run(self.stop())

    def start_blocking(self, timeout: float | None = None) -> None:
        """From a thread that is not the runtime loop's: start and wait."""
        self.runtime._loop.call(self.start(), timeout)

    def stop_blocking(self) -> None:
        """From a thread that is not the runtime loop's: stop every server. Never raises
        for a slow or gone loop: the sandbox's removal right after ends what is left."""
        if not self._started:
            return
        try:
            self.runtime._loop.call(self.stop(), 60)
        except (TimeoutError, concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("stopping MCP servers: %r; the sandbox's removal ends them", exc)

    def status(self) -> list[ServerStatus]:
        """Every server's state as last published: a server shows "ready" only once its
        tools are in the registry (front ends on other threads read this while the
        runtime's loop changes the connections)."""
        with self._status_lock:
            return [self._shown.get(conn.spec.name) or self._unpublished(conn) for conn in self.connections.values()]

    def _unpublished(self, conn: McpConnection) -> ServerStatus:
        st = self._status_of(conn)
        if st.state in (READY, RESTARTING):  # between its state change and its tools' swap
            st = ServerStatus(**{**st.__dict__, "state": STARTING, "tools": ()})
        return st

    def _publish(self, conn: McpConnection) -> ServerStatus:
        status = self._status_of(conn)
        with self._status_lock:
            self._shown[conn.spec.name] = status
        return status

    def _status_of(self, conn: McpConnection) -> ServerStatus:
        st = conn.status()
        notes = tuple(self.tool_notices.get(conn.spec.name, ()))
        return ServerStatus(**{**st.__dict__, "disabled_tools": notes})

    # -- tools -------------------------------------------------------------------

    def _tools_changed(self, conn: McpConnection) -> None:
        tools: dict[str, Tool] = {}
        for other in self.connections.values():
            # A server being restarted keeps its tools: a call waits for it to be back.
            if other.state not in (READY, RESTARTING):
                continue
            notes: list[str] = []
            for tool in other.tools:
                name = mt.tool_name(other.spec.name, tool.name)
                why = mt.check_schema(tool.input_schema)
                if why is None and name in tools:
                    why = f"its name {name!r} collides with another tool"
                if why is not None:
                    notes.append(f"{tool.name}: {why}")
                    continue
                tools[name] = self._make_tool(other, tool, name)
            self.tool_notices[other.spec.name] = notes
            if notes:
                log.warning("MCP server %s: tools left out: %s", other.spec.name, "; ".join(notes))
        self._swap(tools)
        for other in self.connections.values():
            if other is not conn and other.spec.name in self._shown:
                self._publish(other)  # its left-out tools may have changed (collisions)
        status = self._publish(conn)
        if self._on_change is not None:
            self._on_change(status)

    def _swap(self, tools: dict[str, Tool]) -> None:
        self.registry.replace_group(mt.PREFIX, list(tools.values()))

    def _make_tool(self, conn: McpConnection, tool: Any, name: str) -> Tool:
        spec = conn.spec
        schema = dict(tool.input_schema)
        where = {"sandbox": "runs in the sandbox", "host": "runs ON THE HOST", "remote": "remote"}[conn.where]
        title = f"[MCP server {spec.name}, {where}] "
        description = title + (tool.description or tool.title or tool.name)
        server_tool = tool.name
        manager = self

        async def run(ctx: ToolContext, **arguments: Any) -> ToolResult:
            on_output = ctx.on_output
            progress = (lambda line: on_output("stdout", line)) if on_output is not None else None
            return await manager.acall(spec.name, server_tool, arguments, schema, on_progress=progress)

        return Tool(name, description, schema, run, tool_kind(spec, tool.annotations))

    async def acall(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        schema: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> ToolResult:
        """Call a tool from any event loop; failures are values for the model.
        ``on_progress`` gets the call's progress notifications as lines (live output)."""
        if schema is not None:
            error = mt.validate_call(schema, arguments)
            if error is not None:
                return ToolResult(False, f"error: {error}. The MCP tool was not called.")
        conn = self.connections.get(server)
        if conn is None:
            return ToolResult(False, f"error: no MCP server named {server!r}")
        data = {"mcp_server": server, "mcp_tool": tool, "where": conn.where}
        try:
            result = await self.runtime._loop.run(conn.call(tool, arguments, on_progress=on_progress))
        except McpCallError as exc:
            return ToolResult(False, "error: " + self.redact(exc.user_message()), data=data)
        except PygentError as exc:
            return ToolResult(False, "error: " + self.redact(exc.user_message()), data=data)
        ok, text, images = mt.convert_result(result)
        return ToolResult(ok, self.redact(text), attachments=images, data=data)


@contextlib.asynccontextmanager
async def _stderr_pipe(tail: StderrTail) -> Any:
    """A file the server's stderr goes to, read into ``tail`` on the loop."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(read_fd, fcntl.F_SETFL, fcntl.fcntl(read_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(read_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            tail.feed(data)
        else:
            loop.remove_reader(read_fd)
            tail.ended.set()

    loop.add_reader(read_fd, readable)
    writer = os.fdopen(write_fd, "w")
    try:
        yield writer
    finally:
        writer.close()
        await asyncio.sleep(0)
        loop.remove_reader(read_fd)
        with contextlib.suppress(OSError):
            while data := os.read(read_fd, 65536):
                tail.feed(data)
        os.close(read_fd)
