/** package.json agrees with the code: settings, engines, entry point, security scopes. */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readSettings, RESTART_SETTINGS } from '../../src/common/settings';

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
    const read = Object.keys(readSettings({ get: () => undefined })).map((k) => `pygent.${k}`);
    for (const key of read) assert.ok(props[key], `${key} is contributed`);
    assert.deepEqual(props['pygent.runtime']?.enum, ['auto', 'docker', 'local']);
    assert.deepEqual(props['pygent.approvalMode']?.enum, ['auto', 'confirm', 'never', 'read-only']);
    for (const key of RESTART_SETTINGS) assert.ok(props[key], key);
    assert.equal(Object.keys(props).filter((k) => /key|token|secret/i.test(k)).length, 0, 'no setting holds a secret');
  });

  it('lets no workspace choose what runs, where the key goes or whether you are asked', () => {
    // `machine`: per machine (a remote's own paths); `application`: the user's, everywhere.
    // Neither can be set in a workspace's .vscode/settings.json.
    for (const key of ['pygent.serverPath', 'pygent.pythonPath', 'pygent.env']) assert.equal(props[key]?.scope, 'machine', key);
    for (const key of ['pygent.baseUrl', 'pygent.runtime', 'pygent.approvalMode']) assert.equal(props[key]?.scope, 'application', key);
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, false);
  });

  it('matches @types/vscode to engines.vscode and points at the bundle', () => {
    assert.equal(pkg.engines.vscode, `^${pkg.devDependencies['@types/vscode']}`);
    assert.equal(pkg.main, './dist/extension.js');
  });
});
