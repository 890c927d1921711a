/**
 * The real {@link ClientFactory}: a `vscode-languageclient` LanguageClient running
 * `pygent lsp --stdio`. Open files are synchronised (the server copies saved files and,
 * on request, unsaved buffers into the sandbox) and file changes are watched. The
 * settings go as the server's configuration: `initializationOptions.pygent` at start,
 * and the `pygent` section when the server asks (`workspace/configuration`); changes are
 * pushed by the ServerManager.
 */

import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  TransportKind,
} from 'vscode-languageclient/node';
import type { ClientFactory, ServerClient } from './server';

export const CLIENT_ID = 'pygent';
export const CLIENT_NAME = 'Pygent';

export function languageClientFactory(outputChannel: vscode.LogOutputChannel, version: string): ClientFactory {
  return (launch, hooks): ServerClient => {
    const serverOptions: ServerOptions = {
      command: launch.command.command,
      args: launch.command.args,
      transport: TransportKind.stdio, // appends --stdio
      options: { env: launch.env, ...(launch.cwd ? { cwd: launch.cwd } : {}) },
    };
    const clientOptions: LanguageClientOptions = {
      // Every file document: the server keeps open buffers for `includeUnsaved` and
      // queues saved paths for the next sync. It offers no language features.
      documentSelector: [{ scheme: 'file' }],
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*') },
      outputChannel,
      // The server reads only `pygent`; the rest is for its logs.
      initializationOptions: { client: 'pygent-vscode', clientVersion: version, pygent: launch.configuration() },
      middleware: {
        workspace: {
          // VS Code's own `pygent` section holds client-side settings too (serverPath,
          // env...): answer with the server's part only.
          configuration: (params) => params.items.map((item) => (item.section === 'pygent' ? launch.configuration() : null)),
        },
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          hooks.onUnexpectedClose();
          // The user decides (a banner offers Restart): a server that crashes at start
          // would otherwise restart in a loop.
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions);
    return {
      start: () => client.start(),
      stop: () => (client.needsStop() ? client.stop(5000) : Promise.resolve()),
      sendRequest: <R>(method: string, params: unknown, token?: vscode.CancellationToken) =>
        token ? client.sendRequest<R>(method, params, token) : client.sendRequest<R>(method, params),
      sendNotification: (method: string, params: unknown) => client.sendNotification(method, params),
      onNotification: (method, handler) => client.onNotification(method, handler),
      onRequest: (method, handler) => client.onRequest(method, (params: unknown, token: vscode.CancellationToken) => handler(params, token)),
      serverProtocolVersion: () => {
        const experimental: unknown = client.initializeResult?.capabilities.experimental;
        const pygent = typeof experimental === 'object' && experimental !== null ? (experimental as { pygent?: unknown }).pygent : undefined;
        return typeof pygent === 'object' && pygent !== null ? (pygent as { protocolVersion?: unknown }).protocolVersion : undefined;
      },
    };
  };
}
