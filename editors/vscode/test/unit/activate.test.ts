/**
 * Activation against the fake `vscode` module: what gets registered, the webview's
 * HTML and message checks, the API key command, restarts on key and settings changes.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { activateExtension, type ExtensionApi } from '../../src/main';
import type { ClientFactory, Launch, ServerClient } from '../../src/common/server';
import { API_KEY_SECRET } from '../../src/common/apiKey';

// The fake's test hooks are not in @types/vscode.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const vscode = require('vscode') as FakeVscode;

interface FakeVscode {
  fake: {
    commands: Map<string, (...args: unknown[]) => unknown>;
    views: Map<string, { resolveWebviewView(view: unknown): void }>;
    contentProviders: Map<string, unknown>;
    statusBarItems: { text: string; command: string; visible: boolean }[];
    outputChannels: { lines: string[] }[];
    inputBoxAnswers: string[];
    configuration: Record<string, unknown>;
    configListeners: ((e: { affectsConfiguration(key: string): boolean }) => void)[];
    workspaceFolders: unknown[];
    reset(): void;
  };
  commands: { executeCommand(id: string, ...args: unknown[]): Promise<unknown> };
  Uri: { file(p: string): { fsPath: string; toString(): string } };
}

const ROOT = join(__dirname, '..', '..', '..');
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  contributes: { commands: { command: string }[]; views: Record<string, { id: string }[]> };
};

class Secrets {
  readonly values = new Map<string, string>();
  private listeners: ((e: { key: string }) => void)[] = [];
  async get(key: string) {
    return this.values.get(key);
  }
  async store(key: string, value: string) {
    this.values.set(key, value);
    for (const l of this.listeners) l({ key });
  }
  async delete(key: string) {
    this.values.delete(key);
    for (const l of this.listeners) l({ key });
  }
  onDidChange(listener: (e: { key: string }) => void) {
    this.listeners.push(listener);
    return { dispose: () => undefined };
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

describe('activation with a fake VS Code', () => {
  const launches: Launch[] = [];
  const notifications: { method: string; params: unknown }[] = [];
  const secrets = new Secrets();
  const context = {
    subscriptions: [] as { dispose(): unknown }[],
    secrets,
    extensionUri: vscode.Uri.file('/ext'),
    extension: { id: 'pygent.pygent-vscode', packageJSON: { version: '9.9.9' } },
  };
  const factory: ClientFactory = (launch) => {
    launches.push(launch);
    const client: ServerClient = {
      start: async () => undefined,
      stop: async () => undefined,
      sendRequest: async <R>(method: string) => (method === 'pygent/session/list' ? { sessions: [] } : {}) as R,
      sendNotification: async (method: string, params: unknown) => {
        notifications.push({ method, params });
      },
      onNotification: () => ({ dispose: () => undefined }),
      onRequest: () => ({ dispose: () => undefined }),
      serverProtocolVersion: () => 1,
    };
    return client;
  };
  let ext: ExtensionApi;

  before(async () => {
    vscode.fake.reset();
    // Any existing executable will do: the fake client never spawns it.
    vscode.fake.configuration['pygent.serverPath'] = process.execPath;
    vscode.fake.configuration['pygent.runtime'] = 'docker';
    ext = await activateExtension(context as never, { clientFactory: factory });
  });

  after(async () => {
    for (const d of context.subscriptions) d.dispose();
    await ext.server.stop();
  });

  it('registers exactly the commands the manifest contributes, the view and the status bar', () => {
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual([...vscode.fake.commands.keys()].sort(), contributed);
    const viewIds = Object.values(manifest.contributes.views).flat().map((v) => v.id);
    assert.deepEqual([...vscode.fake.views.keys()], viewIds);
    assert.ok(vscode.fake.contentProviders.has('pygent-diff'));
    const item = vscode.fake.statusBarItems[0];
    assert.ok(item?.visible);
    assert.equal(item?.command, 'pygent.openChat');
  });

  it('does not start the server before the chat is opened', () => {
    assert.equal(launches.length, 0);
    assert.equal(ext.server.state.kind, 'stopped');
  });

  it('serves the page under a nonce CSP and accepts only well-formed messages', async () => {
    const posted: { type: string }[] = [];
    let receive: (m: unknown) => void = () => undefined;
    const view = {
      webview: {
        options: {} as { enableScripts?: boolean; localResourceRoots?: { fsPath: string }[] },
        html: '',
        cspSource: 'vscode-webview://res',
        asWebviewUri: (u: unknown) => u,
        onDidReceiveMessage: (l: (m: unknown) => void) => {
          receive = l;
          return { dispose: () => undefined };
        },
        postMessage: async (m: { type: string }) => {
          posted.push(m);
          return true;
        },
      },
      onDidDispose: () => ({ dispose: () => undefined }),
      show: () => undefined,
    };
    vscode.fake.views.get('pygent.chat')?.resolveWebviewView(view);
    assert.equal(view.webview.options.enableScripts, true);
    assert.deepEqual(view.webview.options.localResourceRoots?.map((u) => u.fsPath), ['/ext/media']);
    const nonce = /script-src 'nonce-([^']+)'/.exec(view.webview.html)?.[1];
    assert.ok(nonce);
    assert.ok(view.webview.html.includes(`<script nonce="${nonce}" src="file:///ext/media/chat.js">`));

    receive({ type: 'run', command: 'rm -rf /' });
    receive({ type: 'ready' }); // no protocol number
    await settle();
    assert.deepEqual(posted, []);
    assert.ok(vscode.fake.outputChannels[0]?.lines.some((l) => /malformed message from the chat page/.test(l)));

    receive({ type: 'ready', protocol: 1 });
    await settle();
    assert.equal((posted as { type: string }[])[0]?.type, 'init');
    assert.equal(launches.length, 1, 'the chat starts the server');
    assert.deepEqual(launches[0]?.command, { command: process.execPath, args: ['lsp'], source: 'serverPath' });
    assert.deepEqual(launches[0]?.configuration(), { runtime: 'docker', approvalMode: 'auto', syncMode: 'copy' }, 'settings go as configuration');
    assert.equal(launches[0]?.env.PYGENT_USE_DOCKER, undefined, 'not in the environment');
    assert.equal(launches[0]?.env.OPENAI_API_KEY, process.env.OPENAI_API_KEY);
  });

  it('stores the API key in SecretStorage and restarts the server with it', async () => {
    vscode.fake.inputBoxAnswers.push('  sk-test-123  ');
    await vscode.commands.executeCommand('pygent.setApiKey');
    await settle();
    assert.equal(secrets.values.get(API_KEY_SECRET), 'sk-test-123');
    assert.equal(launches.length, 2);
    assert.equal(launches[1]?.env.OPENAI_API_KEY, 'sk-test-123');
    assert.equal(vscode.fake.configuration['pygent.apiKey'], undefined, 'nothing written to settings');
  });

  it('sends live settings to the running server instead of restarting it', async () => {
    vscode.fake.configuration['pygent.model'] = 'other-model';
    for (const l of vscode.fake.configListeners) l({ affectsConfiguration: (k) => k === 'pygent.model' });
    await settle();
    assert.equal(launches.length, 2, 'no restart');
    assert.deepEqual(notifications, [
      { method: 'workspace/didChangeConfiguration', params: { settings: { pygent: { model: 'other-model', runtime: 'docker', approvalMode: 'auto', syncMode: 'copy' } } } },
    ]);
    assert.equal(launches[1]?.configuration().model, 'other-model', 'the server asking (workspace/configuration) gets it too');
  });

  it('restarts only for settings that need a new process, and not for others', async () => {
    vscode.fake.configuration['pygent.env'] = { DOCKER_HOST: 'unix:///other.sock' };
    for (const l of vscode.fake.configListeners) l({ affectsConfiguration: (k) => k === 'pygent.env' });
    await settle();
    assert.equal(launches.length, 3);
    assert.equal(launches[2]?.env.DOCKER_HOST, 'unix:///other.sock');
    const sent = notifications.length;
    for (const l of vscode.fake.configListeners) l({ affectsConfiguration: (k) => k === 'editor.fontSize' });
    await settle();
    assert.equal(launches.length, 3);
    assert.equal(notifications.length, sent);
  });
});
