"""Tools: the registry object, the built-in tools, and the upstream module-level helpers.

``register_tool``, ``tool``, ``remove_tool``, ``clear_tools``, ``reset_tools`` and
``execute_tool`` act on :data:`DEFAULT_REGISTRY`, the registry agents use unless they
are given their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pygent.tools import control, diagnostics_tool, file_tools, shell_tool
from pygent.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult


def builtin_tools() -> list[Tool]:
    """Fresh copies of the built-in tools (delegation tools are added by pygent.tasks)."""
    return [
        Tool("bash", "Run a shell command in the sandboxed workspace and return its output. "
             "The shell persists: cd and export carry over. Commands get no stdin.",
             shell_tool.BASH_SCHEMA, shell_tool.bash, "exec"),
        Tool("write_file", "Create or overwrite a file in the workspace with the given content.",
             file_tools.WRITE_SCHEMA, file_tools.write_file, "write"),
        Tool("edit_file", "Replace an exact snippet of a file (it must occur exactly once) "
             "without rewriting the whole file.", file_tools.EDIT_SCHEMA, file_tools.edit_file, "write"),
        Tool("read_file", "Read a text file from the workspace; use start_line/end_line for "
             "large files.", file_tools.READ_SCHEMA, file_tools.read_file, "read"),
        Tool("download_file", "Return the contents of a workspace file (same as read_file).",
             file_tools.READ_SCHEMA, file_tools.download_file, "read"),
        Tool("read_image", "Look at an image file from the workspace.", file_tools.IMAGE_SCHEMA,
             file_tools.read_image, "read"),
        Tool("diagnostics", "List the problems the user's editor shows (its linters' and "
             "compilers' diagnostics), optionally for one file or at least one severity.",
             diagnostics_tool.DIAGNOSTICS_SCHEMA, diagnostics_tool.diagnostics, "read"),
        Tool("ask_user", "Ask the user a question (optionally with options) and wait for "
             "the answer.", control.ASK_SCHEMA, control.ask_user, "control"),
        Tool("stop", "Call when the task is complete.", control.STOP_SCHEMA, control.stop,
             "control"),
    ]


DEFAULT_REGISTRY = ToolRegistry(builtin_tools())


def register_tool(name: str, description: str, parameters: dict[str, Any] | None,
                  func: Callable[..., Any]) -> Tool:
    """Register a tool on the default registry; ``func(runtime, **kwargs) -> str``."""
    return DEFAULT_REGISTRY.register(name, description, parameters, func)


def tool(name: str, description: str, parameters: dict[str, Any] | None = None
         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``func(runtime, **kwargs)`` on the default registry."""
    return DEFAULT_REGISTRY.tool(name, description, parameters)


def remove_tool(name: str) -> None:
    """Unregister a tool from the default registry."""
    DEFAULT_REGISTRY.remove(name)


def clear_tools() -> None:
    """Remove every tool from the default registry."""
    DEFAULT_REGISTRY.clear()


def reset_tools() -> None:
    """Restore the default built-in tools."""
    DEFAULT_REGISTRY.reset()


def execute_tool(call: Any, rt: Any) -> str:
    """Run one tool call (an SDK or openai_compat call object) synchronously (upstream API)."""
    fn = call.function if hasattr(call, "function") else call["function"]
    name = fn.name if hasattr(fn, "name") else fn["name"]
    args = fn.arguments if hasattr(fn, "arguments") else fn.get("arguments", "{}")
    ctx = ToolContext(runtime=rt, call_id=str(getattr(call, "id", "")))
    result = asyncio.run(DEFAULT_REGISTRY.execute(name, args, ctx))
    return result.content


__all__ = [
    "DEFAULT_REGISTRY", "Tool", "ToolContext", "ToolRegistry", "ToolResult", "builtin_tools",
    "clear_tools", "execute_tool", "register_tool", "remove_tool", "reset_tools", "tool",
]
