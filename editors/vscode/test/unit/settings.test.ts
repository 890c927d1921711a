/** Settings: reading them, the server command, the server environment. */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  findOnPath,
  NotInstalledError,
  type PygentSettings,
  LIVE_SETTINGS,
  PASSED_SETTINGS,
  readSettings,
  RESTART_SETTINGS,
  resolveServerCommand,
  serverConfiguration,
  serverEnvironment,
} from '../../src/common/settings';

function config(values: Record<string, unknown>) {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

const base: PygentSettings = readSettings(config({}));

describe('readSettings', () => {
  it('has safe defaults', () => {
    assert.deepEqual(base, { serverPath: '', pythonPath: '', model: '', baseUrl: '', runtime: 'auto', approvalMode: 'auto', env: {}, syncMode: 'copy', passed: {} });
  });

  it('ignores values of the wrong type or outside the vocabulary', () => {
    const s = readSettings(config({ runtime: 'kubernetes', approvalMode: 'api', model: 42, env: { A: '1', B: 2, C: { no: 1 } }, serverPath: '  /opt/pygent  ' }));
    assert.equal(s.runtime, 'auto');
    assert.equal(s.approvalMode, 'auto', '"api" is for the Python API, not the editor');
    assert.equal(s.model, '');
    assert.deepEqual(s.env, { A: '1', B: '2' });
    assert.equal(s.serverPath, '/opt/pygent');
  });
});

describe('resolveServerCommand', () => {
  const exists = (files: string[]) => (f: string) => files.includes(f);

  it('prefers serverPath, then pythonPath, then PATH', () => {
    const env = { PATH: '/usr/bin:/home/me/.local/bin', HOME: '/home/me' };
    assert.deepEqual(resolveServerCommand({ ...base, serverPath: '~/bin/pygent', pythonPath: '/usr/bin/python3' }, env, exists(['/home/me/bin/pygent']), 'linux'), {
      command: '/home/me/bin/pygent',
      args: ['lsp'],
      source: 'serverPath',
    });
    assert.deepEqual(resolveServerCommand({ ...base, pythonPath: 'python3' }, env, exists(['/usr/bin/python3']), 'linux'), {
      command: '/usr/bin/python3',
      args: ['-m', 'pygent', 'lsp'],
      source: 'pythonPath',
    });
    assert.deepEqual(resolveServerCommand(base, env, exists(['/home/me/.local/bin/pygent']), 'linux'), {
      command: '/home/me/.local/bin/pygent',
      args: ['lsp'],
      source: 'PATH',
    });
  });

  it('says what to do when nothing is found', () => {
    assert.throws(() => resolveServerCommand(base, { PATH: '/usr/bin' }, () => false, 'linux'), (err: Error) => err instanceof NotInstalledError && /pip install pygent/.test(err.message));
    assert.throws(() => resolveServerCommand({ ...base, serverPath: '/nope/pygent' }, {}, () => false, 'linux'), /pygent\.serverPath/);
  });

  it('finds Windows executables by extension, in PATH order', () => {
    const wanted = join('C:\\b', 'pygent.exe');
    assert.equal(findOnPath('pygent', 'C:\\a;C:\\b', 'win32', (f) => f === wanted), wanted);
    assert.equal(findOnPath('pygent', '', 'linux', () => true), undefined);
  });
});

describe('serverEnvironment', () => {
  it('holds only the secrets and extra variables: the key from SecretStorage and the base URL', () => {
    const { env, warnings } = serverEnvironment({ PATH: '/bin', OPENAI_API_KEY: 'inherited' }, { ...base, model: 'm', baseUrl: 'http://127.0.0.1:9/v1', runtime: 'docker', approvalMode: 'confirm', env: { DOCKER_HOST: 'unix:///d.sock' } }, 'sk-secret');
    assert.equal(env.PATH, '/bin');
    assert.equal(env.OPENAI_API_KEY, 'sk-secret');
    assert.equal(env.OPENAI_BASE_URL, 'http://127.0.0.1:9/v1');
    assert.equal(env.DOCKER_HOST, 'unix:///d.sock');
    for (const name of ['PYGENT_MODEL', 'PYGENT_USE_DOCKER', 'PYGENT_APPROVAL_MODE']) assert.equal(env[name], undefined, `${name}: sent as configuration`);
    assert.deepEqual(warnings, []);
  });

  it('never takes the key from settings', () => {
    const { env, warnings } = serverEnvironment({}, { ...base, runtime: 'local', env: { OPENAI_API_KEY: 'from-settings-json', openai_api_key: 'x' } }, undefined);
    assert.equal(env.OPENAI_API_KEY, undefined);
    assert.equal(env.openai_api_key, undefined);
    assert.equal(warnings.length, 2);
  });
});

describe('serverConfiguration', () => {
  it('is what the server is configured with, without the secrets or the process settings', () => {
    assert.deepEqual(serverConfiguration(base), { runtime: 'auto', approvalMode: 'auto', syncMode: 'copy' });
    const full = { ...base, model: 'm', baseUrl: 'http://x/v1', runtime: 'local' as const, approvalMode: 'confirm' as const, serverPath: '/p', env: { A: '1' } };
    assert.deepEqual(serverConfiguration(full), { model: 'm', runtime: 'local', approvalMode: 'confirm', syncMode: 'copy' });
  });

  it('passes follow-along, diagnostic matchers, budgets and limits on as typed configuration', () => {
    const s = readSettings(
      config({
        syncMode: 'cow',
        followAlong: true,
        diagnosticMatchers: [
          { tool: ' mylint ', pattern: '^(?P<file>[^:]+):(?P<line>\\d+): (?P<message>.+)$', severity: 'warning', extra: 1 },
          { tool: 'no-pattern' },
          'not an object',
        ],
        'budget.calls': 2,
        'budget.cost': 0.5,
        'budget.tokens': null,
        'budget.time': '60',
        maxSteps: 7.5,
        temperature: 0,
        toolChoice: 'required',
        image: '  ',
        network: false,
        bannedCommands: ['rm -rf /', 3, ''],
        disabledTools: [],
      }),
    );
    assert.equal(s.syncMode, 'cow');
    assert.deepEqual(serverConfiguration(s), {
      runtime: 'auto',
      approvalMode: 'auto',
      syncMode: 'cow',
      followAlong: true,
      diagnosticMatchers: [{ tool: 'mylint', pattern: '^(?P<file>[^:]+):(?P<line>\\d+): (?P<message>.+)$', severity: 'warning' }],
      budgetCalls: 2, // null, a string and a fraction are not sent: the server keeps its own
      budgetCost: 0.5,
      temperature: 0,
      toolChoice: 'required',
      network: false,
      bannedCommands: ['rm -rf /'],
    });
    assert.equal(readSettings(config({ syncMode: 'none', followAlong: 'yes' })).syncMode, 'copy', 'a folder session needs a folder mode');
    assert.deepEqual(readSettings(config({ followAlong: 'yes' })).passed, {}, 'off unless set to true');
  });

  it('splits the settings into restart-only and live ones', () => {
    assert.deepEqual(RESTART_SETTINGS, ['pygent.serverPath', 'pygent.pythonPath', 'pygent.baseUrl', 'pygent.env']);
    assert.deepEqual(LIVE_SETTINGS.slice(0, 4), ['pygent.model', 'pygent.runtime', 'pygent.approvalMode', 'pygent.syncMode']);
    const everything: Record<string, unknown> = { model: 'm' };
    for (const { setting, kind } of PASSED_SETTINGS) {
      everything[setting] = Array.isArray(kind) ? kind[0] : { integer: 1, number: 1.5, boolean: true, string: 'x', strings: ['x'], matchers: [{ tool: 't', pattern: 'p' }] }[kind as string];
    }
    const sent = Object.keys(serverConfiguration(readSettings(config(everything))));
    const wire = (key: string) => PASSED_SETTINGS.find((s) => `pygent.${s.setting}` === key)?.wire ?? key.slice('pygent.'.length);
    assert.deepEqual(sent.sort(), LIVE_SETTINGS.map(wire).sort(), 'every live setting is sent');
  });
});
