/**
 * The conversation: prompts, streamed Markdown replies, tool cards, notices.
 * Rendered by key and revision, so a streaming reply re-renders one element only.
 */

import { h, replaceChildren } from '../dom';
import { renderMarkdown } from '../markdown';
import type { Transcript, TranscriptItem } from '../state';
import { renderToolCard } from './toolCard';

const STOP_TEXT: Record<string, string> = {
  ask_user: 'The agent has a question',
  max_steps: 'Stopped: step limit reached',
  max_time: 'Stopped: time limit reached',
  step_timeout: 'Stopped: a step took too long',
  cancelled: 'Cancelled',
  error: 'The turn failed',
  refusal: 'The model refused',
  budget: 'Stopped: budget spent',
};

export interface TranscriptCallbacks {
  /** Jump to the changes section. */
  showChanges(): void;
  /** Ask what rewinding to before the user's message number `index` would do. */
  rewind?(index: number): void;
}

export class TranscriptView {
  readonly el: HTMLElement;
  private readonly rendered = new Map<string, { rev: number; node: HTMLElement }>();
  /** Output sections the user opened or closed, by call id (wins over the default). */
  private readonly outputOpen = new Map<string, boolean>();
  private readonly empty: HTMLElement;
  /** User message id -> its number in the conversation (for the rewind control). */
  private readonly userIndex = new Map<string, number>();

  constructor(private readonly callbacks: TranscriptCallbacks) {
    this.empty = h(
      'div',
      { class: 'empty' },
      h('div', { class: 'empty-title', text: 'Ask Pygent to do something' }),
      h('p', { text: 'It reads, runs and edits in a sandbox, and asks before anything risky. Its changes come back for you to review.' }),
    );
    this.el = h('main', { class: 'transcript', role: 'log', aria: { label: 'Conversation', live: 'polite', relevant: 'additions' }, tabIndex: 0 });
  }

  /** Re-renders the items whose revision changed; returns nothing, keeps scroll pinned. */
  update(transcript: Transcript): void {
    const pinned = this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 48;
    if (transcript.items.length === 0) {
      this.rendered.clear();
      replaceChildren(this.el, this.empty);
      return;
    }
    if (this.empty.isConnected) this.empty.remove();
    this.userIndex.clear();
    for (const item of transcript.items) {
      if (item.kind === 'user' && item.id !== 'pending') this.userIndex.set(item.id, this.userIndex.size);
    }
    const wanted = new Set(transcript.items.map((i) => i.id));
    for (const [id, entry] of this.rendered) {
      if (!wanted.has(id)) {
        entry.node.remove();
        this.rendered.delete(id);
      }
    }
    let previous: Element | null = null;
    for (const item of transcript.items) {
      const entry = this.rendered.get(item.id);
      let node: HTMLElement;
      if (entry && entry.rev === item.rev) {
        node = entry.node;
      } else {
        node = this.renderItem(item);
        if (entry) entry.node.replaceWith(node);
        this.rendered.set(item.id, { rev: item.rev, node });
      }
      const expectedPosition: ChildNode | null = previous ? previous.nextSibling : this.el.firstChild;
      if (expectedPosition !== node) this.el.insertBefore(node, expectedPosition);
      previous = node;
    }
    if (pinned) this.el.scrollTop = this.el.scrollHeight;
  }

  /** Forgets everything (another session is shown). */
  reset(): void {
    this.rendered.clear();
    this.el.replaceChildren();
  }

  private renderItem(item: TranscriptItem): HTMLElement {
    switch (item.kind) {
      case 'user': {
        // The rewind control: which user message this is, counted from the first.
        const index = this.userIndex.get(item.id);
        const rewind = this.callbacks.rewind;
        const message = h('div', { class: 'msg user', aria: { label: 'You' } }, h('div', { class: 'bubble', text: item.text }));
        if (!rewind || index === undefined) return message;
        // Beside the message, not in it: the message's text stays the prompt alone.
        return h(
          'div',
          { class: 'user-turn' },
          message,
          h('button', {
            type: 'button',
            class: 'link rewind-button',
            text: '↶ Rewind',
            title: 'Go back to before this message: files, conversation or both',
            on: { click: () => rewind(index) },
          }),
        );
      }
      case 'assistant': {
        const body = h('div', { class: 'markdown' });
        body.innerHTML = renderMarkdown(item.text); // sanitised: raw HTML off, see markdown.ts
        return h(
          'div',
          { class: `msg assistant${item.streaming ? ' streaming' : ''}`, aria: { label: 'Pygent', busy: String(item.streaming) } },
          body,
        );
      }
      case 'tool': {
        const lines = item.output.split('\n').length;
        const byDefault = item.status === 'running' || item.status === 'failed' || lines <= 8;
        const open = this.outputOpen.get(item.callId) ?? byDefault;
        return renderToolCard(item, open, (value) => this.outputOpen.set(item.callId, value));
      }
      case 'notice':
        return h('div', { class: `notice level-${item.level}`, role: item.level === 'error' ? 'alert' : 'status', text: item.text });
      case 'changes':
        return h(
          'div',
          { class: 'notice changes-note' },
          h('span', { text: `${item.count} file${item.count === 1 ? '' : 's'} changed in the sandbox: ` }),
          h('button', { type: 'button', class: 'link', text: 'review changes', on: { click: () => this.callbacks.showChanges() } }),
        );
      case 'compaction': {
        // The marker: older turns were summarised for the model (the history keeps them).
        const how = item.automatic ? 'automatically' : 'on request';
        const title = `Conversation compacted ${how}: ${item.replaced} older message${item.replaced === 1 ? '' : 's'} summarised (~${item.tokensBefore.toLocaleString('en-US')} → ~${item.tokensAfter.toLocaleString('en-US')} tokens)`;
        return h(
          'details',
          { class: 'notice compaction-note', role: 'status' },
          h('summary', { text: title }),
          h('div', { class: 'compaction-summary', text: item.summary }),
        );
      }
      case 'end': {
        const label = STOP_TEXT[item.stopReason] ?? `Stopped (${item.stopReason})`;
        return h(
          'div',
          { class: `turn-end reason-${item.stopReason}`, role: item.stopReason === 'error' ? 'alert' : 'status' },
          h('span', { class: 'turn-end-label', text: label }),
          item.error ? h('span', { class: 'turn-end-error', text: item.error }) : null,
        );
      }
    }
  }
}
