/**
 * The Pygent editor protocol as the extension sees it: a mirror of
 * `pygent/lsp/protocol.py` (method names, error codes, payload types).
 *
 * Keep it in step with the Python file: `tests/test_protocol_mirror.py` fails when a
 * method, command, error code, payload type or field there has no counterpart here.
 * Field names are camelCase, as the server's converter writes them on the wire.
 * This module has no runtime dependencies so the webview can import its types too.
 */

export const PROTOCOL_VERSION = 1;

// --- methods: client -> server requests ------------------------------------------------

export const SESSION_NEW = 'pygent/session/new';
export const SESSION_PROMPT = 'pygent/session/prompt';
export const SESSION_CANCEL = 'pygent/session/cancel';
export const SESSION_LIST = 'pygent/session/list';
export const SESSION_CLOSE = 'pygent/session/close';
export const SESSION_RESUME = 'pygent/session/resume';
export const SESSION_SETTINGS = 'pygent/session/settings';
export const TASK_LIST = 'pygent/task/list';
export const TASK_STATUS = 'pygent/task/status';
export const TASK_CANCEL = 'pygent/task/cancel';
export const TASK_COLLECT_FILE = 'pygent/task/collectFile';
export const WORKSPACE_SYNC = 'pygent/workspace/sync';
export const WORKSPACE_CHANGES = 'pygent/workspace/changes';
export const WORKSPACE_APPLY = 'pygent/workspace/apply';
export const WORKSPACE_DISCARD = 'pygent/workspace/discard';
export const TOOLS_LIST = 'pygent/tools/list';
export const TOOLS_ENABLE = 'pygent/tools/enable';
export const TOOLS_DISABLE = 'pygent/tools/disable';

/** Every client -> server request, in documentation order. */
export const REQUESTS = [
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
] as const;

// --- methods: server -> client -----------------------------------------------------------

/** Notification: one event of a session ({@link SessionUpdateParams}), in order per session. */
export const SESSION_UPDATE = 'pygent/sessionUpdate';
/** Request: approve a tool call ({@link RequestPermissionParams} -> {@link RequestPermissionResult}). */
export const REQUEST_PERMISSION = 'pygent/requestPermission';

/** The `workspace/executeCommand` name of a request: `pygent/task/list` -> `pygent.task.list`. */
export function commandName(method: string): string {
  return method.replaceAll('/', '.');
}

/**
 * `workspace/executeCommand` names (one argument, the request's params). Spelled out so
 * the mirror test finds every one; generic LSP clients use these, this extension sends
 * the requests themselves.
 */
export const COMMANDS = {
  'pygent.session.new': SESSION_NEW,
  'pygent.session.prompt': SESSION_PROMPT,
  'pygent.session.cancel': SESSION_CANCEL,
  'pygent.session.list': SESSION_LIST,
  'pygent.session.close': SESSION_CLOSE,
  'pygent.session.resume': SESSION_RESUME,
  'pygent.session.settings': SESSION_SETTINGS,
  'pygent.task.list': TASK_LIST,
  'pygent.task.status': TASK_STATUS,
  'pygent.task.cancel': TASK_CANCEL,
  'pygent.task.collectFile': TASK_COLLECT_FILE,
  'pygent.workspace.sync': WORKSPACE_SYNC,
  'pygent.workspace.changes': WORKSPACE_CHANGES,
  'pygent.workspace.apply': WORKSPACE_APPLY,
  'pygent.workspace.discard': WORKSPACE_DISCARD,
  'pygent.tools.list': TOOLS_LIST,
  'pygent.tools.enable': TOOLS_ENABLE,
  'pygent.tools.disable': TOOLS_DISABLE,
} as const satisfies Record<string, (typeof REQUESTS)[number]>;

// --- error codes (JSON-RPC error.code) ----------------------------------------------------

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
export const REQUEST_CANCELLED = -32800;
export const SESSION_NOT_FOUND = -32001;
export const SESSION_BUSY = -32002;
export const RUNTIME_UNAVAILABLE = -32003;
export const TASK_NOT_FOUND = -32004;
export const PYGENT_ERROR = -32005;
export const PATH_REFUSED = -32006;

export const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

// --- closed vocabularies ---------------------------------------------------------------------

export type RuntimeKind = 'auto' | 'docker' | 'local';
export type SyncMode = 'copy' | 'mount' | 'none';
export type ApprovalMode = 'auto' | 'confirm' | 'never' | 'read-only' | 'api';
export const STOP_REASONS = [
  'end_turn',
  'stop',
  'ask_user',
  'max_steps',
  'max_time',
  'step_timeout',
  'cancelled',
  'error',
  'refusal',
] as const;
export type StopReason = (typeof STOP_REASONS)[number];
export type ChangeStatus = 'added' | 'modified' | 'deleted';
export type ApplyMethod = 'auto' | 'applyEdit' | 'write';
export const PERMISSION_OPTIONS = ['allow_once', 'allow_always', 'reject_once', 'reject_always'] as const;
export type PermissionOptionId = (typeof PERMISSION_OPTIONS)[number];

// --- params and results ------------------------------------------------------------------------

export interface SessionIdParams {
  sessionId: string;
}

export interface NewSessionParams {
  /** A `file://` URI or an absolute path; without it the sandbox workspace starts empty. */
  workspaceFolder?: string | null;
  runtime?: RuntimeKind;
  persona?: string | null;
  model?: string | null;
  approvalMode?: ApprovalMode | null;
  syncMode?: SyncMode;
  title?: string | null;
}

export interface ResumeSessionParams {
  sessionId: string;
  workspaceFolder?: string | null;
  runtime?: RuntimeKind;
  persona?: string | null;
  model?: string | null;
  approvalMode?: ApprovalMode | null;
  syncMode?: SyncMode;
}

export interface SessionInfo {
  sessionId: string;
  title: string;
  live: boolean;
  busy: boolean;
  workspaceFolder: string | null;
  /** The sandbox workspace on the server's host. */
  sandboxPath: string | null;
  runtime: string | null;
  syncMode: SyncMode;
  persona: string;
  model: string;
  approvalMode: string;
  messageCount: number;
  updated: string | null;
  notices: string[];
}

export interface ListSessionsParams {
  includeSaved?: boolean;
}

export interface ListSessionsResult {
  sessions: SessionInfo[];
}

export interface PromptParams {
  sessionId: string;
  prompt: string;
  maxSteps?: number | null;
  includeUnsaved?: boolean;
  workDoneToken?: string | number | null;
}

export interface PromptResult {
  stopReason: StopReason;
  text: string;
  error: string;
  steps: number;
  question: string;
  options: string[];
  changes: number;
}

export interface CancelResult {
  cancelled: boolean;
}

export interface CloseResult {
  closed: boolean;
}

export interface SessionSettingsParams {
  sessionId: string;
  approvalMode?: ApprovalMode | null;
  model?: string | null;
  persona?: string | null;
  maxSteps?: number | null;
}

export interface TaskParams {
  sessionId: string;
  taskId: string;
}

export interface TaskInfo {
  taskId: string;
  /** queued | running | finished | failed | timeout | cancelled */
  status: string;
  persona: string;
  prompt: string;
  steps: number;
  detail: string;
  result: string;
}

export interface TaskListResult {
  tasks: TaskInfo[];
}

export interface CollectFileParams {
  sessionId: string;
  taskId: string;
  path: string;
  dest?: string | null;
}

export interface CollectFileResult {
  path: string;
  size: number;
}

export interface SyncParams {
  sessionId: string;
  includeUnsaved?: boolean;
  full?: boolean;
}

export interface SyncResult {
  copied: string[];
  removed: string[];
  conflicts: string[];
  scanned: number;
  durationMs: number;
}

/** One file the agent changed: `diff` is a unified diff from the folder to the sandbox. */
export interface FileChange {
  path: string;
  status: ChangeStatus;
  diff: string;
  binary: boolean;
  conflict: boolean;
  /** Why this path can run code (e.g. a git hook); `paths: null` skips it: apply it by name. */
  protected: string | null;
}

export interface ChangeSet {
  sessionId: string;
  syncMode: SyncMode;
  changes: FileChange[];
}

export interface ApplyParams {
  sessionId: string;
  paths?: string[] | null;
  method?: ApplyMethod;
}

export interface FailedPath {
  path: string;
  reason: string;
}

export interface ApplyResult {
  applied: string[];
  failed: FailedPath[];
}

export interface DiscardParams {
  sessionId: string;
  paths?: string[] | null;
}

export interface DiscardResult {
  discarded: string[];
}

export interface ToolsParams {
  sessionId: string;
  names: string[];
}

export interface ToolInfo {
  name: string;
  description: string;
  kind: string;
  enabled: boolean;
}

export interface ToolListResult {
  tools: ToolInfo[];
}

// --- server -> client: session updates (a union tagged by `type`) -------------------------------

/** Fields every update carries: `taskId` is set when a delegated task produced it. */
interface UpdateBase {
  taskId: string | null;
}

export interface TurnStartedUpdate extends UpdateBase {
  type: 'turn_started';
  prompt: string;
}

export interface MessageDeltaUpdate extends UpdateBase {
  type: 'message_delta';
  text: string;
}

/**
 * Forget the reply text streamed since the current model call began (its `message_delta`
 * updates): the call is retried and the answer that follows replaces it.
 */
export interface MessageDiscardedUpdate extends UpdateBase {
  type: 'message_discarded';
  /** Why, e.g. the stream was cut. */
  reason: string;
}

export interface MessageDoneUpdate extends UpdateBase {
  type: 'message_done';
  text: string;
}

export interface ToolCallProposedUpdate extends UpdateBase {
  type: 'tool_call_proposed';
  callId: string;
  tool: string;
  arguments: Record<string, unknown>;
  preview: string;
}

export interface ToolCallStartedUpdate extends UpdateBase {
  type: 'tool_call_started';
  callId: string;
  tool: string;
}

export interface ToolOutputUpdate extends UpdateBase {
  type: 'tool_output';
  callId: string;
  text: string;
  stream: string;
}

export interface ToolCallFinishedUpdate extends UpdateBase {
  type: 'tool_call_finished';
  callId: string;
  tool: string;
  ok: boolean;
  output: string;
  /** completed | failed | denied | cancelled */
  status: string;
}

export interface UsageUpdate extends UpdateBase {
  type: 'usage';
  promptTokens: number;
  completionTokens: number;
  totalPromptTokens: number;
  totalCompletionTokens: number;
  /** The server reported no usage: the counts are Pygent's estimate (show them with `~`). */
  estimated: boolean;
}

export interface NoticeUpdate extends UpdateBase {
  type: 'notice';
  /** info | warning | error */
  level: string;
  text: string;
}

export interface TaskStatusUpdate extends UpdateBase {
  type: 'task_status';
  status: string;
  persona: string;
  prompt: string;
  steps: number;
  detail: string;
}

export interface TurnEndedUpdate extends UpdateBase {
  type: 'turn_ended';
  stopReason: StopReason;
  text: string;
  error: string;
}

/** A permission request was sent (`pending`) or answered / timed out (`resolved`). */
export interface PermissionUpdate extends UpdateBase {
  type: 'permission';
  callId: string;
  state: 'pending' | 'resolved';
  outcome: string;
}

/** After a turn in copy mode: the agent's unapplied changes (fetch with WORKSPACE_CHANGES). */
export interface ChangesUpdate extends UpdateBase {
  type: 'changes';
  count: number;
  paths: string[];
}

export type SessionUpdate =
  | TurnStartedUpdate
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
  | ChangesUpdate;

export type SessionUpdateType = SessionUpdate['type'];

/** `pygent/sessionUpdate`: `seq` counts 1, 2, 3... per session (a gap means loss). */
export interface SessionUpdateParams {
  sessionId: string;
  seq: number;
  update: SessionUpdate;
}

// --- server -> client: permission requests ----------------------------------------------------------

export interface PermissionOption {
  optionId: PermissionOptionId;
  name: string;
  kind: PermissionOptionId;
}

/** `previewKind`: `command` (the command line), `diff` (a unified diff of a file write) or `text`. */
export interface ToolCallInfo {
  callId: string;
  tool: string;
  arguments: Record<string, unknown>;
  preview: string;
  previewKind: 'command' | 'diff' | 'text';
  path: string | null;
}

export interface RequestPermissionParams {
  sessionId: string;
  toolCall: ToolCallInfo;
  options: PermissionOption[];
  taskId: string | null;
  reason: string;
}

/** `optionId` is an offered option or `cancelled`; `message` goes to the model with a rejection. */
export interface RequestPermissionResult {
  optionId: PermissionOptionId | 'cancelled';
  message?: string | null;
  pattern?: string | null;
}
