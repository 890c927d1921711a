/** What the status bar says in each state. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { statusText } from '../../src/status/statusBar';
import type { HostStatus } from '../../webview/messages';

const ready: HostStatus = { connection: 'ready', runtime: 'docker', sandbox: '', model: 'gpt-4.1-mini', busy: false, problem: null };

describe('status bar', () => {
  it('shows runtime and model, and a spinner while busy', () => {
    assert.equal(statusText(ready, null).text, '$(shield) Pygent: Docker · gpt-4.1-mini');
    assert.equal(statusText({ ...ready, busy: true }, 'fix').text, '$(sync~spin) $(shield) Pygent: Docker · gpt-4.1-mini');
    assert.match(statusText({ ...ready, busy: true }, 'fix').tooltip, /Session: fix/);
  });

  it('warns that local mode has no isolation', () => {
    const t = statusText({ ...ready, runtime: 'local' }, null);
    assert.equal(t.text, '$(unlock) Pygent: Local · gpt-4.1-mini');
    assert.match(t.tooltip, /no isolation/);
  });

  it('uses error colours for problems, warning colours for a missing key', () => {
    const crashed = statusText({ ...ready, connection: 'failed', problem: { kind: 'crashed', message: 'boom', actions: [] } }, null);
    assert.equal(crashed.background, 'statusBarItem.errorBackground');
    assert.match(crashed.tooltip, /boom/);
    const noKey = statusText({ ...ready, problem: { kind: 'noApiKey', message: 'No API key', actions: ['setApiKey'] } }, null);
    assert.equal(noKey.background, 'statusBarItem.warningBackground');
  });
});
