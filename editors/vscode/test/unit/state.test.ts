/** The page's transcript model: how session events become items. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SessionUpdate } from '../../src/protocol';
import { applyEvent, emptyTranscript, initialState, MAX_OUTPUT_CHARS, reduce, type Transcript, usageText } from '../../webview/state';

function run(events: SessionUpdate[]): Transcript {
  const t = emptyTranscript();
  for (const e of events) applyEvent(t, e);
  return t;
}

const started: SessionUpdate = { type: 'turn_started', images: [], taskId: null, prompt: 'hi' };

describe('transcript', () => {
  it('streams deltas into one reply and lets message_done correct it', () => {
    const t = run([
      started,
      { type: 'message_delta', taskId: null, text: 'Hel' },
      { type: 'message_delta', taskId: null, text: 'lo' },
    ]);
    assert.equal(t.busy, true);
    assert.deepEqual(t.items.map((i) => i.kind), ['user', 'assistant']);
    const reply = t.items[1];
    assert.ok(reply?.kind === 'assistant');
    assert.equal(reply.text, 'Hello');
    assert.equal(reply.streaming, true);
    const rev = reply.rev;
    applyEvent(t, { type: 'message_done', taskId: null, text: 'Hello!' });
    assert.equal(reply.text, 'Hello!');
    assert.equal(reply.streaming, false);
    assert.ok(reply.rev > rev, 'a changed item gets a new revision');
  });

  it('follows a tool call from proposal to result', () => {
    const t = run([
      started,
      { type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: { cmd: 'ls' }, preview: 'ls' },
      { type: 'permission', taskId: null, callId: 'c', state: 'pending', outcome: '' },
    ]);
    const tool = t.items[1];
    assert.ok(tool?.kind === 'tool');
    assert.equal(tool.status, 'waiting');
    applyEvent(t, { type: 'tool_call_started', taskId: null, callId: 'c', tool: 'bash' });
    applyEvent(t, { type: 'tool_output', taskId: null, callId: 'c', text: 'a\n', stream: 'stdout' });
    applyEvent(t, { type: 'tool_output', taskId: null, callId: 'c', text: 'b\n', stream: 'stdout' });
    assert.equal(tool.status, 'running');
    applyEvent(t, { type: 'tool_call_finished', taskId: null, callId: 'c', tool: 'bash', ok: true, output: 'IGNORED', status: 'completed' });
    assert.equal(tool.status, 'completed');
    assert.equal(tool.output, 'a\nb\n', 'the streamed output is what the user saw');
  });

  it('keeps the tail of huge output', () => {
    const t = run([started, { type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: {}, preview: '' }]);
    applyEvent(t, { type: 'tool_output', taskId: null, callId: 'c', text: 'x'.repeat(MAX_OUTPUT_CHARS), stream: 'stdout' });
    applyEvent(t, { type: 'tool_output', taskId: null, callId: 'c', text: 'END', stream: 'stdout' });
    const tool = t.items[1];
    assert.ok(tool?.kind === 'tool');
    assert.equal(tool.output.length, MAX_OUTPUT_CHARS);
    assert.ok(tool.output.endsWith('END'));
    assert.equal(tool.truncated, true);
  });

  it('leaves delegated tasks out of the conversation', () => {
    const t = run([started, { type: 'message_delta', taskId: 't1', text: 'sub-agent chatter' }, { type: 'tool_call_proposed', locations: [], oldText: null, taskId: 't1', callId: 'x', tool: 'bash', arguments: {}, preview: '' }]);
    assert.deepEqual(t.items.map((i) => i.kind), ['user']);
  });

  it('marks unfinished calls cancelled and notes why a turn stopped', () => {
    const t = run([
      started,
      { type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: {}, preview: '' },
      { type: 'tool_call_started', taskId: null, callId: 'c', tool: 'bash' },
      { type: 'turn_ended', taskId: null, stopReason: 'cancelled', text: '', error: '' },
    ]);
    assert.equal(t.busy, false);
    const tool = t.items[1];
    assert.ok(tool?.kind === 'tool');
    assert.equal(tool.status, 'cancelled');
    assert.equal(t.items[2]?.kind, 'end');
  });

  it('says an error once when a notice already said it', () => {
    const t = run([
      started,
      { type: 'notice', taskId: null, level: 'error', text: 'could not reach the model' },
      { type: 'turn_ended', taskId: null, stopReason: 'error', text: '', error: 'could not reach the model' },
    ]);
    const end = t.items[2];
    assert.ok(end?.kind === 'end');
    assert.equal(end.error, '');
    const alone = run([started, { type: 'turn_ended', taskId: null, stopReason: 'error', text: '', error: 'bad key' }]);
    assert.equal(alone.items[1]?.kind === 'end' && alone.items[1].error, 'bad key');
  });

  it('withdraws a discarded partial reply, keeps the earlier messages, and shows only the new answer', () => {
    const t = run([
      started,
      { type: 'message_delta', taskId: null, text: 'Let me look.' },
      { type: 'message_done', taskId: null, text: 'Let me look.' },
      { type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: { cmd: 'ls' }, preview: 'ls' },
      { type: 'tool_call_finished', taskId: null, callId: 'c', tool: 'bash', ok: true, output: 'a.py\n', status: 'completed' },
      { type: 'message_delta', taskId: null, text: 'The file a.py is the ent' },
      { type: 'notice', taskId: null, level: 'warning', text: 'the stream was cut; asking again' },
      { type: 'message_delta', taskId: null, text: 'ry po' },
      { type: 'message_delta', taskId: 't1', text: 'a task goes on' },
    ]);
    applyEvent(t, { type: 'message_discarded', taskId: null, reason: 'the stream was cut' });
    const shown = () => t.items.map((i) => (i.kind === 'assistant' ? `assistant:${i.text}` : i.kind));
    assert.deepEqual(shown(), ['user', 'assistant:Let me look.', 'tool', 'notice']);
    applyEvent(t, { type: 'message_delta', taskId: null, text: 'a.py is the entry point.' });
    applyEvent(t, { type: 'message_done', taskId: null, text: 'a.py is the entry point.' });
    applyEvent(t, { type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: 'a.py is the entry point.', error: '' });
    assert.deepEqual(shown(), ['user', 'assistant:Let me look.', 'tool', 'notice', 'assistant:a.py is the entry point.']);
    // A discard with nothing streamed, or of a task, removes nothing.
    applyEvent(t, { type: 'message_discarded', taskId: null, reason: '' });
    applyEvent(t, { type: 'message_discarded', taskId: 't1', reason: '' });
    assert.equal(t.items.length, 5);
  });

  it('marks estimated token counts, and keeps the mark once the totals include an estimate', () => {
    const usage = (estimated: boolean, total: number) =>
      ({ type: 'usage', taskId: null, promptTokens: 10, completionTokens: 5, totalPromptTokens: total, totalCompletionTokens: 300, estimated, cachedTokens: 0, totalCachedTokens: 0, cost: null, totalCost: null, totalCalls: 0, contextTokens: 0, contextWindow: 0 }) as const;
    const t = run([started, usage(false, 1234)]);
    assert.ok(t.usage);
    assert.equal(usageText(t.usage), '1.2k / 300 tokens');
    applyEvent(t, usage(true, 2000));
    assert.equal(usageText(t.usage), '~2.0k / ~300 tokens (estimated)');
    applyEvent(t, usage(false, 2500));
    assert.equal(usageText(t.usage), '~2.5k / ~300 tokens (estimated)');
  });

  it('shows cost and context fill, a compaction marker, and a budget stop', () => {
    const t = run([started]);
    applyEvent(t, { type: 'usage', taskId: null, promptTokens: 3000, completionTokens: 100, totalPromptTokens: 3000, totalCompletionTokens: 100, estimated: false, cachedTokens: 0, totalCachedTokens: 0, cost: 0.0123, totalCost: 0.0123, totalCalls: 1, contextTokens: 3000, contextWindow: 10000 });
    assert.ok(t.usage);
    assert.equal(usageText(t.usage), '3.0k / 100 tokens · $0.0123 · 30% context');
    applyEvent(t, { type: 'compaction', taskId: null, ok: true, automatic: false, summary: '## Task\nx', replaced: 12, tokensBefore: 3000, tokensAfter: 800, focus: '', error: '' });
    const marker = t.items.find((i) => i.kind === 'compaction');
    assert.ok(marker && marker.kind === 'compaction' && marker.summary === '## Task\nx' && marker.replaced === 12);
    assert.equal(usageText(t.usage), '3.0k / 100 tokens · $0.0123 · 8% context');
    applyEvent(t, { type: 'compaction', taskId: null, ok: false, automatic: true, summary: '', replaced: 0, tokensBefore: 800, tokensAfter: 800, focus: '', error: 'boom' });
    assert.equal(t.items.filter((i) => i.kind === 'compaction').length, 1);
    applyEvent(t, { type: 'turn_ended', taskId: null, stopReason: 'budget', text: '', error: "budget: the session's limit of 2 model calls is reached (2 made)" });
    const end = t.items[t.items.length - 1];
    assert.ok(end && end.kind === 'end' && end.stopReason === 'budget' && end.error.includes('2 model calls'));
  });

  it('shows the question of ask_user and no end marker for a normal end', () => {
    const asked = run([started, { type: 'turn_ended', taskId: null, stopReason: 'ask_user', text: 'Which file?', error: '' }]);
    assert.deepEqual(asked.items.map((i) => i.kind), ['user', 'assistant', 'end']);
    const normal = run([started, { type: 'message_delta', taskId: null, text: 'Done.' }, { type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: 'Done.', error: '' }]);
    assert.deepEqual(normal.items.map((i) => i.kind), ['user', 'assistant']);
  });
});

describe('reduce', () => {
  it('switching sessions re-renders everything that belongs to a session', () => {
    const state = initialState();
    reduce(state, { type: 'sessions', sessions: [], activeSessionId: null });
    const parts = reduce(state, { type: 'sessions', sessions: [], activeSessionId: 's2' });
    assert.ok(parts.includes('transcript') && parts.includes('tasks') && parts.includes('changes'));
  });

  it('events of other sessions are kept but do not re-render', () => {
    const state = initialState();
    reduce(state, { type: 'sessions', sessions: [], activeSessionId: 'a' });
    assert.deepEqual(reduce(state, { type: 'event', sessionId: 'b', event: started }), []);
    assert.equal(state.transcripts.get('b')?.items.length, 1);
  });
});
