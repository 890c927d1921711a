/**
 * Entry point of the `pygent ui` bundle (ui.js): the chat page and, in the same window,
 * the extension's own {@link ChatController} as its host, speaking `pygent/*` JSON-RPC
 * to the language server over the page's WebSocket.
 */

import type { Logger } from '../../src/common/logging';
import { ChatController, type WorkspaceFolderInfo } from '../../src/chat/controller';
import type { PygentSettings } from '../../src/common/settings';
import type { HostCapabilities } from '../messages';
import { SESSION_TRANSCRIPT, type ApprovalMode, type RuntimeKind, type TranscriptResult } from '../../src/protocol';
import { ChatApp } from '../app';
import { webSocketUrl } from '../transport';
import { BrowserEditorPort, InPageTransport } from './editor';
import { WebSocketServer } from './rpc';

/** What `pygent ui` puts in `<meta name="pygent-ui">`. */
interface UiConfig {
  folder: WorkspaceFolderInfo | null;
  runtime: RuntimeKind;
  model: string;
  approvalMode: Exclude<ApprovalMode, 'api'>;
  hasApiKey: boolean;
}

/** No editor to open things in: the page shows diffs and results inline. */
const BROWSER_CAPABILITIES: HostCapabilities = { openDiff: false, openInEditor: false, actions: ['restartServer'] };

function readConfig(doc: Document): UiConfig {
  const raw = doc.querySelector('meta[name="pygent-ui"]')?.getAttribute('content') ?? '{}';
  const given = JSON.parse(raw) as Partial<UiConfig>;
  return {
    folder: given.folder ?? null,
    runtime: given.runtime ?? 'auto',
    model: given.model ?? '',
    approvalMode: given.approvalMode ?? 'auto',
    hasApiKey: given.hasApiKey ?? true,
  };
}

const consoleLog: Logger = {
  trace: () => undefined,
  info: () => undefined,
  warn: (message) => console.warn(`pygent: ${message}`),
  error: (message) => console.error(`pygent: ${String(message)}`),
  show: () => undefined,
};

function storageOf(win: Window): Storage | null {
  try {
    return win.sessionStorage;
  } catch {
    return null;
  }
}

function start(): void {
  const root = document.getElementById('app');
  if (!root) throw new Error('pygent chat: #app element missing');
  const config = readConfig(document);
  const server = new WebSocketServer(webSocketUrl(window.location, document));
  const settings: PygentSettings = {
    serverPath: '',
    pythonPath: '',
    model: config.model,
    baseUrl: '',
    runtime: config.runtime,
    approvalMode: config.approvalMode,
    env: {},
    syncMode: 'copy', // as before the setting existed: the page's sessions copy the folder
    passed: {},
  };
  const controller = new ChatController({
    server,
    editor: new BrowserEditorPort(config.folder),
    settings: () => settings,
    hasApiKey: () => config.hasApiKey,
    runAction: (action) => {
      if (action === 'restartServer') void server.start();
    },
    showChat: () => window.focus(),
    log: consoleLog,
    hostName: 'pygent-ui',
    capabilities: BROWSER_CAPABILITIES,
    applyMethod: 'write',
    transcript: (sessionId) => server.request<TranscriptResult>(SESSION_TRANSCRIPT, { sessionId }),
  });
  // The bar's download link (served with the page) names the session on screen.
  const download = document.querySelector<HTMLAnchorElement>('a.ui-download');
  controller.onDidChangeStatus(() => {
    const sessionId = controller.sessions.activeId;
    if (!download || !sessionId) return;
    const url = new URL(download.href);
    url.searchParams.set('session', sessionId);
    download.setAttribute('href', `${url.pathname}${url.search}`);
  });
  const app = new ChatApp(new InPageTransport(controller, storageOf(window)), root);
  // Exposed for debugging in the developer tools; nothing depends on it.
  (window as unknown as { pygentChat?: ChatApp }).pygentChat = app;
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
