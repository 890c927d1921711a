"""An MCP server built with the SDK's server side, for fault injection in the tests.

Run as ``python3 fault_server.py`` (stdio). Tools: ``echo`` (read-only), ``crash``
(the process exits mid-call), ``hang`` (never answers; writes a marker file when the
client cancels it), ``huge`` (a result of N characters), ``fail`` (``isError``),
``image``, ``structured``, ``add_tool`` (adds a tool and sends ``list_changed``),
``flood`` (many ``list_changed`` at once),
``sample`` and ``roots`` (requests to the client),
``getenv``, ``read``, ``connect`` and ``pid`` (isolation checks), plus two tools with invalid
input schemas (``loop``: a ``$ref`` cycle; ``notobject``: an unknown type).
``FAULT_DIR`` names a folder for markers (default: the working directory);
``FAULT_START_GATE`` (a file's path) and ``FAULT_START_DELAY`` (seconds) make its start slow.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

MARKS = Path(os.environ.get("FAULT_DIR") or ".")
if __name__ == "__main__" and (os.environ.get("FAULT_START_GATE") or os.environ.get("FAULT_START_DELAY")):
    # A slow start, as a server that installs or indexes at start-up: it answers nothing
    # until FAULT_START_GATE names a file that exists (a test opens the gate when it has
    # seen what it wants to see), or for FAULT_START_DELAY seconds. Its pid is written
    # first (FAULT_DIR/start-pid), before the SDK's slow import.
    import time

    (MARKS / "start-pid").write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("FAULT_START_DELAY") or 0))
    while os.environ.get("FAULT_START_GATE") and not Path(os.environ["FAULT_START_GATE"]).exists():
        time.sleep(0.05)

from mcp.server.mcpserver import Context, MCPServer  # noqa: E402  (after the slow-start gate)
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.server.mcpserver.utilities.types import Image  # noqa: E402
from mcp_types import ToolAnnotations  # noqa: E402

server = MCPServer("fault")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def crash() -> str:
    """Exit the server process in the middle of the call."""
    print("fault server: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def hang(seconds: float = 3600) -> str:
    """Sleep (a server that does not answer); a marker file records a cancellation."""
    (MARKS / "hang-started").write_text(str(os.getpid()))
    try:
        await asyncio.sleep(seconds)
    except BaseException:
        (MARKS / "hang-cancelled").write_text("cancelled")
        raise
    return "woke up"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def huge(size: int) -> str:
    """A result of ``size`` characters."""
    return "x" * (size // 2) + "MIDDLE" + "y" * (size // 2)


@server.tool()
def fail(why: str = "it went wrong") -> str:
    """A tool that reports an error (isError)."""
    raise ToolError(f"failing on purpose: {why}")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def image() -> Image:
    """A 1x1 PNG."""
    return Image(data=PNG, format="png")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def structured(city: str) -> dict[str, object]:
    """Structured content."""
    return {"city": city, "temperature": 21.5}


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool named ``name`` (returns its name) and tell the client the list changed."""

    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"added at run time: {name}",
                    annotations=ToolAnnotations(read_only_hint=True))
    await ctx.request_context.session.send_tool_list_changed()
    return f"added {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def flood(count: int, ctx: Context) -> str:
    """Send ``count`` tools/list_changed notifications (nothing changed)."""
    for _ in range(count):
        await ctx.request_context.session.send_tool_list_changed()
    return f"sent {count}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def sample(prompt: str, ctx: Context) -> str:
    """Ask the client's model (``sampling/createMessage``) whether or not the client
    offered sampling: what a careless or hostile server would do. Returns what came back."""
    from mcp_types import SamplingMessage, TextContent

    offered = ctx.client_capabilities.sampling is not None if ctx.client_capabilities else False
    try:
        result = await ctx.request_context.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=20
        )
    except Exception as exc:  # the client's refusal arrives as an MCP error
        return f"sampling offered: {offered}; refused: {exc}"
    return f"sampling offered: {offered}; answer: {result.content}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def roots(ctx: Context) -> str:
    """The client's roots (``roots/list``), one URI a line."""
    listed = await ctx.request_context.session.list_roots()
    return "\n".join(str(r.uri) for r in listed.roots)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def getenv(name: str) -> str:
    """An environment variable of the server process ('(unset)' if missing)."""
    return os.environ.get(name, "(unset)")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read(path: str) -> str:
    """Read a file the server process can see."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def connect(host: str, port: int) -> str:
    """Open a TCP connection (network isolation checks)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=3):
            return "connected"
    except OSError as exc:
        raise ToolError(f"cannot connect to {host}:{port}: {exc}") from None


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def loop(a: str = "") -> str:
    """Declares a schema with a $ref cycle (replaced below)."""
    return a


@server.tool()
def notobject(a: str = "") -> str:
    """Declares a schema with an unknown type (replaced below)."""
    return a


server._tool_manager._tools["loop"].parameters = {
    "type": "object",
    "properties": {"a": {"$ref": "#/properties/b"}, "b": {"$ref": "#/properties/a"}},
}
server._tool_manager._tools["notobject"].parameters = {
    "type": "object",
    "properties": {"a": {"type": "nonsense"}},
}

if __name__ == "__main__":
    server.run("stdio")
