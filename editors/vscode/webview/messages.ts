/**
 * The messages between the chat page and its host, and their parsers.
 *
 * The host is the extension's chat controller: in VS Code (through `postMessage`), or in
 * the page's own window under `pygent ui` (webview/host); it speaks exactly these JSON
 * objects, tagged by `type`, and both sides run every incoming message through a parser
 * here, dropping what does not fit.
 * A session event is the `update` object of the LSP `pygent/sessionUpdate`
 * notification, unchanged (camelCase keys, tags as in `pygent.events`).
 * `editors/vscode/README.md` documents the same protocol in prose.
 */

import type {
  ChangeStatus,
  FileChange,
  McpServerState,
  McpServerWhere,
  NoticeLevel,
  OutputStream,
  PermissionOptionId,
  SessionUpdate,
  StopReason,
  SyncMode,
  TaskInfo,
  TaskState,
  ToolCallStatus,
} from '../src/protocol';
import {
  array,
  bool,
  jsonObject,
  literal,
  nullable,
  num,
  object,
  type Parser,
  str,
  tagged,
  variant,
  withDefault,
} from './parse';

/** Bumped on an incompatible change; the page sends it in `ready`. */
export const PAGE_PROTOCOL_VERSION = 1;

// --- shared data -------------------------------------------------------------------------------

/** What the host can do beyond the basics; the page hides buttons for the rest. */
export interface HostCapabilities {
  /** Open a diff in an editor (VS Code's diff editor). */
  openDiff: boolean;
  /** Open a file or a task result in an editor. */
  openInEditor: boolean;
  /** The host actions in {@link HostAction} it implements. */
  actions: HostAction[];
}

/** Things only the host can do, offered on problem banners and in menus. */
export type HostAction = 'setApiKey' | 'restartServer' | 'openSettings' | 'showLogs' | 'installHelp';
const HOST_ACTIONS = ['setApiKey', 'restartServer', 'openSettings', 'showLogs', 'installHelp'] as const;

export type ConnectionState = 'starting' | 'ready' | 'stopped' | 'failed';

/** Something that blocks or degrades the chat, shown as a banner with actions. */
export interface Problem {
  kind: 'notInstalled' | 'crashed' | 'startFailed' | 'noApiKey' | 'error';
  message: string;
  actions: HostAction[];
}

export interface HostStatus {
  connection: ConnectionState;
  /** `docker`, `bwrap`, `local`, or what the user asked for (`auto`) before a session runs. */
  runtime: string;
  /** How the active session's sandbox is named (`Podman rootless (image)`...); '' before one runs. */
  sandbox: string;
  model: string;
  busy: boolean;
  problem: Problem | null;
}

export interface SessionSummary {
  sessionId: string;
  title: string;
  live: boolean;
  busy: boolean;
  workspaceFolder: string | null;
  runtime: string | null;
  model: string;
  updated: string | null;
}

/** A pending approval as the page shows it (from the LSP `pygent/requestPermission`). */
export interface ApprovalView {
  /** The host's id for this request; answers quote it. */
  id: string;
  sessionId: string;
  taskId: string | null;
  callId: string;
  tool: string;
  preview: string;
  previewKind: 'command' | 'diff' | 'text';
  path: string | null;
  /** Why the policy asks, e.g. "local mode: no isolation". */
  reason: string;
  options: { optionId: PermissionOptionId; name: string }[];
}

export type SessionEvent = SessionUpdate;

/** A file a rewind would restore, and how (to get back to before the turn). */
export interface RewindFile {
  path: string;
  kind: 'added' | 'modified' | 'deleted';
}

/** What rewinding to before one of the user's messages would do (the confirmation). */
export interface RewindPlan {
  sessionId: string;
  /** Which user message of the conversation (0 = the first). */
  index: number;
  turnId: string;
  prompt: string;
  /** False: only the conversation can go back (`note` says why). */
  canRestoreFiles: boolean;
  note: string;
  files: RewindFile[];
  /** Files left as they are: the user edited them since (mount sessions). */
  kept: string[];
}

// --- host -> page ----------------------------------------------------------------------------------

export type HostMessage =
  /** Everything the page needs after `ready` (and after a reconnect). */
  | {
      type: 'init';
      host: string;
      capabilities: HostCapabilities;
      status: HostStatus;
      sessions: SessionSummary[];
      activeSessionId: string | null;
    }
  | { type: 'status'; status: HostStatus }
  | { type: 'sessions'; sessions: SessionSummary[]; activeSessionId: string | null }
  /** The whole event log of a session, replacing what the page shows for it. */
  | { type: 'transcript'; sessionId: string; events: SessionEvent[] }
  | { type: 'event'; sessionId: string; event: SessionEvent }
  | { type: 'approval'; approval: ApprovalView }
  /** An approval was answered elsewhere, timed out or was cancelled: remove its card. */
  | { type: 'approvalClosed'; id: string; outcome: string }
  | { type: 'tasks'; sessionId: string; tasks: TaskInfo[] }
  | { type: 'changes'; sessionId: string; syncMode: SyncMode; changes: FileChange[] }
  /** A message for the user that is not part of a conversation (e.g. "apply failed"). */
  | { type: 'toast'; level: 'info' | 'warning' | 'error'; text: string }
  /** Put the keyboard focus in the prompt box, optionally with some text. */
  | { type: 'focusPrompt'; text: string | null }
  /** The answer to `rewindPreview`: what a rewind would do, for the user to confirm. */
  | { type: 'rewindPlan'; plan: RewindPlan }
  /** A rewind or redo is done (the transcript follows); `canRedo`: offer Redo. */
  | { type: 'rewound'; sessionId: string; text: string; canRedo: boolean };

// --- page -> host -------------------------------------------------------------------------------------

export type PageMessage =
  | { type: 'ready'; protocol: number }
  /** Run a turn; `sessionId` null means: start a session for the workspace first. */
  | { type: 'prompt'; sessionId: string | null; text: string }
  | { type: 'cancel'; sessionId: string }
  | { type: 'newSession' }
  | { type: 'selectSession'; sessionId: string }
  | { type: 'answerApproval'; id: string; optionId: PermissionOptionId; message: string | null }
  | { type: 'openApprovalDiff'; id: string }
  | { type: 'openChange'; sessionId: string; path: string }
  /** `paths` null means every change. */
  | { type: 'applyChanges'; sessionId: string; paths: string[] | null }
  | { type: 'discardChanges'; sessionId: string; paths: string[] | null }
  | { type: 'cancelTask'; sessionId: string; taskId: string }
  | { type: 'openTask'; sessionId: string; taskId: string }
  | { type: 'compact'; sessionId: string; focus: string }
  | { type: 'runAction'; action: HostAction }
  /** Ask what rewinding to before the user's message number `index` would restore. */
  | { type: 'rewindPreview'; sessionId: string; index: number }
  | { type: 'rewind'; sessionId: string; turnId: string; index: number; files: boolean; conversation: boolean }
  | { type: 'redo'; sessionId: string }
  /** Continue in a new session as this one was before the turn (its own sandbox). */
  | { type: 'fork'; sessionId: string; turnId: string; index: number };

// --- parsers ------------------------------------------------------------------------------------------

const permissionOptionId = literal<PermissionOptionId>('allow_once', 'allow_always', 'reject_once', 'reject_always');
const stopReason = literal<StopReason>(
  'end_turn',
  'stop',
  'ask_user',
  'max_steps',
  'max_time',
  'step_timeout',
  'cancelled',
  'error',
  'refusal',
  'budget',
  'max_tokens',
);
const hostAction = literal<HostAction>(...HOST_ACTIONS);
const taskId = withDefault(nullable(str), null);
const text = withDefault(str, '');
const taskState = literal<TaskState>('queued', 'running', 'finished', 'failed', 'timeout', 'cancelled');
const count = withDefault(num, 0);

/** Parses one session update (the LSP `update` object); missing optional keys get defaults. */
export const parseSessionEvent: Parser<SessionEvent> = tagged<SessionEvent>({
  turn_started: variant('turn_started', { taskId, prompt: text, images: withDefault(array(str, 100), []) }),
  message_delta: variant('message_delta', { taskId, text }),
  message_discarded: variant('message_discarded', { taskId, reason: text }),
  message_done: variant('message_done', { taskId, text }),
  tool_call_proposed: variant('tool_call_proposed', {
    taskId,
    callId: str,
    tool: str,
    arguments: withDefault(jsonObject, {}),
    preview: text,
    locations: withDefault(array(str, 100), []),
    oldText: withDefault(nullable(str), null),
  }),
  tool_call_started: variant('tool_call_started', { taskId, callId: str, tool: text }),
  tool_output: variant('tool_output', { taskId, callId: str, text, stream: withDefault(literal<OutputStream>('stdout', 'stderr'), 'stdout') }),
  tool_call_finished: variant('tool_call_finished', {
    taskId,
    callId: str,
    tool: text,
    ok: withDefault(bool, true),
    output: text,
    status: withDefault(literal<ToolCallStatus>('completed', 'failed', 'denied', 'cancelled'), 'completed'),
  }),
  usage: variant('usage', {
    taskId,
    promptTokens: count,
    completionTokens: count,
    totalPromptTokens: count,
    totalCompletionTokens: count,
    estimated: withDefault(bool, false),
    cachedTokens: count,
    totalCachedTokens: count,
    cost: withDefault(nullable(num), null),
    totalCost: withDefault(nullable(num), null),
    totalCalls: count,
    contextTokens: count,
    contextWindow: count,
  }),
  compaction: variant('compaction', {
    taskId,
    ok: withDefault(bool, true),
    automatic: withDefault(bool, false),
    summary: text,
    replaced: count,
    tokensBefore: count,
    tokensAfter: count,
    focus: text,
    error: text,
  }),
  notice: variant('notice', { taskId, level: withDefault(literal<NoticeLevel>('info', 'warning', 'error'), 'info'), text }),
  task_status: variant('task_status', {
    taskId,
    status: taskState,
    persona: text,
    prompt: text,
    steps: count,
    detail: text,
  }),
  turn_ended: variant('turn_ended', {
    taskId,
    stopReason: withDefault(stopReason, 'end_turn'),
    text,
    error: text,
  }),
  permission: variant('permission', {
    taskId,
    callId: str,
    state: literal('pending', 'resolved'),
    outcome: text,
  }),
  changes: variant('changes', { taskId, count, paths: withDefault(array(str), []) }),
  mcp_server: variant('mcp_server', {
    taskId,
    name: str,
    state: literal<McpServerState>('starting', 'ready', 'restarting', 'failed', 'disabled', 'stopped'),
    where: withDefault(literal<McpServerWhere>('sandbox', 'host', 'remote'), 'sandbox'),
    tools: withDefault(array(str, 10_000), []),
    reason: text,
    restarts: count,
  }),
});

const problem = object<Problem>({
  kind: literal('notInstalled', 'crashed', 'startFailed', 'noApiKey', 'error'),
  message: str,
  actions: array(hostAction),
});

const hostStatus = object<HostStatus>({
  connection: literal('starting', 'ready', 'stopped', 'failed'),
  runtime: text,
  sandbox: withDefault(text, ''),
  model: text,
  busy: bool,
  problem: nullable(problem),
});

const sessionSummary = object<SessionSummary>({
  sessionId: str,
  title: text,
  live: withDefault(bool, true),
  busy: withDefault(bool, false),
  workspaceFolder: nullable(str),
  runtime: nullable(str),
  model: text,
  updated: nullable(str),
});

const taskInfo = object<TaskInfo>({
  taskId: str,
  status: taskState,
  persona: text,
  prompt: text,
  steps: count,
  detail: text,
  result: text,
});

const fileChange = object<FileChange>({
  path: str,
  status: literal<ChangeStatus>('added', 'modified', 'deleted'),
  diff: text,
  binary: withDefault(bool, false),
  conflict: withDefault(bool, false),
  protected: nullable(str),
});

const approvalView = object<ApprovalView>({
  id: str,
  sessionId: str,
  taskId,
  callId: str,
  tool: str,
  preview: text,
  previewKind: withDefault(literal('command', 'diff', 'text'), 'text'),
  path: nullable(str),
  reason: text,
  options: array(object({ optionId: permissionOptionId, name: str }), 8),
});

const capabilities = object<HostCapabilities>({
  openDiff: bool,
  openInEditor: bool,
  actions: array(hostAction),
});

const sessionsList = array(sessionSummary, 1000);

const rewindPlan = object<RewindPlan>({
  sessionId: str,
  index: num,
  turnId: str,
  prompt: text,
  canRestoreFiles: withDefault(bool, true),
  note: text,
  files: array(object<RewindFile>({ path: str, kind: literal('added', 'modified', 'deleted') }), 100_000),
  kept: withDefault(array(str, 100_000), []),
});

/** Parses a message from the host; throws {@link ParseError} for anything else. */
export const parseHostMessage: Parser<HostMessage> = tagged<HostMessage>({
  init: variant('init', {
    host: str,
    capabilities,
    status: hostStatus,
    sessions: sessionsList,
    activeSessionId: nullable(str),
  }),
  status: variant('status', { status: hostStatus }),
  sessions: variant('sessions', { sessions: sessionsList, activeSessionId: nullable(str) }),
  transcript: variant('transcript', { sessionId: str, events: array(parseSessionEvent, 200_000) }),
  event: variant('event', { sessionId: str, event: parseSessionEvent }),
  approval: variant('approval', { approval: approvalView }),
  approvalClosed: variant('approvalClosed', { id: str, outcome: text }),
  tasks: variant('tasks', { sessionId: str, tasks: array(taskInfo) }),
  changes: variant('changes', {
    sessionId: str,
    syncMode: literal<SyncMode>('cow', 'copy', 'mount', 'none'),
    changes: array(fileChange),
  }),
  toast: variant('toast', { level: literal('info', 'warning', 'error'), text: str }),
  focusPrompt: variant('focusPrompt', { text: nullable(str) }),
  rewindPlan: variant('rewindPlan', { plan: rewindPlan }),
  rewound: variant('rewound', { sessionId: str, text, canRedo: withDefault(bool, false) }),
});


const paths = nullable(array(str));

/** Parses a message from the page; throws {@link ParseError} for anything else. */
export const parsePageMessage: Parser<PageMessage> = tagged<PageMessage>({
  ready: variant('ready', { protocol: num }),
  prompt: variant('prompt', { sessionId: nullable(str), text: str }),
  cancel: variant('cancel', { sessionId: str }),
  newSession: variant('newSession', {}),
  selectSession: variant('selectSession', { sessionId: str }),
  answerApproval: variant('answerApproval', {
    id: str,
    optionId: permissionOptionId,
    message: nullable(str),
  }),
  openApprovalDiff: variant('openApprovalDiff', { id: str }),
  openChange: variant('openChange', { sessionId: str, path: str }),
  applyChanges: variant('applyChanges', { sessionId: str, paths }),
  discardChanges: variant('discardChanges', { sessionId: str, paths }),
  cancelTask: variant('cancelTask', { sessionId: str, taskId: str }),
  openTask: variant('openTask', { sessionId: str, taskId: str }),
  compact: variant('compact', { sessionId: str, focus: text }),
  runAction: variant('runAction', { action: hostAction }),
  rewindPreview: variant('rewindPreview', { sessionId: str, index: num }),
  rewind: variant('rewind', { sessionId: str, turnId: str, index: num, files: bool, conversation: bool }),
  redo: variant('redo', { sessionId: str }),
  fork: variant('fork', { sessionId: str, turnId: str, index: num }),
});
