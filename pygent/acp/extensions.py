"""Pygent-only features as ACP extension methods (``_pygent/...``).

ACP reserves method names that start with ``_`` for extensions. Each method here calls
the session backend (:mod:`pygent.acp.backend`: this process's service or a host's) and answers a
plain JSON object:

- ``_pygent/changes`` ``{sessionId, diffs?}``: the change set not yet in the folder.
- ``_pygent/apply`` ``{sessionId, paths?}`` / ``_pygent/discard``: write it to the folder,
  or drop it (all of it, or the given workspace-relative paths).
- ``_pygent/timeline`` ``{sessionId}``: the session's turns (``pygent/session/timeline``).
- ``_pygent/rewind`` ``{sessionId, turnId, files?, conversation?}``: go back to before a turn
  (not while a turn runs); ``_pygent/redo`` ``{sessionId}`` undoes it; ``_pygent/fork``
  ``{sessionId, turnId}``: a new session as it was before that turn.
- ``_pygent/tasks``, ``_pygent/task/result`` ``{sessionId, taskId}``, ``_pygent/task/cancel``:
  delegated tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from acp import RequestError

from pygent.errors import SessionBusyError

if TYPE_CHECKING:
    from pygent.acp.agent import PygentAcpAgent

Handler = Callable[["PygentAcpAgent", dict[str, Any]], Awaitable[dict[str, Any]]]


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


# Every extension is served by either backend (a host's sessions too).


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


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(-32602, f"Invalid params: {key} must be true or false")
    return value


async def _timeline(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    return await agent.backend.timeline(_str(params, "sessionId"))


async def _rewind(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    await _idle(agent, session_id, "cancel it (session/cancel) before rewinding")
    return await agent.backend.rewind(
        session_id,
        _str(params, "turnId"),
        files=_flag(params, "files", True),
        conversation=_flag(params, "conversation", True),
    )


async def _redo(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    await _idle(agent, session_id, "cancel it (session/cancel) before redoing")
    return await agent.backend.redo(session_id)


async def _fork(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id = _str(params, "sessionId")
    await _idle(agent, session_id, "fork it once the turn has ended")
    view = await agent.backend.fork(session_id, _str(params, "turnId"))
    return {"sessionId": view.id}


async def _tasks(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": await agent.backend.tasks(_str(params, "sessionId"))}


async def _task_result(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    info = await agent.backend.task(_str(params, "sessionId"), _str(params, "taskId"))
    return {"task": info, "result": str(info.get("result") or "")}


async def _task_cancel(agent: PygentAcpAgent, params: dict[str, Any]) -> dict[str, Any]:
    session_id, task_id = _str(params, "sessionId"), _str(params, "taskId")
    return {"cancelled": await agent.backend.cancel_task(session_id, task_id)}


METHODS: dict[str, Handler] = {
    "pygent/changes": _changes,
    "pygent/apply": _apply,
    "pygent/discard": _discard,
    "pygent/timeline": _timeline,
    "pygent/rewind": _rewind,
    "pygent/redo": _redo,
    "pygent/fork": _fork,
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
