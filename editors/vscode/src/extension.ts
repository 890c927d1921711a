/** The extension's entry point: activation only; src/main.ts builds everything. */

import type * as vscode from 'vscode';
import { activateExtension, type ExtensionApi } from './main';

let running: ExtensionApi | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<ExtensionApi> {
  running = await activateExtension(context);
  return running;
}

/** Awaited by VS Code: the server gets to remove its containers before the host exits. */
export async function deactivate(): Promise<void> {
  await running?.server.stop();
  running = undefined;
}
