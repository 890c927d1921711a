"""Sandbox problems as the editor's diagnostics: ``publishDiagnostics``, or pull.

For every session this connection follows, the output of each ``bash`` call (the
agent's) is read by :func:`pygent.diagnostics.matchers.recognise` when the call ends;
the problems in the workspace's files go to that session's
:class:`~pygent.diagnostics.board.ProblemBoard` (a tool's new run replaces its earlier
problems) and from there to the editor, with ``source`` ``pygent:<tool>``. A client
that can pull diagnostics (``textDocument.diagnostic`` in its capabilities) is asked to
pull again (``workspace/diagnostic/refresh``) instead of being pushed to, so VS Code
does not show each problem twice. Closing a session clears its problems.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.uris import from_fs_path, to_fs_path

from pygent import events as ev
from pygent.diagnostics.board import DEFAULT_CAP, ProblemBoard
from pygent.diagnostics.editor import EditorProblems
from pygent.diagnostics.mapping import PathMapper
from pygent.diagnostics.matchers import BUILTIN, Matcher, matcher_from_config, recognise
from pygent.diagnostics.problem import Problem, Severity
from pygent.errors import PygentError
from pygent.lsp import protocol as p

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer

log = logging.getLogger(__name__)

#: Output of one command read for problems at most (the runtime caps output too).
MAX_OUTPUT = 8 * 1024 * 1024
#: Above this, the output is parsed in a worker thread so the editor's loop never waits.
INLINE_PARSE = 512 * 1024
#: Files and problems per file taken from one editor report.
MAX_EDITOR_FILES = 5000
MAX_PER_EDITOR_FILE = 500
#: The tools whose calls run commands (their output is read).
COMMAND_TOOLS = ("bash",)
#: The tools whose file follow-along reveals.
FILE_TOOLS = ("read_file", "write_file", "edit_file")

SEVERITY = {
    "error": lsp.DiagnosticSeverity.Error,
    "warning": lsp.DiagnosticSeverity.Warning,
    "information": lsp.DiagnosticSeverity.Information,
    "hint": lsp.DiagnosticSeverity.Hint,
}


@dataclass
class _Call:
    command: str
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    matchers: tuple[Matcher, ...] = BUILTIN


@dataclass
class _SessionProblems:
    folder: Path
    board: ProblemBoard
    mapper: PathMapper
    calls: dict[str, _Call] = field(default_factory=dict)


def wire_diagnostic(problem: Problem) -> dict[str, Any]:
    """A problem as an LSP ``Diagnostic`` in JSON (tools count from 1, LSP from 0). Plain
    dicts: a flood of problems is serialised by ``json`` alone, off the loop."""
    line = problem.line - 1 if problem.line > 0 else 0
    start = problem.column - 1 if problem.column > 0 else 0
    if problem.end_line and problem.end_column:
        end = {"line": max(problem.end_line - 1, line), "character": problem.end_column}
    else:
        end = {"line": line, "character": start + 1}
    out: dict[str, Any] = {
        "range": {"start": {"line": line, "character": start}, "end": end},
        "message": problem.message or "(no message)",
        "severity": _SEVERITY_NUMBER[problem.severity],
        "source": f"pygent:{problem.tool}",
        "data": {"command": problem.command},
    }
    if problem.code:
        out["code"] = problem.code
    return out


_SEVERITY_NUMBER = {"error": 1, "warning": 2, "information": 3, "hint": 4}


def to_diagnostic(problem: Problem) -> lsp.Diagnostic:
    """A problem as an lsprotocol diagnostic (pull answers; same content as the wire form)."""
    line = max(problem.line - 1, 0)
    start = max(problem.column - 1, 0)
    if problem.end_line and problem.end_column:
        end = lsp.Position(max(problem.end_line - 1, line), max(problem.end_column, 0))
    else:
        # One character: the editor marks the spot without knowing the line's length.
        end = lsp.Position(line, start + 1)
    return lsp.Diagnostic(
        range=lsp.Range(lsp.Position(line, start), end),
        message=problem.message or "(no message)",
        severity=SEVERITY[problem.severity],
        source=f"pygent:{problem.tool}",
        code=problem.code or None,
        data={"command": problem.command},
    )


class SandboxDiagnostics:
    """The problems of one connection's sessions, published to its editor."""

    def __init__(self, server: PygentLanguageServer, cap: int = DEFAULT_CAP) -> None:
        self.server = server
        self.cap = cap
        self._tasks: set[asyncio.Future[None]] = set()
        self.sessions: dict[str, _SessionProblems] = {}
        #: The editor's own problems, by workspace folder (the ``diagnostics`` tool's).
        self.editor: dict[Path, EditorProblems] = {}
        self._queue: asyncio.Queue[tuple[str, _Call]] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: Files cleared since they had problems: a workspace pull reports them empty.
        self._cleared: set[str] = set()
        #: Called after each publication (benchmarks and tests time it).
        self.on_published: Callable[[int], None] | None = None

    # --- following sessions ------------------------------------------------------------

    def watch(self, session_id: str) -> Callable[[], None]:
        """Read the command output of ``session_id`` from now on; returns the unsubscriber."""
        try:
            session = self.server.service.get(session_id)
        except PygentError:
            return lambda: None
        if session.folder is None:
            return lambda: None  # no editor folder: nothing of the editor's to mark
        session.agent.editor_problems = self.editor_problems(session.folder)
        self.sessions[session_id] = _SessionProblems(
            session.folder, ProblemBoard(self.cap), self._mapper(session)
        )
        loop = self.server.loop

        def listener(event: ev.Event) -> None:
            if event.task_id is not None or loop is None:
                return  # a delegated task's sandbox is its own, not the editor's folder
            if isinstance(event, (ev.ToolCallProposed, ev.ToolOutput, ev.ToolCallFinished)):
                try:
                    loop.call_soon_threadsafe(self._on_event, session_id, event)
                except RuntimeError:
                    pass  # the loop closed: the connection is over

        return self.server.service.subscribe(session_id, listener)

    @staticmethod
    def _mapper(session: Any) -> PathMapper:
        folder: Path = session.folder
        files = session.runtime.files
        roots = ["/workspace", str(folder), str(files.root)]
        try:
            roots.append(str(session.runtime.workspace))
        except (AttributeError, PygentError, OSError):
            pass

        def exists(rel: str) -> bool:
            # lexists: a link is not followed out of the folder (nothing is read).
            if os.path.lexists(folder / rel):
                return True
            try:
                return bool(files.exists(rel))
            except (PygentError, OSError):
                return False

        return PathMapper(roots, exists)

    def _on_event(self, session_id: str, event: ev.Event) -> None:
        state = self.sessions.get(session_id)
        if state is None:
            return
        if isinstance(event, ev.ToolCallProposed):
            command = event.arguments.get("cmd") if event.tool in COMMAND_TOOLS else None
            if isinstance(command, str):
                state.calls[event.call_id] = _Call(command)
            elif event.tool in FILE_TOOLS and self.server.configuration.follow_along:
                self._follow(state, event)
        elif isinstance(event, ev.ToolOutput):
            call = state.calls.get(event.call_id)
            if call is not None and call.size < MAX_OUTPUT:
                call.chunks.append(event.text)
                call.size += len(event.text)
        elif isinstance(event, ev.ToolCallFinished):
            call = state.calls.pop(event.call_id, None)
            if call is None or event.status in ("denied", "cancelled"):
                return
            if not call.chunks:
                call.chunks.append(event.output)
            call.matchers = self.matchers()
            self._enqueue(session_id, call)

    def _follow(self, state: _SessionProblems, event: ev.ToolCallProposed) -> None:
        """Follow-along: reveal the file the agent is about to read or edit, without
        taking the focus (``window/showDocument``, when the client has it)."""
        caps = getattr(self.server.protocol, "client_capabilities", None)
        if not getattr(
            getattr(getattr(caps, "window", None), "show_document", None), "support", False
        ):
            return
        path = event.arguments.get("path")
        if not isinstance(path, str):
            return
        rel = PathMapper(state.mapper.roots).relative(path)
        if rel is None or not os.path.isfile(state.folder / rel):
            return  # outside the folder, or a file only the sandbox has (yet)
        line = event.arguments.get("start_line")
        selection = None
        if isinstance(line, int) and line > 0:
            selection = lsp.Range(lsp.Position(line - 1, 0), lsp.Position(line - 1, 0))
        params = lsp.ShowDocumentParams(
            uri=from_fs_path(str(state.folder / rel)) or (state.folder / rel).as_uri(),
            take_focus=False,
            selection=selection,
        )
        self._tasks.add(asyncio.ensure_future(self._show(params)))

    async def _show(self, params: lsp.ShowDocumentParams) -> None:
        try:
            await asyncio.wait_for(self.server.window_show_document_async(params), 10)
        except Exception as exc:  # the editor could not show it: following is best effort
            log.info("window/showDocument failed: %r", exc)
        finally:
            self._tasks = {t for t in self._tasks if not t.done()}

    def matchers(self) -> tuple[Matcher, ...]:
        """The user's matchers (the client's ``diagnosticMatchers``) first, then the table."""
        extra = self.server.configuration.diagnostic_matchers
        if not extra:
            return BUILTIN
        return tuple(matcher_from_config(m) for m in extra) + BUILTIN

    def _enqueue(self, session_id: str, call: _Call) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.ensure_future(self._work(self._queue))
        self._queue.put_nowait((session_id, call))

    async def _work(self, queue: asyncio.Queue[tuple[str, _Call]]) -> None:
        # One at a time, in the order the commands ended: a later run always wins.
        while True:
            session_id, call = await queue.get()
            try:
                output = "".join(call.chunks)
                if len(output) > INLINE_PARSE:
                    found = await asyncio.to_thread(recognise, output, call.command, call.matchers)
                else:
                    found = recognise(output, call.command, call.matchers)
                self.record(session_id, found.tools, found.problems)
            except Exception:  # a matcher bug must not stop later publications
                log.exception("reading the output of %r for problems failed", call.command)

    def record(self, session_id: str, tools: Iterable[str], problems: Iterable[Problem]) -> int:
        """Map ``problems`` (paths as printed) into the workspace, make them the problems
        of ``tools`` in the session, and tell the editor. Returns the files published."""
        state = self.sessions.get(session_id)
        if state is None:
            return 0
        mapped: list[Problem] = []
        folders: dict[str, str] = {}
        # A thousand problems are in a few dozen files: map (and stat) each path once.
        paths: dict[tuple[str, str], str | None] = {}
        for problem in problems:
            start = folders.get(problem.command)
            if start is None:
                start = folders[problem.command] = state.mapper.command_folder(problem.command)
            key = (problem.path, start)
            if key not in paths:
                paths[key] = state.mapper.relative(problem.path, start)
            rel = paths[key]
            if rel is not None:  # outside the workspace: not one of the editor's files
                mapped.append(problem if rel == problem.path else problem._replace(path=rel))
        changed = state.board.replace(tools, mapped)
        self._publish(state.folder, changed)
        return len(changed)

    # --- to the editor -----------------------------------------------------------------

    def _pulls(self) -> bool:
        caps = getattr(self.server.protocol, "client_capabilities", None)
        return getattr(getattr(caps, "text_document", None), "diagnostic", None) is not None

    def _publish(self, folder: Path, files: Iterable[str]) -> None:
        files = sorted(files)
        if not files:
            return
        for rel in files:
            self._cleared.add(from_fs_path(str(folder / rel)) or (folder / rel).as_uri())
        if self._pulls():
            caps = self.server.protocol.client_capabilities
            workspace_caps = getattr(getattr(caps, "workspace", None), "diagnostics", None)
            if getattr(workspace_caps, "refresh_support", False):
                asyncio.ensure_future(self._refresh())
        else:
            for rel in files:
                uri = from_fs_path(str(folder / rel)) or (folder / rel).as_uri()
                # A plain JSON object: the C json encoder writes it, where pygls's typed
                # publish goes through cattrs (3x slower for a flood; bench_diagnostics).
                self.server.protocol._send_data(
                    {
                        "jsonrpc": "2.0",
                        "method": lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
                        "params": {"uri": uri, "diagnostics": self.wire_for_uri(uri)},
                    }
                )
        if self.on_published is not None:
            self.on_published(len(files))

    async def _refresh(self) -> None:
        try:
            await asyncio.wait_for(self.server.workspace_diagnostic_refresh_async(None), 10)
        except Exception as exc:  # the client's problem: the next pull still has them
            log.info("workspace/diagnostic/refresh failed: %r", exc)

    def problems_at(self, uri: str) -> list[Problem]:
        """Every followed session's problems in the file at ``uri``."""
        path = to_fs_path(uri)
        if not path:
            return []
        out: list[Problem] = []
        for state in self.sessions.values():
            try:
                rel = Path(path).relative_to(state.folder).as_posix()
            except ValueError:
                continue
            out.extend(state.board.problems(rel))
        return out

    def for_uri(self, uri: str) -> list[lsp.Diagnostic]:
        return [to_diagnostic(p) for p in self.problems_at(uri)]

    def wire_for_uri(self, uri: str) -> list[dict[str, Any]]:
        return [wire_diagnostic(p) for p in self.problems_at(uri)]

    def all_files(self) -> list[str]:
        """The URIs of every file with problems (workspace pull)."""
        uris = {
            from_fs_path(str(state.folder / rel)) or (state.folder / rel).as_uri()
            for state in self.sessions.values()
            for rel in state.board.files()
        }
        return sorted(uris | self._cleared)

    def forget(self, session_id: str, *, publish: bool = True) -> None:
        """The session closed: its problems leave the editor."""
        state = self.sessions.pop(session_id, None)
        if state is not None and publish:
            self._publish(state.folder, state.board.clear())

    def close(self) -> None:
        """The connection ended."""
        self.sessions.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._queue = None

    # --- the editor's problems, for the agent -----------------------------------------

    def editor_problems(self, folder: Path) -> EditorProblems:
        board = self.editor.get(folder)
        if board is None:
            board = self.editor[folder] = EditorProblems()
        return board

    def editor_report(self, params: p.EditorDiagnosticsParams) -> p.EditorDiagnosticsResult:
        """``pygent/workspace/diagnostics``: store what the editor reported, by folder."""
        from pygent.lsp.code_actions import workspace_folder_of

        by_folder: dict[Path, dict[str, list[Problem]]] = {}
        for item in params.files[:MAX_EDITOR_FILES]:
            folder = workspace_folder_of(self.server, item.uri)
            path = to_fs_path(item.uri) if folder is not None else None
            if folder is None or not path:
                continue  # outside the editor's folders: not the agent's business
            rel = Path(os.path.normpath(path)).relative_to(folder).as_posix()
            by_folder.setdefault(folder, {})[rel] = [
                _from_editor(rel, d) for d in item.diagnostics[:MAX_PER_EDITOR_FILE]
            ]
        if params.replace_all:
            for folder in self.editor:
                by_folder.setdefault(folder, {})
        for folder, files in by_folder.items():
            self.editor_problems(folder).report(files, replace_all=params.replace_all)
        held = [b.problems() for b in self.editor.values()]
        return p.EditorDiagnosticsResult(
            files=sum(len(h) for h in held),
            problems=sum(len(v) for h in held for v in h.values()),
        )

    # --- pull diagnostics --------------------------------------------------------------

    def document_report(
        self, params: lsp.DocumentDiagnosticParams
    ) -> lsp.RelatedFullDocumentDiagnosticReport:
        return lsp.RelatedFullDocumentDiagnosticReport(items=self.for_uri(params.text_document.uri))

    def workspace_report(
        self, _params: lsp.WorkspaceDiagnosticParams
    ) -> lsp.WorkspaceDiagnosticReport:
        return lsp.WorkspaceDiagnosticReport(
            items=[
                lsp.WorkspaceFullDocumentDiagnosticReport(
                    uri=uri, items=self.for_uri(uri), version=None
                )
                for uri in self.all_files()
            ]
        )


def _from_editor(rel: str, d: p.EditorDiagnostic) -> Problem:
    source = (d.source or "editor").strip()[:60]
    return Problem(
        path=rel,
        line=d.range.start.line + 1,
        column=d.range.start.character + 1,
        end_line=d.range.end.line + 1,
        end_column=d.range.end.character + 1,
        message=d.message[:2000],
        severity=_EDITOR_SEVERITY.get(d.severity or 1, "error"),
        code="" if d.code is None else str(d.code)[:60],
        tool=source,
    )


_EDITOR_SEVERITY: dict[int, Severity] = {1: "error", 2: "warning", 3: "information", 4: "hint"}


def register(server: PygentLanguageServer) -> None:
    """Add pull diagnostics (``textDocument/diagnostic``, ``workspace/diagnostic``)."""
    diagnostics = server.diagnostics

    def document(params: lsp.DocumentDiagnosticParams) -> lsp.RelatedFullDocumentDiagnosticReport:
        return diagnostics.document_report(params)

    def workspace(params: lsp.WorkspaceDiagnosticParams) -> lsp.WorkspaceDiagnosticReport:
        return diagnostics.workspace_report(params)

    server.feature(lsp.TEXT_DOCUMENT_DIAGNOSTIC, DIAGNOSTIC_OPTIONS)(document)
    server.feature(lsp.WORKSPACE_DIAGNOSTIC)(workspace)


#: The pull options the server announces.
DIAGNOSTIC_OPTIONS = lsp.DiagnosticOptions(
    identifier="pygent", inter_file_dependencies=False, workspace_diagnostics=True
)
