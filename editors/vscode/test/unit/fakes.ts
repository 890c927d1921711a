/** Test doubles for the controller's ports: a scripted server, an editor, a page. */

import type { ChatPort, DiffSide, EditorPort, ServerPort, WorkspaceFolderInfo } from '../../src/chat/controller';
import { Emitter } from '../../src/common/events';
import { silentLogger } from '../../src/common/logging';
import type { CancellationLike, ServerState } from '../../src/common/server';
import type { PygentSettings } from '../../src/common/settings';
import type { HostMessage } from '../../webview/messages';

type Responder = (params: unknown) => unknown;

export class FakeServer implements ServerPort {
  state: ServerState = { kind: 'running' };
  readonly requests: { method: string; params: unknown }[] = [];
  readonly responders = new Map<string, Responder>();
  private readonly notificationHandlers = new Map<string, (params: unknown) => void>();
  private readonly requestHandlers = new Map<string, (params: unknown, token: CancellationLike) => Promise<unknown>>();
  private readonly states = new Emitter<ServerState>();
  starts = 0;

  onDidChangeState(listener: (state: ServerState) => void): { dispose(): void } {
    return this.states.event(listener);
  }

  setState(state: ServerState): void {
    this.state = state;
    this.states.fire(state);
  }

  async request<R>(method: string, params: unknown): Promise<R> {
    this.requests.push({ method, params });
    const responder = this.responders.get(method);
    if (!responder) throw new Error(`FakeServer: no responder for ${method}`);
    return (await responder(params)) as R;
  }

  onNotification(method: string, handler: (params: unknown) => void): void {
    this.notificationHandlers.set(method, handler);
  }

  onRequest(method: string, handler: (params: unknown, token: CancellationLike) => Promise<unknown>): void {
    this.requestHandlers.set(method, handler);
  }

  async start(): Promise<void> {
    this.starts++;
    this.setState({ kind: 'running' });
  }

  /** The server sends a notification. */
  notify(method: string, params: unknown): void {
    const handler = this.notificationHandlers.get(method);
    if (!handler) throw new Error(`no handler for ${method}`);
    handler(params);
  }

  /** The server sends a request; `cancel()` on the returned token withdraws it. */
  ask(method: string, params: unknown): { result: Promise<unknown>; cancel(): void } {
    const handler = this.requestHandlers.get(method);
    if (!handler) throw new Error(`no handler for ${method}`);
    const listeners: (() => void)[] = [];
    const token: CancellationLike & { isCancellationRequested: boolean } = {
      isCancellationRequested: false,
      onCancellationRequested: (l) => {
        listeners.push(l);
        return { dispose: () => undefined };
      },
    };
    return {
      result: handler(params, token),
      cancel: () => {
        token.isCancellationRequested = true;
        for (const l of listeners) l();
      },
    };
  }

  methods(): string[] {
    return this.requests.map((r) => r.method);
  }

  last(method: string): unknown {
    return [...this.requests].reverse().find((r) => r.method === method)?.params;
  }
}

export class FakeEditor implements EditorPort {
  folders: WorkspaceFolderInfo[] = [{ name: 'project', uri: 'file:///home/me/project', fsPath: '/home/me/project' }];
  readonly files = new Map<string, string>();
  readonly diffs: { left: DiffSide; right: DiffSide; title: string }[] = [];
  readonly texts: { content: string; language: string }[] = [];
  readonly saved: string[][] = [];
  confirmAnswer = true;
  readonly confirmations: string[] = [];

  workspaceFolders(): WorkspaceFolderInfo[] {
    return this.folders;
  }
  activeFolder(): WorkspaceFolderInfo | undefined {
    return undefined;
  }
  async pickFolder(folders: WorkspaceFolderInfo[]): Promise<WorkspaceFolderInfo | undefined> {
    return folders[folders.length - 1];
  }
  async readFile(fsPath: string): Promise<string | undefined> {
    return this.files.get(fsPath);
  }
  async openDiff(left: DiffSide, right: DiffSide, title: string): Promise<void> {
    this.diffs.push({ left, right, title });
  }
  async openText(content: string, language: string): Promise<void> {
    this.texts.push({ content, language });
  }
  async saveFiles(fsPaths: string[]): Promise<void> {
    this.saved.push(fsPaths);
  }
  async confirm(message: string): Promise<boolean> {
    this.confirmations.push(message);
    return this.confirmAnswer;
  }
}

export class FakeView implements ChatPort {
  readonly messages: HostMessage[] = [];
  reveals = 0;

  post(message: HostMessage): void {
    // Through JSON, as postMessage would: nothing may depend on object identity.
    this.messages.push(JSON.parse(JSON.stringify(message)) as HostMessage);
  }
  reveal(): void {
    this.reveals++;
  }
  of<T extends HostMessage['type']>(type: T): Extract<HostMessage, { type: T }>[] {
    return this.messages.filter((m): m is Extract<HostMessage, { type: T }> => m.type === type);
  }
  lastOf<T extends HostMessage['type']>(type: T): Extract<HostMessage, { type: T }> | undefined {
    const all = this.of(type);
    return all[all.length - 1];
  }
}

export const defaultSettings: PygentSettings = {
  serverPath: '',
  pythonPath: '',
  model: 'test-model',
  baseUrl: '',
  runtime: 'docker',
  approvalMode: 'auto',
  env: {},
  syncMode: 'copy',
  passed: {},
};

export { silentLogger };

/** Lets queued promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** A deferred value: a promise and the function that settles it. */
export function deferred<T>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
