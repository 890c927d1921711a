/**
 * The chat page: owns the state, turns host messages into re-renders (batched per
 * animation frame) and user actions into page messages. Knows nothing about VS Code
 * or WebSockets: everything goes through the {@link Transport}.
 */

import type { PermissionOptionId } from '../src/protocol';
import { h } from './dom';
import { PAGE_PROTOCOL_VERSION, type PageMessage, parseHostMessage } from './messages';
import { activeTranscript, initialState, isBusy, type PageState, type Part, reduce, type Transcript, usageText } from './state';
import type { Transport } from './transport';
import { ApprovalsView } from './ui/approvals';
import { BannerView } from './ui/banner';
import { ComposerView } from './ui/composer';
import { HeaderView } from './ui/header';
import { PanelsView } from './ui/panels';
import { RewindView } from './ui/rewind';
import { TranscriptView } from './ui/transcript';

interface SavedState {
  draft: string;
}

const TOAST_MS = 8000;

export class ChatApp {
  readonly state: PageState = initialState();
  private readonly dirty = new Set<Part>();
  private frame = 0;
  private readonly header: HeaderView;
  private readonly banner: BannerView;
  private readonly transcript: TranscriptView;
  private readonly panels: PanelsView;
  private readonly approvals: ApprovalsView;
  private readonly composer: ComposerView;
  private readonly rewind: RewindView;
  private readonly announcer: HTMLElement;
  private shownSession: string | null = null;
  /** The MCP server list last rendered: which transcript, at which revision. */
  private shownMcp: { transcript: Transcript | null; rev: number } = { transcript: null, rev: -1 };
  /** A prompt sent but not yet echoed by the host as `turn_started`. */
  private pendingPrompt: string | null = null;

  constructor(
    private readonly transport: Transport,
    root: HTMLElement,
  ) {
    const saved = transport.loadState() as Partial<SavedState> | undefined;
    this.header = new HeaderView({
      select: (sessionId) => this.send({ type: 'selectSession', sessionId }),
      newSession: () => this.send({ type: 'newSession' }),
      compact: () => this.withSession((sessionId) => this.send({ type: 'compact', sessionId, focus: '' })),
    });
    this.banner = new BannerView((action) => this.send({ type: 'runAction', action }));
    this.transcript = new TranscriptView({
      showChanges: () => this.revealChanges(),
      rewind: (index) => this.withSession((sessionId) => this.send({ type: 'rewindPreview', sessionId, index })),
    });
    this.rewind = new RewindView({
      rewind: (plan, files, conversation) =>
        this.send({ type: 'rewind', sessionId: plan.sessionId, turnId: plan.turnId, index: plan.index, files, conversation }),
      redo: (sessionId) => this.send({ type: 'redo', sessionId }),
      fork: (plan) => this.send({ type: 'fork', sessionId: plan.sessionId, turnId: plan.turnId, index: plan.index }),
    });
    this.panels = new PanelsView(
      {
        cancelTask: (taskId) => this.withSession((sessionId) => this.send({ type: 'cancelTask', sessionId, taskId })),
        openTask: (taskId) => this.withSession((sessionId) => this.send({ type: 'openTask', sessionId, taskId })),
        openChange: (path) => this.withSession((sessionId) => this.send({ type: 'openChange', sessionId, path })),
        apply: (paths) => this.withSession((sessionId) => this.send({ type: 'applyChanges', sessionId, paths })),
        discard: (paths) => this.withSession((sessionId) => this.send({ type: 'discardChanges', sessionId, paths })),
      },
      () => ({ diff: this.state.capabilities.openDiff, editor: this.state.capabilities.openInEditor }),
    );
    this.approvals = new ApprovalsView(
      {
        answer: (id: string, optionId: PermissionOptionId, message: string | null) =>
          this.send({ type: 'answerApproval', id, optionId, message }),
        openDiff: (id) => this.send({ type: 'openApprovalDiff', id }),
      },
      () => this.state.capabilities.openDiff,
    );
    this.composer = new ComposerView(
      {
        send: (text) => this.prompt(text),
        stop: () => this.withSession((sessionId) => this.send({ type: 'cancel', sessionId })),
        draftChanged: (draft) => this.transport.saveState({ draft } satisfies SavedState),
      },
      typeof saved?.draft === 'string' ? saved.draft : '',
    );
    this.announcer = h('div', { class: 'sr-only', role: 'status', aria: { live: 'assertive' } });
    root.replaceChildren(
      this.header.el,
      this.banner.el,
      this.transcript.el,
      h('div', { class: 'dock' }, this.rewind.el, this.panels.mcpEl, this.panels.tasksEl, this.panels.changesEl, this.approvals.el),
      this.composer.el,
      this.announcer,
    );
    this.approvals.el.hidden = true;
    transport.onMessage((data) => this.receive(data));
    transport.onConnection((connected) => {
      if (connected) this.send({ type: 'ready', protocol: PAGE_PROTOCOL_VERSION });
      else {
        this.state.status = { ...this.state.status, connection: 'stopped' };
        this.markDirty(['header', 'composer']);
      }
    });
    this.markDirty(['header', 'banner', 'transcript', 'composer']);
  }

  private send(message: PageMessage): void {
    this.transport.send(message);
  }

  private withSession(fn: (sessionId: string) => void): void {
    if (this.state.activeSessionId) fn(this.state.activeSessionId);
  }

  private prompt(text: string): void {
    this.pendingPrompt = text;
    this.send({ type: 'prompt', sessionId: this.state.activeSessionId, text });
    this.markDirty(['composer', 'transcript']);
  }

  /** Parses and applies one host message; anything malformed is dropped with a console note. */
  receive(data: unknown): void {
    let message;
    try {
      message = parseHostMessage(data, '');
    } catch (err) {
      console.warn('pygent: dropped a message from the host:', (err as Error).message);
      return;
    }
    // The prompt echo (turn_started), the turn's end or an error settle a pending prompt.
    const settles =
      (message.type === 'event' && message.event.taskId === null && ['turn_started', 'turn_ended'].includes(message.event.type)) ||
      (message.type === 'toast' && message.level === 'error');
    if (settles && this.pendingPrompt !== null) {
      this.pendingPrompt = null;
      this.markDirty(['transcript', 'composer', 'header']);
    }
    if (message.type === 'rewindPlan') {
      if (message.plan.sessionId === this.state.activeSessionId) this.rewind.showPlan(message.plan);
      return;
    }
    if (message.type === 'rewound') {
      if (message.sessionId === this.state.activeSessionId) this.rewind.showDone(message.sessionId, message.text, message.canRedo);
      return;
    }
    this.markDirty(reduce(this.state, message));
    if (message.type === 'toast') {
      const toast = this.state.toasts[this.state.toasts.length - 1];
      if (toast) setTimeout(() => this.dismissToast(toast.id), TOAST_MS);
    }
  }

  private dismissToast(id: number): void {
    const before = this.state.toasts.length;
    this.state.toasts = this.state.toasts.filter((t) => t.id !== id);
    if (this.state.toasts.length !== before) this.markDirty(['banner']);
  }

  private revealChanges(): void {
    this.panels.changesEl.open = true;
    this.panels.changesEl.scrollIntoView({ block: 'nearest' });
    this.panels.changesEl.querySelector('summary')?.focus();
  }

  private markDirty(parts: Part[]): void {
    for (const p of parts) this.dirty.add(p);
    if (this.frame || this.dirty.size === 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Renders every stale part; runs at most once per animation frame. */
  render(): void {
    const parts = new Set(this.dirty);
    this.dirty.clear();
    const s = this.state;
    const transcript = activeTranscript(s);
    const busy = isBusy(s) || this.pendingPrompt !== null;
    if (this.shownSession !== s.activeSessionId) {
      this.shownSession = s.activeSessionId;
      this.transcript.reset();
      parts.add('transcript');
    }
    if (parts.has('header') || parts.has('transcript') || parts.has('composer')) {
      const usage = transcript.usage;
      const tokens = usage ? usageText(usage) : '';
      this.header.update(s.status, s.sessions, s.activeSessionId, busy, tokens);
    }
    if (parts.has('banner')) {
      this.banner.update(s.status.problem, s.capabilities.actions, s.toasts, (id) => this.dismissToast(id));
    }
    if (parts.has('transcript') && (this.shownMcp.transcript !== transcript || this.shownMcp.rev !== transcript.mcpRev)) {
      this.shownMcp = { transcript, rev: transcript.mcpRev };
      this.panels.updateMcp([...transcript.mcp.values()]);
    }
    if (parts.has('transcript')) {
      const items = this.pendingPrompt === null ? transcript.items : [...transcript.items, { kind: 'user' as const, id: 'pending', rev: 0, text: this.pendingPrompt }];
      this.transcript.update({ ...transcript, items });
    }
    if (parts.has('approvals')) {
      const list = [...s.approvals.values()];
      const added = this.approvals.update(list);
      if (added.length) {
        this.announcer.textContent = `Approval needed: ${list[list.length - 1]?.tool ?? 'tool call'}`;
        // Take the focus only when the user is not in the middle of typing.
        const typing = document.activeElement === this.composer.input && this.composer.input.value.trim() !== '';
        if (!typing) added[0]?.querySelector<HTMLButtonElement>('button[data-option]')?.focus();
      }
    }
    if (parts.has('tasks')) this.panels.updateTasks((s.activeSessionId && s.tasks.get(s.activeSessionId)) || []);
    if (parts.has('changes')) this.panels.updateChanges(s.activeSessionId ? s.changes.get(s.activeSessionId) : undefined);
    if (parts.has('composer')) {
      this.composer.update(busy, s.status.connection === 'ready');
      if (s.focusRequest) {
        this.composer.focus(s.focusRequest.text);
        s.focusRequest = null;
      }
    }
  }
}
