/** Problems (no key, server missing or crashed) with their fixes, and short-lived toasts. */

import { h, replaceChildren } from '../dom';
import type { HostAction, Problem } from '../messages';

const ACTION_LABEL: Record<HostAction, string> = {
  setApiKey: 'Set API key',
  restartServer: 'Restart server',
  openSettings: 'Open settings',
  showLogs: 'Show logs',
  installHelp: 'How to install',
};

export class BannerView {
  readonly el: HTMLElement;
  private readonly problemEl: HTMLElement;
  private readonly toastsEl: HTMLElement;

  constructor(private readonly run: (action: HostAction) => void) {
    this.problemEl = h('div', { class: 'banner', role: 'alert', hidden: true });
    this.toastsEl = h('div', { class: 'toasts', aria: { live: 'polite' } });
    this.el = h('div', { class: 'banners' }, this.problemEl, this.toastsEl);
  }

  update(problem: Problem | null, available: HostAction[], toasts: { id: number; level: string; text: string }[], dismiss: (id: number) => void): void {
    this.problemEl.hidden = problem === null;
    if (problem) {
      this.problemEl.className = `banner problem-${problem.kind}`;
      const actions = problem.actions.filter((a) => available.includes(a));
      replaceChildren(
        this.problemEl,
        h('div', { class: 'banner-text', text: problem.message }),
        actions.length
          ? h('div', { class: 'actions' }, ...actions.map((a, i) => h('button', { type: 'button', class: i === 0 ? 'btn primary small' : 'btn secondary small', text: ACTION_LABEL[a], on: { click: () => this.run(a) } })))
          : null,
      );
    }
    replaceChildren(
      this.toastsEl,
      ...toasts.map((t) =>
        h(
          'div',
          { class: `toast level-${t.level}`, role: t.level === 'error' ? 'alert' : 'status' },
          h('span', { text: t.text }),
          h('button', { type: 'button', class: 'btn icon small', text: '×', aria: { label: 'Dismiss' }, on: { click: () => dismiss(t.id) } }),
        ),
      ),
    );
  }
}
