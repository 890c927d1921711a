/**
 * The sessions this window knows (live in the server, or saved for its folders), their
 * event logs, and which one the chat shows. The log lets a re-opened chat page replay
 * a conversation: the page itself keeps nothing.
 */

import type { SessionSummary } from '../../webview/messages';
import type { SessionInfo, SessionUpdate } from '../protocol';

/** Beyond this many events a log is compacted further (deltas are always merged). */
const MAX_EVENTS = 20_000;

interface SessionRecord {
  info: SessionInfo;
  events: SessionUpdate[];
  lastSeq: number;
}

/**
 * The log without `taskId`'s reply chunks of its current model call: the `message_delta`
 * events since its previous event of another kind (the turn's start, a finished message,
 * a tool call). Notices among them and other tasks' events stay.
 */
export function withoutCurrentReply(events: SessionUpdate[], taskId: string | null): SessionUpdate[] {
  const kept: SessionUpdate[] = [];
  let i = events.length;
  for (; i > 0; i--) {
    const e = events[i - 1];
    if (e === undefined) break;
    if (e.taskId === taskId && e.type !== 'notice') {
      if (e.type !== 'message_delta') break;
    } else {
      kept.push(e);
    }
  }
  return [...events.slice(0, i), ...kept.reverse()];
}

export class SessionStore {
  private readonly records = new Map<string, SessionRecord>();
  private active: string | null = null;

  get activeId(): string | null {
    return this.active;
  }

  set activeId(id: string | null) {
    this.active = id !== null && this.records.has(id) ? id : null;
  }

  get(id: string): SessionInfo | undefined {
    return this.records.get(id)?.info;
  }

  get activeInfo(): SessionInfo | undefined {
    return this.active ? this.get(this.active) : undefined;
  }

  /** Adds or refreshes a session (from new / resume / list); its log is kept. */
  upsert(info: SessionInfo): void {
    const record = this.records.get(info.sessionId);
    if (record) record.info = info;
    else this.records.set(info.sessionId, { info, events: [], lastSeq: 0 });
  }

  /** The ids of the sessions known to be live (this window follows their updates). */
  liveIds(): Set<string> {
    return new Set([...this.records.values()].filter((r) => r.info.live).map((r) => r.info.sessionId));
  }

  /** After a server restart nothing is live any more; conversations stay readable. */
  markAllEnded(): void {
    for (const record of this.records.values()) record.info = { ...record.info, live: false, busy: false };
  }

  setBusy(id: string, busy: boolean): void {
    const record = this.records.get(id);
    if (record) record.info = { ...record.info, busy };
  }

  get anyBusy(): boolean {
    for (const record of this.records.values()) if (record.info.busy) return true;
    return false;
  }

  /**
   * Records one update. Returns false for a repeated or unknown-session update (the
   * caller then does not forward it). Consecutive chunks are merged in the log; a
   * `message_discarded` is not logged but removes the chunks it withdraws, so a replay
   * shows only the answer that replaced them.
   */
  append(sessionId: string, seq: number, update: SessionUpdate): boolean {
    const record = this.records.get(sessionId);
    if (!record) return false;
    if (seq <= record.lastSeq) return false;
    record.lastSeq = seq;
    if (update.type === 'turn_started' && update.taskId === null) record.info = { ...record.info, busy: true };
    if (update.type === 'turn_ended' && update.taskId === null) record.info = { ...record.info, busy: false };
    if (update.type === 'message_discarded') {
      record.events = withoutCurrentReply(record.events, update.taskId);
      return true;
    }
    const last = record.events[record.events.length - 1];
    if (last && update.type === 'message_delta' && last.type === 'message_delta' && last.taskId === update.taskId) {
      record.events[record.events.length - 1] = { ...last, text: last.text + update.text };
    } else if (last && update.type === 'tool_output' && last.type === 'tool_output' && last.callId === update.callId && last.stream === update.stream) {
      record.events[record.events.length - 1] = { ...last, text: last.text + update.text };
    } else {
      record.events.push(update);
    }
    if (record.events.length > MAX_EVENTS) {
      // Task chatter goes first: the conversation itself is what a replay must show.
      record.events = record.events.filter((e) => e.taskId === null || e.type === 'task_status');
      if (record.events.length > MAX_EVENTS) record.events.splice(0, record.events.length - MAX_EVENTS);
    }
    return true;
  }

  /** True between the session's `turn_started` and its `turn_ended` (main agent only). */
  turnOpen(id: string): boolean {
    const events = this.records.get(id)?.events ?? [];
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i];
      if (e?.taskId !== null) continue;
      if (e.type === 'turn_ended') return false;
      if (e.type === 'turn_started') return true;
    }
    return false;
  }

  events(id: string): SessionUpdate[] {
    return this.records.get(id)?.events ?? [];
  }

  /**
   * Replaces a session's log with one read from the server; the updates that follow are
   * numbered after `seq` (a new connection numbers afresh).
   */
  load(id: string, events: SessionUpdate[], seq: number): void {
    const record = this.records.get(id);
    if (!record) return;
    record.events = [...events];
    record.lastSeq = seq;
  }

  /** Replaces a session's log, the update numbering unchanged (a rewind cut the conversation). */
  replaceEvents(id: string, events: SessionUpdate[]): void {
    const record = this.records.get(id);
    if (record) record.events = [...events];
  }

  /** Adds an event the extension itself produced (e.g. "resumed"), keeping seq order. */
  appendLocal(id: string, update: SessionUpdate): void {
    const record = this.records.get(id);
    if (!record) return;
    record.events.push(update);
    if (update.type === 'turn_ended' && update.taskId === null) record.info = { ...record.info, busy: false };
  }

  /** Forgets saved sessions no longer listed; live ones and those with a log stay. */
  prune(listed: Set<string>): void {
    for (const [id, record] of this.records) {
      if (!listed.has(id) && !record.info.live && record.events.length === 0 && id !== this.active) this.records.delete(id);
    }
  }

  /** Sessions for the picker: live ones first, then the most recently updated. */
  summaries(): SessionSummary[] {
    const list = [...this.records.values()].map((r) => r.info);
    list.sort((a, b) => Number(b.live) - Number(a.live) || (b.updated ?? '').localeCompare(a.updated ?? ''));
    return list.map((s) => ({
      sessionId: s.sessionId,
      title: s.title,
      live: s.live,
      busy: s.busy,
      workspaceFolder: s.workspaceFolder,
      runtime: s.runtime,
      model: s.model,
      updated: s.updated,
    }));
  }
}
