/**
 * The status bar item: where commands run (Docker or local), the model, and whether a
 * turn is running; problems (not installed, crashed, no key) in warning colours.
 * Clicking it opens the chat.
 */

import type * as vscode from 'vscode';
import type { HostStatus } from '../../webview/messages';

export interface StatusText {
  text: string;
  tooltip: string;
  /** A theme colour id for the background, for problems. */
  background: string | undefined;
}

/** What the item shows for a status; pure, so it is unit-tested. */
export function statusText(status: HostStatus, sessionTitle: string | null): StatusText {
  const runtime = status.runtime === 'docker' ? 'Docker' : status.runtime === 'local' ? 'Local' : 'Auto';
  const icon = status.runtime === 'local' ? '$(unlock)' : '$(shield)';
  const lines = [
    `Pygent: ${status.connection === 'ready' ? (status.busy ? 'working' : 'ready') : status.connection}`,
    `Runtime: ${runtime}${status.runtime === 'local' ? ' (no isolation: commands run on this machine)' : ''}`,
    `Model: ${status.model || 'default'}`,
  ];
  if (sessionTitle) lines.push(`Session: ${sessionTitle}`);
  if (status.problem) {
    lines.push('', status.problem.message);
    const error = status.problem.kind !== 'noApiKey';
    return {
      text: `$(${error ? 'error' : 'warning'}) Pygent`,
      tooltip: lines.join('\n'),
      background: error ? 'statusBarItem.errorBackground' : 'statusBarItem.warningBackground',
    };
  }
  if (status.connection === 'starting') return { text: '$(loading~spin) Pygent', tooltip: lines.join('\n'), background: undefined };
  const busy = status.busy ? '$(sync~spin) ' : '';
  const model = status.model ? ` · ${status.model}` : '';
  return { text: `${busy}${icon} Pygent: ${runtime}${model}`, tooltip: lines.join('\n'), background: undefined };
}

export class StatusBar {
  constructor(
    private readonly item: vscode.StatusBarItem,
    private readonly themeColor: (id: string) => vscode.ThemeColor,
    command: string,
  ) {
    item.name = 'Pygent';
    item.command = command;
    item.text = '$(shield) Pygent';
    item.tooltip = 'Pygent: open the chat';
    item.show();
  }

  update(status: HostStatus, sessionTitle: string | null): void {
    const t = statusText(status, sessionTitle);
    this.item.text = t.text;
    this.item.tooltip = t.tooltip;
    this.item.backgroundColor = t.background ? this.themeColor(t.background) : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
