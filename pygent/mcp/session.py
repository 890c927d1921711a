"""Opening a session's MCP servers, importing the SDK only when a session has some."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent import events as ev
from pygent.errors import ConfigError
from pygent.mcp.config import McpServerSpec

if TYPE_CHECKING:
    from pygent.mcp.manager import McpManager
else:
    McpManager = Any  # the real class needs the `mcp` SDK: imported in open_mcp

__all__ = ["McpManager", "open_mcp"]


def status_event(status: Any, session_id: str = "", task_id: str | None = None) -> ev.McpServer:
    """A server's status (:class:`pygent.mcp.connection.ServerStatus`) as the session update
    front ends show (no secrets: the status holds none)."""
    return ev.McpServer(
        session_id=session_id,
        task_id=task_id,
        name=status.name,
        state=status.state,
        where=status.where,
        tools=list(status.tools),
        reason=status.reason,
        restarts=status.restarts,
    )


def open_mcp(
    specs: list[McpServerSpec],
    agent: Any,
    runtime: Any,
    folder: Path | None,
    on_event: Callable[[ev.McpServer], None] | None = None,
    session_id: str = "",
    *,
    start: bool = True,
) -> McpManager:
    """The MCP servers ``specs`` of ``agent`` (in ``runtime``'s sandbox), starting.

    Does not wait for the servers: they start in the background, in parallel (with
    ``start`` False, not yet: call the manager's ``start_soon`` once the session's
    listeners are wired), and each one's tools join the agent's registry when it is
    ready; the agent's first model request of a turn waits for the ones still starting
    (:meth:`~pygent.mcp.manager.McpManager.await_started`). The agent gets its own tool
    registry first, so the tools never reach other sessions. ``on_event`` gets an
    ``mcp_server`` update each time a server's state or tools change (starting, ready,
    failed...; from the runtime's thread).

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
    on_change = None
    if on_event is not None:
        emit = on_event

        def on_change(status: Any) -> None:
            emit(status_event(status, session_id))

    manager = Manager(specs, runtime, agent.tools, host_cwd=folder, on_change=on_change)
    agent.mcp = manager  # front ends that hold only the agent (the REPL's /mcp) find it
    if start:
        manager.start_soon()
    return manager


def specs_for_persona(specs: list[McpServerSpec], persona: Any) -> list[McpServerSpec]:
    """The servers a delegated task with ``persona`` starts: all (``mcp`` unset), none
    (``mcp = false``) or the ones it names.

    Raises:
        ConfigError: the persona names a server the session does not have.
    """
    wanted = getattr(persona, "mcp", None)
    if wanted is None:
        return list(specs)
    known = {s.name for s in specs}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(
            f"persona {persona.name!r} names MCP server(s) the session does not have: "
            f"{', '.join(unknown)}",
            hint=f"the session's servers: {', '.join(sorted(known)) or 'none'}; fix mcp in [[task_personas]]",
        )
    return [s for s in specs if s.name in wanted]


def open_mcp_for_task(
    parent: McpManager, agent: Any, runtime: Any, persona: Any = None
) -> McpManager | None:
    """A delegated task's own copies of the session's MCP servers, in the task's sandbox.

    The sub-agent gets its own registry (the parent's tools without the session's MCP
    tools) so its MCP calls go to the servers of its own sandbox. ``persona``'s ``mcp``
    field picks which servers (:func:`specs_for_persona`); with none, the task has no
    MCP tools and no manager (None). Blocks until they are ready or failed; call it
    from a worker thread.
    """
    from pygent.mcp.tools import PREFIX
    from pygent.tools import ToolRegistry

    specs = specs_for_persona(parent.specs, persona)
    agent.tools = ToolRegistry([t for t in agent.tools.tools() if not t.name.startswith(PREFIX)])
    if not specs:
        agent.refresh_system_message()
        return None
    from pygent.mcp.manager import McpManager as Manager

    manager = Manager(specs, runtime, agent.tools, host_cwd=parent.host_cwd)
    agent.mcp = manager
    manager.start_blocking()
    agent.refresh_system_message()
    return manager


def close_mcp_of(agent: Any) -> None:
    """Stop the MCP servers an agent started (a task's, before its sandbox goes)."""
    manager = getattr(agent, "mcp", None)
    if manager is not None:
        manager.stop_blocking()
