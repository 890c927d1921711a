"""Custom REPL commands: ``register_command(name, handler, description)`` (upstream API).

A handler is called as ``handler(agent, arg)`` with the text after the command name;
it may return a new Agent to replace the current one. The REPL's built-in commands
(``/help``, ``/cmd``...) live in :mod:`pygent.repl`; this registry holds the extra
ones users add from ``config.py`` or their own code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygent.errors import ConfigError


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable[[Any, str], Any]
    description: str = ""


COMMANDS: dict[str, Command] = {}


def register_command(name: str, handler: Callable[[Any, str], Any], description: str | None = None) -> Command:
    """Add a slash command to the REPL (``name`` with or without the leading ``/``)."""
    key = "/" + name.lstrip("/")
    if len(key) < 2 or " " in key:
        raise ConfigError(f"invalid command name {name!r}")
    command = Command(key, handler, description or (handler.__doc__ or "").strip().split("\n")[0])
    COMMANDS[key] = command
    return command


def unregister_command(name: str) -> None:
    COMMANDS.pop("/" + name.lstrip("/"), None)
