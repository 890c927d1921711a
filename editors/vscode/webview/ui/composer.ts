/**
 * The prompt box: Enter sends, Shift+Enter starts a new line; while a turn runs the
 * send button becomes Stop (Escape stops too).
 */

import { h } from '../dom';

export interface ComposerCallbacks {
  send(text: string): void;
  stop(): void;
  draftChanged(text: string): void;
}

export class ComposerView {
  readonly el: HTMLElement;
  readonly input: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly hint: HTMLElement;
  private busy = false;
  private enabled = true;

  constructor(private readonly callbacks: ComposerCallbacks, draft: string) {
    this.input = h('textarea', {
      class: 'prompt',
      rows: 2,
      placeholder: 'Ask Pygent…',
      aria: { label: 'Prompt', keyshortcuts: 'Enter' },
      on: {
        keydown: (e) => this.onKey(e),
        input: () => {
          this.autosize();
          this.callbacks.draftChanged(this.input.value);
        },
      },
    });
    this.input.value = draft;
    this.sendButton = h('button', { type: 'button', class: 'btn primary', text: 'Send', aria: { label: 'Send prompt' }, on: { click: () => this.submit() } });
    this.stopButton = h('button', { type: 'button', class: 'btn danger', text: 'Stop', hidden: true, aria: { label: 'Stop the running turn', keyshortcuts: 'Escape' }, on: { click: () => this.callbacks.stop() } });
    this.hint = h('span', { class: 'hint', text: 'Enter to send · Shift+Enter for a new line' });
    this.el = h('footer', { class: 'composer' }, this.input, h('div', { class: 'composer-row' }, this.hint, this.stopButton, this.sendButton));
    queueMicrotask(() => this.autosize());
  }

  private onKey(e: KeyboardEvent): void {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.submit();
    } else if (e.key === 'Escape' && this.busy) {
      e.preventDefault();
      this.callbacks.stop();
    }
  }

  private submit(): void {
    const text = this.input.value.trim();
    if (!text || this.busy || !this.enabled) return;
    this.callbacks.send(text);
    this.input.value = '';
    this.autosize();
    this.callbacks.draftChanged('');
  }

  private autosize(): void {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, 200)}px`;
  }

  update(busy: boolean, enabled: boolean): void {
    this.busy = busy;
    this.enabled = enabled;
    this.stopButton.hidden = !busy;
    this.sendButton.hidden = busy;
    this.sendButton.disabled = !enabled;
    this.hint.textContent = busy ? 'Working… Escape or Stop cancels the turn' : 'Enter to send · Shift+Enter for a new line';
  }

  focus(text: string | null): void {
    if (text !== null) {
      this.input.value = text;
      this.autosize();
    }
    this.input.focus();
  }
}
