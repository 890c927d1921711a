/**
 * The composition root: builds the extension's parts and wires them together. The
 * server starts lazily, when the chat opens or a command needs it, so a window that
 * never uses Pygent never starts a Python process.
 */

import * as vscode from 'vscode';
import { ChatController } from './chat/controller';
import { CHAT_VIEW_ID, ChatViewProvider } from './chat/chatView';
import { DIFF_SCHEME, MemoryDocuments, VsCodeEditorPort } from './chat/editorPort';
import { ApiKeyStore, validateApiKey } from './common/apiKey';
import { createLogger, describeError } from './common/logging';
import { type ClientFactory, type Launch, ServerManager } from './common/server';
import {
  LIVE_SETTINGS,
  RESTART_SETTINGS,
  SECTION,
  readSettings,
  resolveServerCommand,
  serverConfiguration,
  serverEnvironment,
} from './common/settings';
import * as api from './common/vscodeapi';
import { EditorProblemsSync } from './diagnostics/editorProblems';
import type { HostAction } from '../webview/messages';
import { StatusBar } from './status/statusBar';

export const COMMANDS = {
  setApiKey: 'pygent.setApiKey',
  clearApiKey: 'pygent.clearApiKey',
  restartServer: 'pygent.restartServer',
  newSession: 'pygent.newSession',
  cancelTurn: 'pygent.cancelTurn',
  openChat: 'pygent.openChat',
  showLogs: 'pygent.showLogs',
} as const;

const INSTALL_HELP =
  'Install Pygent with "pip install pygent" (or "pipx install pygent") so that "pygent" is on PATH, then restart the server. ' +
  'If it lives in a virtual environment, set "pygent.pythonPath" to that environment\'s python, or "pygent.serverPath" to its pygent executable.';

export interface ExtensionApi {
  controller: ChatController;
  server: ServerManager;
}

export interface ActivationOptions {
  /** Replaces the real language client (unit tests run without VS Code's runtime). */
  clientFactory?: ClientFactory;
}

export async function activateExtension(context: vscode.ExtensionContext, options: ActivationOptions = {}): Promise<ExtensionApi> {
  const channel = api.createLogOutputChannel('Pygent');
  const log = createLogger(channel);
  const version = String((context.extension.packageJSON as { version?: unknown }).version ?? '0.0.0');
  const apiKey = new ApiKeyStore(context.secrets);
  await apiKey.get();
  const settings = () => readSettings(api.getConfiguration(SECTION));

  const resolveLaunch = async (): Promise<Launch> => {
    const current = settings();
    const command = resolveServerCommand(current, process.env);
    const { env, warnings } = serverEnvironment(process.env, current, await apiKey.get());
    for (const warning of warnings) log.warn(warning);
    return {
      command,
      env,
      cwd: api.workspaceFolders()[0]?.uri.fsPath,
      configuration: () => serverConfiguration(settings()),
    };
  };
  // Loaded on demand: vscode-languageclient is large and the unit tests' fake lacks its API.
  const factory = options.clientFactory ?? (await import('./common/languageClient')).languageClientFactory(channel, version);
  const server = new ServerManager(factory, resolveLaunch, log);

  const runAction = (action: HostAction): void => {
    switch (action) {
      case 'setApiKey':
        void api.executeCommand(COMMANDS.setApiKey);
        return;
      case 'restartServer':
        void server.restart();
        return;
      case 'openSettings':
        void api.executeCommand('workbench.action.openSettings', `@ext:${context.extension.id}`);
        return;
      case 'showLogs':
        log.show();
        return;
      case 'installHelp':
        void api.showModalWarning('Pygent is not installed', INSTALL_HELP, 'Open Settings', 'Restart Server').then((choice) => {
          if (choice === 'Open Settings') runAction('openSettings');
          if (choice === 'Restart Server') runAction('restartServer');
        });
        return;
    }
  };

  const memory = new MemoryDocuments();
  const controller = new ChatController({
    server,
    editor: new VsCodeEditorPort(memory),
    settings,
    hasApiKey: () => Boolean(apiKey.current ?? process.env.OPENAI_API_KEY),
    runAction,
    showChat: () => void api.executeCommand(`${CHAT_VIEW_ID}.focus`),
    log,
    hostName: 'vscode',
  });
  const chatView = new ChatViewProvider(context.extensionUri, controller, log);

  // The Problems panel's content goes to the server for the agent's `diagnostics` tool.
  const problems = new EditorProblemsSync(
    { all: api.allDiagnostics, of: api.diagnosticsOf },
    (method, params) => server.request(method, params),
    (err: unknown) => log.warn(`Sending the editor's problems: ${describeError(err)}`),
  );

  const statusBar = new StatusBar(api.createStatusBarItem('pygent.status', 100), (id) => new vscode.ThemeColor(id), COMMANDS.openChat);
  statusBar.update(controller.status(), null);
  controller.onDidChangeStatus(({ status, sessionTitle }) => statusBar.update(status, sessionTitle));

  const restartForSettings = async (why: string): Promise<void> => {
    controller.refreshStatus();
    if (server.state.kind === 'stopped') return;
    if (controller.status().busy) {
      const choice = await api.showInformationMessage(`${why} Restart the Pygent server to apply it? The running turn will stop.`, 'Restart');
      if (choice !== 'Restart') return;
    }
    await server.restart();
  };

  context.subscriptions.push(
    channel,
    statusBar,
    { dispose: () => controller.dispose() },
    { dispose: () => void server.shutdown() },
    api.registerWebviewViewProvider(CHAT_VIEW_ID, chatView),
    api.registerTextDocumentContentProvider(DIFF_SCHEME, memory),
    api.registerCommand(COMMANDS.openChat, () => chatView.focus()),
    api.registerCommand(COMMANDS.newSession, async () => {
      await chatView.focus();
      await controller.newSessionCommand();
    }),
    api.registerCommand(COMMANDS.cancelTurn, () => controller.cancelActive()),
    api.registerCommand(COMMANDS.restartServer, () => server.restart()),
    api.registerCommand(COMMANDS.showLogs, () => log.show()),
    api.registerCommand(COMMANDS.setApiKey, async () => {
      const key = await api.showInputBox({
        title: 'Pygent: API key',
        prompt: 'The key for your OpenAI-compatible API. It is stored in the OS keychain (VS Code SecretStorage), not in settings.',
        password: true,
        ignoreFocusOut: true,
        validateInput: validateApiKey,
      });
      if (key === undefined) return;
      await apiKey.set(key.trim());
      void api.showInformationMessage('Pygent: API key saved.');
    }),
    api.registerCommand(COMMANDS.clearApiKey, async () => {
      await apiKey.clear();
      void api.showInformationMessage('Pygent: API key removed.');
    }),
    apiKey.onDidChange(() => void restartForSettings('The API key changed.').catch((err: unknown) => log.error(describeError(err)))),
    api.onDidChangeConfiguration((e) => {
      if (RESTART_SETTINGS.some((key) => e.affectsConfiguration(key))) {
        void restartForSettings('Pygent settings changed.').catch((err: unknown) => log.error(describeError(err)));
      } else if (LIVE_SETTINGS.some((key) => e.affectsConfiguration(key))) {
        // The server takes these live (new sessions, and model/approval mode of open ones).
        controller.refreshStatus();
        void server.updateConfiguration(serverConfiguration(settings())).catch((err: unknown) => log.error(describeError(err)));
      }
    }),
    api.onDidChangeWorkspaceFolders(() => void controller.refreshSessions()),
    { dispose: () => problems.dispose() },
    server.onDidChangeState((state) => {
      if (state.kind === 'running') void problems.sendAll();
    }),
    api.onDidChangeDiagnostics((uris) => {
      if (server.isRunning) problems.changed(uris);
    }),
  );
  log.info(`Pygent ${version} activated`);
  return { controller, server };
}
