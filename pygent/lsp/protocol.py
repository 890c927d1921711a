"""The Pygent editor protocol: every method name, command name and payload type on the wire.

With :mod:`pygent.events` (whose events ARE the session updates) and the error codes
of :mod:`pygent.errors`, this is the one source of the protocol: the JSON Schema
``docs/protocol.schema.json`` and the VS Code extension's ``editors/vscode/src/protocol.ts``
are generated from it (``python scripts/gen_protocol.py``; ``--check`` in the tests), and
``docs/protocol.md`` documents it. Payloads are attrs classes with snake_case
attributes; :func:`converter` turns them (and events) into camelCase JSON objects and
back, and rejects wrong types, unknown keys and missing required keys with a clear
message. Fields with a closed set of values are ``Literal`` aliases (or an enum), which
the schema turns into ``enum``s and the extension into string-literal unions.
The shapes borrow from ACP: a prompt request resolves with a stop reason, updates
stream as a tagged union (``update.type``), permission requests carry a closed set of
options.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from enum import Enum
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from pygent import errors
from pygent import events as ev
from pygent.errors import ParamsError
from pygent.events import StopReason, TaskState

#: Bumped on any incompatible change; sent in ``initialize`` (``experimental.pygent``).
PROTOCOL_VERSION = 1

# --- methods: client -> server requests ----------------------------------------------------

SESSION_NEW = "pygent/session/new"
SESSION_PROMPT = "pygent/session/prompt"
SESSION_CANCEL = "pygent/session/cancel"
SESSION_LIST = "pygent/session/list"
SESSION_CLOSE = "pygent/session/close"
SESSION_RESUME = "pygent/session/resume"
SESSION_SETTINGS = "pygent/session/settings"
SESSION_TRANSCRIPT = "pygent/session/transcript"
SESSION_COMPACT = "pygent/session/compact"
SESSION_USAGE = "pygent/session/usage"
SESSION_TIMELINE = "pygent/session/timeline"
SESSION_REWIND = "pygent/session/rewind"
SESSION_REDO = "pygent/session/redo"
SESSION_FORK = "pygent/session/fork"
TASK_LIST = "pygent/task/list"
TASK_STATUS = "pygent/task/status"
TASK_CANCEL = "pygent/task/cancel"
TASK_COLLECT_FILE = "pygent/task/collectFile"
WORKSPACE_SYNC = "pygent/workspace/sync"
WORKSPACE_CHANGES = "pygent/workspace/changes"
WORKSPACE_APPLY = "pygent/workspace/apply"
WORKSPACE_DISCARD = "pygent/workspace/discard"
TOOLS_LIST = "pygent/tools/list"
TOOLS_ENABLE = "pygent/tools/enable"
TOOLS_DISABLE = "pygent/tools/disable"
CONFIGURATION = "pygent/configuration"
WORKSPACE_DIAGNOSTICS = "pygent/workspace/diagnostics"
MCP_STATUS = "pygent/mcp/status"

#: Every client -> server request, in documentation order.
REQUESTS: tuple[str, ...] = (
    SESSION_NEW,
    SESSION_PROMPT,
    SESSION_CANCEL,
    SESSION_LIST,
    SESSION_CLOSE,
    SESSION_RESUME,
    SESSION_SETTINGS,
    SESSION_TRANSCRIPT,
    SESSION_COMPACT,
    SESSION_USAGE,
    SESSION_TIMELINE,
    SESSION_REWIND,
    SESSION_REDO,
    SESSION_FORK,
    TASK_LIST,
    TASK_STATUS,
    TASK_CANCEL,
    TASK_COLLECT_FILE,
    WORKSPACE_SYNC,
    WORKSPACE_CHANGES,
    WORKSPACE_APPLY,
    WORKSPACE_DISCARD,
    TOOLS_LIST,
    TOOLS_ENABLE,
    TOOLS_DISABLE,
    CONFIGURATION,
    WORKSPACE_DIAGNOSTICS,
    MCP_STATUS,
)

# --- methods: server -> client -----------------------------------------------------------------

#: Notification: one event of a session (``SessionUpdateParams``), in order per session.
SESSION_UPDATE = "pygent/sessionUpdate"
#: Request: ask the user to approve a tool call (``RequestPermissionParams`` ->
#: ``RequestPermissionResult``).
REQUEST_PERMISSION = "pygent/requestPermission"
#: Notification: the live sessions changed (one opened, forked or closed), sent by a
#: session host to every connection so a page lists a session an editor opened later.
SESSIONS_CHANGED = "pygent/sessionsChanged"

#: Served only by a session host (``pygent serve``) for ``pygent sessions`` and
#: ``pygent serve --status``: its live sessions and attached clients (see docs/host.md).
#: Not an editor request, so not in :data:`REQUESTS`.
HOST_STATUS = "pygentHost/status"


def command_name(method: str) -> str:
    """The ``workspace/executeCommand`` name of a request: ``pygent/task/list`` -> ``pygent.task.list``."""
    return method.replace("/", ".")


#: ``workspace/executeCommand`` names (advertised in ``executeCommandProvider.commands``).
#: Each takes ONE argument, the request's params object, and returns the request's result.
COMMANDS: dict[str, str] = {command_name(m): m for m in REQUESTS}

# --- error codes (JSON-RPC ``error.code``) ------------------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = errors.ParamsError.code
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800
#: Application errors (JSON-RPC's implementation-defined range): each is the ``code`` of
#: its exception in :mod:`pygent.errors`; ``error.data.hint`` may say what to do.
SESSION_NOT_FOUND = errors.UnknownSessionError.code
SESSION_BUSY = errors.SessionBusyError.code
RUNTIME_UNAVAILABLE = errors.RuntimeUnavailable.code
TASK_NOT_FOUND = errors.TASK_NOT_FOUND
PYGENT_ERROR = errors.PygentError.code
PATH_REFUSED = errors.PathError.code

#: Every ``error.code`` the server answers with, by name (documentation order).
ERROR_CODES: dict[str, int] = {
    "PARSE_ERROR": PARSE_ERROR,
    "INVALID_REQUEST": INVALID_REQUEST,
    "METHOD_NOT_FOUND": METHOD_NOT_FOUND,
    "INVALID_PARAMS": INVALID_PARAMS,
    "INTERNAL_ERROR": INTERNAL_ERROR,
    "REQUEST_CANCELLED": REQUEST_CANCELLED,
    "SESSION_NOT_FOUND": SESSION_NOT_FOUND,
    "SESSION_BUSY": SESSION_BUSY,
    "RUNTIME_UNAVAILABLE": RUNTIME_UNAVAILABLE,
    "TASK_NOT_FOUND": TASK_NOT_FOUND,
    "PYGENT_ERROR": PYGENT_ERROR,
    "PATH_REFUSED": PATH_REFUSED,
}

#: The largest message the server reads (``Content-Length``); bigger ones end the connection.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

# --- closed vocabularies -------------------------------------------------------------------------

# Also on the wire: StopReason (an enum), TaskState and the event fields' vocabularies,
# all from pygent.events. tests/test_protocol_schema.py checks these against the core's
# own lists (service.RUNTIMES, settings.APPROVAL_MODES, approval.ApprovalOption...).

#: What a session asks for: ``bwrap`` is the bubblewrap sandbox (no engine needed); the
#: Docker engine may be Podman, remote or run gVisor: ``SessionInfo.sandbox`` names it.
RuntimeKind = Literal["auto", "docker", "bwrap", "local"]
SyncMode = Literal["cow", "copy", "mount", "none"]
ApprovalMode = Literal["auto", "confirm", "never", "read-only", "api"]
ChangeStatus = Literal["added", "modified", "deleted"]
ApplyMethod = Literal["auto", "applyEdit", "write"]
#: Permission options (ACP's ``PermissionOptionKind``).
PermissionOptionId = Literal["allow_once", "allow_always", "reject_once", "reject_always"]
PERMISSION_OPTIONS: tuple[str, ...] = typing.get_args(PermissionOptionId)
#: An answer to a permission request: an offered option, or ``cancelled`` (dismissed).
PermissionAnswer = Literal[
    "allow_once", "allow_always", "reject_once", "reject_always", "cancelled"
]
#: What a permission request's preview holds: a command line, a unified diff, or text.
PreviewKind = Literal["command", "diff", "text"]
#: What model requests say about tools (``server_profile.TOOL_CHOICES``).
ToolChoice = Literal["auto", "required", "none", "omit"]

# --- params and results -----------------------------------------------------------------------------


@attrs.define
class SessionIdParams:
    """Params of requests that only name a session (cancel, close, task list, tools list, changes)."""

    session_id: str


@attrs.define
class NewSessionParams:
    """``pygent/session/new``. ``workspaceFolder``: a ``file://`` URI or an absolute path;
    without it the session gets an empty sandbox workspace (``syncMode`` is then ``none``).
    ``approvalMode``: default the server's setting (``auto``)."""

    workspace_folder: str | None = None
    runtime: RuntimeKind = "auto"
    persona: str | None = None
    model: str | None = None
    approval_mode: ApprovalMode | None = None  # default: the server's setting ("auto")
    sync_mode: SyncMode | None = None  # default: the configuration's syncMode, else the server's
    title: str | None = None


@attrs.define
class ResumeSessionParams:
    """``pygent/session/resume``: reopen a saved session (its history) in a new sandbox.
    ``workspaceFolder``: default the folder the session was saved with."""

    session_id: str
    workspace_folder: str | None = None  # default: the folder the session was saved with
    runtime: RuntimeKind = "auto"
    persona: str | None = None
    model: str | None = None
    approval_mode: ApprovalMode | None = None
    sync_mode: SyncMode | None = None  # default: the configuration's syncMode, else the server's


@attrs.define
class SessionInfo:
    """A session as lists and the new/resume/settings results show it.

    ``live`` is true for sessions open in this server; saved-only sessions (from
    ``pygent/session/list`` with ``includeSaved``) have ``live`` false and no runtime.
    ``sandboxPath`` is the sandbox workspace on the server's host, ``runtime`` ``docker``,
    ``bwrap`` or ``local`` once running, ``sandbox`` how front ends name it (``Docker
    (image)``, ``Docker gVisor (image)``, ``Podman rootless (image)``, ``... on
    tcp://host:2376, workspace transferred``, ``bubblewrap sandbox``, ``local``),
    ``updated`` an ISO 8601 time, ``notices`` what the user should know (e.g. ``Docker
    is not available: ...``).
    """

    session_id: str
    title: str = ""
    live: bool = True
    busy: bool = False
    workspace_folder: str | None = None
    sandbox_path: str | None = None  # the sandbox workspace on the server's host
    runtime: str | None = None  # "docker" | "bwrap" | "local" once running
    sync_mode: SyncMode = "none"
    persona: str = ""
    model: str = ""
    approval_mode: ApprovalMode = "auto"
    message_count: int = 0
    updated: str | None = None  # ISO 8601
    notices: list[str] = attrs.Factory(list)  # e.g. "Docker is not available: ..."
    sandbox: str | None = None  # e.g. "Podman rootless (image)", "bubblewrap sandbox"


@attrs.define
class TranscriptResult:
    """``pygent/session/transcript``: what a client that attaches to a session shows.

    ``events`` are the session's updates so far, oldest first, merged as they stream
    (consecutive reply chunks, consecutive output of one call); ``seq`` is the ``seq`` of
    the last ``pygent/sessionUpdate`` this connection was sent for the session, so the
    live updates that follow (``seq`` + 1, ...) continue the transcript without a gap or
    a repeat. A session host (``pygent serve``, ``pygent ui``) logs every update of a
    live session; a server that owns its sessions (one editor) answers with the
    conversation so far (prompts, replies, tool calls; no streaming detail). A session
    that is not live answers with its saved history and ``seq`` 0.
    """

    events: list[ev.Event]
    seq: int


@attrs.define
class CompactParams:
    """``pygent/session/compact``: summarise the older part of the conversation now;
    ``focus`` says what the summary should keep above all."""

    session_id: str
    focus: str = ""


@attrs.define
class CompactResult:
    """``ok``: the summary replaces ``replaced`` older messages in the next requests (the
    history keeps them all); ``tokensBefore``/``tokensAfter``: the request's estimated
    size. Not ``ok``: ``error`` says why and the conversation is unchanged."""

    ok: bool
    summary: str
    replaced: int
    tokens_before: int
    tokens_after: int
    error: str


@attrs.define
class UsageResult:
    """``pygent/session/usage``: the session's usage, its delegated tasks included.
    ``cost`` is null when a model has no price; ``contextFill`` is the last request's
    share of ``contextWindow``; ``budget`` holds the limits (null: none)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    calls: int
    cost: float | None
    estimated: bool
    context_tokens: int
    context_window: int
    context_fill: float
    compactions: int
    budget: dict[str, float | None]


@attrs.define
class TurnFile:
    """A file a turn changed, or a rewind would restore. ``kind``: added, modified or deleted."""

    path: str
    kind: str


@attrs.define
class TimelineTurn:
    """One turn of ``pygent/session/timeline``. ``turnId`` (``<sessionId>:<turn>``) names it
    in ``pygent/session/rewind`` and ``fork``; ``files`` are what the turn changed;
    ``canRestoreFiles`` false means only its conversation can be rewound (``note`` says why).
    ``started``: seconds since the epoch."""

    turn_id: str
    turn: int
    prompt: str
    started: float
    files: list[TurnFile] = attrs.Factory(list)
    can_restore_files: bool = True
    note: str = ""


@attrs.define
class TimelineResult:
    """``pygent/session/timeline``: the session's turns, oldest first; ``canRedo``: a
    rewind can be undone with ``pygent/session/redo``."""

    turns: list[TimelineTurn] = attrs.Factory(list)
    can_redo: bool = False


@attrs.define
class RewindParams:
    """``pygent/session/rewind``: go back to before ``turnId`` (from the timeline; a bare
    turn number is accepted too). ``files``/``conversation``: what to rewind (both by
    default). ``dryRun``: change nothing, return in ``preview`` the files that would be
    restored and in ``kept`` those left alone (edited by the user since, mount mode)."""

    session_id: str
    turn_id: str
    files: bool = True
    conversation: bool = True
    dry_run: bool = False


@attrs.define
class RewindResult:
    """What a rewind or redo did: files restored, removed (made since), kept (edited by the
    user since), failed; ``messagesRemoved`` taken off the conversation (a redo: negative,
    put back); ``canRedo`` whether ``pygent/session/redo`` would undo it."""

    turn: int
    files: bool
    conversation: bool
    restored: list[str] = attrs.Factory(list)
    removed: list[str] = attrs.Factory(list)
    kept: list[str] = attrs.Factory(list)
    failed: list[str] = attrs.Factory(list)
    messages_removed: int = 0
    can_redo: bool = False
    preview: list[TurnFile] = attrs.Factory(list)


@attrs.define
class ForkParams:
    """``pygent/session/fork``: a new session as ``sessionId`` was before ``turnId``."""

    session_id: str
    turn_id: str


@attrs.define
class ListSessionsParams:
    include_saved: bool = False


@attrs.define
class ListSessionsResult:
    sessions: list[SessionInfo]


@attrs.define
class PromptParams:
    """``pygent/session/prompt``: run one turn; resolves when the turn ends.

    ``includeUnsaved``: copy the editor's unsaved buffers into the sandbox first (copy
    mode). ``workDoneToken``: report ``$/progress`` with this client-created token.
    ``images``: ``data:`` URLs (PNG, JPEG, GIF, WebP) sent with the prompt (a model that
    takes images is needed).
    """

    session_id: str
    prompt: str
    max_steps: int | None = None
    include_unsaved: bool = False
    work_done_token: str | int | None = None
    images: list[str] | None = None  # data: URLs of images sent with the prompt


@attrs.define
class PromptResult:
    """How the turn ended (ACP's ``PromptResponse.stopReason``), with its final text."""

    stop_reason: StopReason
    text: str = ""
    error: str = ""
    steps: int = 0
    question: str = ""  # for stop reason ask_user
    options: list[str] = attrs.Factory(list)
    changes: int = 0  # files the agent changed that are not applied yet (copy mode)


@attrs.define
class CancelResult:
    """``cancelled`` is false when nothing was running."""

    cancelled: bool


@attrs.define
class CloseResult:
    closed: bool


@attrs.define
class SessionSettingsParams:
    """``pygent/session/settings``: change any given field; returns the session info."""

    session_id: str
    approval_mode: ApprovalMode | None = None
    model: str | None = None
    persona: str | None = None
    max_steps: int | None = None


@attrs.define
class TaskParams:
    session_id: str
    task_id: str


@attrs.define
class TaskInfo:
    """A delegated task; ``result`` is its final answer once finished."""

    task_id: str
    status: TaskState
    persona: str = ""
    prompt: str = ""
    steps: int = 0
    detail: str = ""
    result: str = ""


@attrs.define
class TaskListResult:
    tasks: list[TaskInfo]


@attrs.define
class CollectFileParams:
    """Copy ``path`` from a task's sandbox into the session's (at ``dest``, default the same path)."""

    session_id: str
    task_id: str
    path: str
    dest: str | None = None


@attrs.define
class CollectFileResult:
    path: str
    size: int


@attrs.define
class SyncParams:
    """``pygent/workspace/sync``: copy what changed in the folder into the sandbox.

    ``includeUnsaved``: also the editor's unsaved buffers (open documents).
    ``full``: rescan the whole folder instead of the paths the editor reported.
    """

    session_id: str
    include_unsaved: bool = False
    full: bool = False


@attrs.define
class SyncResult:
    copied: list[str] = attrs.Factory(list)  # written into the sandbox
    removed: list[str] = attrs.Factory(list)  # deleted from the sandbox
    conflicts: list[str] = attrs.Factory(list)  # changed on both sides: sandbox kept
    scanned: int = 0  # files looked at (stat)
    duration_ms: float = 0.0


@attrs.define
class FileChange:
    """One file the agent changed: ``diff`` is a unified diff from the folder to the sandbox.

    ``conflict``: the folder's copy changed too since the last sync. ``protected``: why
    this path can run code (e.g. a git hook); such a change is applied only when named
    in ``paths``.
    """

    path: str
    status: ChangeStatus
    diff: str = ""
    binary: bool = False
    conflict: bool = False  # the folder's copy changed too since the last sync
    protected: str | None = None  # why this path can run code (applied only when named)


@attrs.define
class ChangeSet:
    session_id: str
    sync_mode: SyncMode
    changes: list[FileChange] = attrs.Factory(list)


@attrs.define
class ApplyParams:
    """``pygent/workspace/apply``: bring the agent's changes into the editor.

    ``method``: ``applyEdit`` sends ``workspace/applyEdit``; ``write`` writes the files
    on disk from the server; ``auto`` uses applyEdit when the client supports it.
    ``paths``: only these (default: every change).
    """

    session_id: str
    paths: list[str] | None = None
    method: ApplyMethod = "auto"


@attrs.define
class FailedPath:
    path: str
    reason: str


@attrs.define
class ApplyResult:
    applied: list[str] = attrs.Factory(list)
    failed: list[FailedPath] = attrs.Factory(list)


@attrs.define
class DiscardParams:
    """``pygent/workspace/discard``: restore the sandbox copies from the folder."""

    session_id: str
    paths: list[str] | None = None


@attrs.define
class DiscardResult:
    discarded: list[str] = attrs.Factory(list)


@attrs.define
class ToolsParams:
    session_id: str
    names: list[str]


@attrs.define
class ToolInfo:
    name: str
    description: str
    kind: str  # read | write | exec | control
    enabled: bool


@attrs.define
class ToolListResult:
    tools: list[ToolInfo]


@attrs.define
class McpServerInfo:
    """One MCP server of a session (docs/mcp.md). `state`: starting, ready, restarting,
    failed, disabled or stopped; `where`: sandbox, host or remote; `reason`: why it
    failed or last exited; `leftOut`: tools not offered, each with why."""

    name: str
    state: ev.McpServerState
    where: ev.McpServerWhere
    transport: str
    tools: list[str] = attrs.Factory(list)
    reason: str = ""
    restarts: int = 0
    description: str = ""
    left_out: list[str] = attrs.Factory(list)


@attrs.define
class McpStatusResult:
    servers: list[McpServerInfo]


# --- configuration ------------------------------------------------------------------------------


@attrs.define
class DiagnosticMatcher:
    """A user's output matcher: `pattern` is a regular expression over the command's
    output with the named groups `file`, `line`, `message` (optional `col`, `end_line`,
    `end_col`, `severity`, `code`); `command` a regular expression searched in the
    command line (default: the tool's name); `severity` when the output names none."""

    tool: str
    pattern: str
    command: str | None = None
    severity: Literal["error", "warning", "information", "hint"] | None = None


@attrs.define
class ServerConfiguration:
    """The settings an editor gives the server: `initializationOptions`, `settings.pygent` of
    `workspace/didChangeConfiguration`, the `pygent` section of `workspace/configuration`,
    or `settings` of `pygent/configuration`. Every key is optional; a missing (null or
    empty) key keeps the server's own setting (`pygent lsp` flags, environment,
    `pygent.toml`). Values are converted as in `pygent.toml` (`"5"` is 5).
    `runtime` and `syncMode` are the defaults of `pygent/session/new`; a timeout of 0
    means none. The API key is not a setting here: it comes from the server's
    environment (`OPENAI_API_KEY`; VS Code passes its secret storage's key there).
    """

    model: str | None = None
    base_url: str | None = None
    approval_mode: ApprovalMode | None = None
    runtime: RuntimeKind | None = None
    sync_mode: SyncMode | None = None
    image: str | None = None
    network: bool | None = None
    max_steps: int | None = None
    max_tasks: int | None = None
    step_timeout: float | None = None
    task_timeout: float | None = None
    command_timeout: float | None = None
    request_timeout: float | None = None
    temperature: float | None = None
    tool_choice: ToolChoice | None = None
    approval_timeout: float | None = None
    banned_commands: list[str] | None = None
    disabled_tools: list[str] | None = None
    #: Reveal the file the agent reads or edits (`window/showDocument`); off by default.
    follow_along: bool | None = None
    #: More output matchers for sandbox diagnostics (docs/diagnostics.md).
    diagnostic_matchers: list[DiagnosticMatcher] | None = None
    #: Session budgets of new sessions (docs/long-sessions.md): tokens (input + output),
    #: cost in USD, model calls, wall time in seconds; reaching one ends the turn with
    #: the stop reason `budget`.
    budget_tokens: int | None = None
    budget_cost: float | None = None
    budget_calls: int | None = None
    budget_time: float | None = None


@attrs.define
class EditorPosition:
    """A position as LSP writes it (0-based line and character)."""

    line: int
    character: int


@attrs.define
class EditorRange:
    start: EditorPosition
    end: EditorPosition


@attrs.define
class EditorDiagnostic:
    """One problem the editor shows, as LSP's `Diagnostic` (severity 1 error, 2 warning,
    3 information, 4 hint; missing: error)."""

    range: EditorRange
    message: str
    severity: int | None = None
    source: str | None = None
    code: str | int | None = None


@attrs.define
class FileDiagnostics:
    """Every problem of one file (an empty list clears the file)."""

    uri: str
    diagnostics: list[EditorDiagnostic]


@attrs.define
class EditorDiagnosticsParams:
    """`pygent/workspace/diagnostics`: the problems the editor knows, for the agent's
    `diagnostics` tool (VS Code sends `vscode.languages.getDiagnostics()`). Each file's
    list replaces its earlier one; `replaceAll` clears every file not listed. Files
    outside the editor's workspace folders are ignored."""

    files: list[FileDiagnostics]
    replace_all: bool = False


@attrs.define
class EditorDiagnosticsResult:
    """How many files and problems Pygent now holds from the editor."""

    files: int
    problems: int


@attrs.define
class ConfigurationParams:
    """`pygent/configuration`: the effective configuration. With `settings`, its keys are
    merged into the client's configuration first (unknown keys and bad values are then
    an error answer, not a warning)."""

    settings: ServerConfiguration | None = None


@attrs.define
class EffectiveConfiguration:
    """What new sessions get: the server's settings with the client's configuration over
    them (`stepTimeout`/`taskTimeout` null: no limit; `temperature` null: the API's
    default; `baseUrl` null: OpenAI)."""

    model: str
    base_url: str | None
    approval_mode: ApprovalMode
    runtime: RuntimeKind
    sync_mode: SyncMode
    image: str
    network: bool
    max_steps: int
    max_tasks: int
    step_timeout: float | None
    task_timeout: float | None
    command_timeout: float
    request_timeout: float
    temperature: float | None
    tool_choice: ToolChoice
    approval_timeout: float
    banned_commands: list[str]
    disabled_tools: list[str]
    follow_along: bool = False
    #: The tools of the client's `diagnosticMatchers`, in order.
    diagnostic_matchers: list[str] = attrs.Factory(list)
    #: The session budgets of new sessions (null: no limit).
    budget_tokens: int | None = None
    budget_cost: float | None = None
    budget_calls: int | None = None
    budget_time: float | None = None


@attrs.define
class ConfigurationResult:
    """The effective configuration; `clientKeys`: the keys the client's configuration
    sets; `appliedToLiveSessions`: what the last change also changed in live sessions
    (`model`, `approvalMode`, `stepTimeout`); `newSessionsOnly`: what it changed for new sessions only;
    `warnings`: problems with the configuration the client sent (unknown keys, bad values)."""

    settings: EffectiveConfiguration
    client_keys: list[str] = attrs.Factory(list)
    applied_to_live_sessions: list[str] = attrs.Factory(list)
    new_sessions_only: list[str] = attrs.Factory(list)
    warnings: list[str] = attrs.Factory(list)


# --- server -> client: session updates -------------------------------------------------------------
#
# The updates are the core events of pygent.events (SESSION_EVENTS): one definition per
# kind. On the wire an update is the event's fields but ``session_id``, camelCase, after
# its ``type`` tag. The extension names each ``<Event>Update``; the same names here are
# the events themselves, for callers that build updates.

#: ``update.type`` -> the event class that update is.
UPDATE_TYPES: dict[str, type[ev.Event]] = dict(ev.EVENT_TYPES)

TurnStartedUpdate = ev.TurnStarted
MessageDeltaUpdate = ev.MessageDelta
MessageDiscardedUpdate = ev.MessageDiscarded
MessageDoneUpdate = ev.MessageDone
ToolCallProposedUpdate = ev.ToolCallProposed
ToolCallStartedUpdate = ev.ToolCallStarted
ToolOutputUpdate = ev.ToolOutput
ToolCallFinishedUpdate = ev.ToolCallFinished
UsageUpdate = ev.Usage
CompactionUpdate = ev.Compaction
NoticeUpdate = ev.Notice
TaskStatusUpdate = ev.TaskStatus
TurnEndedUpdate = ev.TurnEnded
PermissionUpdate = ev.Permission
ChangesUpdate = ev.Changes
McpServerUpdate = ev.McpServer


@attrs.define
class SessionUpdateParams:
    """``pygent/sessionUpdate``: ``seq`` counts 1, 2, 3... per session (gaps mean loss)."""

    session_id: str
    seq: int
    update: ev.Event  # one of ev.SESSION_EVENTS


@attrs.define
class SessionsChangedParams:
    """``pygent/sessionsChanged``: the ids of the live sessions now (list them for more)."""

    session_ids: list[str]


# --- server -> client: permission requests -------------------------------------------------------


@attrs.define
class PermissionOption:
    option_id: PermissionOptionId
    name: str
    kind: PermissionOptionId


@attrs.define
class ToolCallInfo:
    """The call to approve. ``previewKind``: ``command`` (preview is the command line),
    ``diff`` (a unified diff of the file write) or ``text``."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    preview: str
    preview_kind: PreviewKind = "text"
    path: str | None = None


@attrs.define
class RequestPermissionParams:
    """``pygent/requestPermission``: approve a tool call. ``reason`` says why the policy
    asks (e.g. ``local mode: no isolation``)."""

    session_id: str
    tool_call: ToolCallInfo
    options: list[PermissionOption]
    task_id: str | None = None
    reason: str = ""


@attrs.define
class RequestPermissionResult:
    """The client's answer. ``optionId`` is one of the offered options (or ``cancelled``);
    ``message`` goes to the model with a rejection; ``pattern`` narrows ``allow_always``
    (a command pattern such as ``pytest *``; default: this tool, or this command's words).
    Anything else, an error, or no answer within the timeout means: denied."""

    option_id: PermissionAnswer
    message: str | None = None
    pattern: str | None = None


def default_permission_options() -> list[PermissionOption]:
    """The four options offered with every permission request."""
    names = {
        "allow_once": "Allow once",
        "allow_always": "Always allow in this session",
        "reject_once": "Deny",
        "reject_always": "Always deny in this session",
    }
    return [PermissionOption(k, v, k) for k, v in names.items()]  # type: ignore[arg-type]


# --- which payload goes with which method ----------------------------------------------------

#: Request -> (params type, result type).
SIGNATURES: dict[str, tuple[type, type]] = {
    SESSION_NEW: (NewSessionParams, SessionInfo),
    SESSION_PROMPT: (PromptParams, PromptResult),
    SESSION_CANCEL: (SessionIdParams, CancelResult),
    SESSION_LIST: (ListSessionsParams, ListSessionsResult),
    SESSION_CLOSE: (SessionIdParams, CloseResult),
    SESSION_RESUME: (ResumeSessionParams, SessionInfo),
    SESSION_SETTINGS: (SessionSettingsParams, SessionInfo),
    SESSION_TRANSCRIPT: (SessionIdParams, TranscriptResult),
    SESSION_COMPACT: (CompactParams, CompactResult),
    SESSION_USAGE: (SessionIdParams, UsageResult),
    SESSION_TIMELINE: (SessionIdParams, TimelineResult),
    SESSION_REWIND: (RewindParams, RewindResult),
    SESSION_REDO: (SessionIdParams, RewindResult),
    SESSION_FORK: (ForkParams, SessionInfo),
    TASK_LIST: (SessionIdParams, TaskListResult),
    TASK_STATUS: (TaskParams, TaskInfo),
    TASK_CANCEL: (TaskParams, CancelResult),
    TASK_COLLECT_FILE: (CollectFileParams, CollectFileResult),
    WORKSPACE_SYNC: (SyncParams, SyncResult),
    WORKSPACE_CHANGES: (SessionIdParams, ChangeSet),
    WORKSPACE_APPLY: (ApplyParams, ApplyResult),
    WORKSPACE_DISCARD: (DiscardParams, DiscardResult),
    TOOLS_LIST: (SessionIdParams, ToolListResult),
    TOOLS_ENABLE: (ToolsParams, ToolListResult),
    TOOLS_DISABLE: (ToolsParams, ToolListResult),
    CONFIGURATION: (ConfigurationParams, ConfigurationResult),
    WORKSPACE_DIAGNOSTICS: (EditorDiagnosticsParams, EditorDiagnosticsResult),
    MCP_STATUS: (SessionIdParams, McpStatusResult),
    REQUEST_PERMISSION: (RequestPermissionParams, RequestPermissionResult),
}
#: Notification -> params type.
NOTIFICATIONS: dict[str, type] = {
    SESSION_UPDATE: SessionUpdateParams,
    SESSIONS_CHANGED: SessionsChangedParams,
}


# --- the converter --------------------------------------------------------------------------------


_CAMEL = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    """``session_id`` -> ``sessionId``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def _strict(kind: type, label: str) -> Any:
    def hook(value: Any, _cls: Any) -> Any:
        # cattrs would turn 5 into "5" and "false" into True: wrong types must be errors.
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ParamsError(f"expected {label}, got {_json_type(value)}")
        return value

    return hook


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _literal(value: Any, cls: Any) -> Any:
    allowed = typing.get_args(cls)
    if isinstance(value, bool) or value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ParamsError(f"expected one of {shown}, got {value!r}")
    return value


def _literal_hook(vocabulary: Any) -> Any:
    return lambda value, _cls: _literal(value, vocabulary)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))
    conv.register_structure_hook(int, _strict(int, "a whole number"))
    conv.register_structure_hook(float, _strict(float, "a number"))

    def _any_dict(value: Any, _cls: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ParamsError(f"expected an object, got {_json_type(value)}")
        return value

    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _any_dict)

    def _token(value: Any, _cls: Any) -> str | int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ParamsError(f"expected a string or a number, got {_json_type(value)}")
        return value

    conv.register_structure_hook_func(lambda t: t == (str | int | None), _token)

    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _literal)

    def _enum(value: Any, cls: type[Enum]) -> Enum:
        allowed = [e.value for e in cls]
        if isinstance(value, bool) or value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            raise ParamsError(f"expected one of {shown}, got {value!r}")
        return cls(value)

    # Registered per class: a str-valued enum would otherwise meet the str hooks first.
    conv.register_structure_hook(StopReason, _enum)
    conv.register_unstructure_hook(StopReason, lambda e: e.value)

    def structure_factory(cls: type) -> Any:
        overrides = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]

    def unstructure_factory(cls: type) -> Any:
        overrides = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    _register_events(conv)
    return conv


def closed_vocabulary(t: Any) -> Any:
    """The ``Literal`` of ``Annotated[str, SomeLiteral]``, else None."""
    if typing.get_origin(t) is not typing.Annotated:
        return None
    found = [m for m in t.__metadata__ if typing.get_origin(m) is Literal]
    return found[0] if found else None


def _is_event(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, ev.Event)


def _register_events(conv: cattrs.Converter) -> None:
    """Events as session updates: ``{"type": tag, **fields but session_id}`` in camelCase.

    A field typed ``Event`` (``SessionUpdateParams.update``) takes any session event:
    written by its runtime class, read by its ``type`` tag.
    """
    structure_fns: dict[type, Any] = {}
    unstructure_fns: dict[type, Any] = {}
    for cls in ev.SESSION_EVENTS:
        hints = typing.get_type_hints(cls, include_extras=True)
        overrides: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            vocabulary = closed_vocabulary(hints[f.name])
            if f.name == "session_id":
                overrides[f.name] = override(omit=True)
            elif vocabulary is not None:  # cattrs sees the plain str: check the Literal here
                overrides[f.name] = override(
                    rename=camel(f.name), struct_hook=_literal_hook(vocabulary)
                )
            else:
                overrides[f.name] = override(rename=camel(f.name))
        structure_fns[cls] = make_dict_structure_fn(
            cls,
            conv,
            _cattrs_forbid_extra_keys=True,
            **overrides,  # type: ignore[arg-type]
        )
        unstructure_fns[cls] = make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    def unstructure_event(value: ev.Event) -> dict[str, Any]:
        fn = unstructure_fns.get(type(value))
        if fn is None:
            raise TypeError(f"{type(value).__name__} is not a session update")
        return {"type": value.type, **fn(value)}

    def structure_event(value: Any, cls: type[ev.Event]) -> ev.Event:
        if not isinstance(value, dict):
            raise ParamsError(f"expected an object, got {_json_type(value)}")
        data = dict(value)
        tag = data.pop("type", None)
        target = ev.EVENT_TYPES.get(tag) if isinstance(tag, str) else None
        if target is None or not issubclass(target, cls):
            known = ", ".join(ev.EVENT_TYPES) if cls is ev.Event else cls.type
            raise ParamsError(f"type: expected one of {known}, got {tag!r}")
        return structure_fns[target](data, target)  # type: ignore[no-any-return]

    conv.register_unstructure_hook_func(_is_event, unstructure_event)
    conv.register_structure_hook_func(_is_event, structure_event)


#: The one converter for every payload in this file (camelCase on the wire).
@functools.cache
def converter() -> cattrs.Converter:
    """The converter, built on first use: building it is a third of this module's import
    time, which every client of the protocol (``pygent attach``, the server) would pay."""
    return _make_converter()

T = TypeVar("T")


def structure(data: Any, cls: type[T]) -> T:
    """Wire JSON -> payload; raises :class:`ParamsError` naming the bad field."""
    if data is None or data == []:
        # No params, or Lua's empty table (Neovim encodes {} as []): an empty object.
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"params must be an object, got {_json_type(data)}")
    try:
        return converter().structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise ParamsError(describe_error(exc, cls)) from None
    except (ParamsError, ValueError, TypeError, KeyError) as exc:
        raise ParamsError(str(exc)) from None


def unstructure(value: Any) -> Any:
    """Payload -> wire JSON (camelCase keys)."""
    return converter().unstructure(value)


def describe_error(exc: BaseException, cls: type) -> str:
    """A one-line message from a cattrs validation error: ``sessionId: expected a string``."""
    messages: list[str] = []

    def walk(err: BaseException, path: str) -> None:
        if isinstance(err, cattrs.BaseValidationError):
            for sub, note in zip(err.exceptions, _notes(err), strict=False):
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    key = camel(str(name))
                    step = f"{path}.{key}" if path else key
                elif index is not None:
                    step = f"{path}[{index}]"
                else:
                    step = path
                walk(sub, step)
            return
        text = str(err)
        if isinstance(err, KeyError):
            text = "is required"
        elif isinstance(err, ForbiddenExtraKeysError):
            extra = ", ".join(sorted(err.extra_fields))
            text = f"unknown field(s): {extra}"
        messages.append(f"{path}: {text}" if path else text)

    walk(exc, "")
    name = cls.__name__
    return f"invalid {name}: " + "; ".join(messages or [str(exc)])


def _notes(err: cattrs.BaseValidationError) -> list[Any]:
    notes = []
    for sub in err.exceptions:
        found = None
        for note in getattr(sub, "__notes__", []) or []:
            if hasattr(note, "name") or hasattr(note, "index"):
                found = note
        notes.append(found)
    return notes
