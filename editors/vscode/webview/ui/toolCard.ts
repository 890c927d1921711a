/** A tool call in the transcript: what runs, its status, and its live output. */

import { h } from '../dom';
import type { TranscriptItem, ToolStatus } from '../state';
import { diffStats, looksLikeDiff, renderDiff } from './diff';

type ToolItem = Extract<TranscriptItem, { kind: 'tool' }>;

const STATUS_LABEL: Record<ToolStatus, string> = {
  proposed: 'Proposed',
  waiting: 'Waiting for approval',
  running: 'Running…',
  completed: 'Done',
  failed: 'Failed',
  denied: 'Denied',
  cancelled: 'Cancelled',
};

/** The one-line summary of a call: the command for `bash`, the path for file tools. */
export function toolSummary(tool: string, args: Record<string, unknown>, preview: string): string {
  if (tool === 'bash' && typeof args.cmd === 'string') return args.cmd;
  if (typeof args.path === 'string') return args.path;
  if (preview && !looksLikeDiff(preview)) return preview.split('\n')[0] ?? '';
  const json = JSON.stringify(args);
  return json === '{}' ? '' : json;
}

export function renderToolCard(item: ToolItem, expanded: boolean, onToggle: (open: boolean) => void): HTMLElement {
  const summary = toolSummary(item.tool, item.args, item.preview);
  const isCommand = item.tool === 'bash';
  const diff = looksLikeDiff(item.preview) ? item.preview : '';
  const head = h(
    'div',
    { class: 'card-head' },
    h('span', { class: `status-dot status-${item.status}`, aria: { hidden: 'true' } }),
    h('span', { class: 'tool-name', text: item.tool }),
    h('span', { class: 'tool-status', text: STATUS_LABEL[item.status] }),
  );
  const body: (HTMLElement | null)[] = [];
  if (summary) {
    body.push(
      h('pre', { class: isCommand ? 'cmd' : 'cmd path', aria: { label: isCommand ? 'Command' : 'Arguments' } }, h('code', { text: isCommand ? `$ ${summary}` : summary })),
    );
  }
  if (diff) {
    const stats = diffStats(diff);
    const details = h(
      'details',
      { class: 'diff-details' },
      h('summary', { text: `Diff  +${stats.added} −${stats.removed}` }),
      renderDiff(diff, `Diff of ${summary}`),
    );
    body.push(details);
  }
  if (item.output || item.status === 'running') {
    const lines = item.output ? item.output.replace(/\n$/, '').split('\n').length : 0;
    const out = h(
      'details',
      { class: 'output', open: expanded, on: { toggle: (e) => onToggle((e.target as HTMLDetailsElement).open) } },
      h('summary', { text: item.output ? `Output · ${lines} line${lines === 1 ? '' : 's'}${item.truncated ? ' (start cut)' : ''}` : 'Output' }),
      h('pre', { class: 'output-text', tabIndex: 0, aria: { label: `Output of ${item.tool}` } }, item.output || ' '),
    );
    body.push(out);
  }
  return h(
    'article',
    { class: `card tool status-${item.status}`, aria: { label: `${item.tool} ${summary}: ${STATUS_LABEL[item.status]}` }, data: { callId: item.callId } },
    head,
    ...body,
  );
}
