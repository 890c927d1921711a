"""Pygent-only features as ACP extension methods (``_pygent/...``).

ACP reserves method names that start with ``_`` for extensions. Each method here calls
the session service (or the session's own checkpoints) and answers a plain JSON object:

- ``_pygent/changes`` ``{sessionId, diffs?}``: the change set not yet in the folder.
- ``_pygent/apply`` ``{sessionId, paths?}`` / ``_pygent/discard``: write it to the folder,
  or drop it (all of it, or the given workspace-relative paths).
- ``_pygent/timeline`` ``{sessionId}``: the per-turn workspace checkpoints.
- ``_pygent/rewind`` ``{sessionId, checkpointId, deleteNew?}``: restore the sandbox's files
  to a checkpoint (not while a turn runs).
- ``_pygent/tasks``, ``_pygent/task/result`` ``{sessionId, taskId}``, ``_pygent/task/cancel``:
  delegated tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from acp import RequestError

from pygent.acp.backend import camel
from pygent.errors import PygentError, SessionBusyError

if TYPE_CHECKING:
    from pygent.acp.agent import PygentAcpAgent
    from pygent.service import SessionService

Handler = Callable[["PygentAcpAgent", dict[str, Any]], Awaitable[dict[str, Any]]]


def _service(agent: PygentAcpAgent) -> SessionService:
    """The in-process service; these extensions are not served for a host's sessions."""
    if agent.service is None:
        raise PygentError(
            "the timeline and task extensions (_pygent/timeline, rewind, tasks, task/...) "
            "are not available for the sessions of a session host (pygent serve) yet",
            hint="use them from the editor or pygent attach, or run pygent acp --in-process",
        )
    return agent.service


def _str(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise RequestError(-32602, f"Invalid params: {key} must be a non-empty string")
    return value


def _paths(params: dict[str, Any]) -> list[str] | None:
    paths = params.get("paths")
    if paths is None:
        return None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise RequestError(-32602, "Invalid params: paths must be a list of strings")
    return paths


async def _idle(agent: PygentAcpAgent, session_id: str, then: str) -> None:
    if (await agent.backend.view(session_id)).busy:
        raise SessionBusyError(f"session {session_id} is running a turn", hint=then)


# The change set is served by either backend (a host's too); the rest needs the
# in-process service.


async def _changes(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    changes = await agent.backend.changes(
        _str(params, "sessionId"), diffs=bool(params.get("diffs", True))
    )
    return {"changes": changes}


async def _apply(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    await _idle(agent, session_id, "apply the changes once it has ended")
    applied, failed = await agent.backend.apply(session_id, _paths(params))
    return {"applied": applied, "failed": [{"path": p, "error": e} for p, e in failed]}


async def _discard(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    await _idle(agent, session_id, "discard the changes once it has ended")
    return {"discarded": await agent.backend.discard(session_id, _paths(params))}


def _checkpoints(agent: PygentAcpAgent, session_id: str) -> Any:
    checkpoints = _service(agent).get(session_id).agent.checkpoints
    if checkpoints is None:
        raise PygentError(
            f"session {session_id} keeps no checkpoints",
            hint="checkpoints are kept for saved sessions",
        )
    return checkpoints


async def _timeline(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    checkpoints = _checkpoints(agent, _str(params, "sessionId"))
    listed = await asyncio.to_thread(checkpoints.list)
    return {"checkpoints": [camel(c) for c in listed]}


async def _rewind(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    ident = _str(params, "checkpointId")
    if _service(agent).get(session_id).busy:
        raise SessionBusyError(
            f"session {session_id} is running a turn",
            hint="cancel it (session/cancel) before rewinding",
        )
    checkpoints = _checkpoints(agent, session_id)
    report = await asyncio.to_thread(
        checkpoints.restore, ident, delete_new=bool(params.get("deleteNew", False))
    )
    return camel(report)


async def _tasks(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": [camel(t) for t in _service(agent).list_tasks(_str(params, "sessionId"))]}


async def _task_result(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id, task_id = _str(params, "sessionId"), _str(params, "taskId")
    info = _service(agent).task_info(session_id, task_id)
    return {"task": camel(info), "result": _service(agent).task_result(session_id, task_id)}


async def _task_cancel(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id, task_id = _str(params, "sessionId"), _str(params, "taskId")
    return {"cancelled": await asyncio.to_thread(_service(agent).cancel_task, session_id, task_id)}


METHODS: dict[str, Handler] = {
    "pygent/changes": _changes,
    "pygent/apply": _apply,
    "pygent/discard": _discard,
    "pygent/timeline": _timeline,
    "pygent/rewind": _rewind,
    "pygent/tasks": _tasks,
    "pygent/task/result": _task_result,
    "pygent/task/cancel": _task_cancel,
}


async def handle(agent: PygentAcpAgent, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run the extension ``method`` (its name without the leading ``_``)."""
    handler = METHODS.get(method)
    if handler is None:
        raise RequestError(
            -32601,
            f"Method not found: _{method}",
            {"method": f"_{method}", "extensions": sorted(f"_{m}" for m in METHODS)},
        )
    return await handler(agent, params)
