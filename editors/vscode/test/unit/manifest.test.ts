/** package.json agrees with the code: settings, engines, entry point, security scopes. */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PASSED_SETTINGS, readSettings, RESTART_SETTINGS } from '../../src/common/settings';

const ROOT = join(__dirname, '..', '..', '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  main: string;
  engines: { vscode: string };
  devDependencies: Record<string, string>;
  capabilities: { untrustedWorkspaces: { supported: boolean } };
  contributes: { configuration: { properties: Record<string, { scope?: string; enum?: string[]; default?: unknown }> } };
};
const props = pkg.contributes.configuration.properties;

describe('package.json', () => {
  it('declares every setting the code reads, with matching defaults and choices', () => {
    const read = Object.keys(readSettings({ get: () => undefined }))
      .filter((k) => k !== 'passed')
      .map((k) => `pygent.${k}`);
    for (const key of [...read, ...PASSED_SETTINGS.map((s) => `pygent.${s.setting}`)]) assert.ok(props[key], `${key} is contributed`);
    assert.deepEqual(props['pygent.syncMode']?.enum, ['copy', 'cow', 'mount']);
    assert.equal(props['pygent.followAlong']?.default, false, 'follow-along is off by default');
    for (const { setting, kind } of PASSED_SETTINGS) {
      if (Array.isArray(kind)) assert.deepEqual(props[`pygent.${setting}`]?.enum?.filter(Boolean), [...kind], setting);
    }
    assert.deepEqual(props['pygent.runtime']?.enum, ['auto', 'docker', 'bwrap', 'local']);
    assert.deepEqual(props['pygent.approvalMode']?.enum, ['auto', 'confirm', 'never', 'read-only']);
    for (const key of RESTART_SETTINGS) assert.ok(props[key], key);
    const secretLike = Object.keys(props).filter((k) => /key|token|secret/i.test(k) && k !== 'pygent.budget.tokens');
    assert.deepEqual(secretLike, [], 'no setting holds a secret (a token budget is a count)');
  });

  it('lets no workspace choose what runs, where the key goes or whether you are asked', () => {
    // `machine`: per machine (a remote's own paths); `application`: the user's, everywhere.
    // Neither can be set in a workspace's .vscode/settings.json.
    for (const key of ['pygent.serverPath', 'pygent.pythonPath', 'pygent.env']) assert.equal(props[key]?.scope, 'machine', key);
    for (const key of ['pygent.baseUrl', 'pygent.runtime', 'pygent.approvalMode']) assert.equal(props[key]?.scope, 'application', key);
    // Nor let the agent write the folder directly, widen the sandbox, unban a command or
    // wait longer for an answer.
    for (const key of ['pygent.syncMode', 'pygent.image', 'pygent.network', 'pygent.bannedCommands', 'pygent.approvalTimeout']) {
      assert.equal(props[key]?.scope, 'application', key);
    }
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, false);
  });

  it('matches @types/vscode to engines.vscode and points at the bundle', () => {
    assert.equal(pkg.engines.vscode, `^${pkg.devDependencies['@types/vscode']}`);
    assert.equal(pkg.main, './dist/extension.js');
  });
});
