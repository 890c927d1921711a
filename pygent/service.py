"""Front-end-neutral sessions: create, prompt, cancel, list, close and resume agents with their sandboxes.

The language server, the web UI, the REPL and the one-shot mode hold no agent logic:
they call a :class:`SessionService`, the one place a session is assembled (delegated
tasks build their sub-agents with :func:`build_agent` from here too, so every front end
gets the same tools, limits and events). A session is an :class:`~pygent.agent.Agent`, its own
:class:`~pygent.runtime.Runtime`, its :class:`~pygent.tasks.TaskManager` and, when bound
to a folder, a :class:`~pygent.changes.WorkspaceSync`. Approvals go to the approver the
front end's factory makes for each session. Every method is safe to call from the
front end's event loop: blocking work (starting a sandbox, copying files, removing a
container) runs in worker threads, and each session's turn is its own asyncio task,
so a slow model or command in one session never delays another.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pygent import events as ev
from pygent.agent import Agent, TurnResult
from pygent.approval import Approver
from pygent.checkpoints import Checkpoints
from pygent.errors import (
    PathError,
    PygentError,
    RuntimeUnavailable,
    SessionBusyError,
    UnknownSessionError,
)
from pygent.persona import Persona
from pygent.policy import Policy, normalize_mode
from pygent.prompt_images import check_data_url
from pygent.runtime import Runtime
from pygent.settings import Settings
from pygent.store import SessionStore
from pygent.sync_modes import COPY, COW, MOUNT
from pygent.tasks import TaskInfo, TaskManager
from pygent.timeline import FileChange as TimelineFileChange
from pygent.timeline import RewindResult, TimelineTurn, busy_error, fork_runtime
from pygent.tools import ToolRegistry

if TYPE_CHECKING:  # the sync machinery and MCP load when a session uses them, not at start-up
    from pygent.changes import FileChange, FileEdit, SyncReport, WorkspaceSync
    from pygent.mcp.config import McpServerSpec
    from pygent.mcp.session import McpManager
    from pygent.runtime.pool import SandboxPool

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "docker", "bwrap", "local")
SYNC_MODES = (COW, COPY, MOUNT, "none")
#: The saved session's metadata key of the approval mode last chosen for it.
SAVED_MODE_KEY = "approval_mode"

#: Makes the approver of a session (given its id); None means nobody answers (deny).
ApproverFactory = Callable[[str], "Approver | None"]


@dataclass(frozen=True)
class SessionOptions:
    """How to make a session. ``workspace_folder``: an editor folder (path or ``file://``
    URI); ``runtime``: auto, docker or local; ``sync_mode``: cow (copy-on-write, the
    default; copy where the sandbox cannot mount an overlay, saying so), copy, mount or
    none."""

    workspace_folder: str | None = None
    runtime: str = "auto"
    persona: str | None = None
    model: str | None = None
    approval_mode: str | None = None
    sync_mode: str = COW
    title: str | None = None
    #: MCP servers for this session on top of ``[mcp.servers]`` of the settings (an ACP
    #: client's ``session/new`` list, via :func:`pygent.mcp.specs_from_acp`).
    mcp_servers: tuple[McpServerSpec, ...] = ()


@dataclass(frozen=True)
class SessionSummary:
    """A session for lists: live ones (open here) and saved ones."""

    session_id: str
    title: str
    live: bool
    busy: bool = False
    workspace_folder: str | None = None
    sandbox_path: str | None = None
    runtime: str | None = None
    sync_mode: str = "none"
    persona: str = ""
    model: str = ""
    approval_mode: str = "auto"
    message_count: int = 0
    updated: str | None = None
    notices: tuple[str, ...] = ()
    sandbox: str | None = None  # how front ends name it: Runtime.describe()


@dataclass(frozen=True)
class ToolState:
    name: str
    description: str
    kind: str
    enabled: bool


@dataclass
class Session:
    """One live session. Front ends read it; the service changes it."""

    id: str
    agent: Agent
    runtime: Runtime
    tasks: TaskManager
    sync: WorkspaceSync | None
    folder: Path | None
    sync_mode: str
    title: str
    notices: list[str] = field(default_factory=list)
    events: ev.EventHub = field(default_factory=ev.EventHub)
    max_steps: int | None = None
    turn: asyncio.Task[TurnResult] | None = None
    starting: bool = False  # a prompt is copying files in before its turn starts
    closed: bool = False
    created: float = field(default_factory=time.time)
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    mcp: McpManager | None = None  # the session's MCP servers (docs/mcp.md)
    #: (history list, its length, its last message, user+assistant count) at the last count
    _counted: tuple[Any, int, Any, int] = (None, 0, None, 0)

    @property
    def busy(self) -> bool:
        return self.starting or (self.turn is not None and not self.turn.done())


def folder_path(value: str) -> Path:
    """A ``file://`` URI or a path -> an absolute, existing folder (PathError otherwise)."""
    text = value.strip()
    if text.startswith("file:"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise PathError(f"workspace folder {value!r} is not on this machine")
        text = unquote(parsed.path)
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        raise PathError(f"workspace folder {value!r} must be an absolute path or a file:// URI")
    if not path.is_dir():
        raise PathError(f"workspace folder {value!r} is not a directory")
    return path.resolve()


def build_agent(
    settings: Settings,
    *,
    runtime: Runtime,
    model: Any = None,
    model_name: str | None = None,
    persona: Persona | None = None,
    history_file: Path | None = None,
    approver: Approver | None = None,
    approval_mode: str | None = None,
    policy: Policy | None = None,
    session_id: str | None = None,
    task_id: str | None = None,
    depth: int = 0,
    task_manager: TaskManager | None = None,
    tools: ToolRegistry | None = None,
    disabled_tools: Iterable[str] = (),
    checkpoints: Checkpoints | None = None,
) -> Agent:
    """The one place Pygent's own modules construct an :class:`Agent` (a session's main
    agent or a delegated task's sub-agent); a test keeps it so.

    Args:
        settings: the session's settings (limits, banned commands, disabled tools).
        runtime: the agent's sandbox, already made.
        model: a model object (None: the custom model, else the OpenAI-compatible one).
        model_name: the model name sent to the API (default ``settings.model``).
        persona: who the agent is (default ``settings.main_persona``).
        history_file: where the conversation is appended (None: nowhere).
        approver: who answers approval requests (None: nobody, so they are denied).
        approval_mode: the policy's mode, when ``policy`` is not given.
        policy: a policy to use as is (a task shares its session's rules).
        session_id, task_id, depth: where the agent sits (a task: its id, depth 1).
        task_manager: the session's tasks; it adds the delegation tools.
        tools: a tool registry (default: the shared default registry).
        disabled_tools: tool names this agent may not use.
        checkpoints: the workspace's checkpoints (None: the agent's default).
    """
    return Agent(
        runtime=runtime,
        model=model,
        model_name=model_name or settings.model,
        persona=persona,
        history_file=history_file,
        disabled_tools=tuple(disabled_tools),
        settings=settings,
        tools=tools,
        approver=approver,
        policy=policy,
        approval_mode=approval_mode,
        session_id=session_id,
        task_id=task_id,
        depth=depth,
        task_manager=task_manager,
        checkpoints=checkpoints,
    )


class SessionService:
    """Every live session of one front end, and the saved ones.

    Args:
        settings: the base settings; each session may override model, persona and
            approval mode.
        approver_factory: makes each session's approver (None: nobody answers, so
            calls the policy asks about are denied).
        model: a model object for every agent (tests, custom models); default: the
            agent's default OpenAI-compatible model.
        store: the saved sessions (default: ``settings.sessions_dir``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        approver_factory: ApproverFactory | None = None,
        model: Any = None,
        store: SessionStore | None = None,
    ) -> None:
        self.settings = settings
        self.approver_factory = approver_factory
        self.model = model
        self.store = store or SessionStore(settings.sessions_dir)
        self._sessions: dict[str, Session] = {}
        self._listeners: list[ev.EventListener] = []
        self._removers: dict[ev.EventListener, list[Callable[[], None]]] = {}
        #: Called after a session is added to or removed from :attr:`sessions`.
        self._watchers: list[Callable[[], None]] = []
        self._closed = False
        #: Started sandboxes new sessions take (a long-running host sets it; see
        #: pygent.runtime.pool); closed with the service.
        self.pool: SandboxPool | None = None

    # --- sessions ------------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The live session ``session_id``; :class:`UnknownSessionError` otherwise."""
        session = self._sessions.get(session_id)
        if session is None:
            known = ", ".join(self._sessions) or "none"
            raise UnknownSessionError(
                f"no live session {session_id!r} (live sessions: {known})",
                hint="create one with session/new, or resume a saved one with session/resume",
            )
        return session

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def watch_sessions(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after a session is opened, forked, closed or expired (the
        list of :attr:`sessions` changed); returns the function that stops it.

        It is called on the thread that made the change (sessions are built on worker
        threads): hand it over to your own loop, and keep it quick.
        """
        self._watchers.append(listener)

        def unwatch() -> None:
            if listener in self._watchers:
                self._watchers.remove(listener)

        return unwatch

    def _sessions_changed(self) -> None:
        for listener in list(self._watchers):
            try:
                listener()
            except Exception:  # a watcher's bug must not undo the session's change
                log.exception("a sessions watcher failed")

    async def create(self, options: SessionOptions) -> Session:
        """Start a session: sandbox, agent, task manager, history file, folder sync."""
        return await self._open(options, resume_id=None)

    async def resume(self, session_id: str, options: SessionOptions) -> Session:
        """Reopen a saved session (its history) in a new sandbox."""
        self._check_resumable(session_id)
        return await self._open(options, resume_id=session_id)

    def open_blocking(
        self,
        options: SessionOptions,
        *,
        resume_id: str | None = None,
        runtime: Runtime | None = None,
        history_file: Path | None = None,
        meta: dict[str, Any] | None = None,
        unsaved_ok: bool = False,
    ) -> Session:
        """Create (or, with ``resume_id``, reopen) a session in the calling thread, for
        front ends that build it in a worker thread of their own (the REPL, ``pygent -p``).

        Args:
            options: as for :meth:`create`.
            resume_id: a saved session to reopen (its history and title).
            runtime: a sandbox the front end already started (the REPL shows its banner
                while the sandbox comes up); the session owns and removes it.
            history_file: keep the conversation in this file instead of a new saved
                session (a ``/save`` snapshot's, ``PYGENT_HISTORY_FILE``).
            meta: more fields for a new saved session (``cwd``, ``front_end``...).
            unsaved_ok: when the sessions folder cannot be written, go on without
                saving (a notice says so) instead of failing.
        """
        self._check_options(options)
        if resume_id is not None:
            self._check_resumable(resume_id)
        mode = normalize_mode(options.approval_mode or self.settings.effective_approval_mode())
        return self._open_blocking(
            options,
            resume_id,
            mode,
            runtime=runtime,
            history_file=history_file,
            meta=meta,
            unsaved_ok=unsaved_ok,
        )

    def _check_resumable(self, session_id: str) -> None:
        if session_id in self._sessions:
            raise PygentError(f"session {session_id!r} is already open here")
        path = self.store.path(session_id)
        if not path.is_file():
            raise UnknownSessionError(
                f"no saved session {session_id!r} in {self.store.root}",
                hint="list the sessions (includeSaved) to see their ids",
            )

    def _check_options(self, options: SessionOptions) -> None:
        if self._closed:
            raise PygentError("the service is shutting down")
        if options.runtime not in RUNTIMES:
            raise PygentError(
                f"unknown runtime {options.runtime!r}; use one of {', '.join(RUNTIMES)}"
            )
        if options.sync_mode not in SYNC_MODES:
            raise PygentError(f"unknown sync mode {options.sync_mode!r}")

    async def _open(self, options: SessionOptions, resume_id: str | None) -> Session:
        self._check_options(options)
        mode = normalize_mode(options.approval_mode or self.settings.effective_approval_mode())
        return await asyncio.to_thread(self._open_blocking, options, resume_id, mode)

    def _session_settings(self, options: SessionOptions) -> Settings:
        changes: dict[str, Any] = {"history_file": None, "workspace": None, "snapshot": None}
        if options.model:
            changes["model"] = options.model
        return dataclasses.replace(self.settings, **changes)

    def _persona(self, name: str | None, settings: Settings) -> Persona:
        if not name:
            return settings.main_persona
        for persona in [settings.main_persona, *settings.task_personas]:
            if persona.name == name:
                return persona
        return Persona(name, settings.persona)

    def _saved_meta(self, session_id: str) -> dict[str, Any]:
        try:
            reader = self.store.read(session_id)
            try:
                reader.load()
                return dict(reader.meta)
            finally:
                reader.close()
        except PygentError as exc:
            log.warning("cannot read saved session %s: %s", session_id, exc)
            return {}

    def _history_path(
        self, session_id: str, given: Path | None, unsaved_ok: bool, notices: list[str]
    ) -> Path | None:
        if given is not None:
            return given
        path = self.store.path(session_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            if not unsaved_ok:
                raise
            log.warning("the conversation is not saved: %s", exc)
            notices.append(f"the conversation is not saved: {exc}")
            return None
        return path

    def _open_blocking(
        self,
        options: SessionOptions,
        resume_id: str | None,
        mode: str,
        *,
        runtime: Runtime | None = None,
        history_file: Path | None = None,
        meta: dict[str, Any] | None = None,
        unsaved_ok: bool = False,
    ) -> Session:
        settings = self._session_settings(options)
        folder_text = options.workspace_folder
        saved_meta: dict[str, Any] = {}
        if resume_id is not None:
            saved_meta = self._saved_meta(resume_id)
            saved_mode = saved_meta.get(SAVED_MODE_KEY)
            if options.approval_mode is None and isinstance(saved_mode, str):
                try:  # the mode chosen in the session's last life (update_settings)
                    mode = normalize_mode(saved_mode)
                except PygentError:
                    log.warning("ignoring the saved approval mode %r of %s", saved_mode, resume_id)
            # A saved editor session is bound to its folder again; a terminal one
            # (sync "none") kept its own workspace and is not bound to anything.
            if not folder_text and options.sync_mode != "none":
                folder_text = saved_meta.get("workspace") or None
        folder = folder_path(folder_text) if folder_text else None
        sync_mode = options.sync_mode if folder is not None else "none"
        if runtime is None:
            use_docker = {"auto": None, "docker": True, "bwrap": None, "local": False}[
                options.runtime]
            if options.runtime == "bwrap":  # asked for by name: an error when it cannot run
                settings = dataclasses.replace(settings, sandbox="bwrap", use_docker=None)
            runtime = (None if options.runtime == "bwrap"  # the warm pool holds containers
                       else self._pooled_runtime(use_docker, settings, folder, sync_mode))
            if runtime is None:
                runtime = self._new_runtime(use_docker, settings, folder, sync_mode)
        if sync_mode == COW and getattr(runtime, "overlay", None) is None:
            sync_mode = COPY  # runtime.cow_fallback says why, in the notices
        notices = list(runtime.notices)
        fallback = getattr(runtime, "cow_fallback", None)
        if fallback:
            log.info("%s", fallback)
            notices.append(fallback)
        try:
            session_id = self._new_id() if resume_id is None else resume_id
            history_path = self._history_path(session_id, history_file, unsaved_ok, notices)
            approver = self.approver_factory(session_id) if self.approver_factory else None
            tasks = TaskManager(settings=settings, session_id=session_id)
            checkpoints = None
            if sync_mode == COPY and history_path is not None and history_file is None:
                # The sandbox copy is a scratch folder: its checkpoints (rewind) live in
                # the session's own folder and are removed when the session closes.
                checkpoints = Checkpoints(history_path.parent / "checkpoints", runtime.files)
            agent = build_agent(
                settings,
                runtime=runtime,
                model=self.model,
                persona=self._persona(options.persona, settings),
                history_file=history_path,
                approver=approver,
                approval_mode=mode,
                session_id=session_id,
                task_manager=tasks,
                checkpoints=checkpoints,
            )
        except BaseException:
            runtime.cleanup()
            raise
        title = options.title or saved_meta.get("title") or ""
        session = Session(
            session_id,
            agent,
            runtime,
            tasks,
            None,
            folder,
            sync_mode,
            title,
            notices=notices,
        )
        try:
            new_record = resume_id is None and history_file is None
            if agent.history_store is not None and new_record:
                fields = {"workspace": str(folder) if folder else None, "model": agent.model_name}
                fields.update(meta or {})
                if options.title:
                    fields["title"] = options.title
                agent.history_store.update_meta(fields)  # one fsync, not one a field
            if folder is not None and sync_mode == COW:
                from pygent.cow import CowSync
                from pygent.runtime.overlay import OverlayWorkspace

                assert isinstance(runtime.files, OverlayWorkspace)
                session.sync = CowSync(folder, runtime.files)
            elif folder is not None and sync_mode in (COPY, MOUNT):
                from pygent.changes import WorkspaceSync

                session.sync = WorkspaceSync(folder, runtime.files, sync_mode)
                report = session.sync.initial_sync()
                if report.skipped:
                    session.notices.append(
                        f"{len(report.skipped)} file(s) too large to copy into the sandbox "
                        f"were skipped: {', '.join(report.skipped[:5])}"
                    )
            mcp_specs = [*settings.mcp_servers, *options.mcp_servers]
            if mcp_specs:  # started in parallel, in the sandbox, once the session is wired
                from pygent.mcp.session import open_mcp  # the SDK is imported on first use

                session.mcp = open_mcp(
                    mcp_specs,
                    agent,
                    runtime,
                    folder,
                    # each server's changes (starting, ready, restarting, failed, new
                    # tools) as mcp_server updates; pygent/mcp/status has the state now
                    on_event=session.events.emit,
                    session_id=session.id,
                    start=False,
                )
        except BaseException:
            self._dispose(session)
            raise
        self._wire(session)
        self._sessions[session_id] = session
        if session.mcp is not None:
            # Not waited for: session/new returns now, the servers start in the
            # background and the turn's first model request waits for them (docs/mcp.md).
            session.mcp.start_soon()
            session.notices.extend(session.mcp.notices)  # where = "host" warnings
        self._sessions_changed()
        log.info(
            "session %s started (%s, %s, sync %s)",
            session_id,
            runtime.describe(),
            folder or "no folder",
            sync_mode,
        )
        return session

    def _pooled_runtime(
        self, use_docker: bool | None, settings: Settings, folder: Path | None, sync_mode: str
    ) -> Runtime | None:
        """A sandbox from the warm pool when it has one of this kind, else None."""
        pool = self.pool
        if pool is None or use_docker is False or sync_mode == MOUNT:
            return None  # a mounted folder is the container's mount: nothing to pool
        from pygent.runtime.facade import docker_options

        lower = folder if sync_mode == COW and folder is not None else None
        if lower is not None and pool.transfers:
            lower = None  # the engine cannot mount the folder: a copy-mode sandbox serves
        warm = pool.take(docker_options(settings), lower)
        if warm is None:
            return None
        try:
            runtime = Runtime(settings=settings, pooled=warm)
            if sync_mode == COW and runtime.overlay is None:
                runtime.cow_fallback = (
                    "copy-on-write workspaces need an engine that sees the folder: the "
                    "folder is copied into the sandbox instead"
                )
            return runtime
        except BaseException:
            warm.discard()
            raise

    @staticmethod
    def _new_runtime(
        use_docker: bool | None, settings: Settings, folder: Path | None, sync_mode: str
    ) -> Runtime:
        """The session's sandbox. A copy-on-write one is waited for: an engine that
        cannot mount the overlay (a remote engine, an old kernel) means a copy instead."""
        if sync_mode != COW or folder is None:
            return Runtime(
                use_docker=use_docker,
                settings=settings,
                workspace=folder if sync_mode == MOUNT else None,
            )
        made: Runtime | None = None
        try:
            made = Runtime(use_docker=use_docker, settings=settings, cow_lower=folder)
            if made.overlay is None:
                return made
            made.wait_ready()
            return made
        except PygentError as exc:
            if made is not None:
                made.cleanup()
            runtime = Runtime(use_docker=use_docker, settings=settings)
            runtime.cow_fallback = (
                f"the sandbox could not mount a copy-on-write workspace ({exc}): the folder "
                "is copied into the sandbox instead"
            )
        return runtime

    def _new_id(self) -> str:
        while True:
            candidate = self.store.new_id()
            if not self.store.path(candidate).exists() and candidate not in self._sessions:
                return candidate

    def _wire(self, session: Session) -> None:
        """Forward the agent's and its tasks' events to the session's hub."""

        def forward(event: ev.Event) -> None:
            session.events.emit(event)

        session._unsubscribe.append(session.agent.events.subscribe(forward))
        # Sub-agents' own events (tagged with their task id); their TaskStatus events
        # already reach the main agent's hub.
        session._unsubscribe.append(session.tasks.subscribe(forward, agent_events=True))
        for listener in self._listeners:
            remove = session.events.subscribe(listener)
            session._unsubscribe.append(remove)
            self._removers.setdefault(listener, []).append(remove)

    def subscribe(self, session_id: str, listener: ev.EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event of a session (its tasks' too).

        Listeners may be called from other threads (command output arrives on the
        runtime's thread, tasks run on their manager's thread): hand events over to
        your own loop, in order.
        """
        return self.get(session_id).events.subscribe(listener)

    def subscribe_all(self, listener: ev.EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event of every session, present and future."""
        self._listeners.append(listener)
        removers = self._removers.setdefault(listener, [])
        for session in self._sessions.values():
            remove = session.events.subscribe(listener)
            session._unsubscribe.append(remove)
            removers.append(remove)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            for remove in self._removers.pop(listener, []):
                remove()

        return unsubscribe

    def summary(self, session: Session) -> SessionSummary:
        agent = session.agent
        messages = self._message_count(session, agent.history)
        return SessionSummary(
            session_id=session.id,
            title=session.title or self._title(agent),
            live=True,
            busy=session.busy,
            workspace_folder=str(session.folder) if session.folder else None,
            sandbox_path=str(session.runtime.workspace),
            runtime=session.runtime.kind,
            sync_mode=session.sync_mode,
            persona=agent.persona.name,
            model=agent.model_name,
            approval_mode=agent.policy.mode,
            message_count=messages,
            notices=tuple(session.notices),
            sandbox=session.runtime.describe(),
        )

    @staticmethod
    def _message_count(session: Session, history: list[dict[str, Any]]) -> int:
        """The user and assistant messages of ``history``; only those added since the last
        count are read when the history only grew (``session/list`` is asked for often,
        and answered off the event loop: pygent.lsp.reader_answers)."""
        counted, length, last, count = session._counted
        if counted is history and 0 < length <= len(history) and history[length - 1] is last:
            tail = history[length:]
        else:
            count, tail = 0, history[1:]
        count += sum(1 for m in tail if m.get("role") in ("user", "assistant"))
        if history:
            session._counted = (history, len(history), history[-1], count)
        return count

    @staticmethod
    def _title(agent: Agent) -> str:
        for message in agent.history[1:]:
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                text = " ".join(message["content"].split())
                return text[:60]
        return ""

    def list_sessions(self, *, include_saved: bool = False) -> list[SessionSummary]:
        """Live sessions first (oldest first), then saved ones not open here (newest first)."""
        out = [self.summary(s) for s in sorted(self._sessions.values(), key=lambda s: s.created)]
        if include_saved:
            for info in self.store.list():
                if info.id in self._sessions:
                    continue
                out.append(
                    SessionSummary(
                        session_id=info.id,
                        title=info.title,
                        live=False,
                        workspace_folder=info.workspace,
                        model=info.model or "",
                        message_count=info.message_count,
                        updated=info.updated.isoformat(),
                    )
                )
        return out

    async def close(self, session_id: str) -> bool:
        """Cancel the session's turn and tasks, remove its sandbox, close its history."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._sessions_changed()
        await self._shutdown_session(session)
        return True

    def close_blocking(self, session_id: str) -> bool:
        """:meth:`close` in the calling thread, for a session whose turn has ended (the
        REPL's exit, ``pygent -p``); False when no such session is open."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._sessions_changed()
        session.closed = True
        self._dispose(session)
        return True

    async def _shutdown_session(self, session: Session) -> None:
        session.closed = True
        turn = session.turn
        if turn is not None and not turn.done():
            session.agent.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(turn), 15)
            except (asyncio.TimeoutError, asyncio.CancelledError, PygentError) as exc:
                log.warning("the turn of session %s did not end cleanly: %r", session.id, exc)
        await asyncio.to_thread(self._dispose, session)

    def _dispose(self, session: Session) -> None:
        for remove in session._unsubscribe:
            remove()
        session._unsubscribe.clear()
        try:
            session.tasks.shutdown(timeout=30)
        except PygentError as exc:
            log.warning("stopping the tasks of session %s: %s", session.id, exc)
        if session.mcp is not None:  # before the sandbox goes: no server process is left
            try:
                session.mcp.stop_blocking()
            except PygentError as exc:
                log.warning("stopping the MCP servers of session %s: %s", session.id, exc)
        session.runtime.cleanup()
        session.agent.close()
        store = session.agent.checkpoints.store if session.agent.checkpoints else None
        if session.sync_mode == COPY and store is not None and store.name == "checkpoints":
            try:  # a copy session's checkpoints were of its scratch folder, now gone
                shutil.rmtree(store)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove the checkpoints of session %s: %s", session.id, exc)
        log.info("session %s closed", session.id)

    async def aclose(self) -> None:
        """Close every session (cancel turns, remove containers); safe to call twice."""
        self._closed = True
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if sessions:
            self._sessions_changed()
        pool, self.pool = self.pool, None
        if sessions:
            await asyncio.gather(
                *(self._shutdown_session(s) for s in sessions), return_exceptions=True
            )
        if pool is not None:
            await asyncio.to_thread(pool.close)

    # --- turns ---------------------------------------------------------------------------

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        max_steps: int | None = None,
        overlay: dict[str, bytes] | None = None,
        images: Sequence[str] = (),
    ) -> TurnResult:
        """Run one turn and return how it ended (``cancelled`` after :meth:`cancel`).
        ``images``: data URLs sent with the prompt (:mod:`pygent.prompt_images`).

        In copy mode the paths the editor reported (and ``overlay``, unsaved buffers)
        are copied into the sandbox first.
        """
        session = self.get(session_id)
        images = [check_data_url(url) for url in images]  # any client's: checked here
        if session.busy:
            raise SessionBusyError(
                f"session {session_id} is already running a turn",
                hint="wait for it to end, or cancel it",
            )
        session.starting = True  # claimed now: a second prompt is refused, not raced
        try:
            if session.sync is not None and (
                session.sync_mode == COPY or (session.sync_mode == COW and overlay)
            ):
                report = await asyncio.to_thread(session.sync.sync, overlay=overlay)
                if report.conflicts:
                    session.events.emit(
                        ev.Notice(
                            session_id=session.id,
                            level="warning",
                            text="changed in the folder and by the agent (the sandbox copy was "
                            "kept): " + ", ".join(report.conflicts),
                        )
                    )
            turn = asyncio.ensure_future(
                session.agent.arun(
                    text,
                    max_steps=max_steps or session.max_steps,
                    step_timeout=self.settings.step_timeout,
                    images=images,
                )
            )
            session.turn = turn
        finally:
            session.starting = False
        try:
            return await asyncio.shield(turn)
        except asyncio.CancelledError:
            # The caller went away (e.g. $/cancelRequest): the turn must stop too.
            session.agent.cancel()
            if not turn.done():
                turn.cancel()
            raise

    def cancel(self, session_id: str) -> bool:
        """Cancel the running turn (its command is killed); False when none runs."""
        session = self.get(session_id)
        if not session.busy:
            return False
        if not session.agent.cancel() and session.turn is not None:
            session.turn.cancel()
        return True

    # --- settings and tools -------------------------------------------------------------

    def update_settings(
        self,
        session_id: str,
        *,
        approval_mode: str | None = None,
        model: str | None = None,
        persona: str | None = None,
        max_steps: int | None = None,
    ) -> Session:
        """Change a live session's settings (from its next model call on)."""
        session = self.get(session_id)
        agent = session.agent
        if approval_mode is not None:
            agent.policy.mode = normalize_mode(approval_mode)
            self._save_mode(session)
        if model is not None:
            if not model.strip():
                raise PygentError("the model name cannot be empty")
            agent.model_name = model
        if persona is not None:
            agent.persona = self._persona(persona, agent.settings)
            agent.refresh_system_message()
        if max_steps is not None:
            if max_steps < 1:
                raise PygentError("maxSteps must be at least 1")
            session.max_steps = max_steps
        return session

    @staticmethod
    def _save_mode(session: Session) -> None:
        save_approval_mode(session.agent)

    def tools(self, session_id: str) -> list[ToolState]:
        agent = self.get(session_id).agent
        return [
            ToolState(t.name, t.description, t.kind, t.name not in agent.disabled_tools)
            for t in agent.tools.tools()
        ]

    def mcp_status(self, session_id: str) -> list[Any]:
        """The session's MCP servers (:class:`pygent.mcp.connection.ServerStatus`), for
        ``pygent/mcp/status`` and ``/mcp``; empty when it has none."""
        session = self.get(session_id)
        return session.mcp.status() if session.mcp is not None else []

    def set_tools_enabled(
        self, session_id: str, names: Iterable[str], enabled: bool
    ) -> list[ToolState]:
        """Enable or disable tools for this session; unknown names are an error."""
        agent = self.get(session_id).agent
        names = list(names)
        known = set(agent.tools.names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise PygentError(
                f"unknown tool(s): {', '.join(unknown)} (tools: {', '.join(sorted(known))})"
            )
        for name in names:
            if enabled:
                agent.disabled_tools.discard(name)
            else:
                agent.disabled_tools.add(name)
        agent.refresh_system_message()
        return self.tools(session_id)

    # --- tasks ---------------------------------------------------------------------------

    def list_tasks(self, session_id: str) -> list[TaskInfo]:
        return self.get(session_id).tasks.list()

    def task_info(self, session_id: str, task_id: str) -> TaskInfo:
        return self.get(session_id).tasks.info(task_id)

    def task_result(self, session_id: str, task_id: str) -> str:
        """The task's final reply, once it ended ('' before)."""
        session = self.get(session_id)
        info = session.tasks.info(task_id)
        agent = session.tasks.get_agent(task_id)
        if agent is None or not info.done:
            return ""
        content = agent.last_assistant_message().content
        return content if isinstance(content, str) else ""

    def cancel_task(self, session_id: str, task_id: str) -> bool:
        return self.get(session_id).tasks.cancel(task_id)

    async def collect_file(
        self, session_id: str, task_id: str, path: str, dest: str | None = None
    ) -> tuple[str, int]:
        """Copy a file from a task's sandbox into the session's; returns (path, size)."""
        session = self.get(session_id)
        await asyncio.to_thread(session.tasks.collect_file, session.runtime, task_id, path, dest)
        rel = session.runtime.files.relpath(dest or path)
        st = session.runtime.files.lstat(rel)
        return rel, (st.st_size if st is not None else 0)

    # --- workspace -----------------------------------------------------------------------

    def _sync_of(self, session_id: str) -> WorkspaceSync:
        session = self.get(session_id)
        if session.sync is None:
            raise PygentError(
                f"session {session_id} is not bound to a workspace folder",
                hint="create the session with a workspaceFolder",
            )
        return session.sync

    def note_changed(self, paths: Iterable[str]) -> None:
        """The editor saved/created/deleted these host paths: queue them for every session
        bound to a folder that holds them."""
        paths = list(paths)
        for session in self._sessions.values():
            if session.sync is not None and session.sync_mode == COPY:
                mine = [p for p in paths if session.sync.relpath_of(p) is not None]
                if mine:
                    session.sync.mark_dirty(mine)

    async def sync(
        self, session_id: str, *, full: bool = False, overlay: dict[str, bytes] | None = None
    ) -> SyncReport:
        sync = self._sync_of(session_id)
        return await asyncio.to_thread(sync.sync, full=full, overlay=overlay)

    async def changes(self, session_id: str, *, diffs: bool = True) -> list[FileChange]:
        sync = self._sync_of(session_id)
        return await asyncio.to_thread(sync.changes, diffs=diffs)

    async def pending_changes(self, session_id: str) -> list[str]:
        """Paths the agent changed that are not applied yet ([] without a copy or
        copy-on-write folder)."""
        session = self.get(session_id)
        if session.sync is None or session.sync_mode not in (COPY, COW):
            return []
        return [c.path for c in await asyncio.to_thread(session.sync.changes, diffs=False)]

    async def plan_edits(
        self, session_id: str, paths: list[str] | None = None
    ) -> tuple[list[FileEdit], list[tuple[str, str]]]:
        sync = self._sync_of(session_id)
        return await asyncio.to_thread(sync.plan_edits, paths)

    def mark_applied(self, session_id: str, edits: Iterable[FileEdit]) -> None:
        self._sync_of(session_id).mark_applied(edits)

    async def write_changes(
        self, session_id: str, paths: list[str] | None = None
    ) -> tuple[list[str], list[tuple[str, str]]]:
        sync = self._sync_of(session_id)
        report = await asyncio.to_thread(sync.write_to_folder, paths)
        return report.applied, report.failed

    async def discard(self, session_id: str, paths: list[str] | None = None) -> list[str]:
        sync = self._sync_of(session_id)
        return await asyncio.to_thread(sync.discard, paths)

    # --- the timeline: rewind, redo, fork (pygent/timeline.py) ---------------------------

    def _idle(self, session_id: str) -> Session:
        session = self.get(session_id)
        if session.busy:
            raise busy_error()
        return session

    def timeline(self, session_id: str) -> list[TimelineTurn]:
        """The session's turns, oldest first, each with the files it changed."""
        return self.get(session_id).agent.timeline()

    async def rewind_preview(
        self, session_id: str, turn: int | str
    ) -> tuple[list[TimelineFileChange], list[str]]:
        """The files a rewind of ``turn`` would restore, and those it would keep (edited
        by the user since, mount mode)."""
        session = self.get(session_id)
        return await asyncio.to_thread(session.agent.turn_log.preview, turn)

    async def rewind(
        self, session_id: str, turn: int | str, *, files: bool = True, conversation: bool = True
    ) -> RewindResult:
        """Rewind to before ``turn`` (refused while a turn runs)."""
        session = self._idle(session_id)
        session.starting = True  # no prompt may start while files are put back
        try:
            return await asyncio.to_thread(session.agent.rewind, turn, files, conversation)
        finally:
            session.starting = False

    async def redo(self, session_id: str) -> RewindResult:
        """Undo the session's last rewind."""
        session = self._idle(session_id)
        session.starting = True
        try:
            return await asyncio.to_thread(session.agent.redo)
        finally:
            session.starting = False

    async def fork(self, session_id: str, turn: int | str) -> Session:
        """A new session as ``session_id`` was before ``turn``: its own sandbox (a
        copy-on-write session's fork shares the folder below), the conversation up to
        that turn and the files then. A fork of a mount-mode session works in a
        scratch folder, not on the user's folder."""
        parent = self._idle(session_id)
        record = parent.agent.turn_log.find(turn)
        runtime = await asyncio.to_thread(
            fork_runtime, parent.runtime, parent.agent.turn_log, record
        )
        cow = runtime.overlay is not None
        options = SessionOptions(
            workspace_folder=str(parent.folder) if cow and parent.folder else None,
            sync_mode=COW if cow else "none",
            title=f"{parent.title or parent.id} (fork at turn {record.turn})",
            model=parent.agent.model_name,
        )
        session = await asyncio.to_thread(
            self._open_blocking, options, None, parent.agent.policy.mode, runtime=runtime,
            meta={"forked_from": f"{parent.id}:{record.turn}"}, unsaved_ok=True,
        )
        agent = session.agent
        agent.history.extend(copy.deepcopy(parent.agent.history[1 : record.history_len]))
        if agent.history_store is not None:
            agent.history_store.rewrite(agent.history[1:])
        if parent.folder is not None and not cow:
            session.notices.append(
                f"this fork works in its own folder, not in {parent.folder} "
                "(the session it came from writes that folder directly)"
            )
        return session


__all__ = [
    "ApproverFactory",
    "RuntimeUnavailable",
    "Session",
    "SessionBusyError",
    "SessionOptions",
    "SessionService",
    "SessionSummary",
    "ToolState",
    "UnknownSessionError",
    "build_agent",
    "folder_path",
]


def save_approval_mode(agent: Agent) -> None:
    """Keep the approval mode with the saved session, whichever front end changed it
    (``update_settings``, the REPL's ``/confirm-bash``): reopening the session (any
    front end, after a restart) restores it unless the user chooses a mode then."""
    store = agent.history_store
    if store is None:
        return
    try:
        store.set_meta(SAVED_MODE_KEY, agent.policy.mode)
    except (PygentError, OSError) as exc:  # the mode still applies; only saving failed
        log.warning("the approval mode of %s is not saved: %s", store.path, exc)
