"""Delegated tasks: concurrent sub-agents in their own sandboxes, with limits and status events.

A :class:`TaskManager` belongs to one main session. Every task is an asyncio task on
the manager's own loop thread (:class:`~pygent.runtime.loop.LoopThread`), so the
synchronous upstream API (``start_task`` returns at once, ``status`` polls) and async
front ends (``await await_task(...)``) both work, and neither the main agent nor an
editor's event loop ever waits for a sub-agent. Each task gets its own
:class:`~pygent.runtime.Runtime` (its own container in Docker mode) on a fresh
workspace seeded with the files the caller names, a persona (named, or rotated
round-robin), and the same approver as the main agent; it reports its life as
:class:`~pygent.events.TaskStatus` events: queued -> running (with the step count)
-> finished | failed | timeout | cancelled.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import concurrent.futures
import dataclasses
import inspect
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pygent import events as ev
from pygent.agent import Agent, TurnResult
from pygent.budget import Budget, call_usage, carve, price_for
from pygent.errors import PathError, PygentError
from pygent.models import get_custom_model
from pygent.persona import Persona
from pygent.redact import Redactor, redact_secrets
from pygent.runtime import Runtime
from pygent.runtime.loop import LoopThread
from pygent.runtime.workspace import Workspace
from pygent.settings import Settings, load_settings
from pygent.task_info import (
    ACTIVE,
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    TIMEOUT,
    TaskError,
    TaskInfo,
    TaskLimitError,
    UnknownTaskError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Upstream defaults when neither the call nor the settings give a limit: a task
#: without any limit could hold a container forever.
DEFAULT_STEP_TIMEOUT = 300.0
DEFAULT_TASK_TIMEOUT = 1200.0
#: Seeding and collecting copy at most this much, so a stray ``files=["."]`` on a big
#: repository fails clearly instead of filling the disk.
MAX_COPY_FILES = 20_000
MAX_COPY_BYTES = 512 * 1024 * 1024
#: How much of a prompt a TaskStatus event carries (the full prompt is in TaskInfo).
EVENT_PROMPT_CHARS = 500
#: Tools a sub-agent never gets besides ``delegate*`` (which the agent hides itself):
#: nobody answers its questions, and it has no tasks of its own to manage.
SUBAGENT_DISABLED_TOOLS = (
    "ask_user",
    "list_personas",
    "task_status",
    "collect_file",
    "cancel_task",
)


class _SandboxTimeout(Exception):
    """A task's sandbox did not come up within the task's time limit."""


@dataclass
class _Task:
    """The manager's mutable record of a task (guarded by the manager's lock)."""

    id: str
    persona: Persona
    prompt: str
    workspace: Path
    depth: int
    parent_rt: Runtime
    step_timeout: float | None
    task_timeout: float | None
    started: float = field(default_factory=time.time)
    status: str = QUEUED
    steps: int = 0
    ended: float | None = None
    detail: str = ""
    agent: Agent | None = None
    runtime: Runtime | None = None
    aio: asyncio.Task[None] | None = None
    cancel_reason: str = ""
    done: concurrent.futures.Future[TaskInfo] = field(default_factory=concurrent.futures.Future)
    history_base: int = 0
    owns_model: bool = False
    budget: Budget | None = None  # asked for by the caller; carved out of the parent's

    def info(self) -> TaskInfo:
        return TaskInfo(
            self.id,
            self.persona.name,
            self.prompt,
            self.status,
            self.steps,
            self.started,
            self.ended,
            self.detail,
        )


_managers: weakref.WeakSet[TaskManager] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """A forgotten manager must not leave task containers or workspaces behind."""
    for manager in list(_managers):
        try:
            manager.shutdown(timeout=10)
        except Exception:  # at exit nothing can be reported but the log
            log.exception("shutting down a task manager at exit failed")


class TaskManager:
    """Launch sub-agents concurrently and track their progress (upstream API, extended).

    Args:
        agent_factory: upstream hook ``factory(persona) -> Agent`` (or ``factory()``);
            the agent it returns is given the task's own sandbox. By default the
            manager builds the sub-agent itself.
        max_tasks: how many tasks may run at once (default ``PYGENT_MAX_TASKS``, 3).
        personas: personas for sub-agents (default ``settings.task_personas``, else the
            main persona); rotated round-robin when a task names none.
        settings: the settings (default: the attached agent's, else loaded).
        approver: who answers the sub-agents' approval requests (default: the attached
            agent's approver).
        model: the model object for sub-agents (default: the attached agent's model,
            else the default model).
        approval_mode: the sub-agents' approval mode when no agent is attached
            (default ``api``: tools run without asking, as in the Python API).
        session_id: the main session the tasks belong to (default: the attached
            agent's session id); it tags every TaskStatus event.
        runtime_factory: ``factory(workspace, settings) -> Runtime`` for each task's
            sandbox (called in a worker thread); default: a sandbox of the parent's
            kind (Docker with the same image, local, or a fake with the same script).
    """

    def __init__(
        self,
        agent_factory: Callable[..., Agent] | None = None,
        max_tasks: int | None = None,
        personas: list[Persona] | None = None,
        *,
        settings: Settings | None = None,
        approver: Any = None,
        model: Any = None,
        approval_mode: str | None = None,
        session_id: str | None = None,
        runtime_factory: Callable[[Path, Settings], Runtime] | None = None,
    ) -> None:
        self._settings = settings
        self.agent_factory = agent_factory
        self._max_tasks = max_tasks
        self._personas = list(personas) if personas is not None else None
        self._approver = approver
        self._model = model
        self._approval_mode = approval_mode
        self._session_id = session_id
        self._runtime_factory = runtime_factory
        self._parent: Agent | None = None
        self._parent_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        self._rotation = 0
        self._status_listeners: builtins.list[ev.EventListener] = []
        self._agent_listeners: builtins.list[ev.EventListener] = []
        self._loop: LoopThread | None = None
        self._closed = False
        _managers.add(self)

    # --- configuration -------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._parent.settings if self._parent is not None else load_settings()
        return self._settings

    @property
    def max_tasks(self) -> int:
        return self._max_tasks if self._max_tasks is not None else self.settings.max_tasks

    @max_tasks.setter
    def max_tasks(self, value: int) -> None:
        self._max_tasks = value

    @property
    def personas(self) -> builtins.list[Persona]:
        """The personas tasks rotate through (upstream attribute)."""
        if self._personas is not None:
            return self._personas
        return builtins.list(self.settings.task_personas) or [self.settings.main_persona]

    @personas.setter
    def personas(self, value: Iterable[Persona]) -> None:
        self._personas = builtins.list(value)

    @property
    def session_id(self) -> str:
        if self._session_id is None:
            self._session_id = (
                self._parent.session_id if self._parent is not None else secrets.token_hex(6)
            )
        return self._session_id

    def attach(self, agent: Agent) -> None:
        """Make this manager the main agent's: delegation tools in its registry,
        its approver and model for sub-agents, TaskStatus events on its EventHub.

        ``Agent(task_manager=manager)`` calls this. An agent using the shared default
        registry gets its own copy first, so other agents do not see the tools.
        """
        from pygent.tools import DEFAULT_REGISTRY, ToolRegistry
        from pygent.tools.task_tools import register_task_tools

        if agent.depth > 0:
            raise TaskError("a delegated task cannot delegate further")
        self._parent = agent
        agent.task_manager = self
        if agent.tools is DEFAULT_REGISTRY:
            agent.tools = ToolRegistry(DEFAULT_REGISTRY.tools())
        register_task_tools(agent.tools, self)
        agent.refresh_system_message()

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Deliver TaskStatus events to the attached agent's hub on ``loop`` (its turn
        loop), so front-end listeners run on their own thread. The tools call this."""
        self._parent_loop = loop

    # --- starting ------------------------------------------------------------------------

    def start_task(
        self,
        prompt: str,
        parent_rt: Runtime,
        files: builtins.list[str] | str | None = None,
        parent_depth: int = 0,
        step_timeout: float | None = None,
        task_timeout: float | None = None,
        persona: Persona | str | None = None,
        budget: Budget | None = None,
    ) -> str:
        """Start a sub-agent on ``prompt`` and return its task id at once.

        Args:
            prompt: the instruction for the sub-agent.
            parent_rt: the caller's runtime; ``files`` are copied from its workspace, and
                the task's sandbox is of the same kind (Docker or local).
            files: workspace-relative files or folders to seed the task's workspace with.
            parent_depth: the caller's delegation depth; a delegated task (depth >= 1)
                cannot delegate further.
            step_timeout: seconds per step (default ``PYGENT_STEP_TIMEOUT``, else 300).
            task_timeout: seconds for the whole task (default ``PYGENT_TASK_TIMEOUT``,
                else 1200).
            persona: a persona or the name of one of :attr:`personas`; default: the
                next one in round-robin order.
            budget: the task's budget (default: ``[task_budget]``, else a generous one);
                always cut to what the parent session's budget has left.

        Raises:
            TaskError: nested delegation, an unknown persona, a bad file, a closed manager.
            TaskLimitError: ``max_tasks`` tasks are already running.
        """
        if parent_depth >= 1:
            raise TaskError(
                "a delegated task cannot delegate further", hint="do the work yourself in this task"
            )
        if self._closed:
            raise TaskError("this task manager was shut down; start a new session")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TaskError("a task needs a prompt: say what the sub-agent should do")
        self._check_limit()
        chosen = self._resolve_persona(persona) if persona is not None else None
        names = [files] if isinstance(files, str) else builtins.list(files or [])
        workspace = Path(tempfile.mkdtemp(prefix="pygent_task_"))
        try:
            seeded = Workspace(workspace)
            for name in names:
                _copy(parent_rt.files, name, seeded, name, what="seeding the task")
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        step_limit = _limit(step_timeout, self.settings.step_timeout, DEFAULT_STEP_TIMEOUT)
        task_limit = _limit(task_timeout, self.settings.task_timeout, DEFAULT_TASK_TIMEOUT)
        with self._lock:
            try:
                self._check_limit()
            except TaskLimitError:
                shutil.rmtree(workspace, ignore_errors=True)
                raise
            if chosen is None:
                pool = self.personas
                chosen = pool[self._rotation % len(pool)]
                self._rotation += 1
            task = _Task(
                id=secrets.token_hex(4),
                persona=chosen,
                prompt=self._scrub(prompt),
                workspace=workspace,
                depth=parent_depth + 1,
                parent_rt=parent_rt,
                step_timeout=step_limit,
                task_timeout=task_limit,
                budget=budget,
            )
            self._tasks[task.id] = task
            loop = self._ensure_loop()
        # Queued is announced from the loop too, so every listener call for this
        # manager comes from one thread, in order.
        loop.loop.call_soon_threadsafe(self._emit_status, task)
        loop.submit(self._run(task))
        log.info("task %s started (persona %s)", task.id, chosen.name)
        return task.id

    def _check_limit(self) -> None:
        with self._lock:
            active = [t.id for t in self._tasks.values() if t.status in ACTIVE]
        if len(active) >= self.max_tasks:
            raise TaskLimitError(
                f"{len(active)} tasks are already running (ids {', '.join(active)}); "
                "wait for one with task_status or cancel one with cancel_task",
                hint=f"at most {self.max_tasks} delegated tasks run at once (PYGENT_MAX_TASKS)",
            )

    def _resolve_persona(self, persona: Persona | str) -> Persona:
        if isinstance(persona, Persona):
            return persona
        for known in self.personas:
            if known.name == persona:
                return known
        for known in self.personas:
            if known.name.lower() == str(persona).strip().lower():
                return known
        names = ", ".join(p.name for p in self.personas) or "none"
        raise TaskError(
            f"unknown persona {persona!r}; known personas: {names}",
            hint="call list_personas, or define personas with [[task_personas]] in pygent.toml",
        )

    def _scrub(self, prompt: str) -> str:
        """The prompt without secrets: it is written into a sandbox and into events."""
        key = self.settings.api_key
        text = redact_secrets(prompt)
        return Redactor([key])(text) if key else text

    def _ensure_loop(self) -> LoopThread:
        if self._loop is None:
            self._loop = LoopThread(name="pygent-tasks")
        return self._loop

    # --- running (on the manager's loop) ---------------------------------------------------

    async def _run(self, task: _Task) -> None:
        task.aio = asyncio.current_task()
        loop = asyncio.get_running_loop()
        status, detail = FAILED, ""
        try:
            if task.cancel_reason:
                raise asyncio.CancelledError
            await _to_end(loop.run_in_executor(None, self._prepare, task))
            agent = task.agent
            assert agent is not None
            task.history_base = len(agent.history)
            self._set(task, RUNNING)
            result = await agent.arun(
                task.prompt, step_timeout=task.step_timeout, max_time=task.task_timeout
            )
            status, detail = _outcome(result)
        except asyncio.CancelledError:
            status, detail = CANCELLED, task.cancel_reason or "cancelled"
        except _SandboxTimeout:
            status, detail = TIMEOUT, f"the sandbox did not start within {task.task_timeout:g}s"
        except PygentError as exc:
            status, detail = FAILED, exc.user_message()
        except Exception as exc:  # a sub-agent's crash ends its task, never the manager
            log.exception("task %s crashed", task.id)
            status, detail = FAILED, f"{type(exc).__name__}: {exc}"
        try:
            await _to_end(loop.run_in_executor(None, self._release, task))
        except asyncio.CancelledError:
            # A cancel that arrives after the outcome is known changes nothing: the
            # removal has finished (see _to_end) and the outcome stands.
            log.debug("task %s: cancel arrived while its sandbox was being removed", task.id)
        except Exception:  # the task's outcome still has to be reported
            log.exception("removing the sandbox of task %s failed", task.id)
        if task.owns_model and task.agent is not None:
            try:
                await _close_models([task.agent.model])
            except asyncio.CancelledError:
                log.debug("task %s: cancel arrived while its model client was closing", task.id)
        self._finish(task, status, detail)

    def _prepare(self, task: _Task) -> None:
        """Build the task's sandbox and sub-agent (a worker thread: Docker is slow)."""
        settings = dataclasses.replace(
            self.settings, history_file=None, workspace=None, init_files=[], snapshot=None
        )
        if self._runtime_factory is not None:
            runtime = self._runtime_factory(task.workspace, settings)
        else:
            runtime = _sandbox_like(task.parent_rt, task.workspace, settings)
        with self._lock:
            task.runtime = runtime
        try:
            runtime.wait_ready(task.task_timeout)
        except concurrent.futures.TimeoutError:
            raise _SandboxTimeout from None
        agent = self._make_agent(task, runtime, settings)
        parent_mcp = getattr(self._parent, "mcp", None)
        if parent_mcp is not None:  # the task's sandbox starts its own MCP servers (docs/mcp.md)
            from pygent.mcp.session import open_mcp_for_task

            open_mcp_for_task(parent_mcp, agent, runtime, task.persona)  # its mcp picks servers
        with self._lock:
            task.agent = agent
        agent.events.subscribe(lambda event: self._on_agent_event(task, event))

    def _make_agent(self, task: _Task, runtime: Runtime, settings: Settings) -> Agent:
        parent = self._parent
        approver = self._approver
        if approver is None and parent is not None:
            approver = parent.gate.approver
        if approver is not None and self._parent_loop is not None:
            approver = _LoopApprover(approver, self._parent_loop)
        policy = None
        if parent is not None and self._approval_mode is None:
            # The session's policy, rules list shared (an "always allow" given for a
            # task holds for the session), judged for the task's own sandbox.
            policy = dataclasses.replace(
                parent.policy, runtime_kind=runtime.kind, workspace_root=str(runtime.workspace)
            )
        if self.agent_factory is None:
            # Imported here: the service imports this module (a session owns its tasks).
            from pygent.service import build_agent

            agent = build_agent(
                settings,
                runtime=runtime,
                model=self._model
                if self._model is not None
                else (parent.model if parent else None),
                model_name=parent.model_name if parent is not None else None,
                persona=task.persona,
                disabled_tools=SUBAGENT_DISABLED_TOOLS,
                tools=parent.tools if parent is not None else None,
                approver=approver,
                policy=policy,
                approval_mode=self._approval_mode,
                session_id=self.session_id,
                task_id=task.id,
                depth=task.depth,
            )
        else:
            agent = self._adopt(_call_factory(self.agent_factory, task.persona), task, runtime)
            if approver is not None and agent.gate.approver is None:
                agent.gate.approver = approver
        if parent is not None:
            agent.gate.timeout = parent.gate.timeout
            # The task's budget is carved out of what the session has left: a task can
            # never spend more than its parent (and what it spends rolls up, below).
            wanted = task.budget or Budget.for_task(settings)
            agent.budget = carve(parent.budget, parent.usage.total, parent.budget_clock.elapsed,
                                 wanted)
        elif task.budget is not None:
            agent.budget = task.budget
        # A model the sub-agent made for itself holds an HTTP client on this loop:
        # close it when the task ends. Shared models are closed at shutdown.
        shared = (self._model, parent.model if parent is not None else None, get_custom_model())
        task.owns_model = self.agent_factory is None and all(agent.model is not m for m in shared)
        return agent

    def _adopt(self, agent: Agent, task: _Task, runtime: Runtime) -> Agent:
        """Fit an upstream factory's agent to its task: the task's sandbox, persona, ids."""
        old = agent.runtime
        if old is not runtime:
            agent.runtime = runtime
            old.cleanup()
        agent.persona = task.persona
        agent.task_id = task.id
        agent.depth = task.depth
        agent.session_id = self.session_id
        agent.disabled_tools |= set(SUBAGENT_DISABLED_TOOLS)
        agent.refresh_system_message()
        return agent

    def _release(self, task: _Task) -> None:
        """Stop the task's sandbox (its container goes); the workspace stays for collect_file."""
        with self._lock:
            runtime, agent = task.runtime, task.agent
        if agent is not None:
            from pygent.mcp.session import close_mcp_of

            close_mcp_of(agent)  # before the sandbox goes: no server process is left
            agent.close()
        if runtime is not None:
            runtime.cleanup()

    def _on_agent_event(self, task: _Task, event: ev.Event) -> None:
        agent = task.agent
        parent = self._parent
        if isinstance(event, ev.Usage) and parent is not None:
            # Rolled up into the session's usage (and so into its budget checks).
            model = agent.model_name if agent is not None else parent.model_name
            parent.usage.record_task(task.id, call_usage(
                event.prompt_tokens, event.completion_tokens, event.cached_tokens,
                event.estimated, price_for(parent.settings.prices, model)))
        if agent is not None and isinstance(
            event, (ev.MessageDone, ev.ToolCallProposed, ev.TurnEnded)
        ):
            steps = sum(
                1 for m in agent.history[task.history_base :] if m.get("role") == "assistant"
            )
            if steps != task.steps:
                with self._lock:
                    task.steps = steps
                if not isinstance(event, ev.TurnEnded):
                    self._emit_status(task)
        for listener in builtins.list(self._agent_listeners):
            _deliver(listener, event)

    def _set(self, task: _Task, status: str, detail: str = "") -> None:
        with self._lock:
            task.status = status
            task.detail = detail
        self._emit_status(task)

    def _finish(self, task: _Task, status: str, detail: str) -> None:
        with self._lock:
            task.status = status
            task.detail = detail
            task.ended = time.time()
            info = task.info()
        log.info("task %s %s%s", task.id, status, f": {detail}" if detail else "")
        self._emit_status(task)
        try:
            task.done.set_result(info)
        except concurrent.futures.InvalidStateError:
            # shutdown() gave up on this task and reported it already.
            log.debug("task %s ended after shutdown had reported it", task.id)

    def _emit_status(self, task: _Task) -> None:
        with self._lock:
            event = ev.TaskStatus(
                session_id=self.session_id,
                task_id=task.id,
                status=task.status,
                persona=task.persona.name,
                prompt=task.prompt[:EVENT_PROMPT_CHARS],
                steps=task.steps,
                detail=task.detail,
            )
            listeners = builtins.list(self._status_listeners)
            parent, parent_loop = self._parent, self._parent_loop
        for listener in listeners:
            _deliver(listener, event)
        if parent is not None:
            self._forward(parent, parent_loop, event)

    @staticmethod
    def _forward(parent: Agent, loop: asyncio.AbstractEventLoop | None, event: ev.Event) -> None:
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(parent.events.emit, event)
            except RuntimeError:  # the loop closed in between: deliver it from here
                log.debug("the main session's loop closed; delivering task events directly")
            else:
                return
        parent.events.emit(event)

    # --- observing -----------------------------------------------------------------------

    def subscribe(
        self, listener: ev.EventListener, *, agent_events: bool = False
    ) -> Callable[[], None]:
        """Call ``listener`` with every :class:`~pygent.events.TaskStatus` event (and,
        with ``agent_events=True``, every event of the sub-agents, tagged with their
        ``task_id``). Listeners run on the manager's thread; returns an unsubscribe."""
        target = self._agent_listeners if agent_events else self._status_listeners
        with self._lock:
            target.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in target:
                    target.remove(listener)

        return unsubscribe

    def _get(self, task_id: str) -> _Task:
        with self._lock:
            task = self._tasks.get(str(task_id).strip())
            known = ", ".join(self._tasks) or "none"
        if task is None:
            raise UnknownTaskError(f"no task with id {task_id!r} (known tasks: {known})")
        return task

    def info(self, task_id: str) -> TaskInfo:
        """A snapshot of one task; :class:`UnknownTaskError` for an unknown id."""
        task = self._get(task_id)
        with self._lock:
            return task.info()

    def status(self, task_id: str) -> str:
        """The upstream status string: ``running`` (also while queued), ``finished``,
        ``failed: <reason>``, ``timeout`` or ``cancelled``."""
        return self.info(task_id).status_text()

    def list_tasks(self) -> dict[str, dict[str, str]]:
        """Upstream form: ``task_id -> {"persona": name, "status": status}``."""
        return {t.id: {"persona": t.persona, "status": t.status_text()} for t in self.list()}

    def get_agent(self, task_id: str) -> Agent | None:
        """The task's sub-agent (None until its sandbox is up)."""
        return self._get(task_id).agent

    def wait(self, task_id: str, timeout: float | None = None) -> TaskInfo:
        """Block until the task ends; raises ``TimeoutError`` after ``timeout`` seconds."""
        task = self._get(task_id)
        if self._loop is not None and self._loop.in_loop():
            raise TaskError(
                "wait() from the task manager's own thread would deadlock; use await_task()"
            )
        return task.done.result(timeout)

    async def await_task(self, task_id: str, timeout: float | None = None) -> TaskInfo:
        """Wait for the task to end from any event loop; ``TimeoutError`` after ``timeout``.

        Cancelling the caller does not cancel the task (use :meth:`cancel`).
        """
        task = self._get(task_id)
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(task.done)), timeout)

    # --- files ---------------------------------------------------------------------------

    def collect_file(self, rt: Runtime, task_id: str, path: str, dest: str | None = None) -> str:
        """Copy a file or folder from the task's workspace into ``rt``'s workspace.

        Works while the task runs and after it ended (until :meth:`shutdown`).
        Returns ``"Retrieved <path>"``; raises :class:`TaskError` or
        :class:`~pygent.errors.PathError` with the reason otherwise.
        """
        task = self._get(task_id)
        if not task.workspace.is_dir():
            raise TaskError(f"the workspace of task {task.id} was already removed")
        written = _copy(
            Workspace(task.workspace),
            path,
            rt.files,
            dest if dest else path,
            what=f"collecting from task {task.id}",
        )
        return f"Retrieved {written}"

    # --- stopping ------------------------------------------------------------------------

    def cancel(self, task_id: str, reason: str = "cancelled") -> bool:
        """Cancel a queued or running task (its command is killed, its container
        removed). Returns False when the task had already ended."""
        task = self._get(task_id)
        with self._lock:
            if task.status not in ACTIVE or task.cancel_reason:
                return task.status in ACTIVE
            task.cancel_reason = reason
        if self._loop is not None:
            self._loop.loop.call_soon_threadsafe(_cancel_in_loop, task)
        return True

    def discard(self, task_id: str) -> None:
        """Forget an ended task and delete its workspace (collect its files first)."""
        task = self._get(task_id)
        with self._lock:
            if task.status in ACTIVE:
                raise TaskError(f"task {task.id} is still {task.status}; cancel it first")
            del self._tasks[task.id]
        shutil.rmtree(task.workspace, ignore_errors=True)

    def shutdown(self, timeout: float | None = 60) -> None:
        """End the session's tasks: cancel the active ones, remove every task sandbox
        and workspace, stop the manager's thread. Safe to call twice."""
        if self._loop is not None and self._loop.in_loop():
            raise TaskError(
                "shutdown() from the task manager's own thread would deadlock; "
                "call it from another thread or use ashutdown()"
            )
        with self._lock:
            self._closed = True
            tasks = builtins.list(self._tasks.values())
        for task in tasks:
            if task.status in ACTIVE:
                self.cancel(task.id, reason="the session ended")
        deadline = None if timeout is None else time.monotonic() + timeout
        stragglers = 0
        for task in tasks:
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            try:
                task.done.result(left)
            except concurrent.futures.TimeoutError:
                log.warning(
                    "task %s did not stop within %ss; removing its sandbox anyway", task.id, timeout
                )
                stragglers += 1
                self._finish(task, CANCELLED, "the session ended (the task did not stop in time)")
        models = {id(t.agent.model): t.agent.model for t in tasks if t.agent is not None}
        if models and self._loop is not None:
            try:
                self._loop.call(_close_models(builtins.list(models.values())), timeout=10)
            except concurrent.futures.TimeoutError:
                log.warning("closing the sub-agents' model clients timed out")
        for task in tasks:
            runtime = task.runtime
            if runtime is not None:
                runtime.cleanup()  # idempotent: a stuck task's container goes too
            shutil.rmtree(task.workspace, ignore_errors=True)
        # With stragglers (say, a sandbox still being created) the loop keeps turning
        # on its daemon thread, so they can still remove what they were making.
        if self._loop is not None and not stragglers:
            self._loop.stop()
            self._loop = None
        _managers.discard(self)

    async def ashutdown(self, timeout: float | None = 60) -> None:
        """:meth:`shutdown` for callers on an event loop (runs in a worker thread)."""
        await asyncio.to_thread(self.shutdown, timeout)

    def __enter__(self) -> TaskManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def list(self) -> builtins.list[TaskInfo]:
        """Snapshots of every task this manager started, oldest first."""
        with self._lock:
            return [t.info() for t in self._tasks.values()]


# --- helpers ---------------------------------------------------------------------------


def _cancel_in_loop(task: _Task) -> None:
    # Runs on the manager's loop: either _run has set task.aio (cancel it) or it has
    # not started yet and will see task.cancel_reason when it does.
    if task.aio is not None and not task.aio.done():
        task.aio.cancel()


async def _to_end(fut: asyncio.Future[T]) -> T:
    """Await a worker-thread future to its end even when cancelled meanwhile.

    A sandbox being created or removed in a thread cannot be interrupted; leaving it
    would leak a container. The cancellation is re-raised once the work is done.
    """
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.done():
                raise
            cancelled = True
            continue
        except BaseException:
            if cancelled:
                raise asyncio.CancelledError from None
            raise
        break
    if cancelled:
        raise asyncio.CancelledError
    return result


async def _close_models(models: builtins.list[Any]) -> None:
    """Close the HTTP clients the models opened on the manager's loop, before it stops."""
    for model in models:
        closer = getattr(model, "aclose", None)
        if not callable(closer):
            continue
        try:
            await closer()
        except Exception:  # a model that fails to close must not stop the shutdown
            log.warning("closing the model client of %r failed", model, exc_info=True)


def _outcome(result: TurnResult) -> tuple[str, str]:
    """Map how the sub-agent's turn ended to a task status and detail."""
    reason = result.stop_reason
    if reason in (ev.StopReason.END_TURN, ev.StopReason.STOP_TOOL):
        return FINISHED, result.error
    if reason in (ev.StopReason.MAX_TIME, ev.StopReason.STEP_TIMEOUT):
        return TIMEOUT, result.error
    if reason == ev.StopReason.CANCELLED:
        return CANCELLED, "cancelled"
    if reason == ev.StopReason.ASK_USER:
        return FAILED, f"the task asked a question nobody can answer: {result.question}"
    return FAILED, result.error or f"the sub-agent stopped ({reason.value})"


def _limit(explicit: float | None, configured: float | None, default: float) -> float | None:
    value = explicit if explicit is not None else configured if configured is not None else default
    if value is not None and value <= 0:
        raise TaskError(f"a time limit must be a number of seconds > 0, got {value}")
    return value


def _sandbox_like(parent: Runtime, workspace: Path, settings: Settings) -> Runtime:
    """A new sandbox of the parent's kind on ``workspace``: Docker (same image) for
    Docker, local for local, and a fake with the parent's script for a fake, so a
    test's sub-agents never run real commands."""
    backend = getattr(parent, "backend", None)
    kind = getattr(backend, "kind", "local")
    if kind == "fake":
        from pygent.runtime.fake import FakeBackend

        fake = FakeBackend(
            workspace, getattr(backend, "script", None), delay=getattr(backend, "delay", 0.0)
        )
        return Runtime(workspace=workspace, settings=settings, backend=fake)
    image = getattr(getattr(backend, "options", None), "image", None)
    return Runtime(
        image=image if isinstance(image, str) else None,
        use_docker=kind == "docker",
        workspace=workspace,
        settings=settings,
    )


def _call_factory(factory: Callable[..., Agent], persona: Persona) -> Agent:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and some callables have no signature
        return factory(persona)
    takes_arg = any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        for p in params.values()
    )
    return factory(persona) if takes_arg else factory()


class _LoopApprover:
    """Asks the main session's approver on the main session's loop.

    Front ends' approvers wait on futures of their own loop (an LSP request, a REPL
    prompt); sub-agents run on the manager's loop, so the question crosses over.
    Cancelling the sub-agent cancels the question.
    """

    def __init__(self, inner: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.loop = loop

    async def request_approval(self, request: Any) -> Any:
        if asyncio.get_running_loop() is self.loop or not self.loop.is_running():
            # The main session's loop is gone (its turn ended with asyncio.run):
            # ask from here rather than wait on a loop that never turns again.
            return await self.inner.request_approval(request)
        future = asyncio.run_coroutine_threadsafe(self.inner.request_approval(request), self.loop)
        return await asyncio.wrap_future(future)


def _deliver(listener: ev.EventListener, event: ev.Event) -> None:
    try:
        listener(event)
    except Exception:  # a broken front end must not break the tasks
        log.exception("task event listener failed")


def _copy(src: Workspace, src_path: str, dst: Workspace, dst_path: str, *, what: str) -> str:
    """Copy a file or folder between two workspaces, both sides contained.

    Links are not followed out of the source workspace; special files are skipped.
    Returns the destination's workspace-relative path.
    """
    try:
        rel = src.relpath(src_path)
        target = dst.relpath(dst_path)
    except PathError as exc:
        raise TaskError(f"{what}: {exc}") from None
    try:
        st = src.lstat(rel) if rel else os.lstat(src.root)
    except FileNotFoundError:  # Workspace.lstat raises this for a missing final name
        st = None
    if st is None:
        raise TaskError(f"{what}: {src_path!r} does not exist")
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(src.host_path(rel))
        except (PathError, OSError) as exc:
            raise TaskError(
                f"{what}: {src_path!r} is a link that cannot be followed: {exc}"
            ) from None
    if not stat.S_ISDIR(st.st_mode):
        if st.st_size > MAX_COPY_BYTES:
            raise TaskError(f"{what}: {src_path!r} is larger than {MAX_COPY_BYTES >> 20} MiB")
        return dst.write(target, src.read_bytes(rel), mode=stat.S_IMODE(st.st_mode))
    base = src.host_path(rel) if rel else src.root
    files, total = 0, 0
    for dirpath, dirs, names in os.walk(base, followlinks=False):
        sub = Path(dirpath).relative_to(base).as_posix()
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            item_rel = name if sub == "." else f"{sub}/{name}"
            item = os.path.join(dirpath, name)
            item_st = os.lstat(item)
            if not stat.S_ISREG(item_st.st_mode):
                continue
            files += 1
            total += item_st.st_size
            if files > MAX_COPY_FILES or total > MAX_COPY_BYTES:
                raise TaskError(
                    f"{what}: {src_path!r} has more than {MAX_COPY_FILES} files or "
                    f"{MAX_COPY_BYTES >> 20} MiB; name the files that are needed"
                )
            source_rel = f"{rel}/{item_rel}" if rel else item_rel
            dest_rel = f"{target}/{item_rel}" if target else item_rel
            dst.write(dest_rel, src.read_bytes(source_rel), mode=stat.S_IMODE(item_st.st_mode))
    return target or "."


__all__ = [
    "ACTIVE",
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "TIMEOUT",
    "TaskError",
    "TaskInfo",
    "TaskLimitError",
    "TaskManager",
    "UnknownTaskError",
]
