"""Pygent: a coding assistant that runs every command inside an isolated sandbox.

The public API is imported lazily, so ``import pygent`` (and the CLI start-up) stays
fast: ``from pygent import Agent`` loads the agent core only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pygent import dataclass_code

__version__ = "0.2.0"

# Before any of Pygent's dataclasses is defined: their methods come compiled.
dataclass_code.install()

_EXPORTS = {
    "Agent": "pygent.agent",
    "TurnResult": "pygent.agent",
    "Runtime": "pygent.runtime",
    "TaskManager": "pygent.tasks",
    "load_config": "pygent.config",
    "Settings": "pygent.settings",
    "load_settings": "pygent.settings",
    "Persona": "pygent.persona",
    "register_tool": "pygent.tools",
    "tool": "pygent.tools",
    "remove_tool": "pygent.tools",
    "clear_tools": "pygent.tools",
    "reset_tools": "pygent.tools",
    "register_command": "pygent.commands",
    "set_custom_model": "pygent.models",
    "PygentError": "pygent.errors",
}
_MODULES = {"openai_compat", "models", "commands", "events", "approval", "errors", "tools"}

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"pygent.{name}")
    else:
        raise AttributeError(f"module 'pygent' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from pygent import approval, commands, errors, events, models, openai_compat, tools
    from pygent.agent import Agent, TurnResult
    from pygent.commands import register_command
    from pygent.config import load_config
    from pygent.errors import PygentError
    from pygent.models import set_custom_model
    from pygent.persona import Persona
    from pygent.runtime import Runtime
    from pygent.settings import Settings, load_settings
    from pygent.tasks import TaskManager
    from pygent.tools import clear_tools, register_tool, remove_tool, reset_tools, tool
