/** Entry point of the chat page bundle (media/chat.js): pick a transport, start the app. */

import { ChatApp } from './app';
import { selectTransport } from './transport';

function start(): void {
  const root = document.getElementById('app');
  if (!root) throw new Error('pygent chat: #app element missing');
  const app = new ChatApp(selectTransport(window), root);
  // Exposed for debugging in the webview developer tools; nothing depends on it.
  (window as unknown as { pygentChat?: ChatApp }).pygentChat = app;
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
