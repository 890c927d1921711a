"""The Pygent editor protocol: every method name, command name and payload type on the wire.

This is the one file the VS Code extension mirrors (``editors/vscode/src/protocol.ts``)
and ``docs/protocol.md`` documents. Payloads are attrs classes with snake_case
attributes; :data:`CONVERTER` turns them into camelCase JSON objects and back, and
rejects wrong types, unknown keys and missing required keys with a clear message.
The shapes borrow from ACP: a prompt request resolves with a stop reason, updates
stream as a tagged union (``update.type``), permission requests carry a closed set of
options.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

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

#: Every client -> server request, in documentation order.
REQUESTS: tuple[str, ...] = (
    SESSION_NEW,
    SESSION_PROMPT,
    SESSION_CANCEL,
    SESSION_LIST,
    SESSION_CLOSE,
    SESSION_RESUME,
    SESSION_SETTINGS,
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
)

# --- methods: server -> client -----------------------------------------------------------------

#: Notification: one event of a session (``SessionUpdateParams``), in order per session.
SESSION_UPDATE = "pygent/sessionUpdate"
#: Request: ask the user to approve a tool call (``RequestPermissionParams`` ->
#: ``RequestPermissionResult``).
REQUEST_PERMISSION = "pygent/requestPermission"


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
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800
#: Application errors (JSON-RPC's implementation-defined range); ``error.data.hint`` may
#: say what to do.
SESSION_NOT_FOUND = -32001
SESSION_BUSY = -32002
RUNTIME_UNAVAILABLE = -32003
TASK_NOT_FOUND = -32004
PYGENT_ERROR = -32005
PATH_REFUSED = -32006

#: The largest message the server reads (``Content-Length``); bigger ones end the connection.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

# --- closed vocabularies -------------------------------------------------------------------------

RuntimeKind = Literal["auto", "docker", "local"]
SyncMode = Literal["copy", "mount", "none"]
ApprovalMode = Literal["auto", "confirm", "never", "read-only", "api"]
StopReason = Literal[
    "end_turn",
    "stop",
    "ask_user",
    "max_steps",
    "max_time",
    "step_timeout",
    "cancelled",
    "error",
    "refusal",
]
ChangeStatus = Literal["added", "modified", "deleted"]
ApplyMethod = Literal["auto", "applyEdit", "write"]
#: Permission options (ACP's ``PermissionOptionKind``), plus ``cancelled`` in answers.
PermissionOptionId = Literal["allow_once", "allow_always", "reject_once", "reject_always"]
PERMISSION_OPTIONS: tuple[str, ...] = ("allow_once", "allow_always", "reject_once", "reject_always")

# --- params and results -----------------------------------------------------------------------------


@attrs.define
class SessionIdParams:
    """Params of requests that only name a session (cancel, close, task list, tools list, changes)."""

    session_id: str


@attrs.define
class NewSessionParams:
    """``pygent/session/new``. ``workspace_folder``: a ``file://`` URI or an absolute path;
    without it the session gets an empty sandbox workspace (``sync_mode`` is then ``none``)."""

    workspace_folder: str | None = None
    runtime: RuntimeKind = "auto"
    persona: str | None = None
    model: str | None = None
    approval_mode: ApprovalMode | None = None  # default: the server's setting ("auto")
    sync_mode: SyncMode = "copy"
    title: str | None = None


@attrs.define
class ResumeSessionParams:
    """``pygent/session/resume``: reopen a saved session (its history) in a new sandbox."""

    session_id: str
    workspace_folder: str | None = None  # default: the folder the session was saved with
    runtime: RuntimeKind = "auto"
    persona: str | None = None
    model: str | None = None
    approval_mode: ApprovalMode | None = None
    sync_mode: SyncMode = "copy"


@attrs.define
class SessionInfo:
    """A session as lists and the new/resume/settings results show it.

    ``live`` is true for sessions open in this server; saved-only sessions (from
    ``pygent/session/list`` with ``includeSaved``) have ``live`` false and no runtime.
    """

    session_id: str
    title: str = ""
    live: bool = True
    busy: bool = False
    workspace_folder: str | None = None
    sandbox_path: str | None = None  # the sandbox workspace on the server's host
    runtime: str | None = None  # "docker" | "local" once running
    sync_mode: SyncMode = "none"
    persona: str = ""
    model: str = ""
    approval_mode: str = "auto"
    message_count: int = 0
    updated: str | None = None  # ISO 8601
    notices: list[str] = attrs.Factory(list)  # e.g. "Docker is not available: ..."


@attrs.define
class ListSessionsParams:
    include_saved: bool = False


@attrs.define
class ListSessionsResult:
    sessions: list[SessionInfo]


@attrs.define
class PromptParams:
    """``pygent/session/prompt``: run one turn; resolves when the turn ends.

    ``include_unsaved``: copy the editor's unsaved buffers into the sandbox first (copy
    mode). ``work_done_token``: report ``$/progress`` with this client-created token.
    """

    session_id: str
    prompt: str
    max_steps: int | None = None
    include_unsaved: bool = False
    work_done_token: str | int | None = None


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
    task_id: str
    status: str  # queued | running | finished | failed | timeout | cancelled
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

    ``include_unsaved``: also the editor's unsaved buffers (open documents).
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
    """One file the agent changed: ``diff`` is a unified diff from the folder to the sandbox."""

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


# --- server -> client: session updates (a tagged union on ``type``) ------------------------------


@attrs.define
class TurnStartedUpdate:
    type: Literal["turn_started"] = "turn_started"
    task_id: str | None = None
    prompt: str = ""


@attrs.define
class MessageDeltaUpdate:
    """A chunk of the assistant's reply as it streams."""

    type: Literal["message_delta"] = "message_delta"
    task_id: str | None = None
    text: str = ""


@attrs.define
class MessageDiscardedUpdate:
    """Forget the reply text streamed since the current model call began (its
    ``message_delta`` updates): the call is retried and the answer that follows replaces
    it. ``reason`` says why (e.g. the stream was cut)."""

    type: Literal["message_discarded"] = "message_discarded"
    task_id: str | None = None
    reason: str = ""


@attrs.define
class MessageDoneUpdate:
    type: Literal["message_done"] = "message_done"
    task_id: str | None = None
    text: str = ""


@attrs.define
class ToolCallProposedUpdate:
    type: Literal["tool_call_proposed"] = "tool_call_proposed"
    task_id: str | None = None
    call_id: str = ""
    tool: str = ""
    arguments: dict[str, Any] = attrs.Factory(dict)
    preview: str = ""


@attrs.define
class ToolCallStartedUpdate:
    type: Literal["tool_call_started"] = "tool_call_started"
    task_id: str | None = None
    call_id: str = ""
    tool: str = ""


@attrs.define
class ToolOutputUpdate:
    type: Literal["tool_output"] = "tool_output"
    task_id: str | None = None
    call_id: str = ""
    text: str = ""
    stream: str = "stdout"


@attrs.define
class ToolCallFinishedUpdate:
    type: Literal["tool_call_finished"] = "tool_call_finished"
    task_id: str | None = None
    call_id: str = ""
    tool: str = ""
    ok: bool = True
    output: str = ""
    status: str = "completed"  # completed | failed | denied | cancelled


@attrs.define
class UsageUpdate:
    """Tokens of one model call and the session's totals. ``estimated``: the server
    reported no usage and the counts are Pygent's estimate (clients mark them, e.g. ``~``);
    once a call is estimated, the totals are estimates too."""

    type: Literal["usage"] = "usage"
    task_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    estimated: bool = False


@attrs.define
class NoticeUpdate:
    type: Literal["notice"] = "notice"
    task_id: str | None = None
    level: str = "info"  # info | warning | error
    text: str = ""


@attrs.define
class TaskStatusUpdate:
    type: Literal["task_status"] = "task_status"
    task_id: str | None = None
    status: str = "queued"
    persona: str = ""
    prompt: str = ""
    steps: int = 0
    detail: str = ""


@attrs.define
class TurnEndedUpdate:
    type: Literal["turn_ended"] = "turn_ended"
    task_id: str | None = None
    stop_reason: StopReason = "end_turn"
    text: str = ""
    error: str = ""


@attrs.define
class PermissionUpdate:
    """A permission request was sent (``pending``) or answered/timed out (``resolved``)."""

    type: Literal["permission"] = "permission"
    task_id: str | None = None
    call_id: str = ""
    state: Literal["pending", "resolved"] = "pending"
    outcome: str = ""  # the option id chosen, or "denied: <why>"


@attrs.define
class ChangesUpdate:
    """After a turn in copy mode: the agent's unapplied changes (fetch them with
    ``pygent/workspace/changes``)."""

    type: Literal["changes"] = "changes"
    task_id: str | None = None
    count: int = 0
    paths: list[str] = attrs.Factory(list)


SessionUpdate = (
    TurnStartedUpdate
    | MessageDeltaUpdate
    | MessageDiscardedUpdate
    | MessageDoneUpdate
    | ToolCallProposedUpdate
    | ToolCallStartedUpdate
    | ToolOutputUpdate
    | ToolCallFinishedUpdate
    | UsageUpdate
    | NoticeUpdate
    | TaskStatusUpdate
    | TurnEndedUpdate
    | PermissionUpdate
    | ChangesUpdate
)

UPDATE_TYPES: dict[str, type] = {
    str(attrs.fields(cls).type.default): cls
    for cls in (
        TurnStartedUpdate,
        MessageDeltaUpdate,
        MessageDiscardedUpdate,
        MessageDoneUpdate,
        ToolCallProposedUpdate,
        ToolCallStartedUpdate,
        ToolOutputUpdate,
        ToolCallFinishedUpdate,
        UsageUpdate,
        NoticeUpdate,
        TaskStatusUpdate,
        TurnEndedUpdate,
        PermissionUpdate,
        ChangesUpdate,
    )
}


@attrs.define
class SessionUpdateParams:
    """``pygent/sessionUpdate``: ``seq`` counts 1, 2, 3... per session (gaps mean loss)."""

    session_id: str
    seq: int
    update: Any  # one of the *Update classes above


# --- server -> client: permission requests -------------------------------------------------------


@attrs.define
class PermissionOption:
    option_id: PermissionOptionId
    name: str
    kind: PermissionOptionId


@attrs.define
class ToolCallInfo:
    """The call to approve. ``preview_kind``: ``command`` (preview is the command line),
    ``diff`` (a unified diff of the file write) or ``text``."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    preview: str
    preview_kind: Literal["command", "diff", "text"] = "text"
    path: str | None = None


@attrs.define
class RequestPermissionParams:
    session_id: str
    tool_call: ToolCallInfo
    options: list[PermissionOption]
    task_id: str | None = None
    reason: str = ""  # why the policy asks (e.g. "local mode: no isolation")


@attrs.define
class RequestPermissionResult:
    """The client's answer. ``option_id`` is one of the offered options (or ``cancelled``);
    ``message`` goes to the model with a rejection; ``pattern`` narrows ``allow_always``
    (a command pattern such as ``pytest *``; default: this tool, or this command's words).
    Anything else, an error, or no answer within the timeout means: denied."""

    option_id: str
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
    REQUEST_PERMISSION: (RequestPermissionParams, RequestPermissionResult),
}


# --- the converter --------------------------------------------------------------------------------


_CAMEL = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    """``session_id`` -> ``sessionId``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


class ParamsError(ValueError):
    """Params that do not fit their type; the message names the field."""


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

    def _literal(value: Any, cls: Any) -> Any:
        allowed = typing.get_args(cls)
        if isinstance(value, bool) or value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            raise ParamsError(f"expected one of {shown}, got {value!r}")
        return value

    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _literal)

    def structure_factory(cls: type) -> Any:
        overrides = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]

    def unstructure_factory(cls: type) -> Any:
        overrides = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    return conv


#: The one converter for every payload in this file (camelCase on the wire).
CONVERTER = _make_converter()

T = TypeVar("T")


def structure(data: Any, cls: type[T]) -> T:
    """Wire JSON -> payload; raises :class:`ParamsError` naming the bad field."""
    if data is None or data == []:
        # No params, or Lua's empty table (Neovim encodes {} as []): an empty object.
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"params must be an object, got {_json_type(data)}")
    try:
        return CONVERTER.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise ParamsError(describe_error(exc, cls)) from None
    except (ParamsError, ValueError, TypeError, KeyError) as exc:
        raise ParamsError(str(exc)) from None


def unstructure(value: Any) -> Any:
    """Payload -> wire JSON (camelCase keys)."""
    return CONVERTER.unstructure(value)


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
