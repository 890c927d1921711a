/**
 * How the chat page reaches its host. The page talks only through {@link Transport}:
 * in a VS Code webview that is postMessage to the extension host; in a browser tab
 * served by `pygent ui` the host (the same ChatController) runs in the page itself
 * (host/editor.ts), which reaches the server over the WebSocket of {@link webSocketUrl}.
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

/**
 * The VS Code webview's transport. (`pygent ui` runs the extension's controller in the
 * page itself: see host/main.ts, which passes its own in-page transport to the app.)
 */
export function selectTransport(win: Window): Transport {
  if (typeof win.acquireVsCodeApi !== 'function') {
    throw new Error('pygent chat: this bundle runs inside VS Code; pygent ui serves ui.js');
  }
  return new VsCodeTransport(win.acquireVsCodeApi(), win);
}
