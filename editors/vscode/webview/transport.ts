/**
 * How the chat page reaches its host. The page talks only through {@link Transport},
 * so the same bundle runs in a VS Code webview (postMessage) and in a browser tab
 * served by `pygent ui` (a WebSocket), chosen once at start-up by {@link selectTransport}.
 */

import type { PageMessage } from './messages';

export interface Transport {
  readonly kind: 'vscode' | 'websocket';
  /** Sends a message; messages sent while disconnected are queued. */
  send(message: PageMessage): void;
  /** Receives raw host messages (the caller parses them: they are untrusted). */
  onMessage(listener: (data: unknown) => void): void;
  /** Connected / disconnected; the page re-sends `ready` after a reconnect. */
  onConnection(listener: (connected: boolean) => void): void;
  /** Small UI state (the draft prompt) that should survive the page being hidden. */
  loadState(): unknown;
  saveState(state: unknown): void;
}

/** The object VS Code injects into webviews; callable once per page. */
export interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare global {
  interface Window {
    acquireVsCodeApi?: () => VsCodeApi;
  }
}

export class VsCodeTransport implements Transport {
  readonly kind = 'vscode';

  constructor(
    private readonly api: VsCodeApi,
    private readonly win: Window,
  ) {}

  send(message: PageMessage): void {
    this.api.postMessage(message);
  }

  onMessage(listener: (data: unknown) => void): void {
    this.win.addEventListener('message', (event: MessageEvent<unknown>) => listener(event.data));
  }

  onConnection(listener: (connected: boolean) => void): void {
    // The extension host is always there while the webview exists.
    queueMicrotask(() => listener(true));
  }

  loadState(): unknown {
    return this.api.getState();
  }

  saveState(state: unknown): void {
    this.api.setState(state);
  }
}

/** A WebSocket that reconnects with back-off and queues messages while it is down. */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  private socket: WebSocket | null = null;
  private readonly queue: string[] = [];
  private readonly messageListeners: ((data: unknown) => void)[] = [];
  private readonly connectionListeners: ((connected: boolean) => void)[] = [];
  private retryMs = 250;

  constructor(
    private readonly url: string,
    private readonly storage: Storage | null,
  ) {
    this.connect();
  }

  private connect(): void {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.retryMs = 250;
      for (const listener of this.connectionListeners) listener(true);
      for (const data of this.queue.splice(0)) socket.send(data);
    });
    socket.addEventListener('message', (event: MessageEvent<unknown>) => {
      if (typeof event.data !== 'string') return;
      let data: unknown;
      try {
        data = JSON.parse(event.data);
      } catch {
        return; // not JSON: not a message of ours
      }
      for (const listener of this.messageListeners) listener(data);
    });
    socket.addEventListener('close', () => {
      this.socket = null;
      for (const listener of this.connectionListeners) listener(false);
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    });
  }

  send(message: PageMessage): void {
    const data = JSON.stringify(message);
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(data);
    else if (message.type !== 'ready') this.queue.push(data); // `ready` is re-sent on connect
  }

  onMessage(listener: (data: unknown) => void): void {
    this.messageListeners.push(listener);
  }

  onConnection(listener: (connected: boolean) => void): void {
    this.connectionListeners.push(listener);
  }

  loadState(): unknown {
    const raw = this.storage?.getItem('pygent.chat');
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      return undefined;
    }
  }

  saveState(state: unknown): void {
    this.storage?.setItem('pygent.chat', JSON.stringify(state));
  }
}

/**
 * The WebSocket address for a page served by `pygent ui`: `?ws=` or
 * `<meta name="pygent-ws" content=...>` when given, else `/ws` on the page's own host;
 * a `token` query parameter of the page is passed on.
 */
export function webSocketUrl(loc: Location, doc: Document): string {
  const params = new URLSearchParams(loc.search);
  const explicit = params.get('ws') ?? doc.querySelector('meta[name="pygent-ws"]')?.getAttribute('content');
  const base = `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}`;
  const url = new URL(explicit || '/ws', base);
  const token = params.get('token');
  if (token && !url.searchParams.has('token')) url.searchParams.set('token', token);
  return url.toString();
}

/** VS Code when its API is injected, otherwise a WebSocket back to `pygent ui`. */
export function selectTransport(win: Window): Transport {
  if (typeof win.acquireVsCodeApi === 'function') {
    return new VsCodeTransport(win.acquireVsCodeApi(), win);
  }
  return new WebSocketTransport(webSocketUrl(win.location, win.document), sessionStorageOf(win));
}

/** The page's session storage, or null where it is disabled (the draft is then not kept). */
function sessionStorageOf(win: Window): Storage | null {
  try {
    return win.sessionStorage;
  } catch {
    return null;
  }
}
