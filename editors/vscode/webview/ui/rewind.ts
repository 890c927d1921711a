/**
 * Rewind: the confirmation box that lists what rewinding to before a message would
 * restore (with Files, Conversation, Both, and Fork: a new session from that point,
 * this one untouched), and the Redo bar after a rewind.
 */

import { h, replaceChildren } from '../dom';
import type { RewindPlan } from '../messages';

export interface RewindCallbacks {
  rewind(plan: RewindPlan, files: boolean, conversation: boolean): void;
  redo(sessionId: string): void;
  fork(plan: RewindPlan): void;
}

const KIND_TEXT: Record<string, string> = { added: 'brought back', modified: 'restored', deleted: 'removed' };

export class RewindView {
  readonly el: HTMLElement;

  constructor(private readonly callbacks: RewindCallbacks) {
    this.el = h('section', { class: 'rewind', aria: { label: 'Rewind' } });
    this.el.hidden = true;
  }

  /** Shows the plan of a rewind for the user to confirm. */
  showPlan(plan: RewindPlan): void {
    const files = plan.files.map((f) =>
      h('li', { class: `rewind-file kind-${f.kind}` }, h('code', { text: f.path }), h('span', { class: 'rewind-kind', text: ` ${KIND_TEXT[f.kind] ?? f.kind}` })),
    );
    const filesText = !plan.canRestoreFiles
      ? `Files cannot be restored: ${plan.note}`
      : files.length
        ? `Rewinding the files restores ${files.length} file${files.length === 1 ? '' : 's'}:`
        : 'No file differs from before this message.';
    const button = (label: string, cls: string, filesToo: boolean, conversation: boolean, disabled = false) =>
      h('button', {
        type: 'button',
        class: `btn ${cls}`,
        text: label,
        disabled,
        data: { rewind: label.toLowerCase() },
        on: { click: () => this.done(() => this.callbacks.rewind(plan, filesToo, conversation)) },
      });
    replaceChildren(
      this.el,
      h('div', { class: 'rewind-title', text: `Rewind to before “${plan.prompt.slice(0, 80)}”?` }),
      h('p', { class: 'rewind-files-text', text: filesText }),
      files.length ? h('ul', { class: 'rewind-files' }, ...files) : null,
      plan.kept.length
        ? h('p', { class: 'rewind-kept', text: `Kept as you edited them since: ${plan.kept.join(', ')}` })
        : null,
      h(
        'div',
        { class: 'rewind-actions' },
        button('Files', 'secondary', true, false, !plan.canRestoreFiles),
        button('Conversation', 'secondary', false, true),
        button('Both', 'primary', plan.canRestoreFiles, true),
        h('button', {
          type: 'button',
          class: 'btn secondary',
          text: 'Fork',
          title: 'Continue in a new session as this one was before this message (this session stays as it is)',
          data: { rewind: 'fork' },
          on: { click: () => this.done(() => this.callbacks.fork(plan)) },
        }),
        h('button', { type: 'button', class: 'btn link', text: 'Cancel', data: { rewind: 'cancel' }, on: { click: () => this.hide() } }),
      ),
    );
    this.el.hidden = false;
    this.el.querySelector<HTMLButtonElement>('button.primary')?.focus();
  }

  /** After a rewind: what happened, and Redo while it can be undone. */
  showDone(sessionId: string, text: string, canRedo: boolean): void {
    replaceChildren(
      this.el,
      h('p', { class: 'rewind-done', text }),
      h(
        'div',
        { class: 'rewind-actions' },
        canRedo
          ? h('button', { type: 'button', class: 'btn secondary', text: 'Redo', data: { rewind: 'redo' }, on: { click: () => this.done(() => this.callbacks.redo(sessionId)) } })
          : null,
        h('button', { type: 'button', class: 'btn link', text: 'Close', data: { rewind: 'close' }, on: { click: () => this.hide() } }),
      ),
    );
    this.el.hidden = false;
  }

  hide(): void {
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  private done(action: () => void): void {
    this.hide();
    action();
  }
}
