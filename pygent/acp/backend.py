"""Where the ACP agent's sessions live: a :class:`~pygent.service.SessionService`.

The ACP agent (:mod:`pygent.acp.agent`) talks to one :class:`SessionBackend`, and turns
what it gets into ACP frames with the same translators (:mod:`pygent.acp.updates`,
:mod:`pygent.acp.replay`) whichever backend it is:

- :class:`LocalBackend`: a service of the agent's own, in the ``pygent acp`` process
  (when no session host runs).
- :class:`pygent.acp.hosted.HostedBackend`: the shared service of a session host
  (``pygent serve``), which runs the agent for each ACP connection; ``pygent acp`` is
  then a byte pipe to it. A session made there shows in VS Code and the REPL, and theirs
  in the ACP client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pygent import events as ev
from pygent.acp.replay import history_updates
from pygent.acp.updates import SessionUpdates, Update
from pygent.agent import TurnResult
from pygent.errors import (
    UnknownSessionError,
)
from pygent.service import Session, SessionOptions, SessionService, SessionSummary

log = logging.getLogger(__name__)


@dataclass
class SessionView:
    """What the ACP layer knows of a session, from either backend."""

    id: str
    folder: Path | None
    mode: str
    model: str
    busy: bool = False
    runtime: str | None = None
    sync_mode: str = "none"
    sandbox_path: str | None = None
    notices: list[str] = field(default_factory=list)
    #: The sandbox's workspace (``runtime.files``: model paths -> the client's paths).
    files: Any = None
    #: Tool name -> registry kind, for tools :mod:`pygent.acp.updates` does not name.
    tool_kinds: dict[str, str] = field(default_factory=dict)
    #: Whether the session runs MCP servers.
    mcp: bool = False


class SessionBackend(Protocol):
    """The session calls of the ACP agent. Errors are :class:`PygentError` with their
    JSON-RPC code (an unknown session: :class:`UnknownSessionError`)."""

    async def create(self, options: SessionOptions) -> SessionView: ...

    async def open(self, session_id: str, options: SessionOptions) -> tuple[SessionView, bool]:
        """A live session, else the saved one reopened; True when it was live already."""
        ...

    async def view(self, session_id: str) -> SessionView: ...

    async def list_sessions(self) -> list[SessionSummary]: ...

    async def prompt(self, session_id: str, text: str, images: Sequence[str]) -> TurnResult: ...

    def cancel(self, session_id: str) -> None: ...

    async def close(self, session_id: str) -> None: ...

    async def aclose(self) -> None: ...

    async def update(
        self, session_id: str, *, approval_mode: str | None = None, model: str | None = None
    ) -> SessionView: ...

    def subscribe(self, session_id: str, listener: ev.EventListener) -> Callable[[], None]: ...

    async def replay(self, session_id: str, updates: SessionUpdates) -> list[Update]:
        """The conversation so far as ACP updates (``session/load``)."""
        ...

    async def pending_changes(self, session_id: str) -> list[str]: ...

    async def changes(self, session_id: str, *, diffs: bool) -> list[dict[str, Any]]:
        """The change set not yet in the folder (``_pygent/changes``)."""
        ...

    async def apply(
        self, session_id: str, paths: list[str] | None
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Write the change set (or ``paths`` of it) to the folder: (written, failed)."""
        ...

    async def discard(self, session_id: str, paths: list[str] | None) -> list[str]: ...

    # The timeline and tasks: answers in the session host's wire form (pygent.lsp.protocol,
    # camelCase), so ``_pygent/...`` answers as ``pygent/session/...`` does.

    async def timeline(self, session_id: str) -> dict[str, Any]:
        """``{turns, canRedo}`` as ``pygent/session/timeline``."""
        ...

    async def rewind(
        self, session_id: str, turn_id: str, *, files: bool, conversation: bool
    ) -> dict[str, Any]: ...

    async def redo(self, session_id: str) -> dict[str, Any]: ...

    async def fork(self, session_id: str, turn_id: str) -> SessionView: ...

    async def tasks(self, session_id: str) -> list[dict[str, Any]]: ...

    async def task(self, session_id: str, task_id: str) -> dict[str, Any]:
        """The task's ``TaskInfo`` with its ``result`` once it ended."""
        ...

    async def cancel_task(self, session_id: str, task_id: str) -> bool: ...


def camel(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON object with camelCase keys (the extensions' answers)."""
    out = {}
    for key, value in dataclasses.asdict(obj).items():
        head, *rest = key.split("_")
        out[head + "".join(w.title() for w in rest)] = (
            list(value) if isinstance(value, tuple) else value
        )
    return out


# --- in this process -----------------------------------------------------------------------


class LocalBackend:
    """Sessions of a :class:`SessionService` in this process."""

    def __init__(self, service: SessionService) -> None:
        self.service = service

    def _view(self, session: Session) -> SessionView:
        summary = self.service.summary(session)
        agent = session.agent
        return SessionView(
            id=session.id,
            folder=session.folder,
            mode=agent.policy.mode,
            model=agent.model_name,
            busy=session.busy,
            runtime=summary.runtime,
            sync_mode=summary.sync_mode,
            sandbox_path=summary.sandbox_path,
            notices=list(session.notices),
            files=session.runtime.files,
            tool_kinds={t.name: t.kind for t in agent.tools.tools()},
            mcp=session.mcp is not None,
        )

    async def create(self, options: SessionOptions) -> SessionView:
        return self._view(await self.service.create(options))

    async def open(self, session_id: str, options: SessionOptions) -> tuple[SessionView, bool]:
        try:
            return self._view(self.service.get(session_id)), True
        except UnknownSessionError:
            pass
        return self._view(await self.service.resume(session_id, options)), False

    async def view(self, session_id: str) -> SessionView:
        return self._view(self.service.get(session_id))

    async def list_sessions(self) -> list[SessionSummary]:
        return self.service.list_sessions(include_saved=True)

    async def prompt(self, session_id: str, text: str, images: Sequence[str]) -> TurnResult:
        return await self.service.prompt(session_id, text, images=images)

    def cancel(self, session_id: str) -> None:
        self.service.cancel(session_id)

    async def close(self, session_id: str) -> None:
        self.service.get(session_id)
        await self.service.close(session_id)

    async def aclose(self) -> None:
        await self.service.aclose()

    async def update(
        self, session_id: str, *, approval_mode: str | None = None, model: str | None = None
    ) -> SessionView:
        return self._view(
            self.service.update_settings(session_id, approval_mode=approval_mode, model=model)
        )

    def subscribe(self, session_id: str, listener: ev.EventListener) -> Callable[[], None]:
        return self.service.subscribe(session_id, listener)

    async def replay(self, session_id: str, updates: SessionUpdates) -> list[Update]:
        agent = self.service.get(session_id).agent
        store = agent.history_store
        compactions = store.meta_log.get("compaction", []) if store is not None else []
        return list(history_updates(agent.history[1:], updates, compactions))

    async def pending_changes(self, session_id: str) -> list[str]:
        return await self.service.pending_changes(session_id)

    async def changes(self, session_id: str, *, diffs: bool) -> list[dict[str, Any]]:
        return [camel(c) for c in await self.service.changes(session_id, diffs=diffs)]

    async def apply(
        self, session_id: str, paths: list[str] | None
    ) -> tuple[list[str], list[tuple[str, str]]]:
        return await self.service.write_changes(session_id, paths)

    async def discard(self, session_id: str, paths: list[str] | None) -> list[str]:
        return await self.service.discard(session_id, paths)

    async def timeline(self, session_id: str) -> dict[str, Any]:
        from pygent.lsp import protocol as p

        session = self.service.get(session_id)
        turns = await asyncio.to_thread(self.service.timeline, session_id)
        return dict(p.unstructure(p.TimelineResult(
            [p.TimelineTurn(t.id, t.turn, t.prompt, t.started,
                            [p.TurnFile(f.path, f.kind) for f in t.files],
                            t.can_restore_files, t.note) for t in turns],
            session.agent.turn_log.can_redo,
        )))

    async def rewind(
        self, session_id: str, turn_id: str, *, files: bool, conversation: bool
    ) -> dict[str, Any]:
        result = await self.service.rewind(
            session_id, turn_id, files=files, conversation=conversation
        )
        return _rewind_answer(result)

    async def redo(self, session_id: str) -> dict[str, Any]:
        return _rewind_answer(await self.service.redo(session_id))

    async def fork(self, session_id: str, turn_id: str) -> SessionView:
        return self._view(await self.service.fork(session_id, turn_id))

    async def tasks(self, session_id: str) -> list[dict[str, Any]]:
        return [_task_answer(t) for t in self.service.list_tasks(session_id)]

    async def task(self, session_id: str, task_id: str) -> dict[str, Any]:
        info = self.service.task_info(session_id, task_id)
        return _task_answer(info, self.service.task_result(session_id, task_id))

    async def cancel_task(self, session_id: str, task_id: str) -> bool:
        return await asyncio.to_thread(self.service.cancel_task, session_id, task_id)


def _rewind_answer(result: Any) -> dict[str, Any]:
    """A :class:`pygent.timeline.RewindResult` in the wire form of ``RewindResult``."""
    from pygent.lsp import protocol as p

    return dict(p.unstructure(p.RewindResult(
        result.turn, result.files, result.conversation, list(result.restored),
        list(result.removed), list(result.kept), list(result.failed),
        result.messages_removed, result.can_redo,
    )))


def _task_answer(info: Any, result: str = "") -> dict[str, Any]:
    """A :class:`pygent.tasks.TaskInfo` in the wire form of ``TaskInfo``."""
    from pygent.lsp import protocol as p

    return dict(p.unstructure(p.TaskInfo(
        task_id=info.id, status=info.status, persona=info.persona, prompt=info.prompt,
        steps=info.steps, detail=info.detail, result=result,
    )))
