"""Personas: a name and a description that shape an agent's system prompt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    """Who the agent is: shown in banners and written into the system prompt."""

    name: str
    description: str


DEFAULT_PERSONA = Persona("Pygent", "a sandboxed coding assistant.")
