"""Opening a session's MCP servers, importing the SDK only when a session has some."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent.errors import ConfigError
from pygent.mcp.config import McpServerSpec

if TYPE_CHECKING:
    from pygent.mcp.manager import McpManager
else:
    McpManager = Any  # the real class needs the `mcp` SDK: imported in open_mcp

__all__ = ["McpManager", "open_mcp"]


def open_mcp(
    specs: list[McpServerSpec], agent: Any, runtime: Any, folder: Path | None
) -> McpManager:
    """Start ``specs`` for ``agent`` (in ``runtime``'s sandbox) and register their tools.

    Blocks until every server is ready or failed (each within its start timeout);
    call it from a worker thread. The agent gets its own tool registry first, so the
    tools never reach other sessions.

    Raises:
        ConfigError: the ``mcp`` SDK is not installed, or the specs are inconsistent.
    """
    try:
        from pygent.mcp.manager import McpManager as Manager
    except ImportError as exc:
        raise ConfigError(
            f"MCP servers are configured but the MCP SDK cannot be imported ({exc})",
            hint="pip install 'pygent[mcp]'",
        ) from None
    from pygent.tools import DEFAULT_REGISTRY, ToolRegistry

    if agent.tools is DEFAULT_REGISTRY:
        agent.tools = ToolRegistry(DEFAULT_REGISTRY.tools())
    manager = Manager(specs, runtime, agent.tools, host_cwd=folder)
    agent.mcp = manager  # front ends that hold only the agent (the REPL's /mcp) find it
    manager.start_blocking()
    return manager


def open_mcp_for_task(parent: McpManager, agent: Any, runtime: Any) -> McpManager:
    """A delegated task's own copies of the session's MCP servers, in the task's sandbox.

    The sub-agent gets its own registry (the parent's tools without the session's MCP
    tools) so its MCP calls go to the servers of its own sandbox. Blocks until they
    are ready or failed; call it from a worker thread.
    """
    from pygent.mcp.manager import McpManager as Manager
    from pygent.mcp.tools import PREFIX
    from pygent.tools import ToolRegistry

    agent.tools = ToolRegistry([t for t in agent.tools.tools() if not t.name.startswith(PREFIX)])
    manager = Manager(parent.specs, runtime, agent.tools, host_cwd=parent.host_cwd)
    agent.mcp = manager
    manager.start_blocking()
    agent.refresh_system_message()
    return manager


def close_mcp_of(agent: Any) -> None:
    """Stop the MCP servers an agent started (a task's, before its sandbox goes)."""
    manager = getattr(agent, "mcp", None)
    if manager is not None:
        manager.stop_blocking()
