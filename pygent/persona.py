"""Personas: a name and a description that shape an agent's system prompt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    """Who the agent is: shown in banners and written into the system prompt.

    ``mcp`` says which of the session's MCP servers a delegated task with this persona
    starts in its own sandbox (docs/mcp.md): ``None`` (the default) all of them, an
    empty tuple none (``mcp = false`` in ``[[task_personas]]``), or the names of some
    (``mcp = ["git"]``).
    """

    name: str
    description: str
    mcp: tuple[str, ...] | None = None


DEFAULT_PERSONA = Persona("Pygent", "a sandboxed coding assistant.")
