/**
 * The chat page's state and how host messages change it: pure data, no DOM.
 *
 * Session events become transcript items (user prompt, assistant reply, tool call,
 * notice, turn end). Each item carries a revision number so the view re-renders only
 * what changed while a reply streams.
 */

import type {
  ApprovalView,
  HostCapabilities,
  HostMessage,
  HostStatus,
  SessionEvent,
  SessionSummary,
} from './messages';
import type { FileChange, McpServerUpdate, StopReason, SyncMode, TaskInfo } from '../src/protocol';

/** Live output kept per tool call; older output is cut so a noisy command cannot bloat the page. */
export const MAX_OUTPUT_CHARS = 200_000;

export type ToolStatus = 'proposed' | 'waiting' | 'running' | 'completed' | 'failed' | 'denied' | 'cancelled';

interface ItemBase {
  id: string;
  rev: number;
}

export type TranscriptItem =
  | (ItemBase & { kind: 'user'; text: string })
  | (ItemBase & { kind: 'assistant'; text: string; streaming: boolean })
  | (ItemBase & {
      kind: 'tool';
      callId: string;
      tool: string;
      args: Record<string, unknown>;
      preview: string;
      status: ToolStatus;
      output: string;
      truncated: boolean;
    })
  | (ItemBase & { kind: 'notice'; level: string; text: string })
  | (ItemBase & { kind: 'changes'; count: number; paths: string[] })
  | (ItemBase & { kind: 'compaction'; automatic: boolean; summary: string; replaced: number; tokensBefore: number; tokensAfter: number })
  | (ItemBase & { kind: 'end'; stopReason: StopReason; text: string; error: string });

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Some call's usage was Pygent's estimate (the server reported none): the totals are too. */
  estimated: boolean;
  cachedTokens?: number;
  /** USD so far; null when the model has no price. */
  cost?: number | null;
  /** The last request's size and the model's window (0: not known yet). */
  contextTokens?: number;
  contextWindow?: number;
}

function formatTokens(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10_000 ? 0 : 1)}k` : String(n);
}

/** The header's count, `1.2k / 300 tokens`; estimates read `~1.2k / ~300 tokens (estimated)`. */
export function usageText(usage: Usage): string {
  const mark = usage.estimated ? '~' : '';
  const counts = `${mark}${formatTokens(usage.promptTokens)} / ${mark}${formatTokens(usage.completionTokens)} tokens`;
  let out = usage.estimated ? `${counts} (estimated)` : counts;
  if (usage.cost !== undefined && usage.cost !== null) out += ` · $${usage.cost.toFixed(usage.cost < 1 ? 4 : 2)}`;
  if (usage.contextWindow) out += ` · ${Math.round((100 * (usage.contextTokens ?? 0)) / usage.contextWindow)}% context`;
  return out;
}

export interface Transcript {
  items: TranscriptItem[];
  busy: boolean;
  usage: Usage | null;
  /** The session's MCP servers by name, as the last `mcp_server` update of each said. */
  mcp: Map<string, McpServerUpdate>;
  /** Bumped when `mcp` changes, so the view re-renders the list only then. */
  mcpRev: number;
}

export interface ChangeList {
  syncMode: SyncMode;
  changes: FileChange[];
}

/** Parts of the page a message can make stale. */
export type Part = 'header' | 'banner' | 'transcript' | 'approvals' | 'tasks' | 'changes' | 'composer';

export interface PageState {
  host: string;
  capabilities: HostCapabilities;
  status: HostStatus;
  sessions: SessionSummary[];
  activeSessionId: string | null;
  transcripts: Map<string, Transcript>;
  approvals: Map<string, ApprovalView>;
  tasks: Map<string, TaskInfo[]>;
  changes: Map<string, ChangeList>;
  toasts: { id: number; level: string; text: string }[];
  /** Set by `focusPrompt`; the view consumes it. */
  focusRequest: { text: string | null } | null;
}

export function initialState(): PageState {
  return {
    host: '',
    capabilities: { openDiff: false, openInEditor: false, actions: [] },
    status: { connection: 'starting', runtime: '', sandbox: '', model: '', busy: false, problem: null },
    sessions: [],
    activeSessionId: null,
    transcripts: new Map(),
    approvals: new Map(),
    tasks: new Map(),
    changes: new Map(),
    toasts: [],
    focusRequest: null,
  };
}

let nextId = 0;
let nextToast = 0;
function newId(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

export function emptyTranscript(): Transcript {
  return { items: [], busy: false, usage: null, mcp: new Map(), mcpRev: 0 };
}

function transcriptOf(state: PageState, sessionId: string): Transcript {
  let t = state.transcripts.get(sessionId);
  if (!t) {
    t = emptyTranscript();
    state.transcripts.set(sessionId, t);
  }
  return t;
}

function findTool(t: Transcript, callId: string): Extract<TranscriptItem, { kind: 'tool' }> | undefined {
  for (let i = t.items.length - 1; i >= 0; i--) {
    const item = t.items[i];
    if (item?.kind === 'tool' && item.callId === callId) return item;
  }
  return undefined;
}

/** Ends the streaming reply, if any: the next delta starts a new message. */
function closeStreaming(t: Transcript): void {
  const last = t.items[t.items.length - 1];
  if (last?.kind === 'assistant' && last.streaming) {
    last.streaming = false;
    last.rev++;
  }
}

/**
 * Removes the reply streamed since the model call began (its streaming items; notices
 * shown among them stay): the call is retried and its new answer replaces the text.
 */
function withdrawReply(t: Transcript): void {
  for (let i = t.items.length - 1; i >= 0; i--) {
    const item = t.items[i];
    if (item?.kind === 'notice') continue;
    if (item?.kind !== 'assistant' || !item.streaming) return;
    t.items.splice(i, 1);
  }
}

function appendOutput(item: Extract<TranscriptItem, { kind: 'tool' }>, text: string): void {
  let out = item.output + text;
  if (out.length > MAX_OUTPUT_CHARS) {
    out = out.slice(out.length - MAX_OUTPUT_CHARS);
    item.truncated = true;
  }
  item.output = out;
}

const TOOL_END_STATES: readonly string[] = ['completed', 'failed', 'denied', 'cancelled'];

/**
 * Applies one session event to a transcript. Events of delegated tasks (`taskId` set)
 * are not part of the conversation; the tasks section shows them.
 */
export function applyEvent(t: Transcript, event: SessionEvent): void {
  if (event.taskId !== null) return;
  switch (event.type) {
    case 'turn_started':
      closeStreaming(t);
      t.items.push({ kind: 'user', id: newId('u'), rev: 0, text: event.prompt });
      t.busy = true;
      return;
    case 'message_delta': {
      const last = t.items[t.items.length - 1];
      if (last?.kind === 'assistant' && last.streaming) {
        last.text += event.text;
        last.rev++;
      } else {
        t.items.push({ kind: 'assistant', id: newId('a'), rev: 0, text: event.text, streaming: true });
      }
      return;
    }
    case 'message_discarded':
      withdrawReply(t);
      return;
    case 'message_done': {
      const last = t.items[t.items.length - 1];
      if (last?.kind === 'assistant' && last.streaming) {
        // The whole message wins over the deltas: it is what the model really said.
        if (event.text) last.text = event.text;
        last.streaming = false;
        last.rev++;
      } else if (event.text.trim()) {
        t.items.push({ kind: 'assistant', id: newId('a'), rev: 0, text: event.text, streaming: false });
      }
      return;
    }
    case 'tool_call_proposed': {
      closeStreaming(t);
      const existing = findTool(t, event.callId);
      if (existing) return;
      t.items.push({
        kind: 'tool',
        id: newId('t'),
        rev: 0,
        callId: event.callId,
        tool: event.tool,
        args: event.arguments,
        preview: event.preview,
        status: 'proposed',
        output: '',
        truncated: false,
      });
      return;
    }
    case 'permission': {
      const item = findTool(t, event.callId);
      if (!item || TOOL_END_STATES.includes(item.status)) return;
      item.status = event.state === 'pending' ? 'waiting' : 'proposed';
      item.rev++;
      return;
    }
    case 'tool_call_started': {
      const item = findTool(t, event.callId);
      if (!item) return;
      item.status = 'running';
      item.rev++;
      return;
    }
    case 'tool_output': {
      const item = findTool(t, event.callId);
      if (!item) return;
      appendOutput(item, event.text);
      item.rev++;
      return;
    }
    case 'tool_call_finished': {
      let item = findTool(t, event.callId);
      if (!item) {
        // A call we never saw proposed (joined late): show its result anyway.
        item = {
          kind: 'tool',
          id: newId('t'),
          rev: 0,
          callId: event.callId,
          tool: event.tool,
          args: {},
          preview: '',
          status: 'running',
          output: '',
          truncated: false,
        };
        t.items.push(item);
      }
      item.status = (TOOL_END_STATES.includes(event.status) ? event.status : event.ok ? 'completed' : 'failed') as ToolStatus;
      // Streamed output is what the user watched; the final output only fills a silent call.
      if (!item.output && event.output) appendOutput(item, event.output);
      item.rev++;
      return;
    }
    case 'usage':
      t.usage = {
        promptTokens: event.totalPromptTokens,
        completionTokens: event.totalCompletionTokens,
        estimated: event.estimated || (t.usage?.estimated ?? false),
        cachedTokens: event.totalCachedTokens,
        cost: event.totalCost,
        contextTokens: event.contextTokens,
        contextWindow: event.contextWindow,
      };
      return;
    case 'compaction':
      // A failed compaction changed nothing: its notice says why.
      if (event.ok) {
        t.items.push({
          kind: 'compaction',
          id: newId('k'),
          rev: 0,
          automatic: event.automatic,
          summary: event.summary,
          replaced: event.replaced,
          tokensBefore: event.tokensBefore,
          tokensAfter: event.tokensAfter,
        });
        if (t.usage) t.usage = { ...t.usage, contextTokens: event.tokensAfter };
      }
      return;
    case 'notice':
      t.items.push({ kind: 'notice', id: newId('n'), rev: 0, level: event.level, text: event.text });
      return;
    case 'changes':
      if (event.count > 0) {
        t.items.push({ kind: 'changes', id: newId('c'), rev: 0, count: event.count, paths: event.paths });
      }
      return;
    case 'turn_ended': {
      closeStreaming(t);
      t.busy = false;
      // A question for the user, or a final text never streamed, still belongs in the chat.
      const shown = t.items.some((i) => i.kind === 'assistant' && i.text.trim() === event.text.trim());
      if (event.text.trim() && !shown && event.stopReason !== 'error') {
        t.items.push({ kind: 'assistant', id: newId('a'), rev: 0, text: event.text, streaming: false });
      }
      for (const item of t.items) {
        if (item.kind === 'tool' && !TOOL_END_STATES.includes(item.status) && event.stopReason === 'cancelled') {
          item.status = 'cancelled';
          item.rev++;
        }
      }
      if (event.stopReason !== 'end_turn' && event.stopReason !== 'stop') {
        // The server often reported the error as a notice already: say it once.
        const said = t.items.slice(-5).some((i) => i.kind === 'notice' && i.text.trim() === event.error.trim());
        t.items.push({
          kind: 'end',
          id: newId('e'),
          rev: 0,
          stopReason: event.stopReason,
          text: event.text,
          error: said ? '' : event.error,
        });
      }
      return;
    }
    case 'task_status':
      return;
    case 'mcp_server': {
      if (event.taskId !== null) return; // a delegated task's own copies: its status lines say enough
      const before = t.mcp.get(event.name);
      t.mcp.set(event.name, event);
      t.mcpRev++;
      // A server that went down during the session is news in the conversation too (a
      // failed start is already one of the session's notices).
      if (event.state === 'restarting' || (event.state === 'failed' && before && before.state !== 'failed')) {
        const what = event.state === 'restarting' ? 'exited; restarting' : 'failed';
        const why = event.reason ? `: ${event.reason}` : '';
        t.items.push({ kind: 'notice', id: newId('n'), rev: 0, level: 'warning', text: `MCP server ${event.name} ${what}${why}` });
      }
      return;
    }
  }
}

/**
 * Applies a host message to the state and says which parts of the page are stale.
 */
export function reduce(state: PageState, msg: HostMessage): Part[] {
  switch (msg.type) {
    case 'init':
      state.host = msg.host;
      state.capabilities = msg.capabilities;
      state.status = msg.status;
      state.sessions = msg.sessions;
      state.activeSessionId = msg.activeSessionId;
      return ['header', 'banner', 'transcript', 'approvals', 'tasks', 'changes', 'composer'];
    case 'status':
      state.status = msg.status;
      return ['header', 'banner', 'composer'];
    case 'sessions': {
      const switched = state.activeSessionId !== msg.activeSessionId;
      state.sessions = msg.sessions;
      state.activeSessionId = msg.activeSessionId;
      return switched
        ? ['header', 'transcript', 'approvals', 'tasks', 'changes', 'composer']
        : ['header', 'composer'];
    }
    case 'transcript': {
      const t = emptyTranscript();
      for (const event of msg.events) applyEvent(t, event);
      state.transcripts.set(msg.sessionId, t);
      return msg.sessionId === state.activeSessionId ? ['transcript', 'composer'] : [];
    }
    case 'event': {
      const t = transcriptOf(state, msg.sessionId);
      const wasBusy = t.busy;
      applyEvent(t, msg.event);
      if (msg.sessionId !== state.activeSessionId) return [];
      return wasBusy === t.busy ? ['transcript'] : ['transcript', 'composer'];
    }
    case 'approval':
      state.approvals.set(msg.approval.id, msg.approval);
      return ['approvals'];
    case 'approvalClosed':
      return state.approvals.delete(msg.id) ? ['approvals'] : [];
    case 'tasks':
      state.tasks.set(msg.sessionId, msg.tasks);
      return msg.sessionId === state.activeSessionId ? ['tasks'] : [];
    case 'changes':
      state.changes.set(msg.sessionId, { syncMode: msg.syncMode, changes: msg.changes });
      return msg.sessionId === state.activeSessionId ? ['changes'] : [];
    case 'toast':
      state.toasts.push({ id: ++nextToast, level: msg.level, text: msg.text });
      if (state.toasts.length > 3) state.toasts.shift();
      return ['banner'];
    case 'focusPrompt':
      state.focusRequest = { text: msg.text };
      return ['composer'];
    case 'rewindPlan':
    case 'rewound':
      return []; // shown by the rewind view (app.ts), not kept in the state
  }
}

/** The active session's transcript (empty before any session exists). */
export function activeTranscript(state: PageState): Transcript {
  return (state.activeSessionId && state.transcripts.get(state.activeSessionId)) || emptyTranscript();
}

/** Busy when the host says so or the active session's turn is running. */
export function isBusy(state: PageState): boolean {
  return activeTranscript(state).busy || (state.sessions.find((s) => s.sessionId === state.activeSessionId)?.busy ?? false);
}
