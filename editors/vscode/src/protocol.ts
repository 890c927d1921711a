/**
 * The Pygent editor protocol as the extension sees it: method names, error codes,
 * closed vocabularies and payload types, with camelCase fields as on the wire.
 *
 * GENERATED from docs/protocol.schema.json (itself generated from pygent/lsp/protocol.py,
 * pygent/events.py and pygent/errors.py) by `python scripts/gen_protocol.py`. Do not edit by hand:
 * change the Python types and run the script; the tests run it with `--check`.
 * This module has no runtime dependencies so the webview can import its types too.
 */

export const PROTOCOL_VERSION = 1;
export const MAX_MESSAGE_BYTES = 33554432;

// --- methods -------------------------------------------------------------------------------------

/** Request (client -> server): {@link NewSessionParams} -> {@link SessionInfo}. */
export const SESSION_NEW = 'pygent/session/new';
/** Request (client -> server): {@link PromptParams} -> {@link PromptResult}. */
export const SESSION_PROMPT = 'pygent/session/prompt';
/** Request (client -> server): {@link SessionIdParams} -> {@link CancelResult}. */
export const SESSION_CANCEL = 'pygent/session/cancel';
/** Request (client -> server): {@link ListSessionsParams} -> {@link ListSessionsResult}. */
export const SESSION_LIST = 'pygent/session/list';
/** Request (client -> server): {@link SessionIdParams} -> {@link CloseResult}. */
export const SESSION_CLOSE = 'pygent/session/close';
/** Request (client -> server): {@link ResumeSessionParams} -> {@link SessionInfo}. */
export const SESSION_RESUME = 'pygent/session/resume';
/** Request (client -> server): {@link SessionSettingsParams} -> {@link SessionInfo}. */
export const SESSION_SETTINGS = 'pygent/session/settings';
/** Request (client -> server): {@link SessionIdParams} -> {@link TranscriptResult}. */
export const SESSION_TRANSCRIPT = 'pygent/session/transcript';
/** Request (client -> server): {@link CompactParams} -> {@link CompactResult}. */
export const SESSION_COMPACT = 'pygent/session/compact';
/** Request (client -> server): {@link SessionIdParams} -> {@link UsageResult}. */
export const SESSION_USAGE = 'pygent/session/usage';
/** Request (client -> server): {@link SessionIdParams} -> {@link TimelineResult}. */
export const SESSION_TIMELINE = 'pygent/session/timeline';
/** Request (client -> server): {@link RewindParams} -> {@link RewindResult}. */
export const SESSION_REWIND = 'pygent/session/rewind';
/** Request (client -> server): {@link SessionIdParams} -> {@link RewindResult}. */
export const SESSION_REDO = 'pygent/session/redo';
/** Request (client -> server): {@link ForkParams} -> {@link SessionInfo}. */
export const SESSION_FORK = 'pygent/session/fork';
/** Request (client -> server): {@link SessionIdParams} -> {@link TaskListResult}. */
export const TASK_LIST = 'pygent/task/list';
/** Request (client -> server): {@link TaskParams} -> {@link TaskInfo}. */
export const TASK_STATUS = 'pygent/task/status';
/** Request (client -> server): {@link TaskParams} -> {@link CancelResult}. */
export const TASK_CANCEL = 'pygent/task/cancel';
/** Request (client -> server): {@link CollectFileParams} -> {@link CollectFileResult}. */
export const TASK_COLLECT_FILE = 'pygent/task/collectFile';
/** Request (client -> server): {@link SyncParams} -> {@link SyncResult}. */
export const WORKSPACE_SYNC = 'pygent/workspace/sync';
/** Request (client -> server): {@link SessionIdParams} -> {@link ChangeSet}. */
export const WORKSPACE_CHANGES = 'pygent/workspace/changes';
/** Request (client -> server): {@link ApplyParams} -> {@link ApplyResult}. */
export const WORKSPACE_APPLY = 'pygent/workspace/apply';
/** Request (client -> server): {@link DiscardParams} -> {@link DiscardResult}. */
export const WORKSPACE_DISCARD = 'pygent/workspace/discard';
/** Request (client -> server): {@link SessionIdParams} -> {@link ToolListResult}. */
export const TOOLS_LIST = 'pygent/tools/list';
/** Request (client -> server): {@link ToolsParams} -> {@link ToolListResult}. */
export const TOOLS_ENABLE = 'pygent/tools/enable';
/** Request (client -> server): {@link ToolsParams} -> {@link ToolListResult}. */
export const TOOLS_DISABLE = 'pygent/tools/disable';
/** Request (client -> server): {@link ConfigurationParams} -> {@link ConfigurationResult}. */
export const CONFIGURATION = 'pygent/configuration';
/**
 * Request (client -> server): {@link EditorDiagnosticsParams} -> {@link EditorDiagnosticsResult}.
 */
export const WORKSPACE_DIAGNOSTICS = 'pygent/workspace/diagnostics';
/** Request (client -> server): {@link SessionIdParams} -> {@link McpStatusResult}. */
export const MCP_STATUS = 'pygent/mcp/status';
/** Notification (server -> client): {@link SessionUpdateParams}. */
export const SESSION_UPDATE = 'pygent/sessionUpdate';
/** Notification (server -> client): {@link SessionsChangedParams}. */
export const SESSIONS_CHANGED = 'pygent/sessionsChanged';
/**
 * Request (server -> client): {@link RequestPermissionParams} -> {@link RequestPermissionResult}.
 */
export const REQUEST_PERMISSION = 'pygent/requestPermission';

/** Every client -> server request, in documentation order. */
export const REQUESTS = [
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
] as const;

/** The `workspace/executeCommand` name of a request: `pygent/task/list` -> `pygent.task.list`. */
export function commandName(method: string): string {
  return method.replaceAll('/', '.');
}

/** `workspace/executeCommand` names (one argument: the request's params). */
export const COMMANDS = {
  'pygent.session.new': SESSION_NEW,
  'pygent.session.prompt': SESSION_PROMPT,
  'pygent.session.cancel': SESSION_CANCEL,
  'pygent.session.list': SESSION_LIST,
  'pygent.session.close': SESSION_CLOSE,
  'pygent.session.resume': SESSION_RESUME,
  'pygent.session.settings': SESSION_SETTINGS,
  'pygent.session.transcript': SESSION_TRANSCRIPT,
  'pygent.session.compact': SESSION_COMPACT,
  'pygent.session.usage': SESSION_USAGE,
  'pygent.session.timeline': SESSION_TIMELINE,
  'pygent.session.rewind': SESSION_REWIND,
  'pygent.session.redo': SESSION_REDO,
  'pygent.session.fork': SESSION_FORK,
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
  'pygent.configuration': CONFIGURATION,
  'pygent.workspace.diagnostics': WORKSPACE_DIAGNOSTICS,
  'pygent.mcp.status': MCP_STATUS,
} as const satisfies Record<string, (typeof REQUESTS)[number]>;

/** The params and result of every request, by method. */
export interface RequestTypes {
  'pygent/session/new': { params: NewSessionParams; result: SessionInfo };
  'pygent/session/prompt': { params: PromptParams; result: PromptResult };
  'pygent/session/cancel': { params: SessionIdParams; result: CancelResult };
  'pygent/session/list': { params: ListSessionsParams; result: ListSessionsResult };
  'pygent/session/close': { params: SessionIdParams; result: CloseResult };
  'pygent/session/resume': { params: ResumeSessionParams; result: SessionInfo };
  'pygent/session/settings': { params: SessionSettingsParams; result: SessionInfo };
  'pygent/session/transcript': { params: SessionIdParams; result: TranscriptResult };
  'pygent/session/compact': { params: CompactParams; result: CompactResult };
  'pygent/session/usage': { params: SessionIdParams; result: UsageResult };
  'pygent/session/timeline': { params: SessionIdParams; result: TimelineResult };
  'pygent/session/rewind': { params: RewindParams; result: RewindResult };
  'pygent/session/redo': { params: SessionIdParams; result: RewindResult };
  'pygent/session/fork': { params: ForkParams; result: SessionInfo };
  'pygent/task/list': { params: SessionIdParams; result: TaskListResult };
  'pygent/task/status': { params: TaskParams; result: TaskInfo };
  'pygent/task/cancel': { params: TaskParams; result: CancelResult };
  'pygent/task/collectFile': { params: CollectFileParams; result: CollectFileResult };
  'pygent/workspace/sync': { params: SyncParams; result: SyncResult };
  'pygent/workspace/changes': { params: SessionIdParams; result: ChangeSet };
  'pygent/workspace/apply': { params: ApplyParams; result: ApplyResult };
  'pygent/workspace/discard': { params: DiscardParams; result: DiscardResult };
  'pygent/tools/list': { params: SessionIdParams; result: ToolListResult };
  'pygent/tools/enable': { params: ToolsParams; result: ToolListResult };
  'pygent/tools/disable': { params: ToolsParams; result: ToolListResult };
  'pygent/configuration': { params: ConfigurationParams; result: ConfigurationResult };
  'pygent/workspace/diagnostics': { params: EditorDiagnosticsParams; result: EditorDiagnosticsResult };
  'pygent/mcp/status': { params: SessionIdParams; result: McpStatusResult };
  'pygent/requestPermission': { params: RequestPermissionParams; result: RequestPermissionResult };
}

// --- error codes (JSON-RPC error.code) -----------------------------------------------------------

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
/**
 * ParamsError: Params that do not fit their type; the message names the field (`invalid PromptParams: sessionId: expected a string, got number`).
 */
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
export const REQUEST_CANCELLED = -32800;
/** UnknownSessionError: No live session has this id. */
export const SESSION_NOT_FOUND = -32001;
/** SessionBusyError: A turn is already running in the session. */
export const SESSION_BUSY = -32002;
/** RuntimeUnavailable: The asked-for sandbox (e.g. Docker) cannot be used. */
export const RUNTIME_UNAVAILABLE = -32003;
/** UnknownTaskError: No task has this id. */
export const TASK_NOT_FOUND = -32004;
/** PygentError: Base class: a clear, user-facing message (no traceback needed). */
export const PYGENT_ERROR = -32005;
/** PathError: A file path was refused: outside the workspace, a link out, not a regular file. */
export const PATH_REFUSED = -32006;

// --- closed vocabularies -------------------------------------------------------------------------

/** Why a turn ended (borrowed from ACP's prompt response). */
export type StopReason =
  | 'end_turn'
  | 'stop'
  | 'ask_user'
  | 'max_steps'
  | 'max_time'
  | 'step_timeout'
  | 'cancelled'
  | 'error'
  | 'budget'
  | 'max_tokens'
  | 'refusal';
export type TaskState = 'queued' | 'running' | 'finished' | 'failed' | 'timeout' | 'cancelled';
export type RuntimeKind = 'auto' | 'docker' | 'bwrap' | 'local';
export type SyncMode = 'cow' | 'copy' | 'mount' | 'none';
export type ApprovalMode = 'auto' | 'confirm' | 'never' | 'read-only' | 'api';
export type ChangeStatus = 'added' | 'modified' | 'deleted';
export type ApplyMethod = 'auto' | 'applyEdit' | 'write';
export type PermissionOptionId = 'allow_once' | 'allow_always' | 'reject_once' | 'reject_always';
export type PermissionAnswer =
  | 'allow_once'
  | 'allow_always'
  | 'reject_once'
  | 'reject_always'
  | 'cancelled';
export type PreviewKind = 'command' | 'diff' | 'text';
export type ToolChoice = 'auto' | 'required' | 'none' | 'omit';
export type ToolCallStatus = 'completed' | 'failed' | 'denied' | 'cancelled';
export type NoticeLevel = 'info' | 'warning' | 'error';
export type OutputStream = 'stdout' | 'stderr';
export type PermissionState = 'pending' | 'resolved';
export type McpServerState =
  | 'starting'
  | 'ready'
  | 'restarting'
  | 'failed'
  | 'disabled'
  | 'stopped';
export type McpServerWhere = 'sandbox' | 'host' | 'remote';

// --- params and results --------------------------------------------------------------------------

/**
 * `pygent/session/new`. `workspaceFolder`: a `file://` URI or an absolute path;
 * without it the session gets an empty sandbox workspace (`syncMode` is then `none`).
 * `approvalMode`: default the server's setting (`auto`).
 */
export interface NewSessionParams {
  workspaceFolder?: string | null;
  runtime?: RuntimeKind;
  persona?: string | null;
  model?: string | null;
  approvalMode?: ApprovalMode | null;
  syncMode?: SyncMode | null;
  title?: string | null;
}

/**
 * A session as lists and the new/resume/settings results show it.
 *
 * `live` is true for sessions open in this server; saved-only sessions (from
 * `pygent/session/list` with `includeSaved`) have `live` false and no runtime.
 * `sandboxPath` is the sandbox workspace on the server's host, `runtime` `docker`,
 * `bwrap` or `local` once running, `sandbox` how front ends name it (`Docker
 * (image)`, `Docker gVisor (image)`, `Podman rootless (image)`, `... on
 * tcp://host:2376, workspace transferred`, `bubblewrap sandbox`, `local`),
 * `updated` an ISO 8601 time, `notices` what the user should know (e.g. `Docker
 * is not available: ...`).
 */
export interface SessionInfo {
  sessionId: string;
  title: string;
  live: boolean;
  busy: boolean;
  workspaceFolder: string | null;
  sandboxPath: string | null;
  runtime: string | null;
  syncMode: SyncMode;
  persona: string;
  model: string;
  approvalMode: ApprovalMode;
  messageCount: number;
  updated: string | null;
  notices: string[];
  sandbox: string | null;
}

/**
 * `pygent/session/prompt`: run one turn; resolves when the turn ends.
 *
 * `includeUnsaved`: copy the editor's unsaved buffers into the sandbox first (copy
 * mode). `workDoneToken`: report `$/progress` with this client-created token.
 * `images`: `data:` URLs (PNG, JPEG, GIF, WebP) sent with the prompt (a model that
 * takes images is needed).
 */
export interface PromptParams {
  sessionId: string;
  prompt: string;
  maxSteps?: number | null;
  includeUnsaved?: boolean;
  workDoneToken?: string | number | null;
  images?: string[] | null;
}

/** How the turn ended (ACP's `PromptResponse.stopReason`), with its final text. */
export interface PromptResult {
  stopReason: StopReason;
  text: string;
  error: string;
  steps: number;
  question: string;
  options: string[];
  changes: number;
}

/** Params of requests that only name a session (cancel, close, task list, tools list, changes). */
export interface SessionIdParams {
  sessionId: string;
}

/** `cancelled` is false when nothing was running. */
export interface CancelResult {
  cancelled: boolean;
}

export interface ListSessionsParams {
  includeSaved?: boolean;
}

export interface ListSessionsResult {
  sessions: SessionInfo[];
}

export interface CloseResult {
  closed: boolean;
}

/**
 * `pygent/session/resume`: reopen a saved session (its history) in a new sandbox.
 * `workspaceFolder`: default the folder the session was saved with.
 */
export interface ResumeSessionParams {
  sessionId: string;
  workspaceFolder?: string | null;
  runtime?: RuntimeKind;
  persona?: string | null;
  model?: string | null;
  approvalMode?: ApprovalMode | null;
  syncMode?: SyncMode | null;
}

/** `pygent/session/settings`: change any given field; returns the session info. */
export interface SessionSettingsParams {
  sessionId: string;
  approvalMode?: ApprovalMode | null;
  model?: string | null;
  persona?: string | null;
  maxSteps?: number | null;
}

/**
 * `pygent/session/transcript`: what a client that attaches to a session shows.
 *
 * `events` are the session's updates so far, oldest first, merged as they stream
 * (consecutive reply chunks, consecutive output of one call); `seq` is the `seq` of
 * the last `pygent/sessionUpdate` this connection was sent for the session, so the
 * live updates that follow (`seq` + 1, ...) continue the transcript without a gap or
 * a repeat. A session host (`pygent serve`, `pygent ui`) logs every update of a
 * live session; a server that owns its sessions (one editor) answers with the
 * conversation so far (prompts, replies, tool calls; no streaming detail). A session
 * that is not live answers with its saved history and `seq` 0.
 */
export interface TranscriptResult {
  events: SessionUpdate[];
  seq: number;
}

/**
 * `pygent/session/compact`: summarise the older part of the conversation now;
 * `focus` says what the summary should keep above all.
 */
export interface CompactParams {
  sessionId: string;
  focus?: string;
}

/**
 * `ok`: the summary replaces `replaced` older messages in the next requests (the
 * history keeps them all); `tokensBefore`/`tokensAfter`: the request's estimated
 * size. Not `ok`: `error` says why and the conversation is unchanged.
 */
export interface CompactResult {
  ok: boolean;
  summary: string;
  replaced: number;
  tokensBefore: number;
  tokensAfter: number;
  error: string;
}

/**
 * `pygent/session/usage`: the session's usage, its delegated tasks included.
 * `cost` is null when a model has no price; `contextFill` is the last request's
 * share of `contextWindow`; `budget` holds the limits (null: none).
 */
export interface UsageResult {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  calls: number;
  cost: number | null;
  estimated: boolean;
  contextTokens: number;
  contextWindow: number;
  contextFill: number;
  compactions: number;
  budget: Record<string, number | null>;
}

/**
 * `pygent/session/timeline`: the session's turns, oldest first; `canRedo`: a
 * rewind can be undone with `pygent/session/redo`.
 */
export interface TimelineResult {
  turns: TimelineTurn[];
  canRedo: boolean;
}

/**
 * One turn of `pygent/session/timeline`. `turnId` (`<sessionId>:<turn>`) names it
 * in `pygent/session/rewind` and `fork`; `files` are what the turn changed;
 * `canRestoreFiles` false means only its conversation can be rewound (`note` says why).
 * `started`: seconds since the epoch.
 */
export interface TimelineTurn {
  turnId: string;
  turn: number;
  prompt: string;
  started: number;
  files: TurnFile[];
  canRestoreFiles: boolean;
  note: string;
}

/** A file a turn changed, or a rewind would restore. `kind`: added, modified or deleted. */
export interface TurnFile {
  path: string;
  kind: string;
}

/**
 * `pygent/session/rewind`: go back to before `turnId` (from the timeline; a bare
 * turn number is accepted too). `files`/`conversation`: what to rewind (both by
 * default). `dryRun`: change nothing, return in `preview` the files that would be
 * restored and in `kept` those left alone (edited by the user since, mount mode).
 */
export interface RewindParams {
  sessionId: string;
  turnId: string;
  files?: boolean;
  conversation?: boolean;
  dryRun?: boolean;
}

/**
 * What a rewind or redo did: files restored, removed (made since), kept (edited by the
 * user since), failed; `messagesRemoved` taken off the conversation (a redo: negative,
 * put back); `canRedo` whether `pygent/session/redo` would undo it.
 */
export interface RewindResult {
  turn: number;
  files: boolean;
  conversation: boolean;
  restored: string[];
  removed: string[];
  kept: string[];
  failed: string[];
  messagesRemoved: number;
  canRedo: boolean;
  preview: TurnFile[];
}

/** `pygent/session/fork`: a new session as `sessionId` was before `turnId`. */
export interface ForkParams {
  sessionId: string;
  turnId: string;
}

export interface TaskListResult {
  tasks: TaskInfo[];
}

/** A delegated task; `result` is its final answer once finished. */
export interface TaskInfo {
  taskId: string;
  status: TaskState;
  persona: string;
  prompt: string;
  steps: number;
  detail: string;
  result: string;
}

export interface TaskParams {
  sessionId: string;
  taskId: string;
}

/** Copy `path` from a task's sandbox into the session's (at `dest`, default the same path). */
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

/**
 * `pygent/workspace/sync`: copy what changed in the folder into the sandbox.
 *
 * `includeUnsaved`: also the editor's unsaved buffers (open documents).
 * `full`: rescan the whole folder instead of the paths the editor reported.
 */
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

export interface ChangeSet {
  sessionId: string;
  syncMode: SyncMode;
  changes: FileChange[];
}

/**
 * One file the agent changed: `diff` is a unified diff from the folder to the sandbox.
 *
 * `conflict`: the folder's copy changed too since the last sync. `protected`: why
 * this path can run code (e.g. a git hook); such a change is applied only when named
 * in `paths`.
 */
export interface FileChange {
  path: string;
  status: ChangeStatus;
  diff: string;
  binary: boolean;
  conflict: boolean;
  protected: string | null;
}

/**
 * `pygent/workspace/apply`: bring the agent's changes into the editor.
 *
 * `method`: `applyEdit` sends `workspace/applyEdit`; `write` writes the files
 * on disk from the server; `auto` uses applyEdit when the client supports it.
 * `paths`: only these (default: every change).
 */
export interface ApplyParams {
  sessionId: string;
  paths?: string[] | null;
  method?: ApplyMethod;
}

export interface ApplyResult {
  applied: string[];
  failed: FailedPath[];
}

export interface FailedPath {
  path: string;
  reason: string;
}

/** `pygent/workspace/discard`: restore the sandbox copies from the folder. */
export interface DiscardParams {
  sessionId: string;
  paths?: string[] | null;
}

export interface DiscardResult {
  discarded: string[];
}

export interface ToolListResult {
  tools: ToolInfo[];
}

export interface ToolInfo {
  name: string;
  description: string;
  kind: string;
  enabled: boolean;
}

export interface ToolsParams {
  sessionId: string;
  names: string[];
}

/**
 * `pygent/configuration`: the effective configuration. With `settings`, its keys are
 * merged into the client's configuration first (unknown keys and bad values are then
 * an error answer, not a warning).
 */
export interface ConfigurationParams {
  settings?: ServerConfiguration | null;
}

/**
 * The settings an editor gives the server: `initializationOptions`, `settings.pygent` of
 * `workspace/didChangeConfiguration`, the `pygent` section of `workspace/configuration`,
 * or `settings` of `pygent/configuration`. Every key is optional; a missing (null or
 * empty) key keeps the server's own setting (`pygent lsp` flags, environment,
 * `pygent.toml`). Values are converted as in `pygent.toml` (`"5"` is 5).
 * `runtime` and `syncMode` are the defaults of `pygent/session/new`; a timeout of 0
 * means none. The API key is not a setting here: it comes from the server's
 * environment (`OPENAI_API_KEY`; VS Code passes its secret storage's key there).
 */
export interface ServerConfiguration {
  model?: string | null;
  baseUrl?: string | null;
  approvalMode?: ApprovalMode | null;
  runtime?: RuntimeKind | null;
  syncMode?: SyncMode | null;
  image?: string | null;
  network?: boolean | null;
  maxSteps?: number | null;
  maxTasks?: number | null;
  stepTimeout?: number | null;
  taskTimeout?: number | null;
  commandTimeout?: number | null;
  requestTimeout?: number | null;
  temperature?: number | null;
  toolChoice?: ToolChoice | null;
  approvalTimeout?: number | null;
  bannedCommands?: string[] | null;
  disabledTools?: string[] | null;
  followAlong?: boolean | null;
  diagnosticMatchers?: DiagnosticMatcher[] | null;
  budgetTokens?: number | null;
  budgetCost?: number | null;
  budgetCalls?: number | null;
  budgetTime?: number | null;
}

/**
 * A user's output matcher: `pattern` is a regular expression over the command's
 * output with the named groups `file`, `line`, `message` (optional `col`, `end_line`,
 * `end_col`, `severity`, `code`); `command` a regular expression searched in the
 * command line (default: the tool's name); `severity` when the output names none.
 */
export interface DiagnosticMatcher {
  tool: string;
  pattern: string;
  command?: string | null;
  severity?: 'error' | 'warning' | 'information' | 'hint' | null;
}

/**
 * The effective configuration; `clientKeys`: the keys the client's configuration
 * sets; `appliedToLiveSessions`: what the last change also changed in live sessions
 * (`model`, `approvalMode`, `stepTimeout`); `newSessionsOnly`: what it changed for new sessions only;
 * `warnings`: problems with the configuration the client sent (unknown keys, bad values).
 */
export interface ConfigurationResult {
  settings: EffectiveConfiguration;
  clientKeys: string[];
  appliedToLiveSessions: string[];
  newSessionsOnly: string[];
  warnings: string[];
}

/**
 * What new sessions get: the server's settings with the client's configuration over
 * them (`stepTimeout`/`taskTimeout` null: no limit; `temperature` null: the API's
 * default; `baseUrl` null: OpenAI).
 */
export interface EffectiveConfiguration {
  model: string;
  baseUrl: string | null;
  approvalMode: ApprovalMode;
  runtime: RuntimeKind;
  syncMode: SyncMode;
  image: string;
  network: boolean;
  maxSteps: number;
  maxTasks: number;
  stepTimeout: number | null;
  taskTimeout: number | null;
  commandTimeout: number;
  requestTimeout: number;
  temperature: number | null;
  toolChoice: ToolChoice;
  approvalTimeout: number;
  bannedCommands: string[];
  disabledTools: string[];
  followAlong: boolean;
  diagnosticMatchers: string[];
  budgetTokens: number | null;
  budgetCost: number | null;
  budgetCalls: number | null;
  budgetTime: number | null;
}

/**
 * `pygent/workspace/diagnostics`: the problems the editor knows, for the agent's
 * `diagnostics` tool (VS Code sends `vscode.languages.getDiagnostics()`). Each file's
 * list replaces its earlier one; `replaceAll` clears every file not listed. Files
 * outside the editor's workspace folders are ignored.
 */
export interface EditorDiagnosticsParams {
  files: FileDiagnostics[];
  replaceAll?: boolean;
}

/** Every problem of one file (an empty list clears the file). */
export interface FileDiagnostics {
  uri: string;
  diagnostics: EditorDiagnostic[];
}

/**
 * One problem the editor shows, as LSP's `Diagnostic` (severity 1 error, 2 warning,
 * 3 information, 4 hint; missing: error).
 */
export interface EditorDiagnostic {
  range: EditorRange;
  message: string;
  severity?: number | null;
  source?: string | null;
  code?: string | number | null;
}

export interface EditorRange {
  start: EditorPosition;
  end: EditorPosition;
}

/** A position as LSP writes it (0-based line and character). */
export interface EditorPosition {
  line: number;
  character: number;
}

/** How many files and problems Pygent now holds from the editor. */
export interface EditorDiagnosticsResult {
  files: number;
  problems: number;
}

export interface McpStatusResult {
  servers: McpServerInfo[];
}

/**
 * One MCP server of a session (docs/mcp.md). `state`: starting, ready, restarting,
 * failed, disabled or stopped; `where`: sandbox, host or remote; `reason`: why it
 * failed or last exited; `leftOut`: tools not offered, each with why.
 */
export interface McpServerInfo {
  name: string;
  state: McpServerState;
  where: McpServerWhere;
  transport: string;
  tools: string[];
  reason: string;
  restarts: number;
  description: string;
  leftOut: string[];
}

/** `pygent/sessionUpdate`: `seq` counts 1, 2, 3... per session (gaps mean loss). */
export interface SessionUpdateParams {
  sessionId: string;
  seq: number;
  update: SessionUpdate;
}

/** `pygent/sessionsChanged`: the ids of the live sessions now (list them for more). */
export interface SessionsChangedParams {
  sessionIds: string[];
}

/**
 * `pygent/requestPermission`: approve a tool call. `reason` says why the policy
 * asks (e.g. `local mode: no isolation`).
 */
export interface RequestPermissionParams {
  sessionId: string;
  toolCall: ToolCallInfo;
  options: PermissionOption[];
  taskId: string | null;
  reason: string;
}

/**
 * The call to approve. `previewKind`: `command` (preview is the command line),
 * `diff` (a unified diff of the file write) or `text`.
 */
export interface ToolCallInfo {
  callId: string;
  tool: string;
  arguments: Record<string, unknown>;
  preview: string;
  previewKind: PreviewKind;
  path: string | null;
}

export interface PermissionOption {
  optionId: PermissionOptionId;
  name: string;
  kind: PermissionOptionId;
}

/**
 * The client's answer. `optionId` is one of the offered options (or `cancelled`);
 * `message` goes to the model with a rejection; `pattern` narrows `allow_always`
 * (a command pattern such as `pytest *`; default: this tool, or this command's words).
 * Anything else, an error, or no answer within the timeout means: denied.
 */
export interface RequestPermissionResult {
  optionId: PermissionAnswer;
  message?: string | null;
  pattern?: string | null;
}

// --- server -> client: session updates (a union tagged by `type`) --------------------------------

/** A turn began with this prompt. */
export interface TurnStartedUpdate {
  type: 'turn_started';
  taskId: string | null;
  prompt: string;
  images: string[];
}

/** A chunk of the assistant's reply text, as it streams. */
export interface MessageDeltaUpdate {
  type: 'message_delta';
  taskId: string | null;
  text: string;
}

/**
 * Forget the reply text streamed since the last model call began.
 *
 * Sent when a model call that already streamed text is retried or re-asked (a cut
 * stream, a server that cannot stream tools): the answer that follows replaces the
 * partial one, so a front end removes what it showed and never splices the two.
 * `reason` says why, for front ends that show it.
 */
export interface MessageDiscardedUpdate {
  type: 'message_discarded';
  taskId: string | null;
  reason: string;
}

/** The whole assistant message of one model call. */
export interface MessageDoneUpdate {
  type: 'message_done';
  taskId: string | null;
  text: string;
}

/** The model asked for a tool call (before approval). */
export interface ToolCallProposedUpdate {
  type: 'tool_call_proposed';
  taskId: string | null;
  callId: string;
  tool: string;
  arguments: Record<string, unknown>;
  preview: string;
  locations: string[];
  oldText: string | null;
}

/** An approved tool call began running. */
export interface ToolCallStartedUpdate {
  type: 'tool_call_started';
  taskId: string | null;
  callId: string;
  tool: string;
}

/** A chunk of a running tool's output (stdout/stderr of a command). */
export interface ToolOutputUpdate {
  type: 'tool_output';
  taskId: string | null;
  callId: string;
  text: string;
  stream: OutputStream;
}

/** A tool call ended: `output` holds its last 4000 characters. */
export interface ToolCallFinishedUpdate {
  type: 'tool_call_finished';
  taskId: string | null;
  callId: string;
  tool: string;
  ok: boolean;
  output: string;
  status: ToolCallStatus;
}

/**
 * Token usage of one model call plus the running totals for the session.
 *
 * `estimated` is True when the server reported no usage for this call and the
 * counts are Pygent's estimate (about four characters a token); front ends mark
 * such figures (`~`). Once a call is estimated the totals are estimates too.
 */
export interface UsageUpdate {
  type: 'usage';
  taskId: string | null;
  promptTokens: number;
  completionTokens: number;
  totalPromptTokens: number;
  totalCompletionTokens: number;
  estimated: boolean;
  cachedTokens: number;
  totalCachedTokens: number;
  cost: number | null;
  totalCost: number | null;
  totalCalls: number;
  contextTokens: number;
  contextWindow: number;
}

/**
 * The older part of the conversation was (`ok`) or could not be summarised.
 *
 * On success `summary` replaces `replaced` older messages in the next requests
 * (the history file keeps them all); `tokens_before`/`tokens_after` are the
 * request's estimated size. On failure `error` says why and nothing changed.
 */
export interface CompactionUpdate {
  type: 'compaction';
  taskId: string | null;
  ok: boolean;
  automatic: boolean;
  summary: string;
  replaced: number;
  tokensBefore: number;
  tokensAfter: number;
  focus: string;
  error: string;
}

/** Something the user should know that is not part of the conversation. */
export interface NoticeUpdate {
  type: 'notice';
  taskId: string | null;
  level: NoticeLevel;
  text: string;
}

/** Status of a delegated task (queued, running, finished, failed, timeout, cancelled). */
export interface TaskStatusUpdate {
  type: 'task_status';
  taskId: string | null;
  status: TaskState;
  persona: string;
  prompt: string;
  steps: number;
  detail: string;
}

/** The turn ended: why, its final text (or the `ask_user` question) and any error. */
export interface TurnEndedUpdate {
  type: 'turn_ended';
  taskId: string | null;
  stopReason: StopReason;
  text: string;
  error: string;
}

/**
 * A permission request was sent (`pending`) or answered / timed out (`resolved`).
 *
 * `outcome` is the option chosen, or why the call was denied (`denied: <why>`).
 */
export interface PermissionUpdate {
  type: 'permission';
  taskId: string | null;
  callId: string;
  state: PermissionState;
  outcome: string;
}

/**
 * After a turn in copy mode: the agent's changes not applied to the folder yet.
 *
 * `count` files; `paths` lists at most the first 200 of them.
 */
export interface ChangesUpdate {
  type: 'changes';
  taskId: string | null;
  count: number;
  paths: string[];
}

/**
 * An MCP server of the session changed: its state, where it runs, its tools.
 *
 * Sent when a server starts (servers start in the background: the session does not
 * wait for them), becomes ready, its tool list changes, it exits and is being
 * restarted, or it fails (`reason` says why, without secrets). The state now is in
 * `pygent/mcp/status`; these updates keep it current.
 */
export interface McpServerUpdate {
  type: 'mcp_server';
  taskId: string | null;
  name: string;
  state: McpServerState;
  where: McpServerWhere;
  tools: string[];
  reason: string;
  restarts: number;
}

/** One event of a session, tagged by `type` (the events of pygent/events.py). */
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
  | CompactionUpdate
  | NoticeUpdate
  | TaskStatusUpdate
  | TurnEndedUpdate
  | PermissionUpdate
  | ChangesUpdate
  | McpServerUpdate;

export type SessionUpdateType = SessionUpdate['type'];
