"""``textDocument/codeAction``: "Ask Pygent to fix", "Explain with Pygent", "Write tests for
this with Pygent", run through ``workspace/executeCommand`` ``pygent.codeAction``.

The actions are plain commands (no edit), so every client runs them as it is: VS Code's
lightbulb, Neovim's ``vim.lsp.buf.code_action()``, eglot's ``eglot-code-actions``. Running
one starts a turn, in this connection's idle session on that folder or a new session,
with a prompt holding the file, the range, the diagnostics and the code around it; the
command answers at once with the session id (the turn streams as usual), because
``$/cancelRequest`` cannot stop an ``executeCommand`` handler.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.uris import to_fs_path

from pygent.errors import ParamsError
from pygent.lsp import protocol as p

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer

log = logging.getLogger(__name__)

#: The ``workspace/executeCommand`` command behind every action (one argument, a dict).
COMMAND = "pygent.codeAction"
#: Lines of code shown around the range.
CONTEXT_LINES = 10
#: Files larger than this are not read for context.
MAX_FILE = 2 * 1024 * 1024


@dataclass(frozen=True)
class Action:
    kind: str
    title: str
    lsp_kind: str
    ask: str


ACTIONS: dict[str, Action] = {
    "fix": Action(
        "fix",
        "Ask Pygent to fix",
        lsp.CodeActionKind.QuickFix,
        "Fix the problem(s) below. Change as little as needed, then run the check that "
        "reported them again to confirm they are gone.",
    ),
    "explain": Action(
        "explain",
        "Explain with Pygent",
        lsp.CodeActionKind.Empty,
        "Explain the code below and the problem(s) reported on it, if any. Do not change any file.",
    ),
    "tests": Action(
        "tests",
        "Write tests for this with Pygent",
        lsp.CodeActionKind.Empty,
        "Write tests for the code below, in the project's test style and folder, and run them.",
    ),
}


def workspace_folder_of(server: PygentLanguageServer, uri: str) -> Path | None:
    """The editor's workspace folder (or a session's folder) holding ``uri``; None: the
    file is none of the editor's (another folder, not a ``file:`` URI)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not path:
        return None
    file = Path(os.path.normpath(os.path.abspath(path)))
    folders: list[Path] = []
    try:
        ws = server.workspace
        folders = [Path(to_fs_path(f.uri) or "/") for f in ws.folders.values()]
        if ws.root_path:
            folders.append(Path(ws.root_path))
    except RuntimeError:  # before initialize
        pass
    folders.extend(s.folder for s in server.service.sessions if s.folder is not None)
    best: Path | None = None
    for folder in folders:
        folder = Path(os.path.abspath(folder))
        if folder != Path("/") and file != folder and file.is_relative_to(folder):
            if best is None or len(folder.parts) > len(best.parts):
                best = folder
    return best


class CodeActions:
    """The code actions of one server and the command that runs them."""

    def __init__(self, server: PygentLanguageServer) -> None:
        self.server = server
        self._turns: set[asyncio.Future[Any]] = set()

    # --- offering ------------------------------------------------------------------------

    def folder_of(self, uri: str) -> Path | None:
        return workspace_folder_of(self.server, uri)

    def offer(self, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        uri = params.text_document.uri
        if self.folder_of(uri) is None:
            return []
        only = params.context.only
        diagnostics = list(params.context.diagnostics or [])
        plain = [self.server.protocol._converter.unstructure(d) for d in diagnostics]
        out: list[lsp.CodeAction] = []
        for action in ACTIONS.values():
            if action.kind == "fix" and not diagnostics:
                continue  # nothing to fix on a bare selection
            if only and not any(action.lsp_kind.startswith(k) for k in only):
                continue
            argument = {
                "action": action.kind,
                "uri": uri,
                "range": self.server.protocol._converter.unstructure(params.range),
                "diagnostics": plain,
            }
            out.append(
                lsp.CodeAction(
                    title=action.title,
                    kind=action.lsp_kind or None,
                    diagnostics=diagnostics or None if action.kind == "fix" else None,
                    is_preferred=True if action.kind == "fix" else None,
                    command=lsp.Command(title=action.title, command=COMMAND, arguments=[argument]),
                )
            )
        return out

    # --- running -------------------------------------------------------------------------

    async def run(self, *args: Any) -> dict[str, Any]:
        """``pygent.codeAction``: start the turn; answers ``{sessionId, prompt}`` at once."""
        raw = _plain(args[0]) if args else None
        if not isinstance(raw, dict):
            raise _params("pygent.codeAction takes one object argument")
        action = ACTIONS.get(str(raw.get("action")))
        uri = raw.get("uri")
        if action is None or not isinstance(uri, str):
            raise _params(f"action must be one of {', '.join(ACTIONS)} with a uri")
        folder = self.folder_of(uri)
        if folder is None:
            raise _params(f"{uri} is not in the editor's workspace")
        prompt = self.prompt(action, uri, folder, raw.get("range"), raw.get("diagnostics") or [])
        handlers = self.server.handlers
        session_id = raw.get("sessionId") or self._idle_session(folder)
        if session_id is None:
            info = await handlers.session_new(
                p.structure({"workspaceFolder": str(folder)}, p.NewSessionParams), None
            )
            session_id = info.session_id
        params = p.PromptParams(session_id=session_id, prompt=prompt)
        turn = asyncio.ensure_future(handlers.session_prompt(params, None))
        self._turns.add(turn)
        turn.add_done_callback(self._turn_done)
        return {"sessionId": session_id, "prompt": prompt}

    def _turn_done(self, turn: asyncio.Future[Any]) -> None:
        self._turns.discard(turn)
        if not turn.cancelled() and turn.exception() is not None:
            exc = turn.exception()
            log.warning("the code action's turn failed: %s", exc)
            self.server.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Error, message=f"Pygent: {exc}")
            )

    def _idle_session(self, folder: Path) -> str | None:
        handlers = self.server.handlers
        for session in reversed(self.server.service.sessions):
            if session.folder == folder and not session.busy and handlers.attached(session.id):
                return session.id
        return None

    def prompt(
        self, action: Action, uri: str, folder: Path, range_: Any, diagnostics: list[Any]
    ) -> str:
        """The turn's prompt: the ask, the file and range, the problems, the code around."""
        path = Path(to_fs_path(uri) or "")
        rel = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
        start, end = _lines(range_)
        lines = [action.ask, "", f"File: {rel}, lines {start + 1}-{end + 1}."]
        if diagnostics:
            lines.append("Problems reported there:")
            for d in diagnostics[:20]:
                d = d if isinstance(d, dict) else {}
                line = (((d.get("range") or {}).get("start") or {}).get("line") or 0) + 1
                source = d.get("source") or "editor"
                code = f" {d['code']}" if d.get("code") not in (None, "") else ""
                message = " ".join(str(d.get("message", "")).split())[:400]
                lines.append(f"- line {line}: [{source}{code}] {message}")
        text = self._text(uri, path)
        if text is not None:
            all_lines = text.splitlines()
            lo, hi = max(start - CONTEXT_LINES, 0), min(end + CONTEXT_LINES + 1, len(all_lines))
            numbered = "\n".join(f"{i + 1:5d}  {all_lines[i]}" for i in range(lo, hi))
            lines += [
                "",
                f"The code around it ({rel}, lines {lo + 1}-{hi}):",
                "```",
                numbered,
                "```",
            ]
        return "\n".join(lines)

    def _text(self, uri: str, path: Path) -> str | None:
        try:
            document = self.server.workspace.text_documents.get(uri)
        except RuntimeError:
            document = None
        if document is not None:
            return str(document.source)
        try:
            # O_NOFOLLOW: a link planted in the folder is not followed out of it.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            return None
        return data.decode("utf-8", errors="replace")


def _lines(range_: Any) -> tuple[int, int]:
    try:
        start = int(range_["start"]["line"])
        end = int(range_["end"]["line"])
    except (TypeError, KeyError, ValueError):
        return 0, 0
    start = max(start, 0)
    return start, max(end, start)


def _plain(value: Any) -> Any:
    """pygls hands command arguments over as namedtuples or attrs objects: back to JSON values."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _params(message: str) -> Exception:
    from pygent.lsp.handlers import _error

    return _error(ParamsError(message))


def register(server: PygentLanguageServer) -> CodeActions:
    """Add ``textDocument/codeAction`` and the ``pygent.codeAction`` command to ``server``."""
    actions = CodeActions(server)

    def code_action(params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        return actions.offer(params)

    async def run(*args: Any) -> dict[str, Any]:
        return await actions.run(*args)

    server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(
            code_action_kinds=[lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.Empty]
        ),
    )(code_action)
    server.command(COMMAND)(run)
    return actions
