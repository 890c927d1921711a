/**
 * The controller's {@link EditorPort} and {@link ChatPort} in a browser tab: there is no
 * editor, so the folder is the one `pygent ui` was started on, diffs are shown by the
 * page itself, confirmations are the browser's, and the page is in the same window.
 */

import type { ChatController, ChatPort, DiffSide, EditorPort, WorkspaceFolderInfo } from '../../src/chat/controller';
import type { HostMessage, PageMessage } from '../messages';
import { parsePageMessage } from '../messages';
import type { Transport } from '../transport';

export class BrowserEditorPort implements EditorPort {
  constructor(private readonly folder: WorkspaceFolderInfo | null) {}

  workspaceFolders(): WorkspaceFolderInfo[] {
    return this.folder ? [this.folder] : [];
  }

  activeFolder(): WorkspaceFolderInfo | undefined {
    return this.folder ?? undefined;
  }

  pickFolder(folders: WorkspaceFolderInfo[]): Promise<WorkspaceFolderInfo | undefined> {
    return Promise.resolve(folders[0]);
  }

  // The page shows diffs and task results inline (the host offers no editor), so
  // nothing is read from disk or opened elsewhere.
  readFile(_fsPath: string): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  openDiff(_left: DiffSide, _right: DiffSide, _title: string): Promise<void> {
    return Promise.resolve();
  }

  openText(_content: string, _language: string): Promise<void> {
    return Promise.resolve();
  }

  saveFiles(_fsPaths: string[]): Promise<void> {
    return Promise.resolve();
  }

  confirm(message: string, _action: string): Promise<boolean> {
    return Promise.resolve(window.confirm(message));
  }
}

/**
 * The page's {@link Transport} and the controller's {@link ChatPort} in one: messages
 * cross in the same window, parsed on the way as they are between a webview and VS Code.
 */
export class InPageTransport implements Transport, ChatPort {
  readonly kind = 'websocket';
  private readonly listeners: ((data: unknown) => void)[] = [];

  constructor(
    private readonly controller: ChatController,
    private readonly storage: Storage | null,
  ) {
    controller.attachView(this);
  }

  send(message: PageMessage): void {
    let parsed: PageMessage;
    try {
      parsed = parsePageMessage(message, '');
    } catch (err) {
      console.warn(`pygent: dropped a page message: ${String(err)}`);
      return;
    }
    // Later, as a webview's postMessage is: the page never re-enters itself.
    queueMicrotask(() => void this.controller.handle(parsed));
  }

  post(message: HostMessage): void {
    // A copy, as postMessage makes one: the controller keeps its own objects (the page
    // parses what it receives).
    const data = JSON.parse(JSON.stringify(message)) as unknown;
    queueMicrotask(() => {
      for (const listener of this.listeners) listener(data);
    });
  }

  reveal(): void {
    window.focus();
  }

  onMessage(listener: (data: unknown) => void): void {
    this.listeners.push(listener);
  }

  onConnection(listener: (connected: boolean) => void): void {
    // The host is in this window: always there.
    queueMicrotask(() => listener(true));
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
