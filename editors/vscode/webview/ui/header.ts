/** The top bar: session picker, "new session", and a status line (runtime, model, busy). */

import { h, replaceChildren } from '../dom';
import type { HostStatus, SessionSummary } from '../messages';

export interface HeaderCallbacks {
  select(sessionId: string): void;
  newSession(): void;
  /** Summarise the older conversation now (pygent/session/compact). */
  compact(): void;
}

/** The runtime kinds' names before a session says how its sandbox is named. */
const RUNTIME_TEXT: Record<string, string> = {
  docker: 'Docker',
  bwrap: 'bubblewrap sandbox',
  local: 'Local (no sandbox)',
};

const CONNECTION_TEXT: Record<HostStatus['connection'], string> = {
  starting: 'Starting…',
  ready: 'Ready',
  stopped: 'Stopped',
  failed: 'Not running',
};

function folderName(folder: string | null): string {
  if (!folder) return '';
  const clean = folder.replace(/[\\/]+$/, '');
  return decodeURIComponent(clean.slice(clean.search(/[^\\/]*$/)));
}

export function sessionLabel(s: SessionSummary): string {
  const title = s.title || 'New session';
  const folder = folderName(s.workspaceFolder);
  return [title, folder && folder !== title ? folder : '', s.live ? '' : '(saved)'].filter(Boolean).join(' · ');
}

export class HeaderView {
  readonly el: HTMLElement;
  private readonly picker: HTMLSelectElement;
  private readonly statusLine: HTMLElement;
  private readonly compactButton: HTMLButtonElement;

  constructor(callbacks: HeaderCallbacks) {
    this.picker = h('select', {
      class: 'session-picker',
      aria: { label: 'Session' },
      on: { change: () => callbacks.select(this.picker.value) },
    });
    this.statusLine = h('div', { class: 'status-line', role: 'status', aria: { live: 'polite' } });
    this.compactButton = h('button', {
      type: 'button',
      class: 'btn small compact',
      text: 'Compact',
      title: 'Summarise the older conversation to free context (the history keeps everything)',
      aria: { label: 'Compact the conversation' },
      on: { click: () => callbacks.compact() },
    });
    this.el = h(
      'header',
      { class: 'toolbar' },
      h(
        'div',
        { class: 'toolbar-row' },
        this.picker,
        h('button', {
          type: 'button',
          class: 'btn icon',
          text: '+',
          title: 'New session',
          aria: { label: 'New session' },
          on: { click: () => callbacks.newSession() },
        }),
        this.compactButton,
      ),
      this.statusLine,
    );
  }

  update(status: HostStatus, sessions: SessionSummary[], activeId: string | null, busy: boolean, tokens: string): void {
    if (document.activeElement !== this.picker) {
      const options = sessions.map((s) => h('option', { value: s.sessionId, text: sessionLabel(s), selected: s.sessionId === activeId }));
      if (!activeId) options.unshift(h('option', { value: '', text: sessions.length ? 'Choose a session…' : 'No session yet', selected: true, disabled: true }));
      replaceChildren(this.picker, ...options);
      this.picker.disabled = sessions.length === 0;
    }
    // The session's own name for its sandbox ("Podman rootless (image)", "Docker gVisor ..."),
    // else the kind asked for.
    const named = status.runtime === 'local' ? '' : status.sandbox;
    const runtime = named || (RUNTIME_TEXT[status.runtime] ?? (status.runtime || 'auto'));
    const state = status.connection !== 'ready' ? CONNECTION_TEXT[status.connection] : busy ? 'Working…' : 'Ready';
    this.compactButton.disabled = busy || !activeId || status.connection !== 'ready';
    replaceChildren(
      this.statusLine,
      h('span', { class: `runtime runtime-${status.runtime || 'auto'}`, title: 'Where commands run', text: runtime }),
      status.model ? h('span', { class: 'model', title: 'Model', text: status.model }) : null,
      tokens ? h('span', { class: 'tokens', title: 'Tokens used in this session (prompt / completion), cost, and how full the context window is', text: tokens }) : null,
      h('span', { class: `state${busy ? ' busy' : ''} conn-${status.connection}`, text: state }),
    );
  }
}
