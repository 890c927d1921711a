/** The chat controller between a scripted server and a recorded page. */

import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { ChatController } from '../../src/chat/controller';
import type { HostAction } from '../../webview/messages';
import {
  type ChangeSet,
  MCP_STATUS,
  type McpStatusResult,
  type PromptResult,
  REQUEST_PERMISSION,
  type RequestPermissionParams,
  SESSION_BUSY,
  SESSION_CANCEL,
  SESSION_COMPACT,
  SESSION_LIST,
  SESSION_NEW,
  SESSION_PROMPT,
  SESSION_RESUME,
  SESSION_UPDATE,
  type SessionInfo,
  type SessionUpdate,
  TASK_CANCEL,
  TASK_STATUS,
  WORKSPACE_APPLY,
  WORKSPACE_CHANGES,
  WORKSPACE_DISCARD,
} from '../../src/protocol';
import { deferred, defaultSettings, FakeEditor, FakeServer, FakeView, flush, silentLogger } from './fakes';

const SID = 'sess-1';

function sessionInfo(overrides: Partial<SessionInfo> = {}): SessionInfo {
  return {
    sessionId: SID,
    title: 'fix it',
    live: true,
    busy: false,
    workspaceFolder: '/home/me/project',
    sandboxPath: '/tmp/sandbox',
    runtime: 'docker',
    syncMode: 'copy',
    persona: 'Pygent',
    model: 'test-model',
    approvalMode: 'auto',
    messageCount: 0,
    updated: null,
    notices: [],
    sandbox: 'Docker (test-image)',
    ...overrides,
  };
}

const endTurn: PromptResult = { stopReason: 'end_turn', text: 'ok', error: '', steps: 1, question: '', options: [], changes: 0 };

function permission(overrides: Partial<RequestPermissionParams> = {}): RequestPermissionParams {
  return {
    sessionId: SID,
    taskId: null,
    reason: 'local mode',
    options: [
      { optionId: 'allow_once', name: 'Allow once', kind: 'allow_once' },
      { optionId: 'allow_always', name: 'Always', kind: 'allow_always' },
      { optionId: 'reject_once', name: 'Deny', kind: 'reject_once' },
    ],
    toolCall: { callId: 'c1', tool: 'bash', arguments: { cmd: 'ls' }, preview: 'ls', previewKind: 'command', path: null },
    ...overrides,
  };
}

describe('ChatController', () => {
  let server: FakeServer;
  let editor: FakeEditor;
  let view: FakeView;
  let controller: ChatController;
  let actions: HostAction[];
  let hasKey: boolean;
  let shown: number;
  let seq: number;

  const update = (u: SessionUpdate, sessionId = SID): void => {
    seq += 1;
    server.notify(SESSION_UPDATE, { sessionId, seq, update: u });
  };

  beforeEach(() => {
    server = new FakeServer();
    editor = new FakeEditor();
    view = new FakeView();
    actions = [];
    hasKey = true;
    shown = 0;
    seq = 0;
    server.responders.set(SESSION_NEW, () => sessionInfo());
    server.responders.set(SESSION_LIST, () => ({ sessions: [] }));
    server.responders.set(SESSION_PROMPT, () => endTurn);
    server.responders.set(MCP_STATUS, (): McpStatusResult => ({ servers: [] }));
    controller = new ChatController({
      server,
      editor,
      settings: () => defaultSettings,
      hasApiKey: () => hasKey,
      runAction: (a) => actions.push(a),
      showChat: () => shown++,
      log: silentLogger,
      hostName: 'test',
    });
    controller.attachView(view);
  });

  it('answers `ready` with everything the page needs', async () => {
    await controller.handle({ type: 'ready', protocol: 1 });
    const init = view.lastOf('init');
    assert.ok(init);
    assert.equal(init.host, 'test');
    assert.deepEqual(init.status, { connection: 'ready', runtime: 'docker', sandbox: '', model: 'test-model', busy: false, problem: null });
    assert.equal(init.activeSessionId, null);
    assert.ok(init.capabilities.openDiff);
  });

  it('starts a session for the workspace folder on the first prompt, then runs the turn', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'fix the tests\nplease' });
    assert.deepEqual(server.methods(), [SESSION_NEW, MCP_STATUS, SESSION_PROMPT]);
    assert.deepEqual(server.last(SESSION_NEW), {
      workspaceFolder: 'file:///home/me/project',
      runtime: 'docker',
      model: 'test-model',
      approvalMode: 'auto',
      syncMode: 'copy',
      title: 'fix the tests',
    });
    assert.deepEqual(server.last(SESSION_PROMPT), { sessionId: SID, prompt: 'fix the tests\nplease', includeUnsaved: true });
    assert.equal(view.lastOf('sessions')?.activeSessionId, SID);
    assert.equal(controller.status().busy, false);
  });

  it("names the active session's sandbox in the status (Podman, gVisor, bubblewrap...)", async () => {
    server.responders.set(SESSION_NEW, () => sessionInfo({ runtime: 'docker', sandbox: 'Podman rootless (pygent-test:bookworm)' }));
    await controller.handle({ type: 'prompt', sessionId: null, text: 'hi' });
    assert.equal(controller.status().sandbox, 'Podman rootless (pygent-test:bookworm)');
    assert.equal(controller.status().runtime, 'docker');
  });

  it("shows the session's MCP servers: their state at start, then each update", async () => {
    const hostWarning = "MCP server 'clock' runs on the host, outside the sandbox (where = \"host\"): its tools can reach your files and network";
    server.responders.set(SESSION_NEW, () => sessionInfo({ notices: [hostWarning] }));
    server.responders.set(MCP_STATUS, (params): McpStatusResult => {
      assert.deepEqual(params, { sessionId: SID });
      return {
        servers: [
          { name: 'git', state: 'ready', where: 'sandbox', transport: 'stdio', tools: ['git_status', 'git_log'], reason: '', restarts: 0, description: 'git: mcp-server-git (sandbox)', leftOut: [] },
          { name: 'clock', state: 'failed', where: 'host', transport: 'stdio', tools: [], reason: 'command not found', restarts: 0, description: 'clock: nope (host)', leftOut: [] },
        ],
      };
    });
    await controller.handle({ type: 'prompt', sessionId: null, text: 'hi' });
    update({ type: 'mcp_server', taskId: null, name: 'git', state: 'restarting', where: 'sandbox', tools: ['git_status'], reason: 'the server exited', restarts: 1 });
    const events = view.of('event').map((m) => m.event);
    // the host-side warning first (session/new's notices), then the servers, then the update
    assert.deepEqual(
      events.map((e) => (e.type === 'mcp_server' ? `${e.name}:${e.state}` : e.type === 'notice' ? e.text : e.type)),
      [hostWarning, 'git:ready', 'clock:failed', 'git:restarting'],
    );
    // a re-opened page gets them again from the session's log
    view.messages.length = 0;
    await controller.handle({ type: 'ready', protocol: 1 });
    await controller.handle({ type: 'selectSession', sessionId: SID });
    const replay = view.lastOf('transcript');
    assert.ok(replay);
    assert.deepEqual(
      replay.events.filter((e) => e.type === 'mcp_server').map((e) => e.type === 'mcp_server' && `${e.name}:${e.state}`),
      ['git:ready', 'clock:failed', 'git:restarting'],
    );
  });

  it('creates one session for two quick prompts', async () => {
    const gate = deferred<SessionInfo>();
    server.responders.set(SESSION_NEW, () => gate.promise);
    const first = controller.handle({ type: 'prompt', sessionId: null, text: 'a' });
    const second = controller.handle({ type: 'prompt', sessionId: null, text: 'b' });
    await flush();
    gate.resolve(sessionInfo());
    await Promise.all([first, second]);
    assert.equal(server.methods().filter((m) => m === SESSION_NEW).length, 1);
  });

  it('forwards session updates in order, once, and tracks busy', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'hi' });
    update({ type: 'turn_started', images: [], taskId: null, prompt: 'hi' });
    assert.equal(controller.status().busy, true);
    update({ type: 'message_delta', taskId: null, text: 'Hel' });
    server.notify(SESSION_UPDATE, { sessionId: SID, seq, update: { type: 'message_delta', taskId: null, text: 'Hel' } }); // a repeat
    update({ type: 'message_delta', taskId: null, text: 'lo' });
    server.notify(SESSION_UPDATE, { sessionId: SID, seq: seq + 1, update: { type: 'bogus' } }); // malformed
    server.notify(SESSION_UPDATE, { sessionId: 'someone-else', seq: 1, update: { type: 'message_delta', taskId: null, text: 'x' } });
    update({ type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: 'Hello', error: '' });
    const events = view.of('event').map((m) => m.event.type);
    assert.deepEqual(events, ['turn_started', 'message_delta', 'message_delta', 'turn_ended']);
    assert.equal(controller.status().busy, false);
    // The log merges the chunks, for a re-opened page.
    view.messages.length = 0;
    await controller.handle({ type: 'ready', protocol: 1 });
    const transcript = view.lastOf('transcript');
    assert.deepEqual(
      transcript?.events.map((e) => (e.type === 'message_delta' ? `delta:${e.text}` : e.type)),
      ['turn_started', 'delta:Hello', 'turn_ended'],
    );
  });

  it('forwards a discard and drops the withdrawn reply from the log, keeping the earlier steps', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'hi' });
    update({ type: 'turn_started', images: [], taskId: null, prompt: 'hi' });
    update({ type: 'message_delta', taskId: null, text: 'Let me ' });
    update({ type: 'message_delta', taskId: null, text: 'look.' });
    update({ type: 'message_done', taskId: null, text: 'Let me look.' });
    update({ type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c', tool: 'bash', arguments: { cmd: 'ls' }, preview: 'ls' });
    update({ type: 'tool_call_finished', taskId: null, callId: 'c', tool: 'bash', ok: true, output: 'a.py\n', status: 'completed' });
    update({ type: 'message_delta', taskId: null, text: 'It is the ' });
    update({ type: 'task_status', taskId: 't1', status: 'running', persona: 'p', prompt: 'x', steps: 1, detail: '' });
    update({ type: 'message_delta', taskId: null, text: 'ent' });
    update({ type: 'message_discarded', taskId: null, reason: 'the stream was cut' });
    update({ type: 'message_delta', taskId: null, text: 'a.py is the entry point.' });
    update({ type: 'message_done', taskId: null, text: 'a.py is the entry point.' });
    update({ type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: 'a.py is the entry point.', error: '' });
    const live = view.of('event').map((m) => m.event.type);
    assert.ok(live.includes('message_discarded'), 'the open page is told to withdraw the partial reply');
    // A re-opened page replays what was saved: no trace of the cut attempt.
    view.messages.length = 0;
    await controller.handle({ type: 'ready', protocol: 1 });
    const replay = view.lastOf('transcript')?.events.map((e) => (e.type === 'message_delta' ? `delta:${e.text}` : e.type));
    assert.deepEqual(replay, [
      'turn_started',
      'delta:Let me look.',
      'message_done',
      'tool_call_proposed',
      'tool_call_finished',
      'task_status',
      'delta:a.py is the entry point.',
      'message_done',
      'turn_ended',
    ]);
  });

  it('shows an approval, answers the server with the choice and message, and closes the card', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    const asked = server.ask(REQUEST_PERMISSION, permission());
    const approval = view.lastOf('approval')?.approval;
    assert.ok(approval);
    assert.equal(approval.tool, 'bash');
    assert.equal(approval.preview, 'ls');
    assert.equal(view.reveals, 1, 'the chat comes into view');
    await controller.handle({ type: 'answerApproval', id: approval.id, optionId: 'reject_once', message: 'not now' });
    assert.deepEqual(await asked.result, { optionId: 'reject_once', message: 'not now' });
    assert.deepEqual(view.lastOf('approvalClosed'), { type: 'approvalClosed', id: approval.id, outcome: 'reject_once' });
    // A second answer to the same card is refused, and the page told so.
    await controller.handle({ type: 'answerApproval', id: approval.id, optionId: 'allow_once', message: null });
    assert.equal(view.lastOf('approvalClosed')?.outcome, 'expired');
  });

  it('refuses an option the server did not offer', async () => {
    const asked = server.ask(REQUEST_PERMISSION, permission({ options: [{ optionId: 'reject_once', name: 'Deny', kind: 'reject_once' }] }));
    const id = view.lastOf('approval')?.approval.id ?? '';
    await controller.handle({ type: 'answerApproval', id, optionId: 'allow_always', message: null });
    assert.equal(view.lastOf('approvalClosed'), undefined, 'the card stays');
    assert.match(view.lastOf('toast')?.text ?? '', /not offered/);
    await controller.handle({ type: 'answerApproval', id, optionId: 'reject_once', message: null });
    assert.deepEqual(await asked.result, { optionId: 'reject_once' });
  });

  it('withdraws an approval when the server cancels the request or resolves the call', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    const first = server.ask(REQUEST_PERMISSION, permission());
    first.cancel();
    assert.deepEqual(await first.result, { optionId: 'cancelled' });
    const second = server.ask(REQUEST_PERMISSION, permission({ toolCall: { ...permission().toolCall, callId: 'c2' } }));
    const id = view.lastOf('approval')?.approval.id;
    update({ type: 'permission', taskId: null, callId: 'c2', state: 'resolved', outcome: 'denied: timeout' });
    assert.deepEqual(await second.result, { optionId: 'cancelled' });
    assert.deepEqual(view.lastOf('approvalClosed'), { type: 'approvalClosed', id, outcome: 'denied: timeout' });
  });

  it('denies a malformed permission request without showing it', async () => {
    const asked = server.ask(REQUEST_PERMISSION, { sessionId: SID, toolCall: { callId: 5 } });
    assert.equal((await asked.result as { optionId: string }).optionId, 'reject_once');
    assert.equal(view.of('approval').length, 0);
  });

  it('opens the chat for an approval when no page is attached, and replays it on ready', async () => {
    controller.detachView(view);
    const asked = server.ask(REQUEST_PERMISSION, permission());
    assert.equal(shown, 1);
    controller.attachView(view);
    await controller.handle({ type: 'ready', protocol: 1 });
    const approval = view.lastOf('approval')?.approval;
    assert.ok(approval);
    await controller.handle({ type: 'answerApproval', id: approval.id, optionId: 'allow_once', message: null });
    assert.deepEqual(await asked.result, { optionId: 'allow_once' });
  });

  it('cancels the turn (and any pending approval) on Stop', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    server.responders.set(SESSION_CANCEL, () => ({ cancelled: true }));
    const asked = server.ask(REQUEST_PERMISSION, permission());
    await controller.handle({ type: 'cancel', sessionId: SID });
    assert.deepEqual(server.last(SESSION_CANCEL), { sessionId: SID });
    assert.deepEqual(await asked.result, { optionId: 'cancelled' });
  });

  it('reports a busy session and a failed prompt', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'one' });
    server.responders.set(SESSION_PROMPT, () => Promise.reject(Object.assign(new Error('busy'), { code: SESSION_BUSY })));
    await controller.handle({ type: 'prompt', sessionId: SID, text: 'two' });
    assert.match(view.lastOf('toast')?.text ?? '', /already running/);
    // A prompt that fails mid-turn ends the turn in the transcript instead.
    server.responders.set(SESSION_PROMPT, () => {
      update({ type: 'turn_started', images: [], taskId: null, prompt: 'three' });
      throw new Error('connection lost');
    });
    await controller.handle({ type: 'prompt', sessionId: SID, text: 'three' });
    const ended = view.of('event').map((m) => m.event).filter((e) => e.type === 'turn_ended');
    assert.equal(ended.length, 1);
    assert.equal(ended[0]?.type === 'turn_ended' && ended[0].error, 'connection lost');
    assert.equal(controller.status().busy, false);
  });

  it('compacts on the page\'s request and says when it failed', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    server.responders.set(SESSION_COMPACT, () => ({ ok: true, summary: 's', replaced: 4, tokensBefore: 10, tokensAfter: 5, error: '' }));
    await controller.handle({ type: 'compact', sessionId: SID, focus: 'the parser' });
    assert.deepEqual(server.last(SESSION_COMPACT), { sessionId: SID, focus: 'the parser' });
    assert.equal(view.of('toast').length, 0);
    server.responders.set(SESSION_COMPACT, () => ({ ok: false, summary: '', replaced: 0, tokensBefore: 10, tokensAfter: 10, error: 'the model returned an empty summary' }));
    await controller.handle({ type: 'compact', sessionId: SID, focus: '' });
    assert.match(view.lastOf('toast')?.text ?? '', /Compaction failed: the model returned an empty summary; the conversation is unchanged/);
  });

  it('tracks delegated tasks and fetches the result of a finished one', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    server.responders.set(TASK_STATUS, () => ({ taskId: 't1', status: 'finished', persona: 'tester', prompt: 'write tests', steps: 3, detail: '', result: 'Added tests' }));
    server.responders.set(TASK_CANCEL, () => ({ cancelled: true }));
    update({ type: 'task_status', taskId: 't1', status: 'running', persona: 'tester', prompt: 'write tests', steps: 1, detail: '' });
    assert.deepEqual(view.lastOf('tasks')?.tasks.map((t) => t.status), ['running']);
    await controller.handle({ type: 'cancelTask', sessionId: SID, taskId: 't1' });
    assert.deepEqual(server.last(TASK_CANCEL), { sessionId: SID, taskId: 't1' });
    update({ type: 'task_status', taskId: 't1', status: 'finished', persona: '', prompt: '', steps: 3, detail: '' });
    await flush();
    assert.deepEqual(server.last(TASK_STATUS), { sessionId: SID, taskId: 't1' });
    assert.equal(view.lastOf('tasks')?.tasks[0]?.result, 'Added tests');
    await controller.handle({ type: 'openTask', sessionId: SID, taskId: 't1' });
    assert.equal(editor.texts[0]?.language, 'markdown');
    assert.match(editor.texts[0]?.content ?? '', /## Result\n\nAdded tests/);
  });

  it('fetches changes, opens their diff, applies and saves, discards after confirming', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    const set: ChangeSet = {
      sessionId: SID,
      syncMode: 'copy',
      changes: [
        { path: 'src/app.py', status: 'modified', diff: '--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-print(1)\n+print(2)\n', binary: false, conflict: false, protected: null },
        { path: 'notes.txt', status: 'added', diff: '--- a/notes.txt\n+++ b/notes.txt\n@@ -0,0 +1 @@\n+done\n', binary: false, conflict: false, protected: null },
      ],
    };
    server.responders.set(WORKSPACE_CHANGES, () => set);
    update({ type: 'changes', taskId: null, count: 2, paths: ['src/app.py', 'notes.txt'] });
    await flush();
    assert.deepEqual(view.lastOf('changes')?.changes.map((c) => c.path), ['src/app.py', 'notes.txt']);

    // The sandbox copy is readable: the diff editor compares the two files.
    editor.files.set('/tmp/sandbox/src/app.py', 'print(2)\n');
    await controller.handle({ type: 'openChange', sessionId: SID, path: 'src/app.py' });
    assert.deepEqual(editor.diffs[0]?.left, { file: '/home/me/project/src/app.py' });
    assert.deepEqual(editor.diffs[0]?.right, { file: '/tmp/sandbox/src/app.py' });
    // Not readable: the new content is rebuilt from the diff.
    await controller.handle({ type: 'openChange', sessionId: SID, path: 'notes.txt' });
    assert.deepEqual(editor.diffs[1]?.right, { content: 'done\n', name: 'notes.txt (Pygent)' });

    server.responders.set(WORKSPACE_APPLY, () => ({ applied: ['src/app.py'], failed: [{ path: 'notes.txt', reason: 'refused' }] }));
    await controller.handle({ type: 'applyChanges', sessionId: SID, paths: null });
    assert.deepEqual(server.last(WORKSPACE_APPLY), { sessionId: SID, paths: null, method: 'applyEdit' });
    assert.deepEqual(editor.saved, [['/home/me/project/src/app.py']]);
    assert.match(view.lastOf('toast')?.text ?? '', /Not applied: notes\.txt \(refused\)/);

    server.responders.set(WORKSPACE_DISCARD, () => ({ discarded: ['notes.txt'] }));
    editor.confirmAnswer = false;
    await controller.handle({ type: 'discardChanges', sessionId: SID, paths: ['notes.txt'] });
    assert.equal(server.methods().includes(WORKSPACE_DISCARD), false, 'nothing discarded without confirmation');
    editor.confirmAnswer = true;
    await controller.handle({ type: 'discardChanges', sessionId: SID, paths: ['notes.txt'] });
    assert.deepEqual(server.last(WORKSPACE_DISCARD), { sessionId: SID, paths: ['notes.txt'] });
    assert.match(editor.confirmations[0] ?? '', /Discard notes\.txt\?/);
  });

  it("opens a proposed write in the diff editor against the sandbox's current file", async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    editor.files.set('/tmp/sandbox/app.py', 'a = 1\nb = 2\n');
    server.ask(
      REQUEST_PERMISSION,
      permission({
        toolCall: { callId: 'w1', tool: 'edit_file', arguments: { path: 'app.py', old_text: 'b = 2', new_text: 'b = 3' }, preview: '', previewKind: 'diff', path: 'app.py' },
      }),
    );
    const id = view.lastOf('approval')?.approval.id ?? '';
    await controller.handle({ type: 'openApprovalDiff', id });
    assert.deepEqual(editor.diffs[0], {
      left: { file: '/tmp/sandbox/app.py' },
      right: { content: 'a = 1\nb = 3\n', name: 'app.py (proposed)' },
      title: 'app.py: proposed by Pygent',
    });
  });

  it('ends open turns, withdraws approvals and marks sessions ended when the server dies', async () => {
    await controller.handle({ type: 'prompt', sessionId: null, text: 'go' });
    update({ type: 'turn_started', images: [], taskId: null, prompt: 'go' });
    const asked = server.ask(REQUEST_PERMISSION, permission());
    server.setState({ kind: 'failed', reason: 'crashed', message: 'The Pygent server stopped unexpectedly.' });
    assert.deepEqual(await asked.result, { optionId: 'cancelled' });
    const last = view.lastOf('event')?.event;
    assert.equal(last?.type, 'turn_ended');
    assert.equal(view.lastOf('sessions')?.sessions[0]?.live, false);
    const status = view.lastOf('status')?.status;
    assert.equal(status?.connection, 'failed');
    assert.deepEqual(status?.problem?.actions, ['restartServer', 'showLogs']);
    // After a restart, prompting the ended session resumes it.
    server.responders.set(SESSION_RESUME, () => sessionInfo({ messageCount: 4 }));
    server.setState({ kind: 'running' });
    await controller.handle({ type: 'prompt', sessionId: SID, text: 'again' });
    assert.deepEqual(server.last(SESSION_RESUME), { sessionId: SID, workspaceFolder: null, runtime: 'docker', model: 'test-model', approvalMode: 'auto', syncMode: 'copy' });
    assert.deepEqual(server.last(SESSION_PROMPT), { sessionId: SID, prompt: 'again', includeUnsaved: true });
  });

  it('lists live sessions and the saved ones of this workspace', async () => {
    server.responders.set(SESSION_LIST, () => ({
      sessions: [
        sessionInfo({ sessionId: 'live-elsewhere', workspaceFolder: '/other' }),
        sessionInfo({ sessionId: 'saved-here', live: false, workspaceFolder: '/home/me/project/' }),
        sessionInfo({ sessionId: 'saved-elsewhere', live: false, workspaceFolder: '/other' }),
      ],
    }));
    await controller.refreshSessions();
    assert.deepEqual(view.lastOf('sessions')?.sessions.map((s) => s.sessionId), ['live-elsewhere', 'saved-here']);
    await controller.handle({ type: 'selectSession', sessionId: 'saved-here' });
    const transcript = view.lastOf('transcript');
    assert.equal(transcript?.sessionId, 'saved-here');
    assert.match(transcript?.events[0]?.type === 'notice' ? transcript.events[0].text : '', /Send a prompt to resume it/);
  });

  it('says what is wrong: no key, not installed', async () => {
    hasKey = false;
    assert.deepEqual(controller.status().problem?.kind, 'noApiKey');
    server.setState({ kind: 'failed', reason: 'notInstalled', message: 'Pygent is not installed' });
    assert.deepEqual(controller.status().problem, { kind: 'notInstalled', message: 'Pygent is not installed', actions: ['installHelp', 'openSettings', 'showLogs'] });
    await controller.handle({ type: 'runAction', action: 'installHelp' });
    assert.deepEqual(actions, ['installHelp']);
    await controller.handle({ type: 'prompt', sessionId: null, text: 'hi' });
    assert.match(view.lastOf('toast')?.text ?? '', /not running/);
  });

  it('starts a stopped server when the page is ready', async () => {
    server.state = { kind: 'stopped' };
    await controller.handle({ type: 'ready', protocol: 1 });
    await flush();
    assert.equal(server.starts, 1);
  });
});
