"""The delegation tools the model uses: delegate_task, task_status, collect_file, cancel_task...

They act on the :class:`~pygent.tasks.TaskManager` of the calling agent
(``ctx.agent.task_manager``), else on the manager they were registered with.
Blocking work (copying seed files, collecting results) runs in a worker thread so
the agent's event loop, which may be an editor's, never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from pygent.errors import ToolError
from pygent.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult

if TYPE_CHECKING:
    from pygent.tasks import TaskManager

#: The longest ``task_status(wait=...)`` may block one step of the main agent.
MAX_STATUS_WAIT = 300.0

_FILES = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Workspace files or folders to copy into the task's own workspace first.",
}
_STEP_TIMEOUT = {"type": "number", "description": "Seconds allowed per step of the sub-agent."}
_TASK_TIMEOUT = {"type": "number", "description": "Seconds allowed for the whole task."}

DELEGATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {
            "type": "string",
            "description": "What the sub-agent should do, in full: "
            "it does not see this conversation.",
        },
        "files": _FILES,
        "persona": {
            "type": "string",
            "description": "A persona name from list_personas (default: the next one in turn).",
        },
        "step_timeout": _STEP_TIMEOUT,
        "task_timeout": _TASK_TIMEOUT,
        "timeout": {"type": "number", "description": "Same as task_timeout (older name)."},
    },
    "required": ["prompt"],
}
DELEGATE_PERSONA_SCHEMA: dict[str, Any] = {
    **DELEGATE_SCHEMA,
    "required": ["prompt", "persona"],
}
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": {"type": "string", "description": "The task id (omit to list every task)."},
        "wait": {
            "type": "number",
            "description": f"Wait up to this many seconds (at most "
            f"{MAX_STATUS_WAIT:g}) for the task to end before answering.",
        },
    },
}
COLLECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": {"type": "string"},
        "path": {"type": "string", "description": "File or folder in the task's workspace."},
        "dest": {
            "type": "string",
            "description": "Where to put it in your workspace (default: the same path).",
        },
    },
    "required": ["task_id", "path"],
}
CANCEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task_id": {"type": "string"}},
    "required": ["task_id"],
}
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _manager(ctx: ToolContext, bound: TaskManager | None) -> TaskManager:
    manager = getattr(ctx.agent, "task_manager", None) or bound
    if manager is None:
        raise ToolError("delegation is not available in this session (no task manager)")
    return manager


def _describe(info: Any) -> str:
    line = f"task {info.id} ({info.persona}): {info.status}, {info.steps} step(s)"
    return line + (f"; {info.detail}" if info.detail else "")


def task_tools(bound: TaskManager | None = None) -> list[Tool]:
    """The delegation tools, acting on ``bound`` when the calling agent has no manager."""

    async def delegate_task(
        ctx: ToolContext,
        prompt: str,
        files: list[str] | None = None,
        persona: str | None = None,
        step_timeout: float | None = None,
        task_timeout: float | None = None,
        timeout: float | None = None,
    ) -> ToolResult:
        manager = _manager(ctx, bound)
        manager.bind_loop(asyncio.get_running_loop())
        task_id = await asyncio.to_thread(
            manager.start_task,
            prompt,
            ctx.runtime,
            files=files,
            parent_depth=getattr(ctx.agent, "depth", 0),
            step_timeout=step_timeout,
            task_timeout=task_timeout if task_timeout is not None else timeout,
            persona=persona,
        )
        info = manager.info(task_id)
        return ToolResult(
            True,
            f"started {task_id} (persona {info.persona}). It runs in its own "
            "sandbox; check it with task_status and fetch its results with "
            "collect_file.",
            data={"task_id": task_id},
        )

    async def delegate_persona_task(
        ctx: ToolContext,
        prompt: str,
        persona: str,
        files: list[str] | None = None,
        step_timeout: float | None = None,
        task_timeout: float | None = None,
        timeout: float | None = None,
    ) -> ToolResult:
        return await delegate_task(
            ctx,
            prompt,
            files=files,
            persona=persona,
            step_timeout=step_timeout,
            task_timeout=task_timeout,
            timeout=timeout,
        )

    async def list_personas(ctx: ToolContext) -> str:
        personas = _manager(ctx, bound).personas
        return json.dumps([{"name": p.name, "description": p.description} for p in personas])

    async def task_status(
        ctx: ToolContext, task_id: str | None = None, wait: float | None = None
    ) -> str:
        manager = _manager(ctx, bound)
        if not task_id:
            infos = manager.list()
            return "\n".join(_describe(i) for i in infos) if infos else "no delegated tasks yet"
        info = manager.info(task_id)
        if wait and wait > 0 and not info.done:
            try:
                info = await manager.await_task(task_id, min(float(wait), MAX_STATUS_WAIT))
            except (asyncio.TimeoutError, TimeoutError):
                info = manager.info(task_id)
        return _describe(info)

    async def collect_file(
        ctx: ToolContext, task_id: str, path: str, dest: str | None = None
    ) -> str:
        manager = _manager(ctx, bound)
        return await asyncio.to_thread(manager.collect_file, ctx.runtime, task_id, path, dest)

    async def cancel_task(ctx: ToolContext, task_id: str) -> str:
        manager = _manager(ctx, bound)
        if await asyncio.to_thread(manager.cancel, task_id):
            return f"cancelling task {task_id}; its sandbox is being removed"
        return f"task {task_id} had already ended: {manager.status(task_id)}"

    return [
        Tool(
            "delegate_task",
            "Start a sub-agent on a task in its own sandbox and return its "
            "id at once; it runs while you continue. Give it every file it needs.",
            DELEGATE_SCHEMA,
            delegate_task,
            "control",
        ),
        Tool(
            "delegate_persona_task",
            "Like delegate_task, with a named persona (see list_personas).",
            DELEGATE_PERSONA_SCHEMA,
            delegate_persona_task,
            "control",
        ),
        Tool(
            "list_personas",
            "List the personas available for delegated tasks (JSON).",
            EMPTY_SCHEMA,
            list_personas,
            "read",
        ),
        Tool(
            "task_status",
            "Status of a delegated task (queued, running, finished, failed, "
            "timeout, cancelled); optionally wait for it to end.",
            STATUS_SCHEMA,
            task_status,
            "read",
        ),
        Tool(
            "collect_file",
            "Copy a file or folder from a delegated task's workspace into yours.",
            COLLECT_SCHEMA,
            collect_file,
            "write",
        ),
        Tool(
            "cancel_task",
            "Cancel a delegated task (its command is killed, its sandbox removed).",
            CANCEL_SCHEMA,
            cancel_task,
            "control",
        ),
    ]


TASK_TOOL_NAMES = tuple(t.name for t in task_tools())


def register_task_tools(registry: ToolRegistry, manager: TaskManager | None = None) -> None:
    """Add the delegation tools to ``registry`` (replacing earlier ones).

    ``manager`` is used when the calling agent has no ``task_manager`` of its own.
    """
    for tool in task_tools(manager):
        registry.register(tool.name, tool.description, tool.parameters, tool.func, kind=tool.kind)


__all__ = ["TASK_TOOL_NAMES", "register_task_tools", "task_tools"]
