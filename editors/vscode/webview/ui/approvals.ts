/**
 * Approval cards: the tool call the agent wants to make, with Allow / Always allow /
 * Deny and an optional message for the model. Cards are built once and kept, so a
 * half-typed message survives other updates.
 */

import type { PermissionOptionId } from '../../src/protocol';
import { h } from '../dom';
import type { ApprovalView } from '../messages';
import { looksLikeDiff, renderDiff } from './diff';
import { toolSummary } from './toolCard';

export interface ApprovalCallbacks {
  answer(id: string, optionId: PermissionOptionId, message: string | null): void;
  openDiff(id: string): void;
}

/** The buttons shown, in order; an option the server did not offer is left out. */
const BUTTONS: { optionId: PermissionOptionId; label: string; primary: boolean }[] = [
  { optionId: 'allow_once', label: 'Allow', primary: true },
  { optionId: 'allow_always', label: 'Always allow', primary: false },
  { optionId: 'reject_once', label: 'Deny', primary: false },
];

export class ApprovalsView {
  readonly el: HTMLElement;
  private readonly cards = new Map<string, HTMLElement>();

  constructor(
    private readonly callbacks: ApprovalCallbacks,
    private readonly canOpenDiff: () => boolean,
  ) {
    this.el = h('section', { class: 'approvals', aria: { label: 'Approvals' } });
  }

  /** Shows the given approvals; returns the cards that are new (to announce or focus). */
  update(approvals: ApprovalView[]): HTMLElement[] {
    const wanted = new Set(approvals.map((a) => a.id));
    for (const [id, card] of this.cards) {
      if (!wanted.has(id)) {
        card.remove();
        this.cards.delete(id);
      }
    }
    const added: HTMLElement[] = [];
    for (const approval of approvals) {
      if (this.cards.has(approval.id)) continue;
      const card = this.renderCard(approval);
      this.cards.set(approval.id, card);
      this.el.append(card);
      added.push(card);
    }
    this.el.hidden = this.cards.size === 0;
    return added;
  }

  private renderCard(a: ApprovalView): HTMLElement {
    const titleId = `approval-title-${a.id}`;
    const summary = toolSummary(a.tool, {}, a.previewKind === 'command' ? a.preview : '');
    const target = a.path ?? (a.previewKind === 'command' ? '' : summary);
    const title = a.previewKind === 'command' ? `Run this command?` : target ? `Let ${a.tool} change ${target}?` : `Allow ${a.tool}?`;
    const message = h('input', {
      type: 'text',
      class: 'approval-message',
      placeholder: 'Optional message to the agent',
      aria: { label: 'Message to the agent, sent with your answer' },
    });
    const offered = new Set(a.options.map((o) => o.optionId));
    const answer = (optionId: PermissionOptionId): void => {
      for (const b of card.querySelectorAll('button')) b.disabled = true;
      card.classList.add('answered');
      this.callbacks.answer(a.id, optionId, message.value.trim() || null);
    };
    const buttons = BUTTONS.filter((b) => offered.has(b.optionId)).map((b) =>
      h('button', {
        type: 'button',
        class: b.primary ? 'btn primary' : b.optionId.startsWith('reject') ? 'btn danger' : 'btn secondary',
        text: b.label,
        title: a.options.find((o) => o.optionId === b.optionId)?.name ?? b.label,
        data: { option: b.optionId },
        on: { click: () => answer(b.optionId) },
      }),
    );
    message.addEventListener('keydown', (e: KeyboardEvent) => {
      // Enter in the message box denies with the message: typing one means "no, because".
      if (e.key === 'Enter' && message.value.trim() && offered.has('reject_once')) {
        e.preventDefault();
        answer('reject_once');
      }
    });
    const isDiff = a.previewKind === 'diff' || looksLikeDiff(a.preview);
    const preview = isDiff
      ? renderDiff(a.preview, `Proposed change to ${target}`)
      : h('pre', { class: 'cmd', tabIndex: 0, aria: { label: 'Command' } }, h('code', { text: a.previewKind === 'command' ? `$ ${a.preview}` : a.preview }));
    const card = h(
      'article',
      { class: 'card approval', role: 'group', aria: { labelledby: titleId }, data: { id: a.id } },
      h(
        'div',
        { class: 'card-head' },
        h('span', { class: 'approval-icon', aria: { hidden: 'true' }, text: '?' }),
        h('span', { class: 'approval-title', text: title }),
      ),
      a.reason ? h('div', { class: 'approval-reason', text: a.reason }) : null,
      a.taskId ? h('div', { class: 'approval-reason', text: `From delegated task ${a.taskId}` }) : null,
      preview,
      isDiff && this.canOpenDiff()
        ? h('button', { type: 'button', class: 'link', text: 'Open in diff editor', on: { click: () => this.callbacks.openDiff(a.id) } })
        : null,
      message,
      h('div', { class: 'actions' }, ...buttons),
    );
    card.id = titleId.replace('-title', '');
    const heading = card.querySelector('.approval-title');
    if (heading) heading.id = titleId;
    return card;
  }
}
