/**
 * The chat as a webview view in the sidebar. Loads the page (media/chat.js, chat.css)
 * under a nonce CSP, parses every message from it before the controller sees it, and
 * posts the controller's messages back.
 */

import type * as vscode from 'vscode';
import { describeError, type Logger } from '../common/logging';
import * as api from '../common/vscodeapi';
import type { HostMessage } from '../../webview/messages';
import { parsePageMessage } from '../../webview/messages';
import type { ChatController, ChatPort } from './controller';
import { chatHtml, makeNonce } from './html';

export const CHAT_VIEW_ID = 'pygent.chat';

export class ChatViewProvider implements vscode.WebviewViewProvider {
  private view: vscode.WebviewView | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly controller: ChatController,
    private readonly log: Logger,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const media = api.joinUri(this.extensionUri, 'media');
    view.webview.options = { enableScripts: true, enableForms: false, localResourceRoots: [media] };
    view.webview.html = chatHtml({
      cspSource: view.webview.cspSource,
      nonce: makeNonce(),
      scriptUri: view.webview.asWebviewUri(api.joinUri(media, 'chat.js')).toString(),
      styleUri: view.webview.asWebviewUri(api.joinUri(media, 'chat.css')).toString(),
    });
    const port: ChatPort = {
      post: (message: HostMessage) => {
        void view.webview.postMessage(message).then(undefined, (err: unknown) => this.log.warn(`postMessage: ${describeError(err)}`));
      },
      reveal: () => view.show(true),
    };
    this.controller.attachView(port);
    const subscription = view.webview.onDidReceiveMessage((raw: unknown) => {
      let message;
      try {
        message = parsePageMessage(raw, '');
      } catch (err) {
        this.log.warn(`Ignored a malformed message from the chat page: ${describeError(err)}`);
        return;
      }
      void this.controller.handle(message);
    });
    view.onDidDispose(() => {
      subscription.dispose();
      this.controller.detachView(port);
      if (this.view === view) this.view = undefined;
    });
  }

  /** Shows the chat and puts the cursor in the prompt box. */
  async focus(text: string | null = null): Promise<void> {
    await api.executeCommand(`${CHAT_VIEW_ID}.focus`);
    this.controller.requestFocus(text);
  }
}
