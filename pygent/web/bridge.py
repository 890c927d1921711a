"""The page <-> SessionService translation of ``pygent ui``.

The chat page speaks typed ``{type: ...}`` JSON messages (``PageMessage`` in, ``HostMessage``
out; a session event is the LSP ``pygent/sessionUpdate`` ``update`` object, camelCase),
defined in :mod:`pygent.web.messages`.
The VS Code extension host translates them to language-server calls in TypeScript
(``src/chat/controller.ts``); this module does the same translation straight onto a
:class:`~pygent.service.SessionService`, and keeps what a reconnecting page needs
(sessions, their event logs, pending approvals, tasks, changes). It knows nothing
about HTTP: a page is anything with ``post(message)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pygent import events as ev
from pygent.errors import PygentError
from pygent.service import (
    Session,
    SessionBusyError,
    SessionOptions,
    SessionService,
    SessionSummary,
)
from pygent.settings import Settings
from pygent.web.approvals import DEFAULT_TIMEOUT, ApprovalBroker
from pygent.web.eventlog import EventPump, SessionLog, history_events
from pygent.web.messages import (
    PAGE_MESSAGES,
    PAGE_PROTOCOL_VERSION,
    MessageError,
    PagePort,
    event_update,
    host_message,
    local_update,
    parse_page_message,
)

log = logging.getLogger(__name__)

HOST_NAME = "pygent-ui"
#: What the browser host offers beyond the basics: no editor to open diffs or files in,
#: no host actions (the page shows diffs inline instead).
CAPABILITIES: dict[str, Any] = {"openDiff": False, "openInEditor": False, "actions": []}
#: Saved sessions offered in the picker (newest first).
MAX_SAVED = 50
FINAL_TASK_STATES = frozenset({"finished", "failed", "timeout", "cancelled"})


def _default_runtime(settings: Settings) -> str:
    return {None: "auto", True: "docker", False: "local"}[settings.use_docker]


def _same_folder(saved: str | None, wanted: str | None) -> bool:
    if saved is None or wanted is None:
        return saved is wanted
    try:
        return Path(saved).resolve() == Path(wanted).resolve()
    except OSError:
        return saved == wanted


def _patch_text(changes: list[Any]) -> str:
    """One patch (``git apply`` / ``patch -p1``) from a change set's unified diffs."""
    parts = []
    for change in changes:
        diff = change.diff
        if not diff:
            continue
        # The change set diffs against an empty text for added and deleted files; a
        # patch says /dev/null there so that tools create and delete the files.
        if change.status == "added":
            diff = diff.replace(f"--- a/{change.path}\n", "--- /dev/null\n", 1)
        elif change.status == "deleted":
            diff = diff.replace(f"+++ b/{change.path}\n", "+++ /dev/null\n", 1)
        parts.append(diff if diff.endswith("\n") else diff + "\n")
    return "".join(parts)


# --- the bridge ----------------------------------------------------------------------------------------

Handler = Callable[[PagePort, dict[str, Any]], Awaitable[None]]


class Bridge:
    """Every page of one ``pygent ui`` server and the sessions they drive.

    Args:
        settings: the base settings of every session.
        folder: the folder new sessions work on (copied into the sandbox; the agent's
            changes come back as a change set to apply or download); None: no folder.
        approval_timeout: seconds to wait for an answer in the page before denying.
        model: a model object for every agent (tests); default: OpenAI-compatible.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        folder: Path | None = None,
        approval_timeout: float = DEFAULT_TIMEOUT,
        model: Any = None,
    ) -> None:
        self.settings = settings
        self.folder = folder
        self.loop: asyncio.AbstractEventLoop | None = None
        self.broker = ApprovalBroker(
            timeout=approval_timeout,
            has_pages=self.has_pages,
            opened=self._approval_opened,
            closed=self._approval_closed,
            status=self._permission_status,
        )
        self.service = SessionService(settings, approver_factory=self.broker.approver, model=model)
        self.active_session_id: str | None = None
        self._pages: dict[PagePort, bool] = {}  # page -> it sent `ready`
        self._logs: dict[str, SessionLog] = {}
        self._pumps: dict[str, EventPump] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._saved: list[SessionSummary] = []
        self._tasks: dict[str, dict[str, dict[str, Any]]] = {}
        self._changes: dict[str, dict[str, Any]] = {}
        self._in_flight: set[str] = set()
        self._creating: asyncio.Future[str] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._closing = False
        self.handlers: dict[str, Handler] = {
            "ready": self._ready,
            "prompt": self._prompt,
            "cancel": self._cancel,
            "newSession": self._new_session,
            "selectSession": self._select_session,
            "answerApproval": self._answer_approval,
            "openApprovalDiff": self._not_in_browser,
            "openChange": self._not_in_browser,
            "applyChanges": self._apply_changes,
            "discardChanges": self._discard_changes,
            "cancelTask": self._cancel_task,
            "openTask": self._open_task,
            "runAction": self._run_action,
        }
        assert set(self.handlers) == set(PAGE_MESSAGES), "every page message needs a handler"

    def start(self) -> None:
        """Bind to the running loop (call once, from it, before pages attach)."""
        self.loop = asyncio.get_running_loop()
        self.broker.loop = self.loop

    # --- pages -------------------------------------------------------------------------------

    def attach(self, page: PagePort) -> None:
        """A page connected; it gets everything once it sends ``ready``."""
        self._pages[page] = False
        self.broker.pages_changed(len(self._pages))

    def detach(self, page: PagePort) -> None:
        self._pages.pop(page, None)
        self.broker.pages_changed(len(self._pages))

    def has_pages(self) -> bool:
        return bool(self._pages)

    def receive(self, page: PagePort, data: Any) -> None:
        """Handle a raw page message in its own task (a running prompt must not block a cancel)."""
        assert self.loop is not None, "Bridge.start() first"
        job = self.loop.create_task(self.handle(page, data))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def handle(self, page: PagePort, data: Any) -> None:
        """Parse and run one page message. Never raises: failures become toasts."""
        try:
            message = parse_page_message(data)
        except MessageError as exc:
            log.warning("dropped a message from the page: %s", exc)
            return
        try:
            await self.handlers[message["type"]](page, message)
        except PygentError as exc:
            log.info("%s: %s", message["type"], exc)
            self._toast(page, "error", exc.user_message())
        except Exception as exc:  # a bug must reach the user and the log, not kill the socket
            log.exception("handling %s failed", message["type"])
            self._toast(page, "error", f"{message['type']} failed: {type(exc).__name__}: {exc}")

    def _post(self, message: dict[str, Any]) -> None:
        for page, ready in list(self._pages.items()):
            if ready:
                page.post(message)

    def _toast(self, page: PagePort | None, level: str, text: str) -> None:
        message = host_message("toast", level=level, text=text)
        if page is None:
            self._post(message)
        else:
            page.post(message)

    # --- what the page shows ---------------------------------------------------------------------

    def _live(self, session_id: str | None) -> Session | None:
        if session_id is None:
            return None
        return next((s for s in self.service.sessions if s.id == session_id), None)

    def _summaries(self) -> list[dict[str, Any]]:
        out = []
        live = sorted(self.service.sessions, key=lambda s: s.created)
        for session in live:
            s = self.service.summary(session)
            out.append(
                {
                    "sessionId": s.session_id,
                    "title": s.title,
                    "live": True,
                    "busy": s.busy or s.session_id in self._in_flight,
                    "workspaceFolder": s.workspace_folder,
                    "runtime": s.runtime,
                    "model": s.model,
                    "updated": None,
                }
            )
        ids = {s.id for s in live}
        for s in self._saved:
            if s.session_id not in ids:
                out.append(
                    {
                        "sessionId": s.session_id,
                        "title": s.title,
                        "live": False,
                        "busy": False,
                        "workspaceFolder": s.workspace_folder,
                        "runtime": None,
                        "model": s.model,
                        "updated": s.updated,
                    }
                )
        return out

    def status(self) -> dict[str, Any]:
        """The status line: runtime and model of the active session, busy, problem."""
        active = self._live(self.active_session_id)
        problem = None
        if not self.settings.api_key:
            problem = {
                "kind": "noApiKey",
                "message": "No API key is set: set OPENAI_API_KEY (any value for a local server "
                "that ignores it) and restart pygent ui.",
                "actions": [],
            }
        return {
            "connection": "stopped" if self._closing else "ready",
            "runtime": active.runtime.kind if active else _default_runtime(self.settings),
            "model": active.agent.model_name if active else self.settings.model,
            "busy": bool(self._in_flight) or any(s.busy for s in self.service.sessions),
            "problem": problem,
        }

    def _post_sessions(self) -> None:
        self._post(
            host_message(
                "sessions", sessions=self._summaries(), activeSessionId=self.active_session_id
            )
        )
        self._post(host_message("status", status=self.status()))

    def _detail(self, session_id: str) -> list[dict[str, Any]]:
        """The transcript, tasks and changes of one session."""
        log_ = self._logs.get(session_id)
        changes = self._changes.get(session_id, {"syncMode": "none", "changes": []})
        return [
            host_message(
                "transcript", sessionId=session_id, events=log_.snapshot() if log_ else []
            ),
            host_message(
                "tasks", sessionId=session_id, tasks=list(self._tasks.get(session_id, {}).values())
            ),
            host_message(
                "changes",
                sessionId=session_id,
                syncMode=changes["syncMode"],
                changes=changes["changes"],
            ),
        ]

    def _activate(self, session_id: str) -> None:
        self.active_session_id = session_id
        self._post_sessions()
        for message in self._detail(session_id):
            self._post(message)

    # --- page messages ---------------------------------------------------------------------------------

    async def _ready(self, page: PagePort, message: dict[str, Any]) -> None:
        if message["protocol"] != PAGE_PROTOCOL_VERSION:
            self._toast(
                page,
                "warning",
                f"This page speaks protocol {message['protocol']:g}, the "
                f"server {PAGE_PROTOCOL_VERSION}: reload the page.",
            )
        if page not in self._pages:
            return  # it left already
        self._pages[page] = True
        page.post(
            host_message(
                "init",
                host=HOST_NAME,
                capabilities=CAPABILITIES,
                status=self.status(),
                sessions=self._summaries(),
                activeSessionId=self.active_session_id,
            )
        )
        if self.active_session_id is not None:
            for detail in self._detail(self.active_session_id):
                page.post(detail)
        for view in self.broker.views():
            page.post(host_message("approval", approval=view))
        await self._refresh_saved()
        self._post_sessions()

    async def _prompt(self, page: PagePort, message: dict[str, Any]) -> None:
        text = message["text"]
        session_id = await self._session_for_prompt(message["sessionId"], text)
        if self.active_session_id != session_id:
            self._activate(session_id)
        self._in_flight.add(session_id)
        self._post_sessions()
        try:
            await self.service.prompt(session_id, text)
        except SessionBusyError:
            self._toast(page, "error", "A turn is already running in this session. Stop it first.")
        except Exception as exc:  # the turn must end on the page whatever failed
            if not isinstance(exc, PygentError):
                log.exception("the turn of session %s failed", session_id)
            why = (
                exc.user_message()
                if isinstance(exc, PygentError)
                else f"{type(exc).__name__}: {exc}"
            )
            log_ = self._logs.get(session_id)
            if log_ is not None and log_.turn_open():
                self._push(
                    session_id, local_update("turn_ended", stopReason="error", text="", error=why)
                )
            else:
                self._toast(page, "error", why)
        finally:
            self._in_flight.discard(session_id)
        await self._after_turn(session_id)
        self._post_sessions()

    async def _cancel(self, page: PagePort, message: dict[str, Any]) -> None:
        # Only the turn is cancelled: its pending approval withdraws itself as the
        # cancellation reaches it. Answering that approval here as well would race the
        # cancellation (Python 3.11's wait_for returns a result that arrives with a cancel
        # and drops the cancel) and the turn would go on. Delegated tasks keep their
        # approvals: they have their own Cancel in the task list.
        session_id = message["sessionId"]
        if self._live(session_id) is not None:
            self.service.cancel(session_id)

    async def _new_session(self, page: PagePort, message: dict[str, Any]) -> None:
        await self._create(None)

    async def _select_session(self, page: PagePort, message: dict[str, Any]) -> None:
        session_id = message["sessionId"]
        if self._live(session_id) is None:
            if not any(s.session_id == session_id for s in self._saved):
                return
            if session_id not in self._logs:
                self._logs[session_id] = SessionLog(await self._history(session_id))
        self._activate(session_id)

    async def _answer_approval(self, page: PagePort, message: dict[str, Any]) -> None:
        if not self.broker.answer(message["id"], message["optionId"], message["message"]):
            page.post(host_message("approvalClosed", id=message["id"], outcome="expired"))

    async def _not_in_browser(self, page: PagePort, message: dict[str, Any]) -> None:
        # The page only sends these with the openDiff capability, which we do not offer.
        self._toast(page, "info", "There is no editor to open this in: the page shows the diff.")

    async def _apply_changes(self, page: PagePort, message: dict[str, Any]) -> None:
        session_id = message["sessionId"]
        applied, failed = await self.service.write_changes(session_id, message["paths"])
        if failed:
            self._toast(
                page, "warning", "Not applied: " + ", ".join(f"{p} ({why})" for p, why in failed)
            )
        elif applied:
            self._toast(
                page,
                "info",
                f"Applied {len(applied)} change{'s' if len(applied) != 1 else ''} "
                f"to {self.folder}.",
            )
        await self._refresh_changes(session_id)

    async def _discard_changes(self, page: PagePort, message: dict[str, Any]) -> None:
        session_id = message["sessionId"]
        discarded = await self.service.discard(session_id, message["paths"])
        self._toast(
            page, "info", f"Discarded {len(discarded)} change{'s' if len(discarded) != 1 else ''}."
        )
        await self._refresh_changes(session_id)

    async def _cancel_task(self, page: PagePort, message: dict[str, Any]) -> None:
        if not self.service.cancel_task(message["sessionId"], message["taskId"]):
            self._toast(page, "info", f"Task {message['taskId']} has already ended.")

    async def _open_task(self, page: PagePort, message: dict[str, Any]) -> None:
        # No editor here: refresh the task so the page's task list shows its result.
        session_id, task_id = message["sessionId"], message["taskId"]
        info = self.service.task_info(session_id, task_id)
        self._tasks.setdefault(session_id, {})[task_id] = {
            "taskId": info.id,
            "status": info.status,
            "persona": info.persona,
            "prompt": info.prompt,
            "steps": info.steps,
            "detail": info.detail,
            "result": self.service.task_result(session_id, task_id),
        }
        self._post_tasks(session_id)

    async def _run_action(self, page: PagePort, message: dict[str, Any]) -> None:
        self._toast(
            page,
            "info",
            f"{message['action']} is not available in the browser: "
            "see docs/ui.md (settings come from pygent.toml and the environment).",
        )

    # --- sessions --------------------------------------------------------------------------------------

    async def _refresh_saved(self) -> None:
        """The saved sessions of our folder (or of no folder), newest first."""
        try:
            listed = await asyncio.to_thread(self.service.list_sessions, include_saved=True)
        except PygentError as exc:
            log.warning("listing the saved sessions: %s", exc)
            return
        wanted = str(self.folder) if self.folder else None
        self._saved = [
            s for s in listed if not s.live and _same_folder(s.workspace_folder, wanted)
        ][:MAX_SAVED]

    async def _session_for_prompt(self, requested: str | None, text: str) -> str:
        """A live session to prompt: the given one, resumed if it was saved, or a new one."""
        if requested is not None and self._live(requested) is not None:
            return requested
        if requested is not None and any(s.session_id == requested for s in self._saved):
            return await self._resume(requested)
        # Two quick prompts must not start two sessions.
        if self._creating is None:
            title = (text.strip().splitlines() or [""])[0][:60] or None
            creating = asyncio.ensure_future(self._create(title))
            self._creating = creating

            def reset(_: object) -> None:
                self._creating = None

            creating.add_done_callback(reset)
        return await asyncio.shield(self._creating)

    async def _create(self, title: str | None) -> str:
        options = SessionOptions(
            workspace_folder=str(self.folder) if self.folder else None,
            runtime="auto",
            sync_mode="copy" if self.folder else "none",
            title=title,
        )
        session = await self.service.create(options)
        self._adopt(session)
        self._activate(session.id)
        return session.id

    async def _resume(self, session_id: str) -> str:
        if session_id not in self._logs:
            self._logs[session_id] = SessionLog(await self._history(session_id))
        session = await self.service.resume(
            session_id, SessionOptions(runtime="auto", sync_mode="copy")
        )
        self._saved = [s for s in self._saved if s.session_id != session_id]
        self._adopt(session)
        earlier = self.service.summary(session).message_count
        self._push(
            session_id,
            local_update(
                "notice",
                level="info",
                text=f"Resumed a saved session: the agent remembers its {earlier} earlier messages.",
            ),
        )
        self._activate(session_id)
        return session_id

    async def _history(self, session_id: str) -> list[dict[str, Any]]:
        """A saved session's conversation as page events."""

        def read() -> list[dict[str, Any]]:
            reader = self.service.store.read(session_id)
            try:
                return reader.load(repair=False)
            finally:
                reader.close()

        try:
            messages = await asyncio.to_thread(read)
        except PygentError as exc:
            log.warning("reading saved session %s: %s", session_id, exc)
            return [
                local_update(
                    "notice",
                    level="warning",
                    text=f"The saved conversation could not be read: {exc}",
                )
            ]
        return history_events(messages)

    def _adopt(self, session: Session) -> None:
        """Start forwarding a live session's events to its log and the pages."""
        assert self.loop is not None
        session_id = session.id
        self._logs.setdefault(session_id, SessionLog())

        def deliver(update: dict[str, Any]) -> None:
            self._deliver(session_id, update)

        pump = EventPump(self.loop, deliver)
        self._pumps[session_id] = pump

        def listener(event: ev.Event) -> None:
            update = event_update(event)
            if update is not None:
                pump.push(update)

        self._unsubscribe[session_id] = self.service.subscribe(session_id, listener)
        if session.sync is not None:
            self._changes[session_id] = {"syncMode": session.sync_mode, "changes": []}
        for notice in session.notices:
            pump.push(local_update("notice", level="warning", text=notice))

    def _push(self, session_id: str, update: dict[str, Any]) -> None:
        """A host-made update, in order with the session's own events."""
        pump = self._pumps.get(session_id)
        if pump is not None:
            pump.push(update)
        else:
            self._deliver(session_id, update)

    def _deliver(self, session_id: str, update: dict[str, Any]) -> None:
        """One session event (on the loop): into the log, to the pages."""
        self._logs.setdefault(session_id, SessionLog()).append(update)
        self._post(host_message("event", sessionId=session_id, event=update))
        if update["type"] == "task_status" and update.get("taskId"):
            self._task_update(session_id, update)

    # --- tasks, changes, approvals ---------------------------------------------------------------------

    def _task_update(self, session_id: str, update: dict[str, Any]) -> None:
        tasks = self._tasks.setdefault(session_id, {})
        task_id = update["taskId"]
        before = tasks.get(task_id, {})
        info = {
            "taskId": task_id,
            "status": update["status"],
            "persona": update["persona"] or before.get("persona", ""),
            "prompt": update["prompt"] or before.get("prompt", ""),
            "steps": max(update["steps"], before.get("steps", 0)),
            "detail": update["detail"],
            "result": before.get("result", ""),
        }
        if info["status"] in FINAL_TASK_STATES:
            try:
                info["result"] = self.service.task_result(session_id, task_id)
            except PygentError as exc:
                log.info("the result of task %s: %s", task_id, exc)
        tasks[task_id] = info
        self._post_tasks(session_id)

    def _post_tasks(self, session_id: str) -> None:
        self._post(
            host_message(
                "tasks", sessionId=session_id, tasks=list(self._tasks.get(session_id, {}).values())
            )
        )

    async def _refresh_changes(self, session_id: str) -> list[dict[str, Any]]:
        session = self._live(session_id)
        changes: list[dict[str, Any]] = []
        if session is not None and session.sync is not None:
            changes = [dataclasses.asdict(c) for c in await self.service.changes(session_id)]
        sync_mode = session.sync_mode if session is not None else "none"
        self._changes[session_id] = {"syncMode": sync_mode, "changes": changes}
        self._post(
            host_message("changes", sessionId=session_id, syncMode=sync_mode, changes=changes)
        )
        return changes

    async def _after_turn(self, session_id: str) -> None:
        """After a turn: what the agent changed in the sandbox, for review."""
        session = self._live(session_id)
        if session is None or session.sync is None:
            return
        changes = await self._refresh_changes(session_id)
        if changes:
            paths = [c["path"] for c in changes]
            self._push(session_id, local_update("changes", count=len(paths), paths=paths[:200]))

    def _approval_opened(self, view: dict[str, Any]) -> None:
        self._post(host_message("approval", approval=view))

    def _approval_closed(self, approval_id: str, outcome: str) -> None:
        self._post(host_message("approvalClosed", id=approval_id, outcome=outcome))

    def _permission_status(self, session_id: str, request: Any, state: str, outcome: str) -> None:
        self._push(
            session_id,
            {
                "type": "permission",
                "taskId": request.task_id,
                "callId": request.call_id,
                "state": state,
                "outcome": outcome,
            },
        )

    # --- downloads and shutdown -----------------------------------------------------------------------------

    async def patch(self, session_id: str | None = None) -> tuple[str, str] | None:
        """(file name, patch text) of a session's pending changes (default: the active
        session); None when it has no folder or no changes."""
        session = self._live(session_id or self.active_session_id)
        if session is None or session.sync is None:
            return None
        changes = await self.service.changes(session.id)
        text = _patch_text(changes)
        return (f"pygent-{session.id}.patch", text) if text else None

    async def aclose(self) -> None:
        """Deny what waits, cancel every turn, remove every sandbox; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self.broker.cancel_all()
        self._post(host_message("status", status=self.status()))
        await self.service.aclose()
        for unsubscribe in self._unsubscribe.values():
            unsubscribe()
        self._unsubscribe.clear()
        for pump in self._pumps.values():
            pump.close()
        jobs = [job for job in self._jobs if not job.done()]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
