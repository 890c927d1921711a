"""The Pygent requests and commands: params in, a :class:`~pygent.service.SessionService` call, a result out.

Each request of :mod:`pygent.lsp.protocol` is registered twice: as the custom request
``pygent/...`` and as the ``workspace/executeCommand`` command ``pygent....`` (one
argument: the params object). Core errors become JSON-RPC errors with the codes of
the protocol; nothing here holds agent logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.uris import to_fs_path

from pygent import events as ev
from pygent.errors import ParamsError, PygentError, SessionBusyError, UnknownSessionError
from pygent.lsp import configuration as cfg
from pygent.lsp import convert
from pygent.lsp import protocol as p
from pygent.lsp.transcript import SessionLogs, history_updates
from pygent.lsp.updates import ProgressReporter, UpdateChannel
from pygent.service import SessionOptions
from pygent.tasks import UnknownTaskError
from pygent.timeline import RewindResult as RewindOutcome

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer

log = logging.getLogger(__name__)

Handler = Callable[[Any, "str | int | None"], Awaitable[Any]]


def _rewind_result(result: RewindOutcome) -> p.RewindResult:
    return p.RewindResult(result.turn, result.files, result.conversation, list(result.restored),
                          list(result.removed), list(result.kept), list(result.failed),
                          result.messages_removed, result.can_redo)


def _error(exc: PygentError) -> JsonRpcException:
    """The JSON-RPC error of a Pygent error: its class carries the code (pygent.errors)."""
    code = exc.code
    if isinstance(exc, UnknownTaskError):  # still defined in task_info.py, without its code
        code = p.TASK_NOT_FOUND
    data = {"hint": exc.hint} if exc.hint else None
    return JsonRpcException(message=str(exc), code=code, data=data)


def _plain(method: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function for pygls (it tags handlers with attributes; bound methods refuse)."""
    if asyncio.iscoroutinefunction(method):

        async def call_async(*args: Any) -> Any:
            return await method(*args)

        return call_async

    def call(*args: Any) -> Any:
        return method(*args)

    return call


class Handlers:
    """The request implementations of one server."""

    def __init__(self, server: PygentLanguageServer) -> None:
        self.server = server
        self.service = server.service
        #: The update logs of a session host (:mod:`pygent.lsp.host`), which answer
        #: ``pygent/session/transcript`` for live sessions; None: this server owns its
        #: sessions and answers with their conversation so far.
        self.logs: SessionLogs | None = None
        #: Removes this connection's update listeners (a host's service outlives it).
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        #: Counts configurations applied and asked for, so a late workspace/configuration
        #: answer never overwrites one pushed (or asked for) after it was asked for.
        self._configurations = 0

    # --- plumbing ---------------------------------------------------------------------

    def register(self) -> None:
        impls: dict[str, Callable[..., Awaitable[Any]]] = {
            p.SESSION_NEW: self.session_new,
            p.SESSION_PROMPT: self.session_prompt,
            p.SESSION_CANCEL: self.session_cancel,
            p.SESSION_LIST: self.session_list,
            p.SESSION_CLOSE: self.session_close,
            p.SESSION_RESUME: self.session_resume,
            p.SESSION_SETTINGS: self.session_settings,
            p.SESSION_TRANSCRIPT: self.session_transcript,
            p.SESSION_COMPACT: self.session_compact,
            p.SESSION_USAGE: self.session_usage,
            p.SESSION_TIMELINE: self.session_timeline,
            p.SESSION_REWIND: self.session_rewind,
            p.SESSION_REDO: self.session_redo,
            p.SESSION_FORK: self.session_fork,
            p.TASK_LIST: self.task_list,
            p.TASK_STATUS: self.task_status,
            p.TASK_CANCEL: self.task_cancel,
            p.TASK_COLLECT_FILE: self.task_collect_file,
            p.WORKSPACE_SYNC: self.workspace_sync,
            p.WORKSPACE_CHANGES: self.workspace_changes,
            p.WORKSPACE_APPLY: self.workspace_apply,
            p.WORKSPACE_DISCARD: self.workspace_discard,
            p.TOOLS_LIST: self.tools_list,
            p.TOOLS_ENABLE: self.tools_enable,
            p.TOOLS_DISABLE: self.tools_disable,
            p.CONFIGURATION: self.configuration,
            p.WORKSPACE_DIAGNOSTICS: self.workspace_diagnostics,
            p.MCP_STATUS: self.mcp_status,
        }
        table = {m: (p.SIGNATURES[m][0], impl) for m, impl in impls.items()}
        assert set(table) == set(p.REQUESTS), "every protocol request needs a handler"
        for method, (params_cls, impl) in table.items():
            handler = self._wrap(method, params_cls, impl)

            async def as_request(params: Any, _h: Handler = handler) -> Any:
                return await _h(params, None)

            self.server.feature(method)(as_request)
            self.server.command(p.command_name(method))(handler)
        self.server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))(
            _plain(self.did_save)
        )
        self.server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)(_plain(self.did_change_watched))
        self.server.feature(lsp.INITIALIZE)(_plain(self.initialize))
        self.server.feature(lsp.INITIALIZED)(_plain(self.initialized))
        self.server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)(
            _plain(self.did_change_configuration)
        )
        self.server.feature(lsp.SHUTDOWN)(_plain(self.shutdown))

    def _wrap(self, method: str, params_cls: type, impl: Callable[..., Awaitable[Any]]) -> Handler:
        async def handler(raw: Any, work_done_token: str | int | None = None) -> Any:
            try:
                params: Any = p.structure(raw, params_cls)
                result = await impl(params, work_done_token)
            except PygentError as exc:  # ParamsError included: -32602
                raise _error(exc) from None
            return p.unstructure(result)

        handler.__name__ = method.replace("/", "_")
        return handler

    def _channel(self, session_id: str) -> UpdateChannel:
        channel = self.server.channels.get(session_id)
        if channel is None:
            assert self.server.loop is not None
            channel = UpdateChannel(self.server, session_id, self.server.loop)
            self.server.channels[session_id] = channel
            remove_updates = self.service.subscribe(session_id, channel.push_event)
            # Its commands' problems reach this editor too (pygent.lsp.diagnostics).
            remove_problems = self.server.diagnostics.watch(session_id)

            def remove() -> None:
                remove_updates()
                remove_problems()

            self._unsubscribe[session_id] = remove
        return channel

    def attached(self, session_id: str) -> bool:
        """Whether this connection follows the session (created, resumed, prompted or
        read the transcript of it, and has not closed it)."""
        channel = self.server.channels.get(session_id)
        return channel is not None and not channel.closed

    def detach(self) -> None:
        """Stop following every session (the connection ended; a host's sessions go on)."""
        for remove in self._unsubscribe.values():
            remove()
        self._unsubscribe.clear()

    # --- sessions ---------------------------------------------------------------------

    def _options(self, params: Any) -> SessionOptions:
        sync_mode = params.sync_mode or self.server.configuration.sync_mode
        # Not named by the request nor the configuration: the service's default.
        default_sync: dict[str, Any] = {"sync_mode": sync_mode} if sync_mode else {}
        return SessionOptions(
            workspace_folder=params.workspace_folder,
            runtime=params.runtime,
            persona=params.persona,
            model=params.model,
            approval_mode=params.approval_mode,
            title=getattr(params, "title", None),
            **default_sync,
        )

    async def session_new(self, params: p.NewSessionParams, _token: Any) -> p.SessionInfo:
        session = await self.service.create(self._options(params))
        self._channel(session.id)
        return convert.session_info(self.service.summary(session))

    async def session_resume(self, params: p.ResumeSessionParams, _token: Any) -> p.SessionInfo:
        session = await self.service.resume(params.session_id, self._options(params))
        if self.logs is not None:  # a host: its log starts with the saved conversation
            self._follow_history(session.id)
        self._channel(session.id)
        return convert.session_info(self.service.summary(session))

    async def session_prompt(
        self, params: p.PromptParams, token: str | int | None
    ) -> p.PromptResult:
        session = self.service.get(params.session_id)
        if session.busy:
            raise SessionBusyError(
                f"session {session.id} is already running a turn",
                hint="wait for it to end, or cancel it",
            )
        channel = self._channel(session.id)
        overlay = self.unsaved_buffers(session.folder) if params.include_unsaved else None
        title = "Pygent: " + " ".join(params.prompt.split())[:60]
        reporter = await ProgressReporter.start(
            self.server, token if token is not None else params.work_done_token, title
        )
        channel.progress = reporter
        outcome = "error"
        try:
            result = await self.service.prompt(
                session.id,
                params.prompt,
                max_steps=params.max_steps,
                overlay=overlay,
                images=params.images or (),
            )
            outcome = result.stop_reason.value
        finally:
            channel.flush()
            channel.progress = None
            reporter.end(outcome)
        changes = await self.service.pending_changes(session.id)
        if changes:
            channel.push(ev.Changes(count=len(changes), paths=changes[:200]))
        return convert.prompt_result(result, len(changes))

    async def session_cancel(self, params: p.SessionIdParams, _token: Any) -> p.CancelResult:
        return p.CancelResult(self.service.cancel(params.session_id))

    async def session_list(self, params: p.ListSessionsParams, _token: Any) -> p.ListSessionsResult:
        summaries = (
            await asyncio.to_thread(self.service.list_sessions, include_saved=params.include_saved)
            if params.include_saved
            else self.service.list_sessions()
        )
        return p.ListSessionsResult([convert.session_info(s) for s in summaries])

    async def session_close(self, params: p.SessionIdParams, _token: Any) -> p.CloseResult:
        self.service.get(params.session_id)  # unknown ids are an error, not "false"
        closed = await self.service.close(params.session_id)
        remove = self._unsubscribe.pop(params.session_id, None)
        if remove is not None:
            remove()
        channel = self.server.channels.pop(params.session_id, None)
        if channel is not None:
            channel.close()
        self.server.diagnostics.forget(params.session_id)  # its problems leave the editor
        return p.CloseResult(closed)

    async def session_settings(self, params: p.SessionSettingsParams, _token: Any) -> p.SessionInfo:
        session = self.service.update_settings(
            params.session_id,
            approval_mode=params.approval_mode,
            model=params.model,
            persona=params.persona,
            max_steps=params.max_steps,
        )
        return convert.session_info(self.service.summary(session))

    async def session_transcript(self, params: p.SessionIdParams, _token: Any) -> dict[str, Any]:
        # Returned on the wire already: the logs hold updates as sent (camelCase dicts).
        session_id = params.session_id
        live = next((s for s in self.service.sessions if s.id == session_id), None)
        if live is None:
            events = await asyncio.to_thread(self._saved_history, session_id)
            return {"events": events, "seq": 0}
        channel = self._channel(session_id)  # this connection follows it from now on
        channel.flush()
        if self.logs is not None:
            events = self.logs.snapshot(session_id)
        else:
            store = live.agent.history_store
            events = history_updates(list(live.agent.history),
                                     store.meta_log.get("compaction", []) if store else [])
        return {"events": events, "seq": channel.seq}

    async def session_compact(self, params: p.CompactParams, _token: Any) -> p.CompactResult:
        # The session's updates carry the `compaction` marker; the result says the same.
        done = await self.service.get(params.session_id).agent.acompact(params.focus)
        return p.CompactResult(done.ok, done.summary, done.replaced, done.tokens_before,
                               done.tokens_after, done.error)

    async def session_usage(self, params: p.SessionIdParams, _token: Any) -> p.UsageResult:
        agent = self.service.get(params.session_id).agent
        usage = agent.usage.to_dict()
        return p.UsageResult(
            usage["prompt_tokens"], usage["completion_tokens"], usage["cached_tokens"],
            usage["calls"], usage["cost"], usage["estimated"], usage["context_tokens"],
            usage["context_window"], usage["context_fill"], usage["compactions"],
            dict(agent.budget.to_dict()))

    def _saved_history(self, session_id: str) -> list[dict[str, Any]]:
        if not self.service.store.path(session_id).exists():
            raise UnknownSessionError(f"no session {session_id!r}, live or saved")
        try:
            reader = self.service.store.read(session_id)
            try:
                messages = reader.load(repair=False)
                return history_updates(messages, reader.meta_log.get("compaction", []))
            finally:
                reader.close()
        except PygentError as exc:
            log.warning("reading saved session %s: %s", session_id, exc)
            text = f"The saved conversation could not be read: {exc.user_message()}"
            return [p.unstructure(p.NoticeUpdate(level="warning", text=text))]

    # --- tasks --------------------------------------------------------------------------

    async def task_list(self, params: p.SessionIdParams, _token: Any) -> p.TaskListResult:
        return p.TaskListResult(
            [convert.task_info(t) for t in self.service.list_tasks(params.session_id)]
        )

    async def task_status(self, params: p.TaskParams, _token: Any) -> p.TaskInfo:
        info = self.service.task_info(params.session_id, params.task_id)
        return convert.task_info(info, self.service.task_result(params.session_id, params.task_id))

    async def task_cancel(self, params: p.TaskParams, _token: Any) -> p.CancelResult:
        return p.CancelResult(self.service.cancel_task(params.session_id, params.task_id))

    async def task_collect_file(
        self, params: p.CollectFileParams, _token: Any
    ) -> p.CollectFileResult:
        path, size = await self.service.collect_file(
            params.session_id, params.task_id, params.path, params.dest
        )
        return p.CollectFileResult(path, size)

    # --- workspace -----------------------------------------------------------------------

    def unsaved_buffers(self, folder: Path | None) -> dict[str, bytes]:
        """The editor's open documents under ``folder``, folder-relative path -> text."""
        if folder is None:
            return {}
        try:
            documents = self.server.workspace.text_documents
        except RuntimeError:  # not initialised
            return {}
        out: dict[str, bytes] = {}
        for uri, document in list(documents.items()):
            path = to_fs_path(uri)
            if path is None:
                continue
            try:
                rel = Path(path).resolve().relative_to(folder)
            except ValueError:
                continue
            out[rel.as_posix()] = document.source.encode("utf-8")
        return out

    def _open_texts(self, folder: Path) -> dict[str, str]:
        return {k: v.decode("utf-8") for k, v in self.unsaved_buffers(folder).items()}

    async def workspace_sync(self, params: p.SyncParams, _token: Any) -> p.SyncResult:
        session = self.service.get(params.session_id)
        overlay = self.unsaved_buffers(session.folder) if params.include_unsaved else None
        report = await self.service.sync(params.session_id, full=params.full, overlay=overlay)
        return p.SyncResult(
            list(report.copied),
            list(report.removed),
            list(report.conflicts),
            report.scanned,
            round(report.duration_ms, 3),
        )

    async def workspace_changes(self, params: p.SessionIdParams, _token: Any) -> p.ChangeSet:
        session = self.service.get(params.session_id)
        changes = await self.service.changes(params.session_id)
        return p.ChangeSet(
            session.id,
            session.sync_mode,  # type: ignore[arg-type]
            [convert.file_change(c) for c in changes],
        )

    def _client_applies_edits(self) -> bool:
        caps = getattr(self.server.protocol, "client_capabilities", None)
        workspace = getattr(caps, "workspace", None)
        return bool(getattr(workspace, "apply_edit", False))

    async def workspace_apply(self, params: p.ApplyParams, _token: Any) -> p.ApplyResult:
        session = self.service.get(params.session_id)
        method = params.method
        if method == "auto":
            method = "applyEdit" if self._client_applies_edits() else "write"
        if method == "write":
            written, refused = await self.service.write_changes(session.id, params.paths)
            return p.ApplyResult(written, [p.FailedPath(a, b) for a, b in refused])
        edits, failed = await self.service.plan_edits(session.id, params.paths)
        applied: list[str] = []
        if edits and session.folder is not None:
            encoding = self.server.workspace.position_encoding or "utf-16"
            edit, unsupported = convert.workspace_edit(
                session.folder,
                edits,
                open_texts=self._open_texts(session.folder),
                encoding=str(getattr(encoding, "value", encoding)),
                support=convert.EditSupport.of(
                    getattr(self.server.protocol, "client_capabilities", None)
                ),
            )
            failed += [
                (e.path, "the editor cannot delete files: apply it with method 'write'")
                for e in unsupported
            ]
            edits = [e for e in edits if e not in unsupported]
            if edits:
                applied, refused = await self._send_edit(session.id, edit, edits)
                failed += refused
        return p.ApplyResult(applied, [p.FailedPath(a, b) for a, b in failed])

    async def _send_edit(
        self, session_id: str, edit: lsp.WorkspaceEdit, edits: list[Any]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        label = f"Pygent: apply {len(edits)} change{'s' if len(edits) != 1 else ''}"
        try:
            answer = await self.server.workspace_apply_edit_async(
                lsp.ApplyWorkspaceEditParams(edit=edit, label=label)
            )
        except JsonRpcException as exc:
            return [], [(e.path, f"the editor refused the edit: {exc.message}") for e in edits]
        if not getattr(answer, "applied", False):
            why = getattr(answer, "failure_reason", None) or "the editor did not apply the edit"
            return [], [(e.path, why) for e in edits]
        self.service.mark_applied(session_id, edits)
        return [e.path for e in edits], []

    async def workspace_discard(self, params: p.DiscardParams, _token: Any) -> p.DiscardResult:
        return p.DiscardResult(await self.service.discard(params.session_id, params.paths))

    # --- the timeline: rewind, redo, fork -----------------------------------------------

    async def session_timeline(self, params: p.SessionIdParams, _token: Any) -> p.TimelineResult:
        session = self.service.get(params.session_id)
        turns = await asyncio.to_thread(self.service.timeline, params.session_id)
        return p.TimelineResult(
            [p.TimelineTurn(t.id, t.turn, t.prompt, t.started,
                            [p.TurnFile(f.path, f.kind) for f in t.files],
                            t.can_restore_files, t.note) for t in turns],
            session.agent.turn_log.can_redo,
        )

    async def session_rewind(self, params: p.RewindParams, _token: Any) -> p.RewindResult:
        if params.dry_run:
            session = self.service.get(params.session_id)
            record = session.agent.turn_log.find(params.turn_id)
            changes, kept = (
                await self.service.rewind_preview(params.session_id, params.turn_id)
                if params.files else ([], [])
            )
            return p.RewindResult(record.turn, params.files, params.conversation, kept=kept,
                                  preview=[p.TurnFile(c.path, c.kind) for c in changes])
        result = await self.service.rewind(params.session_id, params.turn_id,
                                           files=params.files, conversation=params.conversation)
        if result.conversation:
            self._follow_history(params.session_id)
        return _rewind_result(result)

    async def session_redo(self, params: p.SessionIdParams, _token: Any) -> p.RewindResult:
        result = await self.service.redo(params.session_id)
        if result.conversation:
            self._follow_history(params.session_id)
        return _rewind_result(result)

    def _follow_history(self, session_id: str) -> None:
        """A host's update log follows a conversation that changed other than by a turn
        (rewind, redo, resume, fork), so an attaching client or a reloaded page replays it."""
        if self.logs is not None:
            self.logs.follow_agent(session_id, self.service.get(session_id).agent)

    async def session_fork(self, params: p.ForkParams, _token: Any) -> p.SessionInfo:
        session = await self.service.fork(params.session_id, params.turn_id)
        self._follow_history(session.id)  # a host's log starts with the turns it keeps
        self._channel(session.id)
        return convert.session_info(self.service.summary(session))

    # --- tools --------------------------------------------------------------------------

    async def tools_list(self, params: p.SessionIdParams, _token: Any) -> p.ToolListResult:
        return convert.tool_list(self.service.tools(params.session_id))

    async def tools_enable(self, params: p.ToolsParams, _token: Any) -> p.ToolListResult:
        return convert.tool_list(
            self.service.set_tools_enabled(params.session_id, params.names, True)
        )

    async def tools_disable(self, params: p.ToolsParams, _token: Any) -> p.ToolListResult:
        return convert.tool_list(
            self.service.set_tools_enabled(params.session_id, params.names, False)
        )

    async def workspace_diagnostics(
        self, params: p.EditorDiagnosticsParams, _token: Any
    ) -> p.EditorDiagnosticsResult:
        return self.server.diagnostics.editor_report(params)

    async def mcp_status(self, params: p.SessionIdParams, _token: Any) -> p.McpStatusResult:
        servers = self.service.mcp_status(params.session_id)
        return p.McpStatusResult(
            servers=[
                p.McpServerInfo(
                    name=s.name,
                    state=s.state,
                    where=s.where,
                    transport=s.transport,
                    tools=list(s.tools),
                    reason=s.reason,
                    restarts=s.restarts,
                    description=s.description,
                    left_out=list(s.disabled_tools),
                )
                for s in servers
            ]
        )

    # --- configuration ------------------------------------------------------------------

    async def configuration(
        self, params: p.ConfigurationParams, _token: Any
    ) -> p.ConfigurationResult:
        if params.settings is not None:
            given = {k: v for k, v in p.unstructure(params.settings).items() if v is not None}
            parsed = cfg.parse(given, "settings")
            if parsed.errors:
                raise ParamsError("; ".join(parsed.errors))
            self.apply_configuration(parsed, merge=True)
        return self.server.configuration.result()

    def apply_configuration(self, parsed: cfg.Parsed, *, merge: bool = False) -> None:
        """Make ``parsed`` the client's configuration (``merge``: add its keys), report
        its problems to the user, and apply what changed to live sessions."""
        config = self.server.configuration
        self._configurations += 1
        if not merge:
            config.warnings = [*parsed.warnings, *parsed.errors]
        for warning in parsed.warnings:
            self._tell(lsp.MessageType.Warning, f"Pygent: {warning}")
        for error in parsed.errors:
            self._tell(
                lsp.MessageType.Error, f"Pygent: {error}; the server's own setting is used"
            )
        changed = config.merge(parsed.values) if merge else config.replace(parsed.values)
        if not self.server.owns_service:
            if parsed.values:
                log.warning(
                    "the editor's configuration is not applied: this server's sessions "
                    "belong to the process that shares them (pygent ui)"
                )
            return
        self.service.settings = config.settings
        self.server.approval_timeout = config.approval_timeout
        live = [k for k in changed if k in cfg.LIVE_KEYS]
        effective = config.effective()
        applied: list[str] = []
        for session in self.service.sessions:
            self.service.update_settings(
                session.id,
                model=effective.model if "model" in live else None,
                approval_mode=effective.approval_mode if "approvalMode" in live else None,
            )
            applied = live
        config.applied_to_live = applied
        config.new_sessions_only = [k for k in changed if k not in applied]
        if changed:
            text = f"Pygent: configuration changed ({', '.join(changed)})"
            if applied:
                text += f"; live sessions now use the new {', '.join(applied)}"
            if self.service.sessions and config.new_sessions_only:
                text += f"; {', '.join(config.new_sessions_only)}: new sessions only"
            self._log(lsp.MessageType.Info, text)

    def _tell(self, kind: lsp.MessageType, message: str) -> None:
        """A problem the user must see: ``window/showMessage`` (and the log)."""
        log.info("%s", message)
        self.server.window_show_message(lsp.ShowMessageParams(type=kind, message=message))
        self._log(kind, message)

    def _log(self, kind: lsp.MessageType, message: str) -> None:
        self.server.window_log_message(lsp.LogMessageParams(type=kind, message=message))

    def _client_pulls_configuration(self) -> bool:
        caps = getattr(self.server.protocol, "client_capabilities", None)
        return bool(getattr(getattr(caps, "workspace", None), "configuration", False))

    async def pull_configuration(self) -> None:
        """Ask the client for its ``pygent`` section (``workspace/configuration``); an
        answer of null (no such section) keeps the configuration as it is."""
        if not self._client_pulls_configuration():
            return
        params = lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section=cfg.SECTION)])
        self._configurations += 1
        ticket = self._configurations
        try:
            answer = await asyncio.wait_for(self.server.workspace_configuration_async(params), 10)
        except (JsonRpcException, asyncio.TimeoutError) as exc:
            log.info("the client did not answer workspace/configuration: %r", exc)
            return
        value = answer[0] if answer else None
        if self._configurations != ticket:
            # Pushed or asked for again meanwhile: what came after is at least as new.
            log.info("workspace/configuration answer dropped: a newer configuration arrived")
            return
        if value is not None:
            self.apply_configuration(cfg.parse(value))

    def initialize(self, params: lsp.InitializeParams) -> None:
        options = params.initialization_options
        if options is not None:
            parsed = cfg.parse(options, "initializationOptions", ignore=cfg.CLIENT_KEYS)
            self.apply_configuration(parsed)

    async def did_change_configuration(self, params: lsp.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and settings.get(cfg.SECTION) is not None:
            self.apply_configuration(cfg.parse(settings[cfg.SECTION]))
        else:  # the pull model: the notification only says "something changed"
            await self.pull_configuration()

    # --- LSP notifications --------------------------------------------------------------

    def did_save(self, params: lsp.DidSaveTextDocumentParams) -> None:
        path = to_fs_path(params.text_document.uri)
        if path:
            self.service.note_changed([path])

    def did_change_watched(self, params: lsp.DidChangeWatchedFilesParams) -> None:
        paths = [to_fs_path(c.uri) for c in params.changes]
        self.service.note_changed([x for x in paths if x])

    async def initialized(self, _params: lsp.InitializedParams) -> None:
        await self.pull_configuration()
        caps = getattr(self.server.protocol, "client_capabilities", None)
        watched = getattr(getattr(caps, "workspace", None), "did_change_watched_files", None)
        if not getattr(watched, "dynamic_registration", False):
            return
        registration = lsp.Registration(
            id="pygent-watch",
            method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
                watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")]
            ),
        )
        try:
            await asyncio.wait_for(
                self.server.client_register_capability_async(
                    lsp.RegistrationParams(registrations=[registration])
                ),
                10,
            )
        except (JsonRpcException, asyncio.TimeoutError) as exc:
            log.info("the client did not register the file watcher: %r", exc)

    async def shutdown(self, *_args: Any) -> None:
        await self.server.close_sessions()
