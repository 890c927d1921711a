/**
 * The chat's host-side logic: turns page messages into server requests and server
 * notifications into page messages, and keeps what a re-opened page needs (sessions,
 * their event logs, pending approvals, tasks, changes).
 *
 * It reaches VS Code only through {@link EditorPort} and the page only through
 * {@link ChatPort}, so the whole flow is unit-tested with fakes.
 */

import { describeError, type Logger } from '../common/logging';
import { Emitter } from '../common/events';
import type { CancellationLike, ServerState } from '../common/server';
import type { PygentSettings } from '../common/settings';
import {
  type ApplyResult,
  type ChangeSet,
  type CompactResult,
  type DiscardResult,
  type ListSessionsResult,
  type McpStatusResult,
  type PromptResult,
  type RewindResult,
  type TimelineResult,
  type RequestPermissionParams,
  type RequestPermissionResult,
  type SessionInfo,
  type SessionUpdate,
  type SessionUpdateParams,
  type TaskInfo,
  REQUEST_PERMISSION,
  MCP_STATUS,
  SESSION_BUSY,
  SESSION_CANCEL,
  SESSION_COMPACT,
  SESSION_LIST,
  SESSION_NEW,
  SESSION_PROMPT,
  SESSION_FORK,
  SESSION_REDO,
  SESSION_RESUME,
  SESSION_REWIND,
  SESSION_TIMELINE,
  SESSION_UPDATE,
  SESSIONS_CHANGED,
  TASK_CANCEL,
  TASK_STATUS,
  WORKSPACE_APPLY,
  WORKSPACE_CHANGES,
  WORKSPACE_DISCARD,
} from '../protocol';
import {
  type HostAction,
  type HostCapabilities,
  type HostMessage,
  type HostStatus,
  type PageMessage,
  type Problem,
  parseSessionEvent,
} from '../../webview/messages';
import { ApprovalBroker } from './approvals';
import { parsePermissionParams } from './parsers';
import { proposedContent } from './patch';
import { SessionStore } from './sessions';
import { FINAL_TASK_STATES, TaskTracker } from './tasks';

/** The page, as the controller sees it. */
export interface ChatPort {
  post(message: HostMessage): void;
  /** Brings the chat into view (an approval is waiting). */
  reveal(): void;
}

export interface WorkspaceFolderInfo {
  name: string;
  uri: string;
  fsPath: string;
}

/** One side of a diff: a file on disk, or text held in memory. */
export type DiffSide = { file: string } | { content: string; name: string };

/** Everything the controller needs from the editor. */
export interface EditorPort {
  workspaceFolders(): WorkspaceFolderInfo[];
  /** The folder of the active editor, if any. */
  activeFolder(): WorkspaceFolderInfo | undefined;
  pickFolder(folders: WorkspaceFolderInfo[]): Promise<WorkspaceFolderInfo | undefined>;
  readFile(fsPath: string): Promise<string | undefined>;
  openDiff(left: DiffSide, right: DiffSide, title: string): Promise<void>;
  openText(content: string, language: string): Promise<void>;
  saveFiles(fsPaths: string[]): Promise<void>;
  confirm(message: string, action: string): Promise<boolean>;
}

/** The server, as the controller sees it ({@link ServerManager} fits). */
export interface ServerPort {
  readonly state: ServerState;
  onDidChangeState(listener: (state: ServerState) => void): { dispose(): void };
  request<R>(method: string, params: unknown, token?: CancellationLike): Promise<R>;
  onNotification(method: string, handler: (params: unknown) => void): void;
  onRequest(method: string, handler: (params: unknown, token: CancellationLike) => Promise<unknown>): void;
  start(): Promise<void>;
}

export interface ControllerDeps {
  server: ServerPort;
  editor: EditorPort;
  settings(): PygentSettings;
  /** True when an API key reaches the server. */
  hasApiKey(): boolean;
  /** Runs a host action (set key, restart, settings, logs, install help). */
  runAction(action: HostAction): void;
  /** Opens the chat view when no page is attached (an approval is waiting). */
  showChat(): void;
  log: Logger;
  /** A name for the host in `init` ("vscode"). */
  hostName: string;
  /** What the page may offer (default: {@link VSCODE_CAPABILITIES}). */
  capabilities?: HostCapabilities;
  /** How accepted changes reach the folder: as editor edits (default) or written by the server. */
  applyMethod?: 'applyEdit' | 'write';
  /**
   * A host whose server outlives the page (`pygent ui`): the log of a session so far,
   * for a page that attaches after it started, or a saved session's history.
   */
  transcript?(sessionId: string): Promise<{ events: SessionUpdate[]; seq: number }>;
}

export const VSCODE_CAPABILITIES: HostCapabilities = {
  openDiff: true,
  openInEditor: true,
  actions: ['setApiKey', 'restartServer', 'openSettings', 'showLogs', 'installHelp'],
};

/** What the status bar shows. */
export interface StatusSnapshot {
  status: HostStatus;
  sessionTitle: string | null;
}

function normPath(p: string): string {
  return p.replace(/\\/g, '/').replace(/\/+$/, '');
}

function joinPath(dir: string, rel: string): string {
  return `${normPath(dir)}/${rel.replace(/^\/+/, '')}`;
}

function basename(p: string): string {
  return normPath(p).split('/').pop() ?? p;
}

/** A JSON-RPC error's code, if it is one. */
function errorCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number' ? err.code : undefined;
}

export class ChatController {
  private view: ChatPort | undefined;
  readonly sessions = new SessionStore();
  readonly tasks = new TaskTracker();
  private readonly changes = new Map<string, ChangeSet>();
  readonly approvals: ApprovalBroker;
  private readonly statusEmitter = new Emitter<StatusSnapshot>();
  /** Sessions with a prompt request in flight. */
  private readonly inFlight = new Set<string>();
  /** The log a conversation rewind took off, per session, for its redo. */
  private readonly undone = new Map<string, SessionUpdate[]>();
  /** Sessions this window opened, forked or resumed (it keeps their logs itself). */
  private readonly opened = new Set<string>();
  private creating: Promise<string | undefined> | undefined;
  /** A focus request made before the page was ready; sent after `init`. */
  private pendingFocus: { text: string | null } | undefined;

  readonly onDidChangeStatus = this.statusEmitter.event;

  constructor(private readonly deps: ControllerDeps) {
    this.approvals = new ApprovalBroker({
      opened: (approval) => {
        this.post({ type: 'approval', approval });
        if (this.view) this.view.reveal();
        else this.deps.showChat();
      },
      closed: (id, outcome) => this.post({ type: 'approvalClosed', id, outcome }),
    });
    deps.server.onNotification(SESSION_UPDATE, (params) => this.onSessionUpdate(params));
    // A session host tells every client when its sessions change (an editor opened one
    // after this page loaded, one was closed): list them again rather than wait for a reload.
    deps.server.onNotification(SESSIONS_CHANGED, () => void this.refreshSessions(true));
    deps.server.onRequest(REQUEST_PERMISSION, (params, token) => this.onPermissionRequest(params, token));
    deps.server.onDidChangeState((state) => this.onServerState(state));
  }

  // --- the page -------------------------------------------------------------------------

  /** A page (re)connected; it gets everything on `ready`. */
  attachView(view: ChatPort): void {
    this.view = view;
  }

  detachView(view: ChatPort): void {
    if (this.view === view) this.view = undefined;
  }

  private post(message: HostMessage): void {
    this.view?.post(message);
  }

  private toast(level: 'info' | 'warning' | 'error', text: string): void {
    this.post({ type: 'toast', level, text });
  }

  /** Handles one (already parsed) page message. Never throws: failures become toasts. */
  async handle(message: PageMessage): Promise<void> {
    try {
      await this.dispatch(message);
    } catch (err) {
      this.deps.log.error(`${message.type}: ${describeError(err)}`);
      this.toast('error', describeError(err));
    }
  }

  private async dispatch(message: PageMessage): Promise<void> {
    switch (message.type) {
      case 'ready':
        this.sendInit();
        void this.ensureServer();
        return;
      case 'prompt':
        await this.prompt(message.sessionId, message.text);
        return;
      case 'cancel':
        await this.cancel(message.sessionId);
        return;
      case 'newSession':
        await this.newSession();
        return;
      case 'selectSession':
        await this.selectSession(message.sessionId);
        return;
      case 'answerApproval': {
        const outcome = this.approvals.answer(message.id, message.optionId, message.message);
        if (outcome === 'gone') this.post({ type: 'approvalClosed', id: message.id, outcome: 'expired' });
        if (outcome === 'refused') this.toast('warning', 'That answer is not offered for this request.');
        return;
      }
      case 'openApprovalDiff':
        await this.openApprovalDiff(message.id);
        return;
      case 'openChange':
        await this.openChange(message.sessionId, message.path);
        return;
      case 'applyChanges':
        await this.apply(message.sessionId, message.paths);
        return;
      case 'discardChanges':
        await this.discard(message.sessionId, message.paths);
        return;
      case 'cancelTask':
        await this.deps.server.request(TASK_CANCEL, { sessionId: message.sessionId, taskId: message.taskId });
        return;
      case 'compact': {
        // The marker arrives as a `compaction` update; only a failure needs a word here.
        const done = await this.deps.server.request<CompactResult>(SESSION_COMPACT, { sessionId: message.sessionId, focus: message.focus });
        if (!done.ok) this.toast('warning', `Compaction failed: ${done.error}; the conversation is unchanged.`);
        return;
      }
      case 'openTask':
        await this.openTask(message.sessionId, message.taskId);
        return;
      case 'runAction':
        this.deps.runAction(message.action);
        return;
      case 'rewindPreview':
        await this.rewindPreview(message.sessionId, message.index);
        return;
      case 'rewind':
        await this.rewind(message.sessionId, message.turnId, message.index, message.files, message.conversation);
        return;
      case 'redo':
        await this.redo(message.sessionId);
        return;
      case 'fork':
        await this.fork(message.sessionId, message.turnId, message.index);
        return;
    }
  }

  // --- rewind and redo (docs/rewind.md) --------------------------------------------------------

  /** What rewinding to before the user's message number `index` would do, for the page to confirm. */
  private async rewindPreview(sessionId: string, index: number): Promise<void> {
    const timeline = await this.deps.server.request<TimelineResult>(SESSION_TIMELINE, { sessionId });
    const turn = timeline.turns[index];
    // The log shown may still hold prompts a rewind took off (a host keeps every update):
    // the turn must be the one whose prompt the user clicked, or nothing is done.
    const prompts = this.sessions.events(sessionId).filter((e) => e.type === 'turn_started' && e.taskId === null);
    const clicked = prompts[index];
    if (!turn || (clicked?.type === 'turn_started' && clicked.prompt.slice(0, 500) !== turn.prompt)) {
      this.toast('error', 'This message cannot be rewound: its turn is no longer in the session.');
      return;
    }
    const dry = turn.canRestoreFiles
      ? await this.deps.server.request<RewindResult>(SESSION_REWIND, { sessionId, turnId: turn.turnId, dryRun: true })
      : null;
    const kinds = ['added', 'modified', 'deleted'] as const;
    this.post({
      type: 'rewindPlan',
      plan: {
        sessionId,
        index,
        turnId: turn.turnId,
        prompt: turn.prompt,
        canRestoreFiles: turn.canRestoreFiles,
        note: turn.note,
        files: (dry?.preview ?? []).map((f) => ({ path: f.path, kind: kinds.find((k) => k === f.kind) ?? 'modified' })),
        kept: dry?.kept ?? [],
      },
    });
  }

  private async rewind(sessionId: string, turnId: string, index: number, files: boolean, conversation: boolean): Promise<void> {
    const result = await this.deps.server.request<RewindResult>(SESSION_REWIND, { sessionId, turnId, files, conversation });
    if (result.conversation) {
      // The log shown from the turn's prompt on goes (kept for a redo).
      const events = this.sessions.events(sessionId);
      let seen = -1;
      const cut = events.findIndex((e) => e.taskId === null && e.type === 'turn_started' && ++seen === index);
      if (cut >= 0) {
        this.undone.set(sessionId, events.slice(cut));
        this.sessions.replaceEvents(sessionId, events.slice(0, cut));
      }
    }
    await this.afterRewind(sessionId, result, `Rewound to before turn ${result.turn}`);
  }

  private async redo(sessionId: string): Promise<void> {
    const result = await this.deps.server.request<RewindResult>(SESSION_REDO, { sessionId });
    const undone = this.undone.get(sessionId);
    if (result.conversation && undone) {
      this.sessions.replaceEvents(sessionId, [...this.sessions.events(sessionId), ...undone]);
      this.undone.delete(sessionId);
    }
    await this.afterRewind(sessionId, result, 'Redone: back to where you were before the rewind');
  }

  /** A new session as this one was before turn `index` (its own sandbox), shown with the log up to there. */
  private async fork(sessionId: string, turnId: string, index: number): Promise<void> {
    const info = await this.deps.server.request<SessionInfo>(SESSION_FORK, { sessionId, turnId });
    this.opened.add(info.sessionId);
    this.sessions.upsert(info);
    const events = this.sessions.events(sessionId);
    let seen = -1;
    const cut = events.findIndex((e) => e.taskId === null && e.type === 'turn_started' && ++seen === index);
    this.sessions.replaceEvents(info.sessionId, cut >= 0 ? events.slice(0, cut) : []);
    const at = events[cut];
    const where = at?.type === 'turn_started' ? `before “${at.prompt.slice(0, 80)}”` : `before message ${index + 1}`;
    this.sessions.activeId = info.sessionId;
    this.localEvent(info.sessionId, {
      type: 'notice',
      taskId: null,
      level: 'info',
      text: `Forked ${where}: a new session with its own sandbox; the session you forked from is unchanged.`,
    });
    if (info.workspaceFolder) await this.refreshChanges(info.sessionId);
    this.sendSessions();
    this.sendSessionDetail(info.sessionId);
  }

  private async afterRewind(sessionId: string, result: RewindResult, what: string): Promise<void> {
    const done: string[] = [];
    if (result.files) done.push(`${result.restored.length} file(s) restored, ${result.removed.length} removed`);
    if (result.conversation) done.push(`${Math.abs(result.messagesRemoved)} message(s) ${result.messagesRemoved < 0 ? 'put back' : 'taken off the conversation'}`);
    if (result.kept.length) done.push(`kept as you edited them: ${result.kept.join(', ')}`);
    if (result.failed.length) done.push(`could not restore: ${result.failed.join(', ')}`);
    if (this.sessions.get(sessionId)?.workspaceFolder) await this.refreshChanges(sessionId);
    this.sendSessionDetail(sessionId);
    this.post({ type: 'rewound', sessionId, text: `${what}: ${done.join('; ')}.`, canRedo: result.canRedo });
  }

  private sendInit(): void {
    const active = this.sessions.activeId;
    this.post({
      type: 'init',
      host: this.deps.hostName,
      capabilities: this.deps.capabilities ?? VSCODE_CAPABILITIES,
      status: this.status(),
      sessions: this.sessions.summaries(),
      activeSessionId: active,
    });
    if (active) this.sendSessionDetail(active);
    for (const approval of this.approvals.list()) this.post({ type: 'approval', approval });
    if (this.pendingFocus) {
      this.post({ type: 'focusPrompt', text: this.pendingFocus.text });
      this.pendingFocus = undefined;
    }
  }

  /** Puts the cursor in the prompt box, now or as soon as the page is ready. */
  requestFocus(text: string | null): void {
    if (this.view) this.post({ type: 'focusPrompt', text });
    else this.pendingFocus = { text };
  }

  /** The transcript, tasks and changes of one session. */
  private sendSessionDetail(sessionId: string): void {
    this.post({ type: 'transcript', sessionId, events: this.sessions.events(sessionId) });
    this.post({ type: 'tasks', sessionId, tasks: this.tasks.list(sessionId) });
    const set = this.changes.get(sessionId);
    this.post({ type: 'changes', sessionId, syncMode: set?.syncMode ?? 'copy', changes: set?.changes ?? [] });
  }

  private sendSessions(): void {
    this.post({ type: 'sessions', sessions: this.sessions.summaries(), activeSessionId: this.sessions.activeId });
    this.sendStatus();
  }

  private sendStatus(): void {
    const status = this.status();
    this.post({ type: 'status', status });
    this.statusEmitter.fire({ status, sessionTitle: this.sessions.activeInfo?.title ?? null });
  }

  // --- status -------------------------------------------------------------------------------

  /** The status line: server state, runtime and model of the active session, busy, problem. */
  status(): HostStatus {
    const state = this.deps.server.state;
    const settings = this.deps.settings();
    const active = this.sessions.activeInfo;
    const connection: HostStatus['connection'] =
      state.kind === 'running' ? 'ready' : state.kind === 'starting' ? 'starting' : state.kind === 'failed' ? 'failed' : 'stopped';
    return {
      connection,
      runtime: (active?.live && active.runtime) || settings.runtime,
      sandbox: (active?.live && active.sandbox) || '',
      model: (active?.live && active.model) || settings.model,
      busy: this.sessions.anyBusy || this.inFlight.size > 0,
      problem: this.problem(state),
    };
  }

  private problem(state: ServerState): Problem | null {
    if (state.kind === 'failed') {
      const actions: Record<typeof state.reason, HostAction[]> = {
        notInstalled: ['installHelp', 'openSettings', 'showLogs'],
        crashed: ['restartServer', 'showLogs'],
        startFailed: ['restartServer', 'openSettings', 'showLogs'],
      };
      return { kind: state.reason, message: state.message, actions: actions[state.reason] };
    }
    if (!this.deps.hasApiKey()) {
      return {
        kind: 'noApiKey',
        message: 'No API key is set. Pygent needs one for the model API (any value for local servers that ignore it).',
        actions: ['setApiKey'],
      };
    }
    return null;
  }

  /** Something outside changed what the status shows (settings, the API key). */
  refreshStatus(): void {
    this.sendStatus();
  }

  // --- server lifecycle -------------------------------------------------------------------------

  private async ensureServer(): Promise<void> {
    if (this.deps.server.state.kind === 'stopped') await this.deps.server.start();
  }

  private onServerState(state: ServerState): void {
    if (state.kind !== 'running') {
      this.approvals.cancelAll();
      for (const summary of this.sessions.summaries()) {
        if (summary.busy || this.sessions.turnOpen(summary.sessionId)) {
          this.endTurnLocally(summary.sessionId, 'The Pygent server stopped during this turn.');
        }
      }
      this.sessions.markAllEnded();
      this.inFlight.clear();
    } else {
      void this.refreshSessions();
    }
    this.sendSessions();
  }

  /** Reads the server's sessions: live ones, and saved ones that belong to our folders. */
  /**
   * `announced`: the host said its sessions changed. Only the sessions new to this window
   * are loaded from the host's logs then: the host announces a session before the reply
   * of the request that opened it (here or elsewhere), and the logs this window keeps
   * (a fork's, with its notice) must not be replaced by a load that was already on its way.
   */
  async refreshSessions(announced = false): Promise<void> {
    const known = announced ? this.sessions.liveIds() : new Set<string>();
    let result: ListSessionsResult;
    try {
      result = await this.deps.server.request<ListSessionsResult>(SESSION_LIST, { includeSaved: true });
    } catch (err) {
      this.deps.log.warn(`Listing sessions: ${describeError(err)}`);
      return;
    }
    const folders = new Set(this.deps.editor.workspaceFolders().map((f) => normPath(f.fsPath)));
    const listed = new Set<string>();
    for (const info of result.sessions) {
      // Without folders, the saved sessions that had none are ours.
      const ours = info.live || (info.workspaceFolder === null ? folders.size === 0 : folders.has(normPath(info.workspaceFolder)));
      if (!ours) continue;
      listed.add(info.sessionId);
      this.sessions.upsert(info);
    }
    this.sessions.prune(listed);
    const live = result.sessions.filter((s) => s.live && !known.has(s.sessionId));
    if (this.deps.transcript) await this.attachLive(live, announced);
    this.sendSessions();
  }

  /**
   * A page (re)attached to a server that outlives it: follow its live sessions from the
   * server's logs (they replace ours, which may have missed updates), show the newest.
   */
  private async attachLive(live: SessionInfo[], announced = false): Promise<void> {
    for (const info of live) {
      try {
        await this.loadTranscript(info.sessionId, announced);
      } catch (err) {
        this.deps.log.warn(`Transcript of ${info.sessionId}: ${describeError(err)}`);
      }
    }
    const newest = live[live.length - 1];
    if (!this.sessions.activeId && newest) this.sessions.activeId = newest.sessionId;
    const active = this.sessions.activeId;
    if (active) this.sendSessionDetail(active);
  }

  /** Replaces a session's log with the server's; false when the host keeps none. */
  private async loadTranscript(sessionId: string, announced = false): Promise<boolean> {
    if (!this.deps.transcript) return false;
    const { events, seq } = await this.deps.transcript(sessionId);
    // Opened by this window meanwhile (its reply came while the log was on its way):
    // the window's own log of it is newer, notices included.
    if (announced && this.opened.has(sessionId)) return false;
    this.sessions.load(sessionId, events, seq);
    for (const event of events) if (event.type === 'task_status') this.tasks.update(sessionId, event);
    const info = this.sessions.get(sessionId);
    if (info?.live && info.workspaceFolder) await this.refreshChanges(sessionId);
    if (info?.live) await this.loadMcpStatus(sessionId);
    return true;
  }

  /**
   * The session's MCP servers as they are now, as `mcp_server` events in its log: the
   * servers start with the session, before any update can reach this window; later
   * changes arrive as updates.
   */
  private async loadMcpStatus(sessionId: string): Promise<void> {
    let result: McpStatusResult;
    try {
      result = await this.deps.server.request<McpStatusResult>(MCP_STATUS, { sessionId });
    } catch (err) {
      this.deps.log.warn(`MCP status of ${sessionId}: ${describeError(err)}`);
      return;
    }
    for (const s of result.servers) {
      this.localEvent(sessionId, {
        type: 'mcp_server',
        taskId: null,
        name: s.name,
        state: s.state,
        where: s.where,
        tools: s.tools,
        reason: s.reason,
        restarts: s.restarts,
      });
    }
  }

  // --- sessions -----------------------------------------------------------------------------------

  /** The folder a new session works on: the active editor's, else the only one, else ask. */
  private async chooseFolder(ask: boolean): Promise<WorkspaceFolderInfo | null | undefined> {
    const folders = this.deps.editor.workspaceFolders();
    if (folders.length === 0) return null;
    if (folders.length === 1) return folders[0];
    if (!ask) return this.deps.editor.activeFolder() ?? folders[0];
    return this.deps.editor.pickFolder(folders);
  }

  private async createSession(folder: WorkspaceFolderInfo | null, title: string | null): Promise<string> {
    const settings = this.deps.settings();
    const info = await this.deps.server.request<SessionInfo>(SESSION_NEW, {
      workspaceFolder: folder?.uri ?? null,
      runtime: settings.runtime,
      model: settings.model || null,
      approvalMode: settings.approvalMode,
      syncMode: folder ? settings.syncMode : 'none',
      title,
    });
    this.opened.add(info.sessionId);
    this.sessions.upsert(info);
    this.sessions.activeId = info.sessionId;
    for (const notice of info.notices) this.localEvent(info.sessionId, { type: 'notice', taskId: null, level: 'warning', text: notice });
    await this.loadMcpStatus(info.sessionId);
    this.sendSessions();
    this.sendSessionDetail(info.sessionId);
    return info.sessionId;
  }

  private async newSession(): Promise<void> {
    await this.ensureServer();
    const folder = await this.chooseFolder(true);
    if (folder === undefined) return; // the user dismissed the folder picker
    await this.createSession(folder, null);
  }

  private async selectSession(sessionId: string): Promise<void> {
    const info = this.sessions.get(sessionId);
    if (!info) return;
    this.sessions.activeId = sessionId;
    if (!info.live && this.sessions.events(sessionId).length === 0 && !(await this.loadTranscript(sessionId))) {
      // A saved session from an earlier run: its history is in the agent, not here.
      this.sessions.appendLocal(sessionId, {
        type: 'notice',
        taskId: null,
        level: 'info',
        text: `Saved session "${info.title || sessionId}" (${info.messageCount} messages). Send a prompt to resume it.`,
      });
    }
    this.sendSessions();
    this.sendSessionDetail(sessionId);
  }

  /** A live session to prompt: the given one, resumed if it ended, or a new one. */
  private async sessionForPrompt(sessionId: string | null, text: string): Promise<string> {
    const info = sessionId ? this.sessions.get(sessionId) : undefined;
    if (info?.live) return info.sessionId;
    if (info) return this.resume(info);
    // Two quick prompts must not create two sessions.
    if (!this.creating) {
      this.creating = (async () => {
        const folder = await this.chooseFolder(false);
        return this.createSession(folder ?? null, text.split('\n')[0]?.slice(0, 60) ?? null);
      })().finally(() => (this.creating = undefined));
    }
    const id = await this.creating;
    if (!id) throw new Error('No session could be started.');
    return id;
  }

  private async resume(info: SessionInfo): Promise<string> {
    const settings = this.deps.settings();
    const resumed = await this.deps.server.request<SessionInfo>(SESSION_RESUME, {
      sessionId: info.sessionId,
      workspaceFolder: null,
      runtime: settings.runtime,
      model: settings.model || null,
      approvalMode: settings.approvalMode,
      syncMode: settings.syncMode,
    });
    this.opened.add(resumed.sessionId);
    this.sessions.upsert(resumed);
    this.sessions.activeId = resumed.sessionId;
    if (this.sessions.events(resumed.sessionId).length === 0 && resumed.messageCount > 0) {
      this.localEvent(resumed.sessionId, {
        type: 'notice',
        taskId: null,
        level: 'info',
        text: `Resumed a saved session (${resumed.messageCount} earlier messages; the agent remembers them).`,
      });
    }
    for (const notice of resumed.notices) this.localEvent(resumed.sessionId, { type: 'notice', taskId: null, level: 'warning', text: notice });
    await this.loadMcpStatus(resumed.sessionId);
    this.sendSessions();
    return resumed.sessionId;
  }

  /** An event the extension adds to a log (notices, a turn the server never ended). */
  private localEvent(sessionId: string, update: SessionUpdate): void {
    this.sessions.appendLocal(sessionId, update);
    this.post({ type: 'event', sessionId, event: update });
  }

  private endTurnLocally(sessionId: string, error: string): void {
    this.localEvent(sessionId, { type: 'turn_ended', taskId: null, stopReason: 'error', text: '', error });
  }

  // --- turns ---------------------------------------------------------------------------------------

  private async prompt(requested: string | null, text: string): Promise<void> {
    await this.ensureServer();
    if (this.deps.server.state.kind !== 'running') {
      this.toast('error', 'The Pygent server is not running. See the message above for how to fix it.');
      return;
    }
    const sessionId = await this.sessionForPrompt(requested, text);
    if (this.sessions.activeId !== sessionId) {
      this.sessions.activeId = sessionId;
      this.sendSessions();
      this.sendSessionDetail(sessionId);
    }
    this.inFlight.add(sessionId);
    this.sendStatus();
    try {
      const result = await this.deps.server.request<PromptResult>(SESSION_PROMPT, {
        sessionId,
        prompt: text,
        includeUnsaved: true,
      });
      if (result.changes > 0) await this.refreshChanges(sessionId);
    } catch (err) {
      const message = errorCode(err) === SESSION_BUSY ? 'A turn is already running in this session. Stop it first.' : describeError(err);
      if (this.sessions.turnOpen(sessionId)) this.endTurnLocally(sessionId, message);
      else this.toast('error', message);
    } finally {
      this.inFlight.delete(sessionId);
      this.sendSessions();
    }
  }

  private async cancel(sessionId: string): Promise<void> {
    this.approvals.cancelAll(sessionId);
    await this.deps.server.request(SESSION_CANCEL, { sessionId });
  }

  /** Cancels the active session's turn (the "Stop" command). */
  async cancelActive(): Promise<void> {
    const id = this.sessions.activeId;
    if (id) await this.handle({ type: 'cancel', sessionId: id });
  }

  /** Starts a new session (the "New Session" command). */
  async newSessionCommand(): Promise<void> {
    await this.handle({ type: 'newSession' });
  }

  // --- server -> client ---------------------------------------------------------------------------------

  private onSessionUpdate(raw: unknown): void {
    let params: SessionUpdateParams;
    try {
      const obj = raw as { sessionId?: unknown; seq?: unknown; update?: unknown };
      if (typeof obj?.sessionId !== 'string' || typeof obj.seq !== 'number') throw new Error('sessionId/seq missing');
      params = { sessionId: obj.sessionId, seq: obj.seq, update: parseSessionEvent(obj.update, 'update') };
    } catch (err) {
      this.deps.log.warn(`Ignored a malformed ${SESSION_UPDATE}: ${describeError(err)}`);
      return;
    }
    const { sessionId, update } = params;
    if (!this.sessions.get(sessionId)) return; // another window's session, or one we closed
    const wasBusy = this.sessions.get(sessionId)?.busy;
    if (!this.sessions.append(sessionId, params.seq, update)) return;
    this.post({ type: 'event', sessionId, event: update });
    if (this.sessions.get(sessionId)?.busy !== wasBusy) this.sendSessions();
    switch (update.type) {
      case 'task_status': {
        this.tasks.update(sessionId, update);
        this.post({ type: 'tasks', sessionId, tasks: this.tasks.list(sessionId) });
        if (update.taskId && FINAL_TASK_STATES.has(update.status)) void this.fetchTask(sessionId, update.taskId);
        return;
      }
      case 'permission':
        if (update.state === 'resolved') this.approvals.resolvedByServer(sessionId, update.callId, update.outcome);
        return;
      case 'changes':
        void this.refreshChanges(sessionId);
        return;
      default:
        return;
    }
  }

  private async onPermissionRequest(raw: unknown, token: CancellationLike): Promise<RequestPermissionResult> {
    let params: RequestPermissionParams;
    try {
      params = parsePermissionParams(raw, 'params');
    } catch (err) {
      // Deny rather than guess: the user never saw what they would be approving.
      this.deps.log.warn(`Denied a malformed ${REQUEST_PERMISSION}: ${describeError(err)}`);
      return { optionId: 'reject_once', message: 'The editor could not read this approval request.' };
    }
    return this.approvals.ask(params, token);
  }

  private async fetchTask(sessionId: string, taskId: string): Promise<void> {
    try {
      const info = await this.deps.server.request<TaskInfo>(TASK_STATUS, { sessionId, taskId });
      this.tasks.set(sessionId, info);
      this.post({ type: 'tasks', sessionId, tasks: this.tasks.list(sessionId) });
    } catch (err) {
      this.deps.log.warn(`Task ${taskId}: ${describeError(err)}`);
    }
  }

  // --- changes ---------------------------------------------------------------------------------------------

  async refreshChanges(sessionId: string): Promise<void> {
    try {
      const set = await this.deps.server.request<ChangeSet>(WORKSPACE_CHANGES, { sessionId });
      this.changes.set(sessionId, set);
      this.post({ type: 'changes', sessionId, syncMode: set.syncMode, changes: set.changes });
    } catch (err) {
      this.deps.log.warn(`Changes of ${sessionId}: ${describeError(err)}`);
    }
  }

  private async apply(sessionId: string, paths: string[] | null): Promise<void> {
    const method = this.deps.applyMethod ?? 'applyEdit';
    const result = await this.deps.server.request<ApplyResult>(WORKSPACE_APPLY, { sessionId, paths, method });
    const folder = this.sessions.get(sessionId)?.workspaceFolder;
    if (method === 'applyEdit' && folder && result.applied.length) {
      // applyEdit leaves the documents dirty; the user asked for the files, so save them.
      await this.deps.editor.saveFiles(result.applied.map((p) => joinPath(folder, p)));
    }
    if (result.failed.length) {
      this.toast('warning', `Not applied: ${result.failed.map((f) => `${f.path} (${f.reason})`).join(', ')}`);
    } else if (result.applied.length) {
      this.toast('info', `Applied ${result.applied.length} change${result.applied.length === 1 ? '' : 's'}.`);
    }
    await this.refreshChanges(sessionId);
  }

  private async discard(sessionId: string, paths: string[] | null): Promise<void> {
    const count = paths?.length ?? this.changes.get(sessionId)?.changes.length ?? 0;
    const what = paths?.length === 1 ? paths[0] : `${count} change${count === 1 ? '' : 's'}`;
    const ok = await this.deps.editor.confirm(`Discard ${what}? The agent's version is lost; your files are not touched.`, 'Discard');
    if (!ok) return;
    const result = await this.deps.server.request<DiscardResult>(WORKSPACE_DISCARD, { sessionId, paths });
    this.toast('info', `Discarded ${result.discarded.length} change${result.discarded.length === 1 ? '' : 's'}.`);
    await this.refreshChanges(sessionId);
  }

  private async openChange(sessionId: string, path: string): Promise<void> {
    const info = this.sessions.get(sessionId);
    const change = this.changes.get(sessionId)?.changes.find((c) => c.path === path);
    if (!info || !change) return;
    const name = basename(path);
    const folderFile = info.workspaceFolder ? joinPath(info.workspaceFolder, path) : undefined;
    const left: DiffSide = change.status === 'added' || !folderFile ? { content: '', name: `${name} (none)` } : { file: folderFile };
    let right: DiffSide;
    if (change.status === 'deleted') {
      right = { content: '', name: `${name} (deleted)` };
    } else {
      const sandboxFile = info.sandboxPath ? joinPath(info.sandboxPath, path) : undefined;
      const readable = sandboxFile !== undefined && (await this.deps.editor.readFile(sandboxFile)) !== undefined;
      if (readable && sandboxFile) {
        right = { file: sandboxFile };
      } else {
        const before = change.status === 'added' || !folderFile ? '' : ((await this.deps.editor.readFile(folderFile)) ?? '');
        const after = proposedContent('', {}, before, change.diff);
        if (after === undefined) {
          await this.deps.editor.openText(change.diff, 'diff');
          return;
        }
        right = { content: after, name: `${name} (Pygent)` };
      }
    }
    await this.deps.editor.openDiff(left, right, `${name} ↔ Pygent sandbox`);
  }

  private async openApprovalDiff(id: string): Promise<void> {
    const entry = this.approvals.get(id);
    if (!entry) return;
    const call = entry.params.toolCall;
    const info = this.sessions.get(entry.params.sessionId);
    const path = call.path ?? (typeof call.arguments.path === 'string' ? call.arguments.path : undefined);
    if (!path) {
      await this.deps.editor.openText(call.preview, 'diff');
      return;
    }
    const name = basename(path);
    // The file as the agent sees it now: the sandbox copy, else the folder's.
    let before: string | undefined;
    let left: DiffSide | undefined;
    for (const dir of [info?.sandboxPath, info?.workspaceFolder]) {
      if (!dir) continue;
      const file = joinPath(dir, path);
      before = await this.deps.editor.readFile(file);
      if (before !== undefined) {
        left = { file };
        break;
      }
    }
    const after = proposedContent(call.tool, call.arguments, before ?? '', call.preview);
    if (after === undefined) {
      await this.deps.editor.openText(call.preview, 'diff');
      return;
    }
    await this.deps.editor.openDiff(left ?? { content: '', name: `${name} (new file)` }, { content: after, name: `${name} (proposed)` }, `${name}: proposed by Pygent`);
  }

  private async openTask(sessionId: string, taskId: string): Promise<void> {
    let task = this.tasks.get(sessionId, taskId);
    if (!task?.result) {
      await this.fetchTask(sessionId, taskId);
      task = this.tasks.get(sessionId, taskId);
    }
    if (!task) return;
    const lines = [
      `# Task ${task.taskId}${task.persona ? ` (${task.persona})` : ''}`,
      '',
      `Status: **${task.status}** after ${task.steps} step${task.steps === 1 ? '' : 's'}`,
      '',
      '## Prompt',
      '',
      task.prompt,
      '',
      '## Result',
      '',
      task.result || '_No result yet._',
      '',
    ];
    await this.deps.editor.openText(lines.join('\n'), 'markdown');
  }

  dispose(): void {
    this.approvals.cancelAll();
    this.statusEmitter.dispose();
  }
}
