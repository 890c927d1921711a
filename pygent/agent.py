"""The agent: the turn loop at the heart of Pygent, async, cancellable, event-emitting.

A turn is: model call -> tool calls -> model call ... until the model answers without
tools, calls ``stop`` or ``ask_user``, a limit hits, or the turn is cancelled.
The loop never prints and never reads stdin: it emits :mod:`pygent.events` and asks
an :class:`~pygent.approval.Approver` when the policy says so. ``step()`` and
``run_until_stop()`` are the synchronous wrappers the upstream API promises.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pygent import compaction as cx
from pygent import events as ev
from pygent.approval import ApprovalGate, Approver
from pygent.budget import Budget, BudgetClock, call_usage, exceeded, price_for
from pygent.checkpoints import Checkpoints
from pygent.context_window import (
    ContextMeter,
    ContextWindow,
    first_guess,
    message_tokens,
    resolve_window,
)
from pygent.errors import (
    ContextTooLongError,
    ModelError,
    PygentError,
    SessionBusyError,
    SessionError,
)
from pygent.history import HistoryFile, repair_tool_calls
from pygent.models import Model, ModelReply, complete, get_custom_model
from pygent.openai_compat import Message, ToolCall, ToolCallFunction
from pygent.persona import Persona
from pygent.policy import Policy
from pygent.prompt_images import user_message, without_images
from pygent.redact import Redactor, secrets_from_env
from pygent.runtime import Runtime
from pygent.runtime.loop import LoopThread
from pygent.settings import Settings, load_settings
from pygent.timeline import RewindResult, Timeline, TimelineTurn, busy_error, fork_runtime
from pygent.tools import DEFAULT_REGISTRY, ToolContext, ToolRegistry, ToolResult
from pygent.usage import SessionUsage

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The same failing call this many times in a row ends the turn (the model is stuck).
MAX_REPEATED_FAILURES = 3
#: This many malformed tool calls in a row end the turn.
MAX_MALFORMED = 3
#: Tool calls run from one reply; more are dropped and the model is told (C13).
MAX_TOOL_CALLS = 64
#: Longest arguments string of one tool call; longer ones are not run nor kept (C13).
MAX_ARGUMENT_CHARS = 1024 * 1024
#: Arguments key that carries Pygent's refusal of a call it rewrote (see _screen_calls).
REFUSED_KEY = "_pygent_refused"

SYSTEM_TEMPLATE = """You are {name}, {description}
Every command you run executes in a sandbox ({where}) whose working directory is the \
user's workspace; you cannot see the user's screen. Work step by step: inspect, act, \
verify. Prefer edit_file for small changes to existing files.
When the task is complete, call `stop`. If you need information only the user has, \
call `ask_user`.

Available tools:
{tools}
"""


def _first_line(text: str, limit: int = 200) -> str:
    """The first line of an error message, capped: enough to say why a reply was cut."""
    line = text.strip().splitlines()[0] if text.strip() else "the model call failed"
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class TurnResult:
    """How a turn ended."""

    stop_reason: ev.StopReason
    text: str = ""
    error: str = ""
    steps: int = 0
    question: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompactResult:
    """What a compaction did: ``ok`` with the summary, or the ``error`` that stopped it."""

    ok: bool
    summary: str = ""
    replaced: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    error: str = ""


@dataclass
class _TurnState:
    steps: int = 0
    last_text: str = ""
    failures: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    started: float = field(default_factory=time.monotonic)


class Agent:
    """An assistant with a conversation, a sandbox, tools and a model.

    Args:
        runtime: the sandbox (default: a new :class:`Runtime` from the settings).
        model: a model object (``chat(messages, model, tools)``; default: the custom
            model set with ``set_custom_model`` or the OpenAI-compatible model).
        model_name: the model name sent to the API (default ``PYGENT_MODEL``).
        persona: who the agent is (default from ``PYGENT_PERSONA_NAME``/``PYGENT_PERSONA``).
        history_file: where to append the conversation (default ``PYGENT_HISTORY_FILE``);
            an existing file is loaded, so the conversation resumes.
        disabled_tools: tool names this agent may not use.
        settings: the settings object (default: loaded from environment and files).
        tools: a tool registry (default: the shared default registry).
        approver: who answers approval requests (default: nobody, which means deny).
        policy: the approval policy (default: for ``approval_mode`` and the runtime).
        approval_mode: ``api`` (default here: run tools without asking), ``auto``,
            ``confirm``, ``never`` or ``read-only``.
        checkpoints: workspace checkpoints taken before a turn's first tool call that
            may change files and as that turn ends, so a turn can be undone
            (:meth:`rewind`, :meth:`redo`, :meth:`fork`; see docs/rewind.md).
            Default: on for a saved session (a history file) whose workspace is not a
            temporary folder, stored under Pygent's data directory; False turns them off.
    """

    def __init__(
        self,
        runtime: Runtime | None = None,
        model: Model | Any = None,
        model_name: str | None = None,
        persona: Persona | None = None,
        history_file: str | Path | None = None,
        disabled_tools: list[str] | tuple[str, ...] | None = None,
        *,
        settings: Settings | None = None,
        tools: ToolRegistry | None = None,
        approver: Approver | None = None,
        policy: Policy | None = None,
        approval_mode: str | None = None,
        system_msg: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        depth: int = 0,
        task_manager: Any = None,
        checkpoints: Checkpoints | bool | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.runtime = runtime if runtime is not None else Runtime(settings=self.settings)
        self.model = model if model is not None else (get_custom_model() or self._default_model())
        self.model_name = model_name or self.settings.model
        self.persona = persona or self.settings.main_persona
        self.tools = tools if tools is not None else DEFAULT_REGISTRY
        self.disabled_tools: set[str] = set(disabled_tools or ()) | set(self.settings.disabled_tools)
        self.session_id = session_id or secrets.token_hex(6)
        self.task_id = task_id
        self.depth = depth
        self.task_manager = task_manager
        #: The problems the user's editor reports (pygent.diagnostics.editor.EditorProblems),
        #: set by an editor front end; the ``diagnostics`` tool reads it.
        self.editor_problems: Any = None
        self.events = ev.EventHub()
        #: The session's MCP servers (pygent.mcp.manager.McpManager), set by
        #: pygent.mcp.session.open_mcp; a turn's first request waits for those starting.
        self.mcp: Any = None
        mode = approval_mode or "api"
        self.policy = policy or Policy.for_mode(mode, self.runtime.kind)
        if self.policy.workspace_root is None:  # lets it see absolute host paths as ours
            self.policy.workspace_root = str(self.runtime.workspace)
        for banned in self.settings.banned_commands:
            self.policy.ban(banned)
        if policy is None and self.runtime.kind in ("docker", "bwrap"):
            self.policy.network = bool(self.runtime.settings.network)
        self.gate = ApprovalGate(self.policy, approver)
        # Pygent's own secrets never reach the model, even when a command prints them.
        self._redact_output = Redactor([*secrets_from_env(), self.settings.api_key or ""],
                                       patterns=False)
        self.usage = SessionUsage()  # reads as {"prompt_tokens", "completion_tokens"}
        self.usage_estimated = False  # True once any call's counts were estimated
        # Long sessions (pygent.budget, pygent.compaction): limits checked before every
        # model call; a delegated task's budget is carved out of its parent's (tasks.py).
        self.budget = Budget.from_settings(self.settings) if depth == 0 \
            else Budget.for_task(self.settings)
        self.budget_clock = BudgetClock()
        self.context_window: ContextWindow | None = None  # resolved at the first model call
        self.compacted: cx.Compacted | None = None
        self._meter = ContextMeter()
        self._request_len = 0
        self._compact_after = 0  # a failed automatic compaction is not retried before this
        self._told_price = False
        self._marker_write: asyncio.Future[None] | None = None
        self._custom_system = system_msg
        self._tools_version = -1
        self.history: list[dict[str, Any]] = [{"role": "system", "content": ""}]
        self.refresh_system_message()
        self._sync_loop: LoopThread | None = None
        self._turn_task: asyncio.Task[Any] | None = None
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        self._cancel_requested = False
        path = history_file if history_file is not None else self.settings.history_file
        self.history_store: HistoryFile | None = None
        if path is not None:
            self.history_store = HistoryFile(Path(path))
            restored = self.history_store.load()
            for warning in self.history_store.warnings:
                log.warning("%s", warning)
            self.history.extend(repair_tool_calls(restored))
            # A compaction marker: requests resume from its summary (history keeps all).
            self.compacted = cx.from_marker(self.history_store.meta.get("compaction"),
                                            self.history[1:])
        self.checkpoints: Checkpoints | None = None
        if isinstance(checkpoints, Checkpoints):
            self.checkpoints = checkpoints
        elif checkpoints or (checkpoints is None and self.history_store is not None
                             and depth == 0 and not self.runtime.temporary_workspace):
            self.checkpoints = Checkpoints.for_workspace(self.settings.sessions_dir.parent,
                                                         self.runtime.files)
        self.last_checkpoint: str | None = None
        self._skip_told = False
        self._checkpoint_note = ""
        self._checkpoint_due = False
        self._turn_prompt = ""
        # The turns and their checkpoints: rewind, redo and fork (pygent/timeline.py).
        self.turn_log = Timeline(
            self.session_id, self.checkpoints,
            Path(f"{self.history_store.path}.timeline.jsonl") if self.history_store else None,
            guard_user_edits=self.checkpoints is not None and type(self.checkpoints) is Checkpoints,
        )
        self.turn_log.trim(len(self.history))
        if task_manager is not None and hasattr(task_manager, "attach"):
            # The manager adds its delegation tools and adopts this agent's approver.
            task_manager.attach(self)

    def _default_model(self) -> Any:
        from pygent.openai_model import OpenAIModel

        return OpenAIModel(api_key=self.settings.api_key, base_url=self.settings.base_url,
                           timeout=self.settings.request_timeout, on_retry=self._on_model_retry,
                           options=self.settings.request_options,
                           on_notice=self._on_model_notice)

    def _on_model_retry(self, attempt: int, delay: float, reason: str) -> None:
        self._emit(ev.Notice, level="warning",
                   text=f"model API: {reason}; retrying in {delay:.0f}s (attempt {attempt + 1})")

    def _on_model_notice(self, text: str) -> None:
        self._emit(ev.Notice, level="info", text=text)

    # --- system prompt -----------------------------------------------------------------

    @property
    def system_msg(self) -> str:
        return str(self.history[0]["content"])

    def refresh_system_message(self) -> None:
        """Rebuild the system prompt from the persona and the current tools."""
        self._tools_version = self.tools.version
        if self._custom_system is not None:
            text = self._custom_system
        else:
            listing = "\n".join(f"- {t.name}: {t.description}" for t in self._active_tools())
            text = SYSTEM_TEMPLATE.format(
                name=self.persona.name, description=self.persona.description,
                where=self.runtime.describe(), tools=listing or "(none)")
        self.history[0] = {"role": "system", "content": text}

    def _active_tools(self) -> list[Any]:
        tools = self.tools.tools(self.disabled_tools)
        if self.depth > 0:  # a sub-agent cannot delegate further
            tools = [t for t in tools if not t.name.startswith("delegate")]
        return tools

    # --- bookkeeping -------------------------------------------------------------------

    def _emit(self, event_cls: type[ev.Event], **fields: Any) -> None:
        self.events.emit(event_cls(session_id=self.session_id, task_id=self.task_id, **fields))

    def _append(self, message: dict[str, Any]) -> None:
        self.history.append(message)
        if self.history_store is not None:
            try:
                # Written and synced by the file's own thread: the loop never waits for
                # the disk; the turn is acknowledged once it is saved (_history_saved).
                self.history_store.append_soon(message)
            except SessionError as exc:
                self._emit(ev.Notice, level="error", text=exc.user_message())

    async def _history_saved(self) -> None:
        """Wait until every message so far is on disk: a turn returns only then."""
        if self.history_store is None:
            return
        try:
            await asyncio.shield(asyncio.wrap_future(self.history_store.synced()))
            marker, self._marker_write = self._marker_write, None
            if marker is not None:  # a compaction marker written beside the turn's steps
                await asyncio.shield(marker)
        except SessionError as exc:
            # In-memory history is kept; the user is told the file lags behind.
            self._emit(ev.Notice, level="error", text=exc.user_message())

    def reset(self) -> None:
        """Start a fresh conversation (same runtime, same tools)."""
        self.history = self.history[:1]
        self.compacted = None
        self.refresh_system_message()
        if self.history_store is not None:
            self.history_store.rewrite([])
        self.turn_log.trim(1)

    # --- the turn ------------------------------------------------------------------------

    async def arun(
        self,
        prompt: str | None,
        *,
        max_steps: int | None = None,
        step_timeout: float | None = None,
        max_time: float | None = None,
        images: Sequence[str] = (),
    ) -> TurnResult:
        """Run one user turn to its end and return why it ended.

        ``images`` (data URLs, :func:`pygent.prompt_images.data_url`) go with the prompt
        as OpenAI ``image_url`` content parts.

        Cancelling (``cancel()`` or cancelling the awaiting task) stops the model stream
        and kills the running command; the turn then ends with ``cancelled``.
        """
        if self._turn_task is not None and not self._turn_task.done():
            raise PygentError("a turn is already running in this session; cancel it first")
        self._cancel_requested = False
        self._turn_loop = asyncio.get_running_loop()
        # The settings' limits apply to every caller (API, REPL, service) unless given.
        if step_timeout is None:
            step_timeout = self.settings.step_timeout
        inner = asyncio.ensure_future(self._turn(prompt, max_steps or self.settings.max_steps,
                                                 step_timeout, max_time, tuple(images)))
        self._turn_task = inner
        try:
            result = await asyncio.shield(inner)
            await self._history_saved()
            await self._checkpoint_end()
            return result
        except asyncio.CancelledError:
            if not inner.done():
                inner.cancel()
                try:
                    await inner
                except BaseException:  # cleanup result irrelevant: we re-raise
                    pass
            if self._cancel_requested:
                await self._history_saved()
                await self._checkpoint_end()
                return inner.result() if not inner.cancelled() else TurnResult(ev.StopReason.CANCELLED)
            raise
        finally:
            self._turn_task = None

    def cancel(self) -> bool:
        """Cancel the running turn (thread-safe). Returns False when none runs."""
        task, loop = self._turn_task, self._turn_loop
        if task is None or task.done() or loop is None:
            return False
        self._cancel_requested = True
        loop.call_soon_threadsafe(task.cancel)
        return True

    @property
    def busy(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    async def _turn(self, prompt: str | None, max_steps: int, step_timeout: float | None,
                    max_time: float | None, images: tuple[str, ...] = ()) -> TurnResult:
        state = _TurnState()
        self.budget_clock.start()
        self._emit(ev.TurnStarted, prompt=prompt or "", images=list(images))
        # The workspace checkpoint is taken before the turn's first tool call that may
        # change something: a turn that only talks (or reads) costs no walk of the folder.
        self.last_checkpoint = None
        self._checkpoint_due = self.checkpoints is not None and self.depth == 0
        self._turn_prompt = prompt or ""
        if self.depth == 0:
            self.turn_log.begin(prompt or "", len(self.history), None)
        asked_at = len(self.history)
        if prompt is not None:
            self._append(user_message(prompt, images))
        try:
            while True:
                if state.steps >= max_steps:
                    return self._end(ev.StopReason.MAX_STEPS, state,
                                     error=f"stopped after {max_steps} steps (max_steps)")
                remaining = None
                if max_time is not None:
                    remaining = max_time - (time.monotonic() - state.started)
                    if remaining <= 0:
                        return self._end(ev.StopReason.MAX_TIME, state,
                                         error=f"stopped: the turn took longer than {max_time:g}s")
                limit = min(x for x in (step_timeout, remaining) if x is not None) \
                    if (step_timeout or remaining) else None
                try:
                    outcome = await asyncio.wait_for(self._one_step(state), limit)
                except asyncio.TimeoutError:
                    self._close_dangling("[interrupted: the step time limit was reached]")
                    reason = ev.StopReason.MAX_TIME if remaining is not None and limit == remaining \
                        else ev.StopReason.STEP_TIMEOUT
                    return self._end(reason, state, error=f"stopped: a step took longer than {limit:g}s")
                if outcome is not None:
                    return outcome
        except asyncio.CancelledError:
            self._close_dangling("[cancelled by the user]")
            self._end(ev.StopReason.CANCELLED, state)
            raise
        except ModelError as exc:
            error = exc.user_message()
            if images and type(exc) is ModelError and self._drop_images(asked_at):
                error += (f" (the prompt carried {len(images)} image(s): the model server may not "
                          "take images; they were removed from the conversation; use a model that "
                          "takes images, or prompt without them)")
            return self._end(ev.StopReason.ERROR, state, error=error)
        except PygentError as exc:
            return self._end(ev.StopReason.ERROR, state, error=exc.user_message())

    def _drop_images(self, index: int) -> bool:
        """Replace the images of the user message at ``index`` by a note (saved too): a
        server that refused them would refuse every later turn of the session."""
        if index >= len(self.history):
            return False
        replaced = without_images(self.history[index])
        if replaced is None:
            return False
        history = list(self.history)
        history[index] = replaced
        self._replace_history(history)
        return True

    async def _checkpoint(self, label: str) -> None:
        """Save the workspace before the turn changes it (G10); never fails the turn."""
        assert self.checkpoints is not None
        self.last_checkpoint = None
        try:
            ident = await asyncio.to_thread(self.checkpoints.checkpoint, label[:200])
        except (OSError, PygentError) as exc:
            # A full disk (ENOSPC) lands here: the turn goes on, it cannot be undone.
            self._checkpoint_note = f"workspace checkpoint failed: {exc}"
            self._emit(ev.Notice, level="warning",
                       text=f"{self._checkpoint_note}; this turn cannot be undone")
            return
        self._checkpoint_note = "" if ident else self.checkpoints.last_skip_reason
        if ident is None and not self._skip_told:  # said once until checkpoints work again
            self._emit(ev.Notice, level="warning",
                       text=f"{self.checkpoints.last_skip_reason}; this turn cannot be undone")
        self._skip_told = ident is None
        self.last_checkpoint = ident

    async def _checkpoint_end(self) -> None:
        """The workspace as the turn left it: what the turn changed, and (mount mode)
        which files the user edits later. A failure only costs that detail."""
        if self.checkpoints is None or self.depth > 0 or self.last_checkpoint is None:
            return
        try:
            ident = await asyncio.to_thread(self.checkpoints.checkpoint, "end of turn")
        except (OSError, PygentError) as exc:
            log.warning("end-of-turn checkpoint failed: %s", exc)
            ident = None
        self.turn_log.end(ident)

    # --- the timeline: rewind, redo, fork ----------------------------------------------

    def timeline(self) -> list[TimelineTurn]:
        """The session's turns, oldest first, each with the files it changed."""
        return self.turn_log.turns()

    def rewind(self, turn: int | str, files: bool = True, conversation: bool = True) -> RewindResult:
        """Go back to before ``turn`` (its number or ``<session>:<n>`` id): restore the
        workspace's files, drop the turn and those after it from the conversation, or
        both. Undo it with :meth:`redo`. Refused while a turn runs
        (:class:`~pygent.errors.SessionBusyError`); an unknown turn or an unusable
        checkpoint raises :class:`~pygent.timeline.TimelineError` and changes nothing."""
        if self.busy:
            raise busy_error()
        result, history = self.turn_log.rewind(turn, self.history, files=files,
                                                conversation=conversation)
        self._replace_history(history)
        return result

    def redo(self) -> RewindResult:
        """Undo the last :meth:`rewind` (files and/or conversation as they were)."""
        if self.busy:
            raise busy_error()
        result, history = self.turn_log.redo(self.history)
        self._replace_history(history)
        return result

    def _replace_history(self, history: list[dict[str, Any]] | None) -> None:
        if history is None:
            return
        self.history = [self.history[0], *history[1:]]
        if self.history_store is not None:
            try:
                self.history_store.rewrite(self.history[1:])
            except SessionError as exc:
                self._emit(ev.Notice, level="error", text=exc.user_message())

    def fork(self, turn: int | str, *, history_file: str | Path | None = None) -> Agent:
        """A new agent with its own sandbox, as this session was before ``turn``: the
        conversation up to it and the workspace's files then (a copy-on-write session's
        fork shares the folder below). The new agent owns its runtime: call
        ``fork.runtime.cleanup()`` and ``fork.close()`` when done."""
        if self.busy:
            raise busy_error()
        record = self.turn_log.find(turn)
        runtime = fork_runtime(self.runtime, self.turn_log, record)
        from pygent.service import build_agent  # the one assembler (it imports this module)

        try:
            child = build_agent(self.settings, runtime=runtime, model=self.model,
                                model_name=self.model_name, persona=self.persona,
                                history_file=Path(history_file) if history_file else None,
                                approver=self.gate.approver, approval_mode=self.policy.mode,
                                tools=self.tools, disabled_tools=self.disabled_tools)
            if self._custom_system is not None:
                child._custom_system = self._custom_system
                child.refresh_system_message()
            child.history.extend(copy.deepcopy(self.history[1:record.history_len]))
            if child.history_store is not None:
                child.history_store.rewrite(child.history[1:])
        except BaseException:
            runtime.cleanup()
            raise
        return child

    def _end(self, reason: ev.StopReason, state: _TurnState, *, error: str = "",
             question: str = "", options: tuple[str, ...] = ()) -> TurnResult:
        text = question or state.last_text
        if error:
            self._emit(ev.Notice, level="error", text=error)
        self._emit(ev.TurnEnded, stop_reason=reason, text=text, error=error)
        return TurnResult(reason, text, error, state.steps, question, options)

    def _close_dangling(self, note: str) -> None:
        """Give every tool call in history a result, so the next request is valid."""
        repaired = repair_tool_calls(self.history[1:], note=note)
        for message in repaired[len(self.history) - 1:]:
            self._append(message)

    async def _call_model(self, state: _TurnState) -> ModelReply:
        if self.tools.version != self._tools_version:
            self.refresh_system_message()
        schemas = [t.schema() for t in self._active_tools()]
        streamed: list[str] = []

        def on_text(text: str) -> None:
            streamed.append(text)
            self._emit(ev.MessageDelta, text=text)

        def on_discard(reason: str) -> None:
            # The answer is asked again: what was shown goes, so nothing is spliced.
            streamed.clear()
            self._emit(ev.MessageDiscarded, reason=reason)

        async def ask() -> ModelReply:
            messages = self.request_messages()
            self._request_len = len(messages)
            return await complete(self.model, messages, self.model_name, schemas,
                                  on_text=on_text, on_discard=on_discard)

        try:
            try:
                return await ask()
            except ContextTooLongError:
                if streamed:
                    on_discard("the conversation was compacted and the request retried")
                if (await self._compact_now("", automatic=True)).ok:
                    return await ask()
                if not self._compact():
                    raise
                self._emit(ev.Notice, level="warning",
                           text="the conversation was too long for the model: old tool outputs "
                                "were shortened and the request retried")
                if streamed:
                    on_discard("the conversation was shortened and the request retried")
                return await ask()
        except asyncio.CancelledError:
            self._keep_partial(streamed, "interrupted")
            raise
        except ModelError as exc:
            self._keep_partial(streamed, f"interrupted: {_first_line(str(exc))}")
            raise

    def _keep_partial(self, streamed: list[str], note: str) -> None:
        """Save the text the user saw of a reply that never finished, marked as cut off."""
        text = "".join(streamed)
        if text.strip():
            self._append({"role": "assistant", "content": f"{text}\n[{note}]"})

    def _compact(self) -> bool:
        """Shorten old tool outputs (not the last 4 messages); True if anything changed."""
        changed = False
        for message in self.history[1:-4]:
            content = message.get("content")
            if message.get("role") == "tool" and isinstance(content, str) and len(content) > 400:
                message["content"] = content[:200] + "\n[... shortened to fit the context ...]"
                changed = True
        return changed

    async def _one_step(self, state: _TurnState) -> TurnResult | None:
        """One model call and its tool calls; a TurnResult when the turn is over."""
        if state.steps == 0 and self.mcp is not None and self.mcp.starting:
            await self._await_mcp()
        stop = await self._before_call(state)
        if stop is not None:
            return stop
        reply = await self._call_model(state)
        deferred = self.context_window is None
        if deferred:  # deferred by _before_call: its stream is over now
            await self._window(announce=False)
        state.steps += 1
        msg = reply.message
        dropped = self._screen_calls(msg)
        text = msg.content if isinstance(msg.content, str) else ""
        state.last_text = text or state.last_text
        self._record_usage(reply)
        self._append(msg.to_dict())
        if text:
            self._emit(ev.MessageDone, text=text)
        if deferred:  # after the reply: a notice inside it would split the streamed text
            self._announce_window()
        calls = msg.tool_calls or []
        if not calls:
            if reply.finish_reason == "length":
                return self._end(ev.StopReason.MAX_TOKENS, state,
                                 error="the model's reply was cut off at its length limit")
            if not text.strip():
                self._emit(ev.Notice, level="warning", text="the model returned an empty reply")
            return self._end(ev.StopReason.END_TURN, state)
        control: tuple[str, dict[str, Any]] | None = None
        for i, call in enumerate(calls):
            result = await self._run_call(call, note=dropped if i == len(calls) - 1 else "")
            if result.control and control is None:
                control = (result.control, result.data)
            key = f"{call.function.name}:{call.function.arguments}"
            if result.ok:
                state.failures.clear()
                state.malformed = 0
            else:
                state.failures[key] = state.failures.get(key, 0) + 1
                if result.content.startswith("error: arguments"):
                    state.malformed += 1
        if control is not None:
            kind, data = control
            if kind == "ask_user":
                return self._end(ev.StopReason.ASK_USER, state, question=str(data.get("prompt", "")),
                                 options=tuple(data.get("options", ())))
            return self._end(ev.StopReason.STOP_TOOL, state)
        if any(n >= MAX_REPEATED_FAILURES for n in state.failures.values()):
            return self._end(ev.StopReason.ERROR, state,
                             error=f"stopped: the model repeated the same failing tool call "
                                   f"{MAX_REPEATED_FAILURES} times")
        if state.malformed >= MAX_MALFORMED:
            return self._end(ev.StopReason.ERROR, state,
                             error=f"stopped: {MAX_MALFORMED} malformed tool calls in a row")
        return None

    async def _await_mcp(self) -> None:
        """Wait for the MCP servers still starting (each within its start timeout), so
        their tools are in the turn's first request; say which are not."""
        waiting = ", ".join(st.name for st in self.mcp.status() if st.state == "starting")
        if waiting:  # (the last one may have become ready just now)
            self._emit(ev.Notice, level="info", text=f"waiting for MCP server(s) to start: {waiting}")
        for st in await self.mcp.await_started():
            if st.state == "starting":
                text = (f"MCP server {st.name!r} is still starting: its tools are not in "
                        "this request (they are offered once it is ready)")
            else:
                why = st.reason.splitlines()[0] if st.reason else ""
                text = f"MCP server {st.name!r} {st.state}" + (f": {why}" if why else "") + \
                    "; its tools are not available"
            self._emit(ev.Notice, level="warning", text=text)

    def _screen_calls(self, msg: Message) -> str:
        """Make a reply's tool calls safe to record and run (C13, F9), in place.

        At most MAX_TOOL_CALLS are kept; duplicate ids are made unique (each call needs
        its own result); arguments over MAX_ARGUMENT_CHARS are replaced by a refusal so
        they neither run nor bloat the history. Returns a note for the model, or "".
        """
        calls = list(msg.tool_calls or [])
        note = ""
        if len(calls) > MAX_TOOL_CALLS:
            note = (f"\n[Pygent: your reply had {len(calls)} tool calls; only the first "
                    f"{MAX_TOOL_CALLS} were run. Make fewer calls per reply.]")
            self._emit(ev.Notice, level="warning",
                       text=f"the model asked for {len(calls)} tool calls in one reply; only "
                            f"the first {MAX_TOOL_CALLS} were run")
            calls = calls[:MAX_TOOL_CALLS]
        seen: set[str] = set()
        for i, call in enumerate(calls):
            base = call.id or f"call_{i}"
            call_id, n = base, 1
            while call_id in seen:
                n += 1
                call_id = f"{base}_{n}"
            seen.add(call_id)
            args = call.function.arguments
            if isinstance(args, str) and len(args) > MAX_ARGUMENT_CHARS:
                why = (f"error: the arguments were {len(args)} characters long, over the limit "
                       f"of {MAX_ARGUMENT_CHARS}; the tool was not run. Write large files in "
                       "parts (edit_file) or generate them with a command.")
                args = json.dumps({REFUSED_KEY: why})
            calls[i] = ToolCall(id=call_id, type=call.type or "function",
                                function=ToolCallFunction(call.function.name, args))
        msg.tool_calls = calls or None
        return note

    def _record_usage(self, reply: ModelReply, *, request: bool = True) -> None:
        """Count one model call (once: retried attempts report nothing of their own).

        ``request`` False: a side call (the compaction summary), which says nothing
        about the size of the conversation's requests.
        """
        price = self._price()
        call = call_usage(reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens,
                          reply.usage_estimated, price)
        self.usage.record(call)
        self.usage_estimated = self.usage_estimated or reply.usage_estimated
        if request:
            self._meter.reported(reply.prompt_tokens, reply.completion_tokens,
                                 self._request_len + 1)
            if reply.prompt_tokens:
                self.usage.context_tokens = reply.prompt_tokens
        total = self.usage.total
        if reply.prompt_tokens or reply.completion_tokens:
            self._emit(ev.Usage, prompt_tokens=reply.prompt_tokens,
                       completion_tokens=reply.completion_tokens,
                       total_prompt_tokens=total.prompt_tokens,
                       total_completion_tokens=total.completion_tokens,
                       estimated=reply.usage_estimated,
                       cached_tokens=reply.cached_tokens, total_cached_tokens=total.cached_tokens,
                       cost=round(call.cost, 6) if price else None,
                       total_cost=round(total.cost, 6) if total.cost_known else None,
                       total_calls=total.calls, context_tokens=self.usage.context_tokens,
                       context_window=self.usage.context_window)

    def _price(self) -> Any:
        price = price_for(self.settings.prices, self.model_name)
        if price is None and self.budget.max_cost is not None and not self._told_price:
            self._told_price = True
            self._emit(ev.Notice, level="warning",
                       text=f"no price is configured for the model {self.model_name}: its cost "
                            "is unknown and the cost budget is not enforced (the token budget "
                            "is); see [prices] in docs/long-sessions.md")
        return price

    # --- long sessions: context window, compaction, budgets ------------------------------

    def request_messages(self) -> list[dict[str, Any]]:
        """The messages the next model request carries (the compacted view of history)."""
        if self.compacted is not None and not self.compacted.applies_to(self.history):
            self.compacted = None  # the history was rewound or replaced since
        return cx.request_view(self.history, self.compacted)

    async def _window(self, announce: bool = True) -> ContextWindow:
        if self.context_window is None:
            window = await resolve_window(self.settings.context_window, self.model, self.model_name)
            self.context_window = window
            self.usage.context_window = window.tokens
            if announce:
                self._announce_window()
        return self.context_window

    def _announce_window(self) -> None:
        """Say once per model and server that its window is a guess."""
        window = self.context_window
        if window is not None and window.guessed and first_guess(
                self.model_name, str(getattr(self.model, "base_url", ""))):
            self._emit(ev.Notice, level="info",
                       text=f"the context window of {self.model_name} is not known; assuming "
                            f"{window.tokens:,} tokens (set PYGENT_CONTEXT_WINDOW or "
                            "context_window in pygent.toml)")

    def _tools_tokens(self) -> int:
        return cx.tools_tokens([t.schema() for t in self._active_tools()])

    def context_tokens(self) -> int:
        """The estimated size in tokens of the next request (last usage + estimate since)."""
        if self._meter.anchor_len == 0 and self._meter.anchor == 0:
            self._meter.reset([], self._tools_tokens())
        return self._meter.tokens(self.request_messages())

    async def _before_call(self, state: _TurnState) -> TurnResult | None:
        """Compact when the next request would pass the threshold; then check the budget."""
        tokens = self.context_tokens()
        start = self.compacted.cut if self.compacted is not None else 1
        if self.context_window is None and cx.choose_cut(self.history, start, 0) is None:
            # Nothing to compact yet (a new conversation): the window decides nothing
            # here, so asking the server for it (GET /props, /models) waits until this
            # call's reply is in rather than delaying the first request (and a
            # single-stream server never sees those requests beside the model's).
            threshold = float("inf")
        else:
            threshold = self.settings.compact_threshold * (await self._window()).tokens
        price = self._price()
        whose = "task" if self.depth else "session"
        # The summary call costs about what the request would: not when the budget is spent.
        if tokens > threshold and len(self.history) >= self._compact_after and exceeded(
                self.budget, self.usage.total, self.budget_clock.elapsed, tokens, price) is None:
            result = await self._compact_now("", automatic=True)
            if result.ok:
                tokens = self.context_tokens()
            else:
                self._compact_after = len(self.history) + 4
        self.usage.context_tokens = tokens
        hit = exceeded(self.budget, self.usage.total, self.budget_clock.elapsed, tokens,
                       price, whose=whose)
        if hit is not None:
            return self._end(ev.StopReason.BUDGET, state, error=hit.message)
        return None

    async def _write_marker(self, previous: asyncio.Future[None] | None,
                            marker: dict[str, Any]) -> None:
        if previous is not None:  # markers land in order
            await previous
        assert self.history_store is not None
        try:
            await asyncio.to_thread(self.history_store.set_meta, "compaction", marker)
        except SessionError as exc:
            self._emit(ev.Notice, level="error", text=exc.user_message())

    async def acompact(self, focus: str = "") -> CompactResult:
        """Summarise the older part of the conversation now (``/compact [focus]``).

        The summary replaces the older messages in the next requests; the history (and
        the history file) keeps them all. A failure leaves the conversation as it was;
        the result (and a ``compaction`` event) says why.
        """
        if self.busy:
            raise SessionBusyError("a turn is running in this session; compact after it ends",
                                   hint="wait for the turn to end, or cancel it")
        return await self._compact_now(focus, automatic=False)

    def compact(self, focus: str = "") -> CompactResult:
        """Synchronous :meth:`acompact`."""
        return self._sync(self.acompact(focus))

    async def _compact_now(self, focus: str, *, automatic: bool) -> CompactResult:
        window = (await self._window()).tokens
        before = self.context_tokens()
        start = self.compacted.cut if self.compacted is not None else 1
        previous = self.compacted.summary if self.compacted is not None else ""
        # Recent turns stay verbatim: a quarter of the window, and at most a third of the
        # conversation (so /compact in a big window still has something to summarise).
        conversation = sum(message_tokens(m) for m in self.history[start:])
        cut = cx.choose_cut(self.history, start,
                            int(min(window * cx.KEEP_RECENT, conversation / 3)))
        try:
            # The summary is a model call like any other: the budget is checked first
            # (the request is about the size of the part it summarises).
            hit = exceeded(self.budget, self.usage.total, self.budget_clock.elapsed,
                           conversation, self._price(), whose="task" if self.depth else "session")
            if hit is not None:
                raise cx.CompactionError(hit.message)
            if cut is None:
                raise cx.CompactionError("there is not enough conversation to compact yet")
            request = cx.summary_request(self.history[start:cut], window, previous=previous,
                                         focus=focus)
            written = [0]

            def on_text(text: str) -> None:
                # A model that rambles is stopped at the limit, not read to its end.
                written[0] += len(text)
                if written[0] > cx.summary_limit(window):
                    raise cx.too_long(window)

            reply = await complete(self.model, request, self.model_name, None, on_text=on_text)
            self._record_usage(reply, request=False)
            summary = cx.check_summary(reply.message.content if isinstance(
                reply.message.content, str) else "", window)
        except PygentError as exc:  # CompactionError included
            why = exc.user_message()
            text = f"compaction failed: {why}; the conversation is unchanged"
            self._emit(ev.Compaction, ok=False, automatic=automatic, focus=focus, error=why,
                       tokens_before=before, tokens_after=before)
            self._emit(ev.Notice, level="warning" if automatic else "error", text=text)
            return CompactResult(False, error=why, tokens_before=before, tokens_after=before)
        assert cut is not None
        self.compacted = cx.Compacted(cut, summary, self.history[cut - 1])
        self._meter.reset(self.request_messages(), self._tools_tokens())
        after = self._meter.tokens(self.request_messages())
        self.usage.compactions += 1
        self.usage.context_tokens = after
        if self.history_store is not None:
            # The marker (resume and rewind see the summary and every original message)
            # is written off the step's path, like the messages; a turn or compact()
            # returns only once it is on disk (_history_saved).
            self._marker_write = asyncio.ensure_future(
                self._write_marker(self._marker_write,
                                   cx.marker(self.history, cut, summary, focus,
                                             automatic=automatic, tokens=(before, after))))
            if not automatic:
                await self._history_saved()
        self._emit(ev.Compaction, ok=True, automatic=automatic, summary=summary,
                   replaced=cut - start, tokens_before=before, tokens_after=after, focus=focus)
        return CompactResult(True, summary=summary, replaced=cut - start, tokens_before=before,
                             tokens_after=after)

    async def _run_call(self, call: ToolCall, note: str = "") -> ToolResult:
        name, raw = call.function.name, call.function.arguments
        try:
            args = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, RecursionError):
            args = None
        if isinstance(args, dict) and set(args) == {REFUSED_KEY}:
            self._emit(ev.ToolCallProposed, call_id=call.id, tool=name, arguments={},
                       preview="(arguments too large)")
            refused = ToolResult(False, str(args[REFUSED_KEY]) + note)
            self._finish_call(call, name, refused, status="failed")
            return refused
        # Imported at the first tool call (difflib and the edit helpers): not on the way
        # to the first model request.
        from pygent.tools.preview import locations as call_locations
        from pygent.tools.preview import old_text as text_before
        from pygent.tools.preview import preview as make_preview

        shown = make_preview(name, args, self.runtime.files) if isinstance(args, dict) else str(raw)[:800]
        where = call_locations(name, args, self.runtime.files) if isinstance(args, dict) else []
        # The replaced text goes with the event: a client of a session host cannot read
        # the sandbox to show the change whole (ACP's diff).
        before = text_before(name, args, self.runtime.files) if isinstance(args, dict) else None
        self._emit(ev.ToolCallProposed, call_id=call.id, tool=name,
                   arguments=args if isinstance(args, dict) else {"_raw": str(raw)[:800]}, preview=shown,
                   locations=where, old_text=before)
        tool = self.tools.get(name)
        result: ToolResult | None = None
        if isinstance(args, dict) and tool is not None and name not in self.disabled_tools:
            if tool.kind != "control":
                verdict = await self.gate.check(name, args, preview=shown, call_id=call.id,
                                                task_id=self.task_id, session_id=self.session_id,
                                                tool_kind=tool.kind)
                if self._cancel_requested:
                    # A cancel that raced the approval answer must still stop the turn
                    # (asyncio.wait_for can drop a cancel arriving with its result).
                    raise asyncio.CancelledError
                if not verdict.allowed:
                    result = ToolResult(False, verdict.message)
                    self._finish_call(call, name, result, status="denied")
                    return result
        if self._checkpoint_due and (tool is None or tool.kind != "read"):
            self._checkpoint_due = False
            await self._checkpoint(self._turn_prompt)
            self.turn_log.set_before(self.last_checkpoint, self._checkpoint_note)
        self._emit(ev.ToolCallStarted, call_id=call.id, tool=name)

        def on_output(stream: str, text: str) -> None:
            self._emit(ev.ToolOutput, call_id=call.id, text=text, stream=stream)

        ctx = ToolContext(runtime=self.runtime, call_id=call.id, on_output=on_output, agent=self)
        try:
            result = await self.tools.execute(name, raw, ctx, disabled=self._disabled_now())
        except asyncio.CancelledError:
            self._finish_call(call, name, ToolResult(False, "[cancelled by the user: the command was killed]"),
                              status="cancelled")
            raise
        if note:
            result = ToolResult(result.ok, result.content + note, result.control,
                                result.attachments, result.data)
        self._finish_call(call, name, result, status="completed" if result.ok else "failed")
        return result

    def _disabled_now(self) -> set[str]:
        if self.depth > 0:
            return self.disabled_tools | {t for t in self.tools.names() if t.startswith("delegate")}
        return self.disabled_tools

    def _finish_call(self, call: ToolCall, name: str, result: ToolResult, *, status: str) -> None:
        content = self._redact_output(result.content)
        if content != result.content:
            result = ToolResult(result.ok, content, result.control, result.attachments, result.data)
        self._append({"role": "tool", "tool_call_id": call.id, "content": result.content})
        for url in result.attachments:
            self._append({"role": "user", "content": [
                {"type": "text", "text": f"(image from {name})"},
                {"type": "image_url", "image_url": {"url": url}}]})
        self._emit(ev.ToolCallFinished, call_id=call.id, tool=name, ok=result.ok,
                   output=result.content[-4000:], status=status)

    # --- synchronous upstream API --------------------------------------------------------

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._sync_loop is None:
            self._sync_loop = LoopThread(name="pygent-agent")
        future = self._sync_loop.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            self.cancel()
            future.result(timeout=15)
            raise

    def step(self, user_msg: str) -> Message:
        """One round: a model call, then the tool calls it asks for. Returns its message."""
        self._sync(self.arun(user_msg, max_steps=1))
        return self.last_assistant_message()

    def run_until_stop(self, user_msg: str, max_steps: int = 20, step_timeout: float | None = None,
                       max_time: float | None = None) -> Message | None:
        """Run steps until ``stop``/``ask_user``, a reply without tools, or a limit."""
        self._sync(self.arun(user_msg, max_steps=max_steps, step_timeout=step_timeout,
                             max_time=max_time))
        return self.last_assistant_message()

    def turn(self, prompt: str, **limits: Any) -> TurnResult:
        """Synchronous :meth:`arun`, returning the :class:`TurnResult`."""
        return self._sync(self.arun(prompt, **limits))

    def last_assistant_message(self) -> Message:
        for message in reversed(self.history):
            if message.get("role") == "assistant":
                calls = [ToolCall(id=c["id"], type=c.get("type", "function"),
                                  function=ToolCallFunction(c["function"]["name"], c["function"]["arguments"]))
                         for c in message.get("tool_calls") or []]
                return Message(role="assistant", content=message.get("content"), tool_calls=calls or None)
        return Message(role="assistant", content=None)

    def close(self) -> None:
        """Release the agent's own resources (not the runtime: call runtime.cleanup())."""
        if self.history_store is not None:
            self.history_store.close()
        aclose = getattr(self.model, "aclose", None)
        if callable(aclose) and self._sync_loop is not None:
            try:  # the async client lives on the sync loop: close it there, before it stops
                self._sync_loop.call(aclose(), timeout=5)
            except Exception:  # closing a model's connections must not break shutdown
                log.debug("closing the model's async client failed", exc_info=True)
        closer = getattr(self.model, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:  # closing a model's connections must not break shutdown
                log.debug("closing the model failed", exc_info=True)
        if self._sync_loop is not None:
            self._sync_loop.stop()
            self._sync_loop = None
