"""The ACP agent: ACP requests -> session calls of a :class:`~pygent.acp.backend.SessionBackend`
(a :class:`~pygent.service.SessionService` in this process, or the shared one of a running
session host, which runs this agent for each ACP connection: :mod:`pygent.acp.hosted`).

No agent logic lives here. Each method checks its input, calls the service, and
translates the answer; each session's core events go out as ``session/update``
notifications through one ordered queue (:class:`Outbox`), and every update of a turn
is sent before the turn's ``session/prompt`` answer. Pygent errors keep their JSON-RPC
codes (:mod:`pygent.errors`), with the hint in ``error.data``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Literal

from acp import PROTOCOL_VERSION, RequestError
from acp import schema as s

from pygent import __version__
from pygent import events as ev
from pygent.acp.approver import DEFAULT_TIMEOUT, AcpApprover
from pygent.acp.backend import LocalBackend, SessionBackend, SessionView
from pygent.acp.channel import Channel, Outbox
from pygent.acp.launch import models_from_env
from pygent.acp.updates import Update, text_block
from pygent.changes import COW, MOUNT
from pygent.errors import TASK_NOT_FOUND, PygentError, SessionBusyError, UnknownSessionError
from pygent.mcp import specs_from_acp
from pygent.prompt_images import data_url
from pygent.service import SessionOptions, SessionService
from pygent.settings import Settings
from pygent.task_info import UnknownTaskError

log = logging.getLogger(__name__)

#: Pygent's stop reasons -> ACP's (``error`` is a JSON-RPC error instead).
STOP_REASONS: dict[
    ev.StopReason, Literal["end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled"]
] = {
    ev.StopReason.END_TURN: "end_turn",
    ev.StopReason.STOP_TOOL: "end_turn",
    ev.StopReason.ASK_USER: "end_turn",
    ev.StopReason.MAX_STEPS: "max_turn_requests",
    ev.StopReason.MAX_TIME: "max_turn_requests",
    ev.StopReason.STEP_TIMEOUT: "max_turn_requests",
    ev.StopReason.CANCELLED: "cancelled",
    ev.StopReason.REFUSAL: "refusal",
    ev.StopReason.BUDGET: "max_turn_requests",  # _meta.pygent.stopReason says "budget"
    ev.StopReason.MAX_TOKENS: "max_tokens",
}
#: The approval modes a client can switch between, with what they mean.
MODES: dict[str, tuple[str, str]] = {
    "confirm": ("Ask every time", "Every command and file write asks first."),
    "auto": (
        "Auto in sandbox",
        "Commands in a Docker sandbox run without asking; protected "
        "paths, host access and (in local mode) everything else ask.",
    ),
    "read-only": (
        "Read-only",
        "The agent may read and run read-only commands; writes are refused.",
    ),
}
#: The largest prompt accepted (text, embedded context); a larger one is a -32602 error.
MAX_PROMPT_CHARS = 4 * 1024 * 1024
#: The most images one prompt may carry.
MAX_PROMPT_IMAGES = 16
#: Sessions per ``session/list`` page.
PAGE_SIZE = 50
#: The ACP error for an unknown session id (Pygent's SESSION_NOT_FOUND).
SESSION_NOT_FOUND = UnknownSessionError.code


def _error(exc: PygentError) -> RequestError:
    """The JSON-RPC error of a Pygent error: its class carries the code (pygent.errors)."""
    code = TASK_NOT_FOUND if isinstance(exc, UnknownTaskError) else exc.code
    data = {"hint": exc.hint} if exc.hint else None
    return RequestError(code, str(exc), data)


def _invalid(message: str) -> RequestError:
    return RequestError(-32602, f"Invalid params: {message}")


class PygentAcpAgent:
    """The ACP ``Agent`` of ``pygent acp``.

    Args:
        settings: the base settings (model, approval mode, limits).
        runtime: ``auto``, ``docker`` or ``local`` for every session.
        sync_mode: the default workspace sync (``cow``; a session's ``_meta.pygent.syncMode``
            may ask for ``mount``).
        approval_timeout: seconds a permission request waits before the call is denied.
        model: a model object for every agent (tests); default: the configured one.
        backend: the sessions to serve; default: a :class:`SessionService` of this
            agent's own (a session host passes its shared one, :mod:`pygent.acp.hosted`).
        extra_models: the models offered besides the configured one; default:
            ``PYGENT_ACP_MODELS`` of this process's environment.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        runtime: str = "auto",
        sync_mode: str = COW,
        approval_timeout: float = DEFAULT_TIMEOUT,
        model: Any = None,
        backend: SessionBackend | None = None,
        extra_models: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.sync_mode = sync_mode
        self.approval_timeout = approval_timeout
        self.conn: Any = None
        self.loop = asyncio.get_event_loop()
        self.extra_models = extra_models
        #: The agent's own service (None when the sessions are a host's).
        self.service: SessionService | None = None
        self.backend: SessionBackend
        if backend is not None:
            self.backend = backend
        else:
            self.service = SessionService(settings, approver_factory=self._approver, model=model)
            self.backend = LocalBackend(self.service)
        self.outbox = Outbox(self._send_update)
        self.channels: dict[str, Channel] = {}
        #: JSON-RPC id of a running ``session/prompt`` -> its session (``$/cancel_request``).
        self.prompt_ids: dict[Any, str] = {}
        self.client_capabilities: s.ClientCapabilities | None = None

    # --- plumbing ------------------------------------------------------------------------

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def _send_update(self, session_id: str, update: Update) -> None:
        await self.conn.session_update(session_id=session_id, update=update)

    def _channel(self, session_id: str) -> Channel:
        channel = self.channels.get(session_id)
        if channel is None:
            channel = self.channels[session_id] = Channel(self.loop, self.outbox, session_id)
        return channel

    def _approver(self, session_id: str, timeout: float | None = None) -> AcpApprover:
        # Called in the service's worker thread while the session is assembled (or by a
        # session host's approval broker, on the loop, for a session this client follows).
        channel = self._channel(session_id)
        return AcpApprover(
            self.conn.request_permission,
            self.loop,
            session_id,
            channel.updates,
            channel.flush,
            timeout=self.approval_timeout if timeout is None else timeout,
        )

    def follows(self, session_id: str) -> bool:
        """Whether this client follows the session (it made, loaded, resumed or prompted
        it, and has not closed it): a session host asks it the session's approvals."""
        channel = self.channels.get(session_id)
        return channel is not None and channel.unsubscribe is not None

    async def _session(self, session_id: str) -> SessionView:
        if not isinstance(session_id, str) or not session_id:
            raise _invalid("sessionId must be a non-empty string")
        try:
            return await self.backend.view(session_id)
        except PygentError as exc:
            raise _error(exc) from None

    def _attach(self, session: SessionView) -> Channel:
        channel = self._channel(session.id)
        channel.updates.folder = session.folder
        channel.updates.files = session.files
        channel.updates.kinds = dict(session.tool_kinds)
        if channel.unsubscribe is None:  # the first time: subscribe, keep its notices
            channel.unsubscribe = self.backend.subscribe(session.id, channel.push)
            channel.notices.extend(session.notices)
        return channel

    def _options(self, cwd: str, meta: dict[str, Any]) -> SessionOptions:
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            raise _invalid(f"cwd must be an absolute path, got {cwd!r}")
        if not os.path.isdir(cwd):
            raise _invalid(f"cwd {cwd!r} is not a directory")
        # The SDK spreads the request's ``_meta`` into keyword arguments: ours is "pygent".
        given = meta.get("pygent")
        pygent_meta: dict[str, Any] = given if isinstance(given, dict) else {}
        sync = pygent_meta.get("syncMode", self.sync_mode)
        if sync not in (COW, MOUNT):
            raise _invalid(f"_meta.pygent.syncMode must be 'cow' or 'mount', got {sync!r}")
        mode = pygent_meta.get("mode")
        if mode is not None and mode not in MODES:
            raise _invalid(f"_meta.pygent.mode must be one of {', '.join(MODES)}")
        model = pygent_meta.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise _invalid("_meta.pygent.model must be a non-empty string")
        return SessionOptions(
            workspace_folder=cwd,
            runtime=self.runtime,
            sync_mode=sync,
            approval_mode=mode,
            model=model,
        )

    @staticmethod
    def _with_mcp(options: SessionOptions, servers: list[Any] | None) -> SessionOptions:
        """The client's MCP servers as Pygent MCP tools of the session (run in its sandbox);
        one Pygent cannot run (SSE) is a -32602 error naming it. Servers that fail to
        start become the session's notices, shown at its first prompt."""
        if not servers:
            return options
        try:
            specs = specs_from_acp(list(servers))
        except PygentError as exc:
            raise _invalid(str(exc)) from None
        return dataclasses.replace(options, mcp_servers=tuple(specs))

    def _modes(self, session: SessionView) -> s.SessionModeState:
        current = session.mode
        modes = [
            s.SessionMode(id=m, name=name, description=text) for m, (name, text) in MODES.items()
        ]
        if current not in MODES:  # a mode set in the config (never, api) stays selectable
            modes.append(
                s.SessionMode(id=current, name=current, description="From the configuration.")
            )
        return s.SessionModeState(current_mode_id=current, available_modes=modes)

    def _config(self, session: SessionView) -> list[Any]:
        modes = self._modes(session)
        model = session.model
        models = [model] + [m for m in self.settings_models() if m != model]
        return [
            s.SessionConfigOptionSelect(
                type="select",
                id="mode",
                name="Approval mode",
                category="mode",
                current_value=modes.current_mode_id,
                options=[
                    s.SessionConfigSelectOption(value=m.id, name=m.name, description=m.description)
                    for m in modes.available_modes
                ],
            ),
            s.SessionConfigOptionSelect(
                type="select",
                id="model",
                name="Model",
                category="model",
                current_value=model,
                options=[s.SessionConfigSelectOption(value=m, name=m) for m in models],
            ),
        ]

    def settings_models(self) -> list[str]:
        """Models offered in the model selector: the configured one and ``PYGENT_ACP_MODELS``."""
        if self.extra_models is not None:
            return [self.settings.model, *self.extra_models]
        return [self.settings.model, *models_from_env()]

    def _session_meta(self, session: SessionView) -> dict[str, Any]:
        return {
            "pygent": {
                "runtime": session.runtime,
                "syncMode": session.sync_mode,
                "sandboxPath": session.sandbox_path,
                "notices": list(session.notices),
                "host": bool(getattr(self.backend, "hosted", False)),
            }
        }

    # --- lifecycle -----------------------------------------------------------------------

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: Any = None,
        client_info: Any = None,
        **kwargs: Any,
    ) -> s.InitializeResponse:
        self.client_capabilities = client_capabilities
        return s.InitializeResponse(
            protocol_version=min(int(protocol_version), PROTOCOL_VERSION) or PROTOCOL_VERSION,
            agent_info=s.Implementation(name="pygent", title="Pygent", version=__version__),
            agent_capabilities=s.AgentCapabilities(
                load_session=True,
                prompt_capabilities=s.PromptCapabilities(
                    image=True, audio=False, embedded_context=True
                ),
                mcp_capabilities=s.McpCapabilities(http=True, sse=False),
                session_capabilities=s.SessionCapabilities(
                    list=s.SessionListCapabilities(),
                    resume=s.SessionResumeCapabilities(),
                    close=s.SessionCloseCapabilities(),
                ),
            ),
            auth_methods=[
                s.EnvVarAuthMethod(
                    type="env_var",
                    id="openai-api-key",
                    name="OpenAI-compatible API key",
                    description="The key and (optionally) the base URL of an OpenAI-compatible "
                    "server, from the environment Pygent starts in.",
                    vars=[
                        s.AuthEnvVar(name="OPENAI_API_KEY", label="API key", secret=True),
                        s.AuthEnvVar(
                            name="OPENAI_BASE_URL", label="Base URL", secret=False, optional=True
                        ),
                    ],
                )
            ],
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> s.AuthenticateResponse:
        if method_id != "openai-api-key":
            raise _invalid(f"unknown auth method {method_id!r} (methods: openai-api-key)")
        if not self.settings.api_key and not os.environ.get("OPENAI_BASE_URL"):
            raise RequestError.auth_required(
                {
                    "hint": "set OPENAI_API_KEY (and OPENAI_BASE_URL for another server) in the "
                    "environment the client starts pygent acp in"
                }
            )
        return s.AuthenticateResponse()

    async def new_session(
        self,
        cwd: str,
        mcp_servers: list[Any] | None = None,
        additional_directories: list[str] | None = None,
        **kwargs: Any,
    ) -> s.NewSessionResponse:
        options = self._with_mcp(self._options(cwd, kwargs), mcp_servers)
        try:
            session = await self.backend.create(options)
        except PygentError as exc:
            raise _error(exc) from None
        self._attach(session)
        meta = self._session_meta(session)
        if session.mcp:
            meta["pygent"]["mcpServers"] = [spec.name for spec in options.mcp_servers]
        return s.NewSessionResponse(
            session_id=session.id,
            modes=self._modes(session),
            config_options=self._config(session),
            field_meta=meta,
        )

    async def _reopen(
        self, cwd: str, session_id: str, mcp_servers: list[Any] | None, meta: dict[str, Any]
    ) -> tuple[SessionView, bool]:
        """A live session, or a saved one reopened; True when it was open already."""
        if not isinstance(session_id, str) or not session_id:
            raise _invalid("sessionId must be a non-empty string")
        # The service restores the session's saved approval mode (unless meta names one).
        options = self._with_mcp(self._options(cwd, meta), mcp_servers)
        try:
            session, live = await self.backend.open(session_id, options)
        except PygentError as exc:
            raise _error(exc) from None
        self._attach(session)
        return session, live

    async def load_session(
        self,
        cwd: str,
        session_id: str,
        mcp_servers: list[Any] | None = None,
        additional_directories: list[str] | None = None,
        **kwargs: Any,
    ) -> s.LoadSessionResponse:
        session, _ = await self._reopen(cwd, session_id, mcp_servers, kwargs)
        if session.busy:
            raise _error(
                SessionBusyError(
                    f"session {session_id} is running a turn",
                    hint="load it once the turn has ended",
                )
            )
        channel = self._attach(session)
        await channel.flush()
        try:
            replayed = await self.backend.replay(session_id, channel.updates)
        except PygentError as exc:
            raise _error(exc) from None
        for update in replayed:
            channel.send(update)
        await channel.flush()
        return s.LoadSessionResponse(
            modes=self._modes(session),
            config_options=self._config(session),
            field_meta=self._session_meta(session),
        )

    async def resume_session(
        self,
        cwd: str,
        session_id: str,
        mcp_servers: list[Any] | None = None,
        additional_directories: list[str] | None = None,
        **kwargs: Any,
    ) -> s.ResumeSessionResponse:
        session, _ = await self._reopen(cwd, session_id, mcp_servers, kwargs)
        return s.ResumeSessionResponse(
            modes=self._modes(session),
            config_options=self._config(session),
            field_meta=self._session_meta(session),
        )

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **kwargs: Any
    ) -> s.ListSessionsResponse:
        start = 0
        if cursor:
            if not cursor.isdigit():
                raise _invalid(f"unknown cursor {cursor!r}")
            start = int(cursor)
        wanted = str(Path(cwd).resolve()) if cwd else None
        try:
            listed = await self.backend.list_sessions()
        except PygentError as exc:
            raise _error(exc) from None
        found = [
            info
            for info in listed
            if info.workspace_folder and (wanted is None or info.workspace_folder == wanted)
        ]
        page = found[start : start + PAGE_SIZE]
        sessions = [
            s.SessionInfo(
                session_id=info.session_id,
                cwd=info.workspace_folder or "",
                title=info.title or None,
                updated_at=info.updated,
                field_meta={
                    "pygent": {"live": info.live, "busy": info.busy, "messages": info.message_count}
                },
            )
            for info in page
        ]
        more = start + PAGE_SIZE < len(found)
        return s.ListSessionsResponse(
            sessions=sessions, next_cursor=str(start + PAGE_SIZE) if more else None
        )

    async def close_session(self, session_id: str, **kwargs: Any) -> s.CloseSessionResponse:
        await self._session(session_id)
        try:
            await self.backend.close(session_id)
        except PygentError as exc:
            raise _error(exc) from None
        channel = self.channels.pop(session_id, None)
        if channel is not None:
            await channel.flush()
            channel.close()
        return s.CloseSessionResponse()

    async def close(self) -> None:
        """Close every session of this agent's own service (turns cancelled, sandboxes
        removed); a host's sessions go on in the host."""
        if hasattr(self, "backend"):
            await self.backend.aclose()
        for channel in self.channels.values():
            channel.close()
        self.outbox.close()

    # --- modes and configuration --------------------------------------------------------

    async def _set_mode(self, session: SessionView, mode_id: str) -> SessionView:
        if mode_id not in MODES and mode_id != session.mode:
            raise _invalid(f"unknown mode {mode_id!r} (modes: {', '.join(MODES)})")
        try:
            # The service saves it with the session: a session/load after a restart finds it.
            return await self.backend.update(session.id, approval_mode=mode_id)
        except PygentError as exc:
            raise _error(exc) from None

    async def set_session_mode(
        self, mode_id: str, session_id: str, **kwargs: Any
    ) -> s.SetSessionModeResponse:
        session = await self._set_mode(await self._session(session_id), mode_id)
        channel = self._channel(session_id)
        channel.send(
            s.CurrentModeUpdate(session_update="current_mode_update", current_mode_id=mode_id)
        )
        channel.send(
            s.ConfigOptionUpdate(
                session_update="config_option_update", config_options=self._config(session)
            )
        )
        await channel.flush()
        return s.SetSessionModeResponse()

    async def set_config_option(
        self, config_id: str, session_id: str, value: str | bool, **kwargs: Any
    ) -> s.SetSessionConfigOptionResponse:
        session = await self._session(session_id)
        if not isinstance(value, str):
            raise _invalid(f"{config_id} takes a string value")
        if config_id == "mode":
            session = await self._set_mode(session, value)
            self._channel(session_id).send(
                s.CurrentModeUpdate(session_update="current_mode_update", current_mode_id=value)
            )
        elif config_id == "model":
            try:
                session = await self.backend.update(session_id, model=value)
            except PygentError as exc:
                raise _error(exc) from None
        else:
            raise _invalid(f"unknown config option {config_id!r} (options: mode, model)")
        await self._channel(session_id).flush()
        return s.SetSessionConfigOptionResponse(config_options=self._config(session))

    # --- turns ---------------------------------------------------------------------------

    def _prompt_parts(self, prompt: list[Any]) -> tuple[str, list[str]]:
        """The prompt's text and its images (data URLs for OpenAI ``image_url`` parts)."""
        parts: list[str] = []
        images: list[str] = []
        for block in prompt:
            if isinstance(block, s.TextContentBlock):
                parts.append(block.text)
            elif isinstance(block, s.ImageContentBlock):
                try:
                    images.append(data_url(block.mime_type, block.data))
                except PygentError as exc:
                    raise _invalid(f"image {len(images) + 1}: {exc.user_message()}") from None
            elif isinstance(block, s.ResourceContentBlock):
                parts.append(f"[{block.name}]({block.uri})")
            elif isinstance(block, s.EmbeddedResourceContentBlock):
                resource = block.resource
                if isinstance(resource, s.TextResourceContents):
                    parts.append(f'\n<context uri="{resource.uri}">\n{resource.text}\n</context>\n')
                else:
                    raise _invalid(f"binary resource {resource.uri} is not supported (text only)")
            else:
                kind = getattr(block, "type", type(block).__name__)
                raise _invalid(
                    f"{kind} content is not supported; Pygent takes text, images, resource "
                    "links and embedded text resources"
                )
        text = "\n".join(p for p in parts if p)
        if not text.strip() and not images:
            raise _invalid("the prompt is empty")
        if len(text) > MAX_PROMPT_CHARS:
            raise _invalid(
                f"the prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}"
            )
        if len(images) > MAX_PROMPT_IMAGES:
            raise _invalid(f"the prompt has {len(images)} images; the limit is {MAX_PROMPT_IMAGES}")
        return text, images

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> s.PromptResponse:
        session = await self._session(session_id)
        text, images = self._prompt_parts(prompt)
        channel = self._attach(session)
        for notice in channel.notices:
            channel.send(
                s.AgentThoughtChunk(
                    session_update="agent_thought_chunk", content=text_block(f"Note: {notice}\n")
                )
            )
        channel.notices.clear()
        channel.reset_usage()
        channel.own_turn = True
        try:
            result = await self.backend.prompt(session_id, text, images)
        except PygentError as exc:
            raise _error(exc) from None
        finally:
            await channel.flush()
            channel.own_turn = False
        if result.stop_reason is ev.StopReason.ASK_USER and result.question:
            options = "".join(f"\n- {o}" for o in result.options)
            channel.send(
                s.AgentMessageChunk(
                    session_update="agent_message_chunk",
                    content=text_block(f"\n{result.question}{options}"),
                )
            )
            await channel.flush()
        if result.stop_reason is ev.StopReason.ERROR:
            raise RequestError(
                PygentError.code, result.error or "the turn failed", {"stopReason": "error"}
            )
        stop = STOP_REASONS.get(result.stop_reason, "end_turn")
        try:
            pending = await self.backend.pending_changes(session_id)
        except PygentError as exc:
            log.warning("the change set of %s is not known: %s", session_id, exc)
            pending = []
        used_in, used_out = channel.used
        return s.PromptResponse(
            stop_reason=stop,
            usage=s.Usage(
                input_tokens=used_in, output_tokens=used_out, total_tokens=used_in + used_out
            ),
            field_meta={
                "pygent": {
                    "stopReason": result.stop_reason.value,
                    "steps": result.steps,
                    "error": result.error or None,
                    "changes": {"count": len(pending), "paths": pending[:200]},
                }
            },
        )

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        try:
            self.backend.cancel(session_id)
        except PygentError as exc:  # a notification gets no answer: log it
            log.info("session/cancel: %s", exc)

    def cancel_request(self, request_id: Any) -> None:
        """``$/cancel_request`` for a running ``session/prompt``: cancel its turn."""
        session_id = self.prompt_ids.get(request_id)
        if session_id is not None:
            try:
                self.backend.cancel(session_id)
            except PygentError as exc:
                log.info("$/cancel_request: %s", exc)

    # --- Pygent's extensions -------------------------------------------------------------

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from pygent.acp.extensions import handle

        try:
            return await handle(self, method, params)
        except PygentError as exc:
            raise _error(exc) from None

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        log.debug("ignoring the extension notification %s", method)
