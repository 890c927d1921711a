/** ServerManager: start, crash, restart, not installed, with a fake language client. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/common/logging';
import { type ClientHooks, type Launch, type ServerClient, ServerManager, ServerNotRunningError, type ServerState } from '../../src/common/server';
import { NotInstalledError } from '../../src/common/settings';

class FakeClient implements ServerClient {
  started = false;
  stopped = false;
  readonly notifications = new Map<string, (p: unknown) => void>();
  readonly requests = new Map<string, unknown>();
  readonly sentNotifications: { method: string; params: unknown }[] = [];
  constructor(
    readonly launch: Launch,
    readonly hooks: ClientHooks,
    private readonly failWith: Error | undefined,
    private readonly version: unknown,
  ) {}
  serverProtocolVersion(): unknown {
    return this.version;
  }
  async start(): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  async sendRequest<R>(method: string, params: unknown): Promise<R> {
    return { method, params } as R;
  }
  async sendNotification(method: string, params: unknown): Promise<void> {
    this.sentNotifications.push({ method, params });
  }
  onNotification(method: string, handler: (p: unknown) => void) {
    this.notifications.set(method, handler);
    return { dispose: () => undefined };
  }
  onRequest(method: string, handler: unknown) {
    this.requests.set(method, handler);
    return { dispose: () => undefined };
  }
}

const launch: Launch = {
  command: { command: '/usr/bin/pygent', args: ['lsp'], source: 'PATH' },
  env: { A: '1' },
  cwd: '/w',
  configuration: () => ({ model: 'm', runtime: 'auto', approvalMode: 'auto' }),
};

function setup(opts: { fail?: Error; resolve?: () => Promise<Launch>; version?: unknown } = {}) {
  const clients: FakeClient[] = [];
  const states: ServerState['kind'][] = [];
  const manager = new ServerManager(
    (l, hooks) => {
      const c = new FakeClient(l, hooks, opts.fail, 'version' in opts ? opts.version : 1);
      clients.push(c);
      return c;
    },
    opts.resolve ?? (async () => launch),
    silentLogger,
  );
  manager.onDidChangeState((s) => states.push(s.kind));
  return { manager, clients, states };
}

describe('ServerManager', () => {
  it('starts once, attaches handlers to every client, and restarts', async () => {
    const { manager, clients, states } = setup();
    manager.onNotification('pygent/sessionUpdate', () => undefined);
    await Promise.all([manager.start(), manager.start()]);
    assert.equal(clients.length, 1, 'two starts, one server');
    assert.equal(manager.state.kind, 'running');
    assert.ok(clients[0]?.notifications.has('pygent/sessionUpdate'));
    manager.onRequest('pygent/requestPermission', async () => ({}));
    assert.ok(clients[0]?.requests.has('pygent/requestPermission'), 'late handlers reach the running client');
    await manager.restart();
    assert.equal(clients.length, 2);
    assert.ok(clients[0]?.stopped);
    assert.ok(clients[1]?.notifications.has('pygent/sessionUpdate') && clients[1].requests.has('pygent/requestPermission'));
    assert.deepEqual(states, ['starting', 'running', 'stopped', 'starting', 'running']);
    assert.deepEqual(await manager.request('m', { x: 1 }), { method: 'm', params: { x: 1 } });
  });

  it('reports a crash and ignores a late close of an old client', async () => {
    const { manager, clients } = setup();
    await manager.start();
    clients[0]?.hooks.onUnexpectedClose();
    assert.deepEqual(manager.state, { kind: 'failed', reason: 'crashed', message: 'The Pygent server stopped unexpectedly. Its sessions ended; the conversations are kept.' });
    assert.equal(manager.recentCrashes, 1);
    await assert.rejects(manager.request('m', {}), ServerNotRunningError);
    await manager.restart();
    clients[0]?.hooks.onUnexpectedClose();
    assert.equal(manager.state.kind, 'running');
  });

  it('says "not installed" when no executable is found or the spawn fails', async () => {
    const missing = setup({ resolve: async () => Promise.reject(new NotInstalledError('Pygent is not installed')) });
    await missing.manager.start();
    assert.deepEqual(missing.manager.state, { kind: 'failed', reason: 'notInstalled', message: 'Pygent is not installed' });
    const enoent = setup({ fail: Object.assign(new Error('spawn /usr/bin/pygent ENOENT'), { code: 'ENOENT' }) });
    await enoent.manager.start();
    assert.equal(enoent.manager.state.kind, 'failed');
    assert.equal(enoent.manager.state.kind === 'failed' && enoent.manager.state.reason, 'notInstalled');
    const broken = setup({ fail: new Error('initialize failed: bad settings') });
    await broken.manager.start();
    assert.equal(broken.manager.state.kind === 'failed' && broken.manager.state.reason, 'startFailed');
  });

  it('refuses a server that speaks another protocol version', async () => {
    const newer = setup({ version: 2 });
    await newer.manager.start();
    assert.equal(newer.manager.state.kind === 'failed' && newer.manager.state.message, 'The Pygent server speaks editor protocol 2; this extension speaks 1. Update the extension.');
    assert.ok(newer.clients[0]?.stopped);
    const other = setup({ version: undefined });
    await other.manager.start();
    assert.match(other.manager.state.kind === 'failed' ? other.manager.state.message : '', /did not announce the Pygent editor protocol/);
  });

  it('sends a changed configuration to the running server, without restarting it', async () => {
    const { manager, clients } = setup();
    assert.equal(await manager.updateConfiguration({ model: 'x' }), false, 'no server yet: the next one starts with it');
    await manager.start();
    assert.equal(await manager.updateConfiguration({ model: 'other', approvalMode: 'confirm' }), true);
    assert.equal(clients.length, 1);
    assert.deepEqual(clients[0]?.sentNotifications, [
      { method: 'workspace/didChangeConfiguration', params: { settings: { pygent: { model: 'other', approvalMode: 'confirm' } } } },
    ]);
    assert.deepEqual(clients[0]?.launch.configuration(), { model: 'm', runtime: 'auto', approvalMode: 'auto' });
  });
});
