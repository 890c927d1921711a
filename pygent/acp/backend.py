"""Where ``pygent acp``'s sessions live: in this process, or in a running session host.

The ACP agent (:mod:`pygent.acp.agent`) talks to one :class:`SessionBackend`, and turns
what it gets into ACP frames with the same translators (:mod:`pygent.acp.updates`,
:mod:`pygent.acp.replay`) whichever backend it is:

- :class:`LocalBackend`: a :class:`~pygent.service.SessionService` in this process (the
  default when no host runs).
- :class:`HostBackend`: the sessions of ``pygent serve`` over its Unix socket, as
  ``pygent attach`` and a joined ``pygent lsp`` see them: ``pygent/*`` requests, core
  events from ``pygent/sessionUpdate`` notifications (structured back into
  :mod:`pygent.events` objects), approvals from ``pygent/requestPermission`` asked on the
  ACP client. A session made here shows in VS Code and the REPL, and theirs here.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from pygent.approval import Approver, request_from_wire
from pygent.errors import (
    ParamsError,
    PygentError,
    RuntimeUnavailable,
    SessionBusyError,
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
    #: The sandbox's workspace (``runtime.files``: model paths -> the client's paths);
    #: None through a host, whose sandbox this process cannot read.
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

    # The timeline and tasks: answers in the host's wire form (pygent.lsp.protocol,
    # camelCase), so ``_pygent/...`` answers the same whichever backend serves it.

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


# --- through a session host ------------------------------------------------------------------


#: The host's error codes -> the Pygent errors that carry them (others: PygentError).
_HOST_ERRORS: dict[int, type[PygentError]] = {
    cls.code: cls
    for cls in (UnknownSessionError, SessionBusyError, ParamsError, RuntimeUnavailable)
}


def host_error(code: int, message: str, data: Any = None) -> PygentError:
    """The Pygent error of a host's error answer: the same code, message and hint."""
    hint = data.get("hint") if isinstance(data, dict) else None
    return _HOST_ERRORS.get(code, PygentError)(message, hint=hint if isinstance(hint, str) else "")


def _view_of(info: dict[str, Any]) -> SessionView:
    """A session view from the host's ``SessionInfo`` (wire form)."""
    folder = info.get("workspaceFolder")
    return SessionView(
        id=str(info.get("sessionId", "")),
        folder=Path(folder) if isinstance(folder, str) and folder else None,
        mode=str(info.get("approvalMode") or "auto"),
        model=str(info.get("model") or ""),
        busy=bool(info.get("busy")),
        runtime=info.get("runtime"),
        sync_mode=str(info.get("syncMode") or "none"),
        sandbox_path=info.get("sandboxPath"),
        notices=[str(n) for n in info.get("notices") or []],
    )


def _summary_of(info: dict[str, Any]) -> SessionSummary:
    return SessionSummary(
        session_id=str(info.get("sessionId", "")),
        title=str(info.get("title") or ""),
        live=bool(info.get("live", True)),
        busy=bool(info.get("busy")),
        workspace_folder=info.get("workspaceFolder"),
        sandbox_path=info.get("sandboxPath"),
        runtime=info.get("runtime"),
        sync_mode=str(info.get("syncMode") or "none"),
        persona=str(info.get("persona") or ""),
        model=str(info.get("model") or ""),
        approval_mode=str(info.get("approvalMode") or "auto"),
        message_count=int(info.get("messageCount") or 0),
        updated=info.get("updated"),
        notices=tuple(str(n) for n in info.get("notices") or []),
    )


def _session_params(options: SessionOptions) -> dict[str, Any]:
    params: dict[str, Any] = {
        "workspaceFolder": options.workspace_folder,
        "runtime": options.runtime,
    }
    for key, value in (
        ("approvalMode", options.approval_mode),
        ("model", options.model),
        ("syncMode", options.sync_mode),
        ("persona", options.persona),
    ):
        if value is not None:
            params[key] = value
    return params


class HostBackend:
    """The sessions of a running ``pygent serve``, over its socket.

    Args:
        client: a connected, initialised :class:`~pygent.lsp.client.RpcClient`.
        approver_factory: the ACP approver of a session (asks the ACP client).
    """

    def __init__(self, client: Any, approver_factory: Callable[[str], Approver]) -> None:
        from pygent.lsp import protocol as p  # no pygls: the wire vocabulary only

        self._p = p
        self.client = client
        self.approver_factory = approver_factory
        self._listeners: dict[str, list[ev.EventListener]] = {}
        #: The last ``seq`` seen per session: an update already in a transcript is skipped.
        self._seq: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        client.on_notification(p.SESSION_UPDATE, self._on_update)
        client.on_request(p.REQUEST_PERMISSION, self._on_permission)

    @classmethod
    async def connect(
        cls, socket: Path, approver_factory: Callable[[str], Approver]
    ) -> HostBackend:
        from pygent.lsp.client import RpcClient

        client = await RpcClient.connect_unix(socket)
        try:
            await client.initialize("pygent-acp")
        except BaseException:
            await client.aclose()
            raise
        return cls(client, approver_factory)

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        from pygent.lsp.client import ConnectionLost, RpcError

        try:
            return await self.client.request(method, params)
        except RpcError as exc:
            raise host_error(exc.code, str(exc), exc.data) from None
        except ConnectionLost as exc:
            raise PygentError(
                f"the session host is gone ({exc})",
                hint="restart pygent serve, then the ACP client",
            ) from None

    # --- what the host sends -------------------------------------------------------------

    def _on_update(self, params: Any) -> None:
        if not isinstance(params, dict):
            return
        session_id = params.get("sessionId")
        listeners = self._listeners.get(session_id) if isinstance(session_id, str) else None
        if not listeners or not isinstance(session_id, str):
            return
        seq = params.get("seq")
        if isinstance(seq, int):
            if seq <= self._seq.get(session_id, 0):
                return  # already in the transcript this process replayed
            self._seq[session_id] = seq
        event = _streamed(params.get("update"))
        if event is None:
            try:
                event = self._p.structure(params, self._p.SessionUpdateParams).update
            except PygentError:  # a newer host's update: skip it, keep going
                log.debug("skipping an update this version cannot read: %s", params.get("update"))
                return
        for listener in list(listeners):
            listener(event)

    async def _on_permission(self, params: Any) -> dict[str, Any]:
        request = request_from_wire(params)
        answer = await self.approver_factory(request.session_id).request_approval(request)
        result: dict[str, Any] = {"optionId": answer.option.value}
        if answer.message:
            result["message"] = answer.message
        return result

    # --- sessions ------------------------------------------------------------------------

    async def create(self, options: SessionOptions) -> SessionView:
        view = _view_of(await self._call(self._p.SESSION_NEW, _session_params(options)))
        if options.mcp_servers:
            view.notices.append(
                "the client's MCP servers are not started: this session lives in the session "
                "host (pygent serve), which takes MCP servers from its pygent.toml"
            )
        return view

    async def _attach(self, session_id: str) -> list[Any]:
        """Follow a live session of the host; returns its transcript so far."""
        raw = await self._call(self._p.SESSION_TRANSCRIPT, {"sessionId": session_id})
        raw = raw if isinstance(raw, dict) else {}
        seq = raw.get("seq")
        self._seq[session_id] = max(
            self._seq.get(session_id, 0), seq if isinstance(seq, int) else 0
        )
        events = raw.get("events")
        return events if isinstance(events, list) else []

    async def open(self, session_id: str, options: SessionOptions) -> tuple[SessionView, bool]:
        try:
            view = await self.view(session_id)
        except UnknownSessionError:
            params = {"sessionId": session_id, **_session_params(options)}
            view = _view_of(await self._call(self._p.SESSION_RESUME, params))
            return view, False
        await self._attach(session_id)
        return view, True

    async def view(self, session_id: str) -> SessionView:
        listed = await self._call(self._p.SESSION_LIST, {})
        for info in (listed or {}).get("sessions", []):
            if isinstance(info, dict) and info.get("sessionId") == session_id:
                return _view_of(info)
        raise UnknownSessionError(
            f"no live session {session_id!r} in the session host",
            hint="session/list shows the sessions; session/load reopens a saved one",
        )

    async def list_sessions(self) -> list[SessionSummary]:
        listed = await self._call(self._p.SESSION_LIST, {"includeSaved": True})
        return [_summary_of(i) for i in (listed or {}).get("sessions", []) if isinstance(i, dict)]

    async def prompt(self, session_id: str, text: str, images: Sequence[str]) -> TurnResult:
        params: dict[str, Any] = {"sessionId": session_id, "prompt": text}
        if images:
            params["images"] = list(images)
        result = await self._call(self._p.SESSION_PROMPT, params)
        result = result if isinstance(result, dict) else {}
        try:
            reason = ev.StopReason(result.get("stopReason"))
        except ValueError:
            reason = ev.StopReason.END_TURN
        return TurnResult(
            reason,
            str(result.get("text") or ""),
            str(result.get("error") or ""),
            int(result.get("steps") or 0),
            str(result.get("question") or ""),
            tuple(str(o) for o in result.get("options") or ()),
        )

    def cancel(self, session_id: str) -> None:
        task = asyncio.ensure_future(self._cancel(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, session_id: str) -> None:
        try:
            await self._call(self._p.SESSION_CANCEL, {"sessionId": session_id})
        except PygentError as exc:
            log.info("cancelling %s: %s", session_id, exc)

    async def close(self, session_id: str) -> None:
        await self._call(self._p.SESSION_CLOSE, {"sessionId": session_id})
        self._listeners.pop(session_id, None)

    async def aclose(self) -> None:
        """Leave the host: its sessions go on there (other clients may be attached)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await self.client.aclose()

    async def update(
        self, session_id: str, *, approval_mode: str | None = None, model: str | None = None
    ) -> SessionView:
        params: dict[str, Any] = {"sessionId": session_id}
        if approval_mode is not None:
            params["approvalMode"] = approval_mode
        if model is not None:
            params["model"] = model
        return _view_of(await self._call(self._p.SESSION_SETTINGS, params))

    def subscribe(self, session_id: str, listener: ev.EventListener) -> Callable[[], None]:
        listeners = self._listeners.setdefault(session_id, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe

    async def replay(self, session_id: str, updates: SessionUpdates) -> list[Update]:
        from pygent.acp.updates import prompt_updates

        out: list[Update] = []
        for item in await self._attach(session_id):
            try:
                event = self._p.structure(
                    {"sessionId": session_id, "seq": 0, "update": item}, self._p.SessionUpdateParams
                ).update
            except PygentError:
                continue
            if isinstance(event, ev.TurnStarted) and event.task_id is None:
                out += prompt_updates(event.prompt, event.images)
                continue
            out += updates.updates(event)
        out += updates.pending_output()
        return out

    async def pending_changes(self, session_id: str) -> list[str]:
        return [str(c.get("path")) for c in await self.changes(session_id, diffs=False)]

    async def changes(self, session_id: str, *, diffs: bool) -> list[dict[str, Any]]:
        answer = await self._call(self._p.WORKSPACE_CHANGES, {"sessionId": session_id})
        items = answer.get("changes", []) if isinstance(answer, dict) else []
        out = [dict(c) for c in items if isinstance(c, dict)]
        if not diffs:
            for change in out:
                change["diff"] = ""
        return out

    async def apply(
        self, session_id: str, paths: list[str] | None
    ) -> tuple[list[str], list[tuple[str, str]]]:
        # "write": the host writes the files itself (this client is no editor to send
        # a WorkspaceEdit to), as the in-process service does for ACP.
        params: dict[str, Any] = {"sessionId": session_id, "method": "write"}
        if paths is not None:
            params["paths"] = paths
        answer = await self._call(self._p.WORKSPACE_APPLY, params)
        answer = answer if isinstance(answer, dict) else {}
        failed = [
            (str(f.get("path")), str(f.get("reason")))
            for f in answer.get("failed") or []
            if isinstance(f, dict)
        ]
        return [str(p) for p in answer.get("applied") or []], failed

    async def discard(self, session_id: str, paths: list[str] | None) -> list[str]:
        params: dict[str, Any] = {"sessionId": session_id}
        if paths is not None:
            params["paths"] = paths
        answer = await self._call(self._p.WORKSPACE_DISCARD, params)
        return [str(p) for p in (answer or {}).get("discarded") or []]

    async def timeline(self, session_id: str) -> dict[str, Any]:
        return _object(await self._call(self._p.SESSION_TIMELINE, {"sessionId": session_id}))

    async def rewind(
        self, session_id: str, turn_id: str, *, files: bool, conversation: bool
    ) -> dict[str, Any]:
        params = {"sessionId": session_id, "turnId": turn_id, "files": files,
                  "conversation": conversation}
        return _object(await self._call(self._p.SESSION_REWIND, params))

    async def redo(self, session_id: str) -> dict[str, Any]:
        return _object(await self._call(self._p.SESSION_REDO, {"sessionId": session_id}))

    async def fork(self, session_id: str, turn_id: str) -> SessionView:
        params = {"sessionId": session_id, "turnId": turn_id}
        return _view_of(_object(await self._call(self._p.SESSION_FORK, params)))

    async def tasks(self, session_id: str) -> list[dict[str, Any]]:
        answer = _object(await self._call(self._p.TASK_LIST, {"sessionId": session_id}))
        return [dict(t) for t in answer.get("tasks") or [] if isinstance(t, dict)]

    async def task(self, session_id: str, task_id: str) -> dict[str, Any]:
        params = {"sessionId": session_id, "taskId": task_id}
        return _object(await self._call(self._p.TASK_STATUS, params))

    async def cancel_task(self, session_id: str, task_id: str) -> bool:
        params = {"sessionId": session_id, "taskId": task_id}
        answer = _object(await self._call(self._p.TASK_CANCEL, params))
        return bool(answer.get("cancelled"))


#: The keys of the updates that stream (a reply's chunks, a command's output): read by
#: :func:`_streamed` without the protocol's converter.
_DELTA_KEYS = frozenset({"type", "taskId", "text"})
_OUTPUT_KEYS = frozenset({"type", "taskId", "callId", "text", "stream"})


def _streamed(update: Any) -> ev.Event | None:
    """A reply chunk or a command's output, read directly (None: anything else, or one
    that is not exactly of that shape, which the converter then reads or refuses).

    These are most of a turn's updates and sit on the token's way to the ACP client:
    the converter's generic structuring cost more than the rest of the way through
    this process (bench/bench_acp.py, the joined pair).
    """
    if not isinstance(update, dict):
        return None
    kind = update.get("type")
    task_id = update.get("taskId")
    text = update.get("text")
    if not isinstance(text, str) or not (task_id is None or isinstance(task_id, str)):
        return None
    if kind == "message_delta" and update.keys() <= _DELTA_KEYS:
        return ev.MessageDelta(task_id=task_id, text=text)
    if kind == "tool_output" and update.keys() <= _OUTPUT_KEYS:
        call_id, stream = update.get("callId", ""), update.get("stream", "stdout")
        if isinstance(call_id, str) and stream in ("stdout", "stderr"):
            return ev.ToolOutput(task_id=task_id, call_id=call_id, text=text, stream=stream)
    return None


def _object(answer: Any) -> dict[str, Any]:
    """A host's answer as a JSON object ({} for anything else)."""
    return dict(answer) if isinstance(answer, dict) else {}
