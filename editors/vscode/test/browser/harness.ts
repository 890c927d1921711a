/**
 * Test host for the chat page in headless Chromium: a static server for the extension
 * folder, a browser launched the way RECIPES.md says works here, and a fake VS Code
 * (`acquireVsCodeApi` injected, postMessage bridged with `exposeFunction`).
 */

import { createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { HostMessage, PageMessage } from '../../webview/messages';

export const ROOT = join(__dirname, '..', '..', '..');
export const ARTIFACTS = join(ROOT, 'test-artifacts');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

export interface StaticServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Serves ROOT read-only on 127.0.0.1 (webviews and our CSP want a real origin). */
export async function serveRoot(): Promise<StaticServer> {
  const holder: Partial<StaticServer> = {};
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (path === '/favicon.ico') {
      res.writeHead(204).end(); // browsers ask; the page has none
      return;
    }
    const file = join(ROOT, path);
    if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  Object.assign(holder, {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
  return holder as StaticServer;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-dev-shm-usage'],
  });
}

/** What the page sent, with a way to wait for a message of a given type. */
export class Inbox {
  readonly messages: PageMessage[] = [];
  private waiters: { type: string; resolve: (m: PageMessage) => void }[] = [];

  push(message: PageMessage): void {
    this.messages.push(message);
    for (const w of [...this.waiters]) {
      if (w.type === message.type) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(message);
      }
    }
  }

  /** The next message of `type` not yet taken, waiting up to `ms`. */
  next<T extends PageMessage['type']>(type: T, ms = 5000): Promise<Extract<PageMessage, { type: T }>> {
    const index = this.messages.findIndex((m) => m.type === type);
    if (index >= 0) {
      const [found] = this.messages.splice(index, 1);
      return Promise.resolve(found as Extract<PageMessage, { type: T }>);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${type}" message from the page within ${ms} ms`)), ms);
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          this.messages.splice(this.messages.indexOf(m), 1);
          resolve(m as Extract<PageMessage, { type: T }>);
        },
      });
    });
  }
}

/** Opens the standalone page as a VS Code webview would run it. */
export async function openAsVsCodeWebview(browser: Browser, baseUrl: string, viewport = { width: 420, height: 860 }, colorScheme: 'dark' | 'light' = 'dark'): Promise<{ page: Page; inbox: Inbox; post(message: HostMessage | Record<string, unknown>): Promise<void>; errors: string[] }> {
  const context = await browser.newContext({ viewport, colorScheme, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const inbox = new Inbox();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  await page.exposeFunction('__pygentFromPage', (message: PageMessage) => inbox.push(message));
  await page.addInitScript(() => {
    let state: unknown;
    const w = window as unknown as Record<string, unknown>;
    w.acquireVsCodeApi = () => ({
      postMessage: (m: unknown) => (w.__pygentFromPage as (m: unknown) => void)(m),
      getState: () => state,
      setState: (s: unknown) => {
        state = s;
      },
    });
    w.__cspViolations = [] as string[];
    document.addEventListener('securitypolicyviolation', (e) => (w.__cspViolations as string[]).push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(`${baseUrl}/webview/index.html`);
  const post = (message: HostMessage | Record<string, unknown>) => page.evaluate((m) => window.postMessage(m, '*'), message);
  return { page, inbox, post, errors };
}

export function artifact(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
