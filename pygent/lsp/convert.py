"""Core objects (turn results, sessions, change sets) -> wire payloads of :mod:`pygent.lsp.protocol`.

Events need no conversion: they are the session updates (see :mod:`pygent.events`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from pygent import events as ev
from pygent.agent import TurnResult
from pygent.approval import ApprovalRequest
from pygent.changes import FileChange, FileEdit
from pygent.lsp import protocol as p
from pygent.service import SessionSummary, ToolState
from pygent.tasks import TaskInfo

_WIRE_EVENTS = frozenset(ev.SESSION_EVENTS)


def event_update(event: ev.Event) -> ev.Event | None:
    """The session update for a core event: the event itself, which the protocol's converter
    writes as an update (None for an event type the wire does not carry)."""
    return event if type(event) in _WIRE_EVENTS else None


def prompt_result(result: TurnResult, changes: int = 0) -> p.PromptResult:
    return p.PromptResult(
        stop_reason=result.stop_reason,
        text=result.text,
        error=result.error,
        steps=result.steps,
        question=result.question,
        options=list(result.options),
        changes=changes,
    )


def session_info(summary: SessionSummary) -> p.SessionInfo:
    return p.SessionInfo(
        session_id=summary.session_id,
        title=summary.title,
        live=summary.live,
        busy=summary.busy,
        workspace_folder=summary.workspace_folder,
        sandbox_path=summary.sandbox_path,
        runtime=summary.runtime,
        sync_mode=summary.sync_mode,  # type: ignore[arg-type]
        persona=summary.persona,
        model=summary.model,
        approval_mode=summary.approval_mode,  # type: ignore[arg-type]
        message_count=summary.message_count,
        updated=summary.updated,
        notices=list(summary.notices),
        sandbox=summary.sandbox,
    )


def task_info(info: TaskInfo, result: str = "") -> p.TaskInfo:
    return p.TaskInfo(
        task_id=info.id,
        status=info.status,  # type: ignore[arg-type]
        persona=info.persona,
        prompt=info.prompt,
        steps=info.steps,
        detail=info.detail,
        result=result,
    )


def tool_list(tools: list[ToolState]) -> p.ToolListResult:
    return p.ToolListResult([p.ToolInfo(t.name, t.description, t.kind, t.enabled) for t in tools])


def file_change(change: FileChange) -> p.FileChange:
    return p.FileChange(
        path=change.path,
        status=change.status,  # type: ignore[arg-type]
        diff=change.diff,
        binary=change.binary,
        conflict=change.conflict,
        protected=change.protected,
    )


def permission_params(request: ApprovalRequest, session_id: str) -> p.RequestPermissionParams:
    """The wire request for an approval: the call, its preview and the offered options."""
    tool = request.tool
    path = request.arguments.get("path") if isinstance(request.arguments, dict) else None
    if tool == "bash" or "cmd" in request.arguments:
        kind = "command"
    elif request.preview.startswith("--- a/"):
        kind = "diff"
    else:
        kind = "text"
    names = {o.option_id: o for o in p.default_permission_options()}
    options = [names[o.value] for o in request.options if o.value in names]
    return p.RequestPermissionParams(
        session_id=session_id,
        tool_call=p.ToolCallInfo(
            call_id=request.call_id,
            tool=tool,
            arguments=dict(request.arguments),
            preview=request.preview,
            preview_kind=kind,  # type: ignore[arg-type]
            path=str(path) if isinstance(path, str) else None,
        ),
        options=options,
        task_id=request.task_id,
        reason=request.reason,
    )


# --- workspace edits ------------------------------------------------------------------------------


def end_position(text: str, encoding: str = "utf-16") -> lsp.Position:
    """The position just past the last character of ``text`` in the client's encoding."""
    line = text.count("\n")
    last = text[text.rfind("\n") + 1 :]
    if encoding == "utf-8":
        character = len(last.encode("utf-8"))
    elif encoding == "utf-32":
        character = len(last)
    else:
        character = len(last.encode("utf-16-le")) // 2
    return lsp.Position(line=line, character=character)


@dataclasses.dataclass(frozen=True)
class EditSupport:
    """What the client's ``workspace.workspaceEdit`` capability allows."""

    document_changes: bool = True
    create: bool = True
    delete: bool = True

    @classmethod
    def of(cls, capabilities: Any) -> EditSupport:
        edit = getattr(getattr(capabilities, "workspace", None), "workspace_edit", None)
        operations = {
            str(getattr(o, "value", o)) for o in (getattr(edit, "resource_operations", None) or [])
        }
        document_changes = bool(getattr(edit, "document_changes", False))
        return cls(
            document_changes,
            document_changes and "create" in operations,
            document_changes and "delete" in operations,
        )


def workspace_edit(
    folder: Path,
    edits: list[FileEdit],
    *,
    open_texts: dict[str, str],
    encoding: str = "utf-16",
    support: EditSupport | None = None,
) -> tuple[lsp.WorkspaceEdit, list[FileEdit]]:
    """One ``WorkspaceEdit`` for the edits the client can apply, and those it cannot.

    Modified files become full-document replacements; added files a ``CreateFile`` plus
    their content (or, for a client without resource operations, an insertion into the
    new document, which editors open as a new buffer); deleted files a ``DeleteFile``
    (impossible without resource operations). ``open_texts`` maps a folder-relative
    path to the editor's open buffer, which a full-document edit must span.
    """
    support = support or EditSupport()
    changes: list[Any] = []
    plain: dict[str, list[lsp.TextEdit]] = {}
    unsupported: list[FileEdit] = []
    for edit in edits:
        uri = (folder / edit.path).as_uri()
        if edit.kind == "delete":
            if not support.delete:
                unsupported.append(edit)
                continue
            changes.append(
                lsp.DeleteFile(uri=uri, options=lsp.DeleteFileOptions(ignore_if_not_exists=True))
            )
            continue
        if edit.kind == "create":
            if support.create:
                changes.append(
                    lsp.CreateFile(uri=uri, options=lsp.CreateFileOptions(overwrite=True))
                )
            old = ""
        else:
            old = open_texts.get(edit.path, edit.old_text)
        text_edit = lsp.TextEdit(
            range=lsp.Range(
                start=lsp.Position(line=0, character=0), end=end_position(old, encoding)
            ),
            new_text=edit.new_text,
        )
        if support.document_changes:
            changes.append(
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=uri, version=None
                    ),
                    edits=[text_edit],
                )
            )
        else:
            plain[uri] = [text_edit]
    if support.document_changes:
        return lsp.WorkspaceEdit(document_changes=changes), unsupported
    return lsp.WorkspaceEdit(changes=plain), unsupported
