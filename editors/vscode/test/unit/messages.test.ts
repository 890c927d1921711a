/** The page <-> host message parsers: what passes, what is dropped, what is stripped. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseHostMessage, parsePageMessage, parseSessionEvent } from '../../webview/messages';
import { ParseError } from '../../webview/parse';

describe('page messages', () => {
  it('accepts every page message shape', () => {
    const valid = [
      { type: 'ready', protocol: 1 },
      { type: 'prompt', sessionId: null, text: 'hi' },
      { type: 'prompt', sessionId: 's', text: 'hi' },
      { type: 'cancel', sessionId: 's' },
      { type: 'newSession' },
      { type: 'selectSession', sessionId: 's' },
      { type: 'answerApproval', id: 'a1', optionId: 'allow_always', message: null },
      { type: 'openApprovalDiff', id: 'a1' },
      { type: 'openChange', sessionId: 's', path: 'a.py' },
      { type: 'applyChanges', sessionId: 's', paths: null },
      { type: 'discardChanges', sessionId: 's', paths: ['a.py'] },
      { type: 'cancelTask', sessionId: 's', taskId: 't' },
      { type: 'openTask', sessionId: 's', taskId: 't' },
      { type: 'runAction', action: 'setApiKey' },
    ];
    for (const message of valid) assert.deepEqual(parsePageMessage(message, ''), message);
  });

  it('rejects unknown types, wrong field types and unknown vocabulary', () => {
    const invalid: unknown[] = [
      null,
      'ready',
      [],
      { type: 'eval', code: 'x' },
      { type: '__proto__' },
      { type: 'toString' },
      { type: 'prompt', sessionId: null },
      { type: 'prompt', sessionId: 3, text: 'x' },
      { type: 'answerApproval', id: 'a', optionId: 'yes', message: null },
      { type: 'runAction', action: 'rm -rf' },
      { type: 'applyChanges', sessionId: 's', paths: [1] },
    ];
    for (const message of invalid) assert.throws(() => parsePageMessage(message, ''), ParseError, JSON.stringify(message));
  });

  it('names the bad field', () => {
    assert.throws(() => parsePageMessage({ type: 'cancelTask', sessionId: 's', taskId: 7 }, ''), /taskId: expected a string/);
  });

  it('drops keys it does not know', () => {
    const parsed = parsePageMessage({ type: 'cancel', sessionId: 's', extra: '<script>' }, '');
    assert.deepEqual(parsed, { type: 'cancel', sessionId: 's' });
  });
});

describe('host messages', () => {
  it('fills defaults in session events and keeps tool arguments', () => {
    const event = parseSessionEvent({ type: 'tool_call_proposed', callId: 'c', tool: 'bash', arguments: { cmd: 'ls' } }, 'e');
    assert.deepEqual(event, { type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: { cmd: 'ls' }, preview: '' });
    assert.deepEqual(parseSessionEvent({ type: 'turn_ended', taskId: null }, 'e'), { type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: '', error: '' });
  });

  it('parses a discard and marks usage without `estimated` as reported', () => {
    assert.deepEqual(parseSessionEvent({ type: 'message_discarded', taskId: null, reason: 'cut' }, 'e'), { type: 'message_discarded', taskId: null, reason: 'cut' });
    assert.deepEqual(parseSessionEvent({ type: 'message_discarded' }, 'e'), { type: 'message_discarded', taskId: null, reason: '' });
    const usage = { type: 'usage', taskId: null, promptTokens: 1, completionTokens: 2, totalPromptTokens: 3, totalCompletionTokens: 4 };
    assert.equal((parseSessionEvent(usage, 'e') as { estimated?: boolean }).estimated, false);
    assert.equal((parseSessionEvent({ ...usage, estimated: true }, 'e') as { estimated?: boolean }).estimated, true);
    assert.throws(() => parseSessionEvent({ ...usage, estimated: 'yes' }, 'e'), /estimated/);
  });

  it('rejects an unknown stop reason and an unknown event', () => {
    assert.throws(() => parseSessionEvent({ type: 'turn_ended', stopReason: 'exploded' }, 'e'), /stopReason/);
    assert.throws(() => parseSessionEvent({ type: 'exec' }, 'e'), /a known type/);
  });

  it('parses a full init', () => {
    const init = {
      type: 'init',
      host: 'vscode',
      capabilities: { openDiff: true, openInEditor: false, actions: ['restartServer'] },
      status: { connection: 'ready', runtime: 'docker', sandbox: 'Podman (img)', model: 'm', busy: false, problem: null },
      sessions: [{ sessionId: 's', title: 't', live: true, busy: false, workspaceFolder: null, runtime: 'docker', model: 'm', updated: null }],
      activeSessionId: 's',
    };
    assert.deepEqual(parseHostMessage(init, ''), init);
  });

  it('caps sizes', () => {
    assert.throws(() => parseHostMessage({ type: 'toast', level: 'info', text: 'x'.repeat(4 * 1024 * 1024 + 1) }, ''), ParseError);
  });
});
