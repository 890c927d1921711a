"""One MCP server's life: start, initialise, list tools, serve calls, restart on a crash, stop.

A :class:`McpConnection` is driven by one supervisor task on the runtime's event loop
(the SDK's anyio scopes must be entered and left in the same task). The supervisor
opens the transport, runs the SDK's :class:`~mcp.ClientSession` handshake within the
start timeout, and then waits until the server's output ends (a crash) or
:meth:`McpConnection.stop` is called. A crash after the server was ready restarts it
with exponential back-off, a few times; a server that cannot start at all fails at
once with the reason (its stderr's last lines included), since trying again would
only fail the same way.

Requests from the server: ``roots/list`` is answered with the folder the server works
in (``/workspace`` in the Docker sandbox), so servers that act on "the project" find it.
Sampling (``sampling/createMessage``) and elicitation are not offered: the client does
not declare them, so well-behaved servers do not send them (server-everything leaves
its sampling tools out), and one that sends them anyway gets the SDK's JSON-RPC error
("Sampling not supported"). A server in the sandbox does not get the session's model,
its budget or a way to prompt the user (docs/mcp.md says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientRequestContext
from mcp.shared.message import SessionMessage

from pygent.errors import PygentError
from pygent.mcp.config import McpServerSpec
from pygent.mcp.transport import StderrTail

log = logging.getLogger(__name__)

STARTING = "starting"
READY = "ready"
RESTARTING = "restarting"
FAILED = "failed"
DISABLED = "disabled"
STOPPED = "stopped"

#: Restarts after crashes before the server is given up (the counter resets after a
#: server stayed up for STABLE seconds).
MAX_RESTARTS = 5
STABLE = 60.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0

Opener = Callable[[StderrTail], AbstractAsyncContextManager[TransportStreams]]


class McpCallError(PygentError):
    """An MCP call could not complete (server gone, timed out, not ready)."""


@dataclass(frozen=True)
class ServerStatus:
    """What front ends show for a server (no secrets: no env, no headers)."""

    name: str
    state: str
    where: str  # "sandbox", "host" or "remote"
    transport: str
    tools: tuple[str, ...] = ()
    reason: str = ""
    restarts: int = 0
    description: str = ""
    disabled_tools: tuple[str, ...] = ()  # tools left out, with why


class McpConnection:
    """One server: its supervisor task, its SDK session while ready, its tools."""

    def __init__(
        self,
        spec: McpServerSpec,
        opener: Opener,
        *,
        on_tools: Callable[[McpConnection], None],
        redact: Callable[[str], str] = lambda s: s,
        roots: list[types.Root] | None = None,
    ) -> None:
        self.spec = spec
        self._opener = opener
        self._on_tools = on_tools
        self._redact = redact
        self.state = DISABLED if not spec.enabled else STARTING
        self.reason = ""
        self.tools: list[types.Tool] = []
        self.restarts = 0
        self.session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # ready or failed (start() waits for it)
        self._lost = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._dirty = False  # a list_changed came in since the last listing
        self.launched_at = 0.0  # monotonic times of the last start and of its readiness
        self.ready_at = 0.0
        self.stderr = StderrTail()
        #: What ``roots/list`` answers; None: the roots capability is not declared.
        self.roots = roots

    @property
    def where(self) -> str:
        return "remote" if self.spec.url else self.spec.where

    def status(self) -> ServerStatus:
        return ServerStatus(
            name=self.spec.name,
            state=self.state,
            where=self.where,
            transport=self.spec.transport,
            tools=tuple(t.name for t in self.tools) if self.state == READY else (),
            reason=self._redact(self.reason),
            restarts=self.restarts,
            description=self.spec.describe(),
        )

    # -- lifecycle ---------------------------------------------------------------

    def launch(self) -> None:
        """Start the supervisor on the running loop without waiting for the server
        (the session opens at once; :meth:`wait_settled` waits when something needs it)."""
        if not self.spec.enabled or self._task is not None or self._stopping:
            return
        self._task = asyncio.ensure_future(self._supervise())

    async def start(self) -> None:
        """Start the supervisor and wait until the server is ready or failed."""
        self.launch()
        if self._task is not None:
            await self._settled.wait()

    @property
    def settled(self) -> bool:
        """True once the first start is over (ready, failed, stopped), or for a disabled
        server (never started). False before :meth:`launch` too: it is about to start."""
        return self._settled.is_set() or not self.spec.enabled

    async def wait_settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the first start to be over; True if it is."""
        if self.settled:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), max(timeout, 0))
        return self.settled

    async def stop(self) -> None:
        """Stop the server (its process ends); idempotent. A server still starting is
        not waited for: its start is cancelled, which ends its process (the transport's
        clean-up runs on cancellation), so a session closed meanwhile leaves nothing."""
        self._stopping = True
        self._lost.set()
        starting = self.state == STARTING
        for task in (self._refresh, self._task):
            if task is not None and not task.done():
                if task is self._refresh or starting:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 10)
                if not task.done():
                    task.cancel()
        if self.state != DISABLED:
            self.state = STOPPED
        self._settled.set()  # a turn waiting for this server's start goes on

    async def _supervise(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stopping:
            self._lost.clear()
            self.stderr = StderrTail()
            up_since: float | None = None
            try:
                async with self._connected() as session:
                    self.session = session
                    self.state = READY
                    self.reason = ""
                    up_since = time.monotonic()
                    self._ready.set()
                    self._settled.set()
                    self._on_tools(self)
                    await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # any start failure: the server fails, not the session
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self.reason = self._failure(exc)
            finally:
                self.session = None
                self._ready.clear()
            if self._stopping:
                break
            if up_since is None:  # never became ready: the same start would fail again
                self.state = FAILED
                log.warning("MCP server %s failed to start: %s", self.spec.name, self._redact(self.reason))
                self._settled.set()
                self._on_tools(self)
                return
            if time.monotonic() - up_since > STABLE:
                self.restarts, delay = 0, BACKOFF_FIRST
            tail = self.stderr.text()
            self.reason = "the server exited" + (f": {tail.splitlines()[-1]}" if tail else "")
            if self.restarts >= MAX_RESTARTS:
                self.state = FAILED
                self.reason += f" (gave up after {MAX_RESTARTS} restarts)"
                self._on_tools(self)
                return
            self.restarts += 1
            self.state = RESTARTING
            self._on_tools(self)
            log.warning("MCP server %s exited; restarting in %.1fs", self.spec.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _failure(self, exc: BaseException) -> str:
        while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
            exc = exc.exceptions[0]  # type: ignore[attr-defined]  # an anyio task group's ExceptionGroup
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            text = f"did not answer within {self.spec.start_timeout:g}s"
        elif isinstance(exc, PygentError):
            text = exc.user_message()
        else:
            text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        tail = self.stderr.text()
        if tail:
            text += "\nserver stderr:\n" + "\n".join(tail.splitlines()[-8:])
        return text

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[ClientSession]:
        self.launched_at = time.monotonic()  # for the start-up figures (bench/bench_mcp.py)
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._opener(self.stderr))
            watched = await stack.enter_async_context(self._watch(read))
            session = await stack.enter_async_context(
                ClientSession(
                    watched,
                    write,
                    message_handler=self._on_message,
                    list_roots_callback=self._list_roots if self.roots is not None else None,
                    client_info=types.Implementation(name="pygent", version="1"),
                )
            )
            with anyio.fail_after(self.spec.start_timeout):
                await session.initialize()
                self.tools = await self._list(session)
            self.ready_at = time.monotonic()
            yield session

    async def _list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        return types.ListRootsResult(roots=list(self.roots or []))

    @asynccontextmanager
    async def _watch(self, read: Any) -> AsyncIterator[Any]:
        """Forward the transport's messages and notice when they end (the server died)."""
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](math.inf)

        async def pump() -> None:
            try:
                async for item in read:
                    send.send_nowait(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                send.close()
                self._lost.set()

        task = asyncio.ensure_future(pump())
        try:
            yield receive
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _list(self, session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a server paging forever must not hang the start
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            # Debounced: a flood of notifications costs one listing at a time, and one
            # more after it if any came in meanwhile.
            self._dirty = True
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._refresh_tools())
        elif isinstance(message, Exception):
            log.debug("MCP server %s sent something unreadable: %s", self.spec.name, message)

    async def _refresh_tools(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(0.02)  # a burst of notifications: one listing
            await self._refresh_once()

    async def _refresh_once(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            self.tools = await asyncio.wait_for(self._list(session), self.spec.call_timeout)
        except (asyncio.TimeoutError, PygentError, OSError, anyio.ClosedResourceError) as exc:
            log.warning("MCP server %s: refreshing its tools failed: %s", self.spec.name, exc)
            return
        except Exception as exc:  # an SDK error (McpError...): keep the old list
            log.warning("MCP server %s: refreshing its tools failed: %r", self.spec.name, exc)
            return
        self._on_tools(self)

    # -- calls -------------------------------------------------------------------

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        timeout: float | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> types.CallToolResult:
        """Call a tool; cancelling the caller sends ``notifications/cancelled``.

        ``on_progress`` gets one line per ``notifications/progress`` of the call.

        Raises:
            McpCallError: the server is not ready, died during the call, or timed out.
        """
        limit = timeout or self.spec.call_timeout
        name = self.spec.name
        if self.state == STARTING and not self._stopping:
            # Its first start is not over (the session does not wait for it): wait for
            # it, within the start timeout.
            await self.wait_settled(min(limit, self.spec.start_timeout))
        # A crash being repaired (the old session may still be winding down): wait for
        # the new one, within the call's time.
        deadline = time.monotonic() + min(limit, BACKOFF_MAX + self.spec.start_timeout)
        while (self._lost.is_set() or self.state == RESTARTING) and not self._stopping:
            if self.state in (FAILED, STOPPED) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        session = self.session
        if session is None or self.state != READY or self._lost.is_set():
            why = f": {self._redact(self.reason)}" if self.reason else ""
            raise McpCallError(f"MCP server {name!r} is {self.state}{why}")
        stderr = self.stderr  # this run's: a restart makes a new one
        lost = asyncio.ensure_future(self._lost.wait())
        async def report(progress: float, total: float | None, message: str | None) -> None:
            if on_progress is not None:
                of = f"/{total:g}" if total else ""
                on_progress(f"[progress {progress:g}{of}]" + (f" {message}" if message else "") + "\n")

        call = asyncio.ensure_future(
            session.call_tool(tool, arguments, progress_callback=report if on_progress else None)
        )
        try:
            done, _ = await asyncio.wait({call, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            call.cancel()  # the SDK sends notifications/cancelled for it
            lost.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(call, 2)
            raise
        finally:
            lost.cancel()
        if call in done:
            try:
                result = call.result()
            except Exception as exc:  # the SDK's errors (McpError, closed stream...)
                if self._lost.is_set():
                    raise McpCallError(await self._died(tool, stderr)) from None
                raise McpCallError(f"MCP server {name!r}, tool {tool!r}: {exc}") from None
            refresh = self._refresh
            if refresh is not None and not refresh.done():
                # The call changed the tool list (list_changed came before the answer):
                # the agent's next step must see the new list.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(refresh), 5)
            return result
        call.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(call, 2)
        if self._lost.is_set():
            raise McpCallError(await self._died(tool, stderr))
        raise McpCallError(
            f"MCP tool {tool!r} of server {name!r} did not answer within {limit:g}s: it was cancelled",
            hint=f"raise call_timeout in [mcp.servers.{name}] if the tool is slow",
        )

    async def _died(self, tool: str, stderr: StderrTail) -> str:
        # Its stderr may trail its stdout: give the last words a moment to arrive.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stderr.ended.wait(), 0.5)
        tail = stderr.text()
        last = f" ({self._redact(tail.splitlines()[-1])})" if tail else ""
        return (
            f"MCP server {self.spec.name!r} exited during the call to {tool!r}{last}; "
            "it is being restarted, the call was not completed"
        )
