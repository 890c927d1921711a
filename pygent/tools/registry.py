"""The tool registry: named tools with JSON schemas, validated calls, failures as values.

A registry is an object passed to the agent; the upstream module-level functions in
:mod:`pygent.tools` act on a default registry. A tool body is either an upstream
style ``func(runtime, **kwargs) -> str`` (run in a worker thread) or an async
``func(ctx: ToolContext, **kwargs)`` returning a string or a :class:`ToolResult`.
Whatever goes wrong in a call (malformed JSON, unknown tool, a missing argument, an
exception) comes back as a :class:`ToolResult` with ``ok=False`` for the model.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pygent.errors import PathError, PygentError, ToolError

if TYPE_CHECKING:
    from pygent.runtime import Runtime

log = logging.getLogger(__name__)

#: How much of a malformed argument string is echoed back to the model.
PREVIEW_CHARS = 800


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced, as the model will see it."""

    ok: bool
    content: str
    control: str | None = None  # "stop" or "ask_user": ends the turn
    attachments: tuple[str, ...] = ()  # image data URLs shown to the model
    data: dict[str, Any] = field(default_factory=dict)  # extra facts for front ends


@dataclass
class ToolContext:
    """What a running tool may use: the sandbox, live output, and who called it."""

    runtime: Runtime
    call_id: str = ""
    on_output: Callable[[str, str], None] | None = None
    agent: Any = None  # the calling Agent (delegation tools need it)


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    #: "read" (never changes anything), "write" (files), "exec" (runs commands), "control"
    kind: str = "exec"

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def validate_arguments(tool: Tool, args: Any) -> str | None:
    """Check ``args`` against the tool's schema; returns an error text or None."""
    if not isinstance(args, dict):
        return f"arguments must be a JSON object, got {type(args).__name__}"
    props: dict[str, Any] = tool.parameters.get("properties", {}) or {}
    missing = [r for r in tool.parameters.get("required", []) if r not in args]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    if props:
        extra = [k for k in args if k not in props]
        if extra:
            return f"unknown argument(s): {', '.join(extra)}; expected: {', '.join(props)}"
    for key, value in args.items():
        expected = props.get(key, {}).get("type")
        types = _JSON_TYPES.get(expected) if isinstance(expected, str) else None
        if types is None or value is None:
            continue
        if isinstance(value, bool) and bool not in types:
            return f"argument {key!r} must be {expected}, got boolean"
        if not isinstance(value, types):
            return f"argument {key!r} must be {expected}, got {type(value).__name__}"
    return None


def parse_arguments(raw: str | dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a model's argument string; (args, None) or (None, error text)."""
    if isinstance(raw, dict):
        return raw, None
    text = (raw or "").strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        preview = text[:PREVIEW_CHARS] + ("..." if len(text) > PREVIEW_CHARS else "")
        return None, f"arguments are not valid JSON ({exc.msg} at position {exc.pos}): {preview}"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}: {text[:200]}"
    return value, None


class ToolRegistry:
    """A set of tools. ``version`` changes whenever the set changes."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self._defaults: list[Tool] = list(tools or [])
        self.version = 0
        for t in self._defaults:
            self._tools[t.name] = t

    def register(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any] | None,
        func: Callable[..., Any],
        *,
        kind: str = "exec",
    ) -> Tool:
        """Register (or replace) a tool."""
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ToolError(f"invalid tool name {name!r}: use letters, digits, _ and -")
        tool = Tool(name, description, parameters or {"type": "object", "properties": {}}, func, kind)
        self._tools[name] = tool
        self.version += 1
        return tool

    def tool(self, name: str, description: str, parameters: dict[str, Any] | None = None, *, kind: str = "exec") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`register`."""

        def deco(func: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name, description, parameters, func, kind=kind)
            return func

        return deco

    def remove(self, name: str) -> None:
        if name not in self._tools:
            raise ToolError(f"no tool named {name!r}; registered: {', '.join(self.names()) or 'none'}")
        del self._tools[name]
        self.version += 1

    def clear(self) -> None:
        self._tools.clear()
        self.version += 1

    def replace_group(self, prefix: str, tools: list[Tool]) -> None:
        """Replace every tool whose name starts with ``prefix`` by ``tools`` (MCP servers'
        tools). One swap of the dict: another thread listing the tools never sees it
        half-changed."""
        kept = {n: t for n, t in self._tools.items() if not n.startswith(prefix)}
        kept.update({t.name: t for t in tools})
        if kept.keys() != self._tools.keys() or any(kept[n] is not self._tools.get(n) for n in kept):
            self._tools = kept
            self.version += 1

    def reset(self) -> None:
        """Restore the built-in tools (and drop custom ones)."""
        self._tools = {t.name: t for t in self._defaults}
        self.version += 1

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def tools(self, disabled: frozenset[str] | set[str] = frozenset()) -> list[Tool]:
        return [t for n, t in self._tools.items() if n not in disabled]

    def schemas(self, disabled: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools(disabled)]

    async def execute(
        self,
        name: str,
        raw_arguments: str | dict[str, Any] | None,
        ctx: ToolContext,
        *,
        disabled: frozenset[str] | set[str] = frozenset(),
    ) -> ToolResult:
        """Run one call; every failure becomes a ``ToolResult(ok=False)``."""
        tool = self._tools.get(name)
        if tool is None or name in disabled:
            available = ", ".join(t.name for t in self.tools(disabled)) or "none"
            why = "is disabled in this session" if tool is not None else "does not exist"
            return ToolResult(False, f"error: tool {name!r} {why}. Available tools: {available}")
        args, error = parse_arguments(raw_arguments)
        if error is None:
            error = validate_arguments(tool, args)
        if error is not None or args is None:
            return ToolResult(False, f"error: {error}. The tool was not run. Schema: {json.dumps(tool.parameters)[:PREVIEW_CHARS]}")
        return await call_tool(tool, args, ctx)


async def call_tool(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Invoke a tool body (async builtin or upstream sync function) safely."""
    try:
        if inspect.iscoroutinefunction(tool.func):
            value = await tool.func(ctx, **args)
        else:
            value = await asyncio.to_thread(tool.func, ctx.runtime, **args)
    except asyncio.CancelledError:
        raise
    except (ToolError, PathError) as exc:
        return ToolResult(False, f"error: {exc}")
    except OSError as exc:  # permission denied, disk full...: the model can act on it
        where = f": {exc.filename}" if exc.filename else ""
        return ToolResult(False, f"error: {exc.strerror or exc}{where}")
    except PygentError as exc:
        return ToolResult(False, f"error: {exc.user_message()}")
    except TypeError as exc:
        return ToolResult(False, f"error: bad arguments for {tool.name}: {exc}")
    except Exception as exc:  # a custom tool's bug is reported to the model, not a crash
        log.exception("tool %s failed", tool.name)
        return ToolResult(False, f"error: tool {tool.name} failed: {exc.__class__.__name__}: {exc}")
    if isinstance(value, ToolResult):
        return value
    return ToolResult(True, "" if value is None else str(value))
