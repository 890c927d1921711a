/**
 * The language server as the chat controller sees it ({@link ServerPort}), reached over
 * the WebSocket of `pygent ui`: JSON-RPC 2.0, one message per text frame. Starting
 * connects and runs `initialize`; a dropped socket is reconnected with back-off.
 */

import type { ServerPort } from '../../src/chat/controller';
import { Emitter } from '../../src/common/events';
import type { CancellationLike, ServerState } from '../../src/common/server';

type NotificationHandler = (params: unknown) => void;
type RequestHandler = (params: unknown, token: CancellationLike) => Promise<unknown>;

interface Pending {
  resolve(result: unknown): void;
  reject(error: unknown): void;
}

/** A JSON-RPC error answer; the controller reads `code` (e.g. session busy). */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

const METHOD_NOT_FOUND = -32601;
const INTERNAL_ERROR = -32603;
const CANCEL_REQUEST = '$/cancelRequest';

/** A cancellation source for a request the server sends (withdrawn by `$/cancelRequest`). */
class Cancellation implements CancellationLike {
  isCancellationRequested = false;
  private readonly listeners = new Emitter<void>();

  onCancellationRequested(listener: () => void): { dispose(): void } {
    return this.listeners.event(listener);
  }

  cancel(): void {
    if (this.isCancellationRequested) return;
    this.isCancellationRequested = true;
    this.listeners.fire();
  }
}

export class WebSocketServer implements ServerPort {
  state: ServerState = { kind: 'stopped' };
  private readonly stateEmitter = new Emitter<ServerState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private socket: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly incoming = new Map<string | number, Cancellation>();
  private readonly notifications = new Map<string, NotificationHandler>();
  private readonly requests = new Map<string, RequestHandler>();
  private retryMs = 250;
  private starting: Promise<void> | undefined;

  constructor(private readonly url: string) {}

  onNotification(method: string, handler: NotificationHandler): void {
    this.notifications.set(method, handler);
  }

  onRequest(method: string, handler: RequestHandler): void {
    this.requests.set(method, handler);
  }

  start(): Promise<void> {
    this.starting ??= this.connect().finally(() => (this.starting = undefined));
    return this.starting;
  }

  request<R>(method: string, params: unknown, token?: CancellationLike): Promise<R> {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return Promise.reject(new Error('The Pygent server is not connected.'));
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: (result) => resolve(result as R), reject });
      token?.onCancellationRequested(() => this.send({ jsonrpc: '2.0', method: CANCEL_REQUEST, params: { id } }));
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  private setState(state: ServerState): void {
    this.state = state;
    this.stateEmitter.fire(state);
  }

  private send(message: object): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private connect(): Promise<void> {
    this.setState({ kind: 'starting' });
    return new Promise<void>((resolve) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      socket.addEventListener('open', () => {
        void this.initialize().then(() => {
          this.retryMs = 250;
          this.setState({ kind: 'running' });
          resolve();
        }, resolve);
      });
      socket.addEventListener('message', (event: MessageEvent<unknown>) => {
        if (typeof event.data === 'string') this.receive(event.data);
      });
      socket.addEventListener('close', () => {
        if (this.socket !== socket) return;
        this.socket = null;
        for (const pending of this.pending.values()) pending.reject(new Error('The connection to the Pygent server was lost.'));
        this.pending.clear();
        for (const cancellation of this.incoming.values()) cancellation.cancel();
        this.incoming.clear();
        this.setState({ kind: 'failed', reason: 'crashed', message: 'The connection to the Pygent server was lost; reconnecting.' });
        resolve();
        setTimeout(() => void this.start(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 5000);
      });
    });
  }

  private async initialize(): Promise<void> {
    await this.request('initialize', {
      processId: null,
      clientInfo: { name: 'pygent-ui' },
      rootUri: null,
      capabilities: {},
      initializationOptions: { client: 'pygent-ui' },
    });
    this.send({ jsonrpc: '2.0', method: 'initialized', params: {} });
  }

  private receive(data: string): void {
    let message: { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };
    try {
      message = JSON.parse(data) as typeof message;
    } catch {
      console.warn('pygent: a message from the server is not JSON');
      return;
    }
    const id = typeof message.id === 'number' || typeof message.id === 'string' ? message.id : undefined;
    if (typeof message.method === 'string') {
      if (id !== undefined) void this.answer(id, message.method, message.params);
      else this.notify(message.method, message.params);
      return;
    }
    const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!pending || typeof id !== 'number') return;
    this.pending.delete(id);
    const error = message.error as { code?: unknown; message?: unknown; data?: unknown } | undefined;
    if (error) pending.reject(new RpcError(typeof error.code === 'number' ? error.code : INTERNAL_ERROR, String(error.message ?? 'error'), error.data));
    else pending.resolve(message.result);
  }

  private notify(method: string, params: unknown): void {
    if (method === CANCEL_REQUEST) {
      const id = (params as { id?: unknown } | null)?.id;
      if (typeof id === 'string' || typeof id === 'number') this.incoming.get(id)?.cancel();
      return;
    }
    if (method === 'window/logMessage' || method === 'window/showMessage') {
      console.warn(`pygent server: ${String((params as { message?: unknown } | null)?.message)}`);
      return;
    }
    this.notifications.get(method)?.(params);
  }

  private async answer(id: string | number, method: string, params: unknown): Promise<void> {
    const handler = this.requests.get(method);
    if (!handler) {
      this.send({ jsonrpc: '2.0', id, error: { code: METHOD_NOT_FOUND, message: `${method} is not supported by this page` } });
      return;
    }
    const cancellation = new Cancellation();
    this.incoming.set(id, cancellation);
    try {
      const result = await handler(params, cancellation);
      if (!cancellation.isCancellationRequested) this.send({ jsonrpc: '2.0', id, result: result ?? null });
    } catch (err) {
      this.send({ jsonrpc: '2.0', id, error: { code: INTERNAL_ERROR, message: err instanceof Error ? err.message : String(err) } });
    } finally {
      this.incoming.delete(id);
    }
  }
}
