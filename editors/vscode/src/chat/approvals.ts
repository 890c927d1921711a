/**
 * Pending approvals: the server's `pygent/requestPermission` requests waiting for the
 * user. Each gets an id the page quotes in its answer. An approval ends exactly once:
 * answered, withdrawn by the server (the request was cancelled), or resolved on the
 * server's side (timeout) as its `permission` update says.
 */

import type { ApprovalView } from '../../webview/messages';
import type { PermissionOptionId, RequestPermissionParams, RequestPermissionResult } from '../protocol';
import type { CancellationLike } from '../common/server';

interface Pending {
  view: ApprovalView;
  params: RequestPermissionParams;
  resolve(result: RequestPermissionResult): void;
}

export interface ApprovalListener {
  opened(view: ApprovalView): void;
  closed(id: string, outcome: string): void;
}

export class ApprovalBroker {
  private readonly pending = new Map<string, Pending>();
  private counter = 0;

  constructor(private readonly listener: ApprovalListener) {}

  /** Asks the user; resolves with the answer (or `cancelled` when withdrawn). */
  ask(params: RequestPermissionParams, token?: CancellationLike): Promise<RequestPermissionResult> {
    this.counter += 1;
    const id = `a${this.counter}`;
    const view: ApprovalView = {
      id,
      sessionId: params.sessionId,
      taskId: params.taskId,
      callId: params.toolCall.callId,
      tool: params.toolCall.tool,
      preview: params.toolCall.preview,
      previewKind: params.toolCall.previewKind,
      path: params.toolCall.path,
      reason: params.reason,
      options: params.options.map((o) => ({ optionId: o.optionId, name: o.name })),
    };
    return new Promise<RequestPermissionResult>((resolve) => {
      this.pending.set(id, { view, params, resolve });
      token?.onCancellationRequested(() => this.finish(id, { optionId: 'cancelled' }, 'cancelled'));
      this.listener.opened(view);
    });
  }

  /**
   * The user's answer: `answered`, `gone` (no longer pending: answered elsewhere, timed
   * out) or `refused` (an option the server did not offer; the request stays open).
   */
  answer(id: string, optionId: PermissionOptionId, message: string | null): 'answered' | 'gone' | 'refused' {
    const entry = this.pending.get(id);
    if (!entry) return 'gone';
    if (!entry.params.options.some((o) => o.optionId === optionId)) return 'refused';
    const result: RequestPermissionResult = { optionId };
    if (message) result.message = message;
    this.finish(id, result, optionId);
    return 'answered';
  }

  /** The server resolved the call itself (timeout, cancel): drop its card. */
  resolvedByServer(sessionId: string, callId: string, outcome: string): void {
    for (const [id, entry] of this.pending) {
      if (entry.view.sessionId === sessionId && entry.view.callId === callId) this.finish(id, { optionId: 'cancelled' }, outcome || 'resolved');
    }
  }

  /** Withdraws everything (server stopped): every waiting request is answered `cancelled`. */
  cancelAll(sessionId?: string): void {
    for (const [id, entry] of this.pending) {
      if (sessionId === undefined || entry.view.sessionId === sessionId) this.finish(id, { optionId: 'cancelled' }, 'cancelled');
    }
  }

  get(id: string): Pending | undefined {
    return this.pending.get(id);
  }

  list(): ApprovalView[] {
    return [...this.pending.values()].map((p) => p.view);
  }

  private finish(id: string, result: RequestPermissionResult, outcome: string): boolean {
    const entry = this.pending.get(id);
    if (!entry) return false;
    this.pending.delete(id);
    entry.resolve(result);
    this.listener.closed(id, outcome);
    return true;
  }
}
