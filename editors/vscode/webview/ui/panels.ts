/**
 * The collapsible sections under the conversation: the session's MCP servers (state,
 * where they run, tools or why they failed), delegated tasks (live status, cancel,
 * result) and the agent's changes to the workspace (diff, apply, discard).
 */

import type { FileChange, McpServerUpdate, TaskInfo } from '../../src/protocol';
import { h, replaceChildren } from '../dom';
import { renderMarkdown } from '../markdown';
import type { ChangeList } from '../state';
import { diffStats, renderDiff } from './diff';

export interface PanelCallbacks {
  cancelTask(taskId: string): void;
  openTask(taskId: string): void;
  openChange(path: string): void;
  apply(paths: string[] | null): void;
  discard(paths: string[] | null): void;
}

const ACTIVE_TASK = new Set(['queued', 'running']);
const MCP_WHERE: Record<McpServerUpdate['where'], string> = {
  sandbox: 'in the sandbox',
  host: 'on the host, outside the sandbox',
  remote: 'remote (from the host)',
};
const CHANGE_LETTER: Record<FileChange['status'], string> = { added: 'A', modified: 'M', deleted: 'D' };

export class PanelsView {
  readonly mcpEl: HTMLDetailsElement;
  readonly tasksEl: HTMLDetailsElement;
  readonly changesEl: HTMLDetailsElement;
  private readonly mcpBody: HTMLElement;
  private readonly mcpCount: HTMLElement;
  private readonly tasksBody: HTMLElement;
  private readonly changesBody: HTMLElement;
  private readonly tasksCount: HTMLElement;
  private readonly changesCount: HTMLElement;
  private readonly changesActions: HTMLElement;
  private syncMode: ChangeList['syncMode'] = 'copy';
  /** Task results the user expanded, kept across re-renders. */
  private readonly openResults = new Set<string>();

  constructor(
    private readonly callbacks: PanelCallbacks,
    private readonly canOpen: () => { diff: boolean; editor: boolean },
  ) {
    this.mcpCount = h('span', { class: 'count' });
    this.mcpBody = h('ul', { class: 'list mcp-list', aria: { label: 'MCP servers' } });
    // Closed by default: it matters when something is wrong, and the count says so.
    this.mcpEl = h(
      'details',
      { class: 'panel mcp', hidden: true },
      h('summary', {}, h('span', { class: 'panel-title', text: 'MCP servers' }), this.mcpCount),
      this.mcpBody,
    );
    this.tasksCount = h('span', { class: 'count' });
    this.tasksBody = h('ul', { class: 'list tasks-list', aria: { label: 'Delegated tasks' } });
    this.tasksEl = h(
      'details',
      { class: 'panel tasks', open: true, hidden: true },
      h('summary', {}, h('span', { class: 'panel-title', text: 'Tasks' }), this.tasksCount),
      this.tasksBody,
    );
    this.changesCount = h('span', { class: 'count' });
    this.changesActions = h('div', { class: 'panel-actions' });
    this.changesBody = h('ul', { class: 'list changes-list', aria: { label: 'Changed files' } });
    this.changesEl = h(
      'details',
      { class: 'panel changes', open: true, hidden: true },
      h('summary', {}, h('span', { class: 'panel-title', text: 'Changes' }), this.changesCount),
      this.changesActions,
      this.changesBody,
    );
  }

  updateMcp(servers: McpServerUpdate[]): void {
    this.mcpEl.hidden = servers.length === 0;
    const ready = servers.filter((s) => s.state === 'ready').length;
    const troubled = servers.filter((s) => s.state === 'failed' || s.state === 'restarting').length;
    this.mcpCount.textContent = `${ready}/${servers.length} ready` + (troubled ? ` · ${troubled} failing` : '');
    if (troubled) this.mcpEl.open = true;
    replaceChildren(this.mcpBody, ...servers.map((s) => this.renderMcp(s)));
  }

  private renderMcp(server: McpServerUpdate): HTMLElement {
    const tools = server.tools.length;
    // A reason of several lines (the server's last stderr lines) gets its own block.
    const long = server.state === 'failed' && server.reason.includes('\n');
    const detail =
      server.state === 'ready'
        ? `${tools} tool${tools === 1 ? '' : 's'}`
        : long
          ? ''
          : server.reason || (server.state === 'restarting' ? `restart ${server.restarts}` : '');
    return h(
      'li',
      { class: `row mcp-server status-${server.state} where-${server.where}`, data: { server: server.name } },
      h(
        'div',
        { class: 'row-main' },
        h('span', { class: `badge status-${server.state}`, text: server.state }),
        h('span', { class: 'row-title', text: server.name, title: server.tools.join(', ') }),
        h('span', { class: 'stats', text: detail }),
      ),
      h('div', { class: `row-meta${server.where === 'sandbox' ? '' : ' warn'}`, text: MCP_WHERE[server.where] }),
      long ? h('pre', { class: 'row-meta mcp-reason', text: server.reason }) : null,
    );
  }

  updateTasks(tasks: TaskInfo[]): void {
    this.tasksEl.hidden = tasks.length === 0;
    const running = tasks.filter((t) => ACTIVE_TASK.has(t.status)).length;
    this.tasksCount.textContent = running ? `${running} running · ${tasks.length}` : String(tasks.length);
    replaceChildren(this.tasksBody, ...tasks.map((t) => this.renderTask(t)));
  }

  private renderTask(task: TaskInfo): HTMLElement {
    const active = ACTIVE_TASK.has(task.status);
    const open = this.openResults.has(task.taskId);
    const actions = h('div', { class: 'row-actions' });
    if (active) {
      actions.append(h('button', { type: 'button', class: 'btn small', text: 'Cancel', aria: { label: `Cancel task ${task.taskId}` }, on: { click: () => this.callbacks.cancelTask(task.taskId) } }));
    }
    if (task.result) {
      actions.append(
        h('button', {
          type: 'button',
          class: 'btn small secondary',
          text: open ? 'Hide result' : 'Result',
          aria: { expanded: String(open), label: `Result of task ${task.taskId}` },
          on: {
            click: () => {
              if (open) this.openResults.delete(task.taskId);
              else this.openResults.add(task.taskId);
              item.replaceWith(this.renderTask(task));
            },
          },
        }),
      );
      if (this.canOpen().editor) {
        actions.append(h('button', { type: 'button', class: 'btn small secondary', text: 'Open', title: 'Open the result in an editor', on: { click: () => this.callbacks.openTask(task.taskId) } }));
      }
    }
    const result = open && task.result ? h('div', { class: 'markdown task-result' }) : null;
    if (result) result.innerHTML = renderMarkdown(task.result); // sanitised, see markdown.ts
    const item = h(
      'li',
      { class: `row task status-${task.status}`, data: { taskId: task.taskId } },
      h(
        'div',
        { class: 'row-main' },
        h('span', { class: `badge status-${task.status}`, text: task.status }),
        h('span', { class: 'row-title', title: task.prompt, text: task.prompt || task.taskId }),
      ),
      h(
        'div',
        { class: 'row-meta' },
        h('span', { text: [task.persona, `${task.steps} step${task.steps === 1 ? '' : 's'}`, task.detail].filter(Boolean).join(' · ') }),
        actions,
      ),
      result,
    );
    return item;
  }

  updateChanges(list: ChangeList | undefined): void {
    const changes = list?.changes ?? [];
    this.syncMode = list?.syncMode ?? 'copy';
    this.changesEl.hidden = changes.length === 0;
    this.changesCount.textContent = String(changes.length);
    this.changesActions.hidden = this.syncMode === 'mount';
    replaceChildren(
      this.changesActions,
      h('button', { type: 'button', class: 'btn small primary', text: 'Apply all', on: { click: () => this.callbacks.apply(null) } }),
      h('button', { type: 'button', class: 'btn small secondary', text: 'Discard all', on: { click: () => this.callbacks.discard(null) } }),
    );
    replaceChildren(this.changesBody, ...changes.map((c) => this.renderChange(c)));
  }

  private renderChange(change: FileChange): HTMLElement {
    const stats = change.binary ? null : diffStats(change.diff);
    const canDiff = this.canOpen().diff;
    const preview = !canDiff && change.diff ? h('details', { class: 'diff-details' }, h('summary', { text: 'Diff' }), renderDiff(change.diff, `Diff of ${change.path}`)) : null;
    const actions =
      this.syncMode === 'mount'
        ? null // the agent wrote the folder itself: nothing to apply or discard
        : h(
            'span',
            { class: 'row-actions' },
            h('button', { type: 'button', class: 'btn small secondary', text: 'Apply', aria: { label: `Apply ${change.path}` }, on: { click: () => this.callbacks.apply([change.path]) } }),
            h('button', { type: 'button', class: 'btn small secondary', text: 'Discard', aria: { label: `Discard ${change.path}` }, on: { click: () => this.callbacks.discard([change.path]) } }),
          );
    return h(
      'li',
      { class: `row change change-${change.status}`, data: { path: change.path } },
      h(
        'div',
        { class: 'row-main' },
        h('span', { class: `badge change-${change.status}`, text: CHANGE_LETTER[change.status], title: change.status }),
        canDiff
          ? h('button', { type: 'button', class: 'link row-title', text: change.path, title: `Open the diff of ${change.path}`, on: { click: () => this.callbacks.openChange(change.path) } })
          : h('span', { class: 'row-title', text: change.path, title: change.path }),
        stats ? h('span', { class: 'stats' }, h('span', { class: 'add', text: `+${stats.added}` }), h('span', { class: 'del', text: `−${stats.removed}` })) : h('span', { class: 'stats', text: change.binary ? 'binary' : '' }),
        actions,
      ),
      change.conflict ? h('div', { class: 'row-meta warn', text: 'Also changed in the editor since the last sync' }) : null,
      change.protected
        ? h('div', { class: 'row-meta warn', text: `Can run code (${change.protected}). Review it; "Apply all" skips it.` })
        : null,
      preview,
    );
  }
}
