/** A unified diff as coloured lines (text only, no HTML from the diff itself). */

import { h } from '../dom';

const MAX_LINES = 2000;

function lineClass(line: string): string {
  if (line.startsWith('+++') || line.startsWith('---')) return 'diff-file';
  if (line.startsWith('@@')) return 'diff-hunk';
  if (line.startsWith('+')) return 'diff-add';
  if (line.startsWith('-')) return 'diff-del';
  return 'diff-ctx';
}

export function renderDiff(diff: string, label: string): HTMLElement {
  const lines = diff.replace(/\n$/, '').split('\n');
  const shown = lines.slice(0, MAX_LINES);
  const pre = h('pre', { class: 'diff', tabIndex: 0, aria: { label } });
  for (const line of shown) pre.append(h('span', { class: lineClass(line), text: `${line}\n` }));
  if (lines.length > shown.length) {
    pre.append(h('span', { class: 'diff-more', text: `… ${lines.length - shown.length} more lines` }));
  }
  return pre;
}

/** Counts added and removed lines, for a compact summary. */
export function diffStats(diff: string): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const line of diff.split('\n')) {
    if (line.startsWith('+++') || line.startsWith('---')) continue;
    if (line.startsWith('+')) added++;
    else if (line.startsWith('-')) removed++;
  }
  return { added, removed };
}

/** True when a preview is a unified diff rather than a command or text. */
export function looksLikeDiff(text: string): boolean {
  return /^(---\s|\+\+\+\s|@@\s)/m.test(text) && /^@@\s/m.test(text);
}
