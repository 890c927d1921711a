/**
 * The chat page in headless Chromium, driven as VS Code would drive it: a prompt, a
 * streamed Markdown reply, a command approval, live tool output, delegated tasks,
 * changes, stop, and hostile input. Screenshots land in test-artifacts/.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import type { HostMessage } from '../../webview/messages';
import type { SessionUpdate } from '../../src/protocol';
import { artifact, launchBrowser, openAsVsCodeWebview, serveRoot, type StaticServer } from './harness';

const SID = 's-1';

const init: HostMessage = {
  type: 'init',
  host: 'test',
  capabilities: { openDiff: true, openInEditor: true, actions: ['setApiKey', 'restartServer', 'openSettings', 'showLogs', 'installHelp'] },
  status: { connection: 'ready', runtime: 'docker', sandbox: 'Podman rootless (pygent-test:bookworm)', model: 'gpt-4.1-mini', busy: false, problem: null },
  sessions: [],
  activeSessionId: null,
};

/** The session list as the host sends it while (or after) a turn runs. */
function busySessions(busy: boolean): HostMessage {
  const list = (sessionsMsg as Extract<HostMessage, { type: 'sessions' }>).sessions;
  return { type: 'sessions', sessions: list.map((s) => ({ ...s, busy })), activeSessionId: SID };
}

function event(update: SessionUpdate): HostMessage {
  return { type: 'event', sessionId: SID, event: update };
}

const sessionsMsg: HostMessage = {
  type: 'sessions',
  sessions: [{ sessionId: SID, title: 'Add a greeting script', live: true, busy: false, workspaceFolder: '/home/me/project', runtime: 'docker', model: 'gpt-4.1-mini', updated: null }],
  activeSessionId: SID,
};

describe('chat page in Chromium', () => {
  let server: StaticServer;
  let browser: Browser;

  before(async () => {
    server = await serveRoot();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('sends a prompt, streams the reply, asks for approval, shows output, tasks and changes', async () => {
    const { page, inbox, post, errors } = await openAsVsCodeWebview(browser, server.url);
    const ready = await inbox.next('ready');
    assert.equal(ready.protocol, 1);
    await post(init);
    await page.getByText('Ask Pygent to do something').waitFor();
    await page.screenshot({ path: artifact('chat-empty.png') });

    // Shift+Enter is a new line, Enter sends.
    const prompt = page.getByRole('textbox', { name: 'Prompt' });
    await prompt.click();
    await prompt.pressSequentially('Add a greeting script');
    await prompt.press('Shift+Enter');
    await prompt.pressSequentially('and run it');
    assert.equal(inbox.messages.filter((m) => m.type === 'prompt').length, 0, 'Shift+Enter must not send');
    await prompt.press('Enter');
    const sent = await inbox.next('prompt');
    assert.deepEqual(sent, { type: 'prompt', sessionId: null, text: 'Add a greeting script\nand run it' });
    assert.equal(await prompt.inputValue(), '', 'the prompt box empties after sending');
    // While the host creates the session the prompt shows as pending and Stop is offered.
    await page.getByRole('button', { name: 'Stop the running turn' }).waitFor();

    await post(busySessions(true));
    await post(event({ type: 'turn_started', images: [], taskId: null, prompt: 'Add a greeting script\nand run it' }));
    const reply = 'I will write **hello.py** and run it:\n\n```python\nprint("hello")\n```\n';
    for (const chunk of reply.match(/.{1,7}/gs) ?? []) await post(event({ type: 'message_delta', taskId: null, text: chunk }));
    await page.locator('.msg.assistant strong', { hasText: 'hello.py' }).waitFor();
    // The page renders streamed text in batches: wait for the last chunk, then check it.
    await page.waitForFunction(
      () => document.querySelector('.msg.assistant pre code')?.textContent?.endsWith('\n') ?? false,
      undefined, { timeout: 5000 });
    assert.equal(await page.locator('.msg.assistant pre code').textContent(), 'print("hello")\n');
    assert.equal(await page.locator('.msg.user').count(), 1, 'the pending prompt is replaced by the echoed one');
    await post(event({ type: 'message_done', taskId: null, text: reply }));

    // A command that needs approval.
    await post(event({ type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'c1', tool: 'bash', arguments: { cmd: 'python hello.py' }, preview: 'python hello.py' }));
    await post(event({ type: 'permission', taskId: null, callId: 'c1', state: 'pending', outcome: '' }));
    await post({
      type: 'approval',
      approval: {
        id: 'a1',
        sessionId: SID,
        taskId: null,
        callId: 'c1',
        tool: 'bash',
        preview: 'python hello.py',
        previewKind: 'command',
        path: null,
        reason: 'local mode: commands run without isolation',
        options: [
          { optionId: 'allow_once', name: 'Allow once' },
          { optionId: 'allow_always', name: 'Always allow in this session' },
          { optionId: 'reject_once', name: 'Deny' },
          { optionId: 'reject_always', name: 'Always deny in this session' },
        ],
      },
    });
    const card = page.getByRole('group', { name: 'Run this command?' });
    await card.waitFor();
    assert.match((await card.textContent()) ?? '', /\$ python hello\.py/);
    assert.equal(await page.locator('.card.tool .tool-status').textContent(), 'Waiting for approval');
    // Keyboard: the Allow button has the focus, Enter answers.
    await page.waitForFunction(() => (document.activeElement as HTMLElement | null)?.dataset.option === 'allow_once');
    await page.screenshot({ path: artifact('chat-approval.png') });
    await page.keyboard.press('Enter');
    const answer = await inbox.next('answerApproval');
    assert.deepEqual(answer, { type: 'answerApproval', id: 'a1', optionId: 'allow_once', message: null });
    await post({ type: 'approvalClosed', id: 'a1', outcome: 'allow_once' });
    await card.waitFor({ state: 'detached' });

    // Live output.
    await post(event({ type: 'permission', taskId: null, callId: 'c1', state: 'resolved', outcome: 'allow_once' }));
    await post(event({ type: 'tool_call_started', taskId: null, callId: 'c1', tool: 'bash' }));
    await post(event({ type: 'tool_output', taskId: null, callId: 'c1', text: 'hel', stream: 'stdout' }));
    await post(event({ type: 'tool_output', taskId: null, callId: 'c1', text: 'lo\n', stream: 'stdout' }));
    await page.locator('.card.tool .output-text', { hasText: 'hello' }).waitFor();
    assert.equal(await page.locator('.card.tool .tool-status').textContent(), 'Running…');
    await post(event({ type: 'tool_call_finished', taskId: null, callId: 'c1', tool: 'bash', ok: true, output: 'hello\n', status: 'completed' }));
    await page.locator('.card.tool.status-completed').waitFor();

    // A delegated task: queued, running, finished with a result; its own events stay out of the chat.
    const task = { taskId: 't1', persona: 'tester', prompt: 'write tests for hello.py', steps: 0, detail: '', result: '' };
    await post({ type: 'tasks', sessionId: SID, tasks: [{ ...task, status: 'running', steps: 1 }] });
    await post(event({ type: 'tool_call_proposed', locations: [], oldText: null, taskId: 't1', callId: 'c9', tool: 'bash', arguments: { cmd: 'pytest' }, preview: 'pytest' }));
    const tasks = page.getByRole('list', { name: 'Delegated tasks' });
    await tasks.getByText('write tests for hello.py').waitFor();
    assert.equal(await tasks.locator('.badge').textContent(), 'running');
    assert.equal(await page.locator('.card.tool').count(), 1, 'task tool calls are not in the conversation');
    await tasks.getByRole('button', { name: 'Cancel task t1' }).click();
    assert.deepEqual(await inbox.next('cancelTask'), { type: 'cancelTask', sessionId: SID, taskId: 't1' });
    await post({ type: 'tasks', sessionId: SID, tasks: [{ ...task, status: 'finished', steps: 4, result: 'Added **tests/test_hello.py**' }] });
    await tasks.locator('.badge', { hasText: 'finished' }).waitFor();
    await tasks.getByRole('button', { name: 'Result of task t1' }).click();
    await tasks.locator('.task-result strong', { hasText: 'tests/test_hello.py' }).waitFor();

    // Workspace changes.
    await post({
      type: 'changes',
      sessionId: SID,
      syncMode: 'copy',
      changes: [
        { path: 'hello.py', status: 'added', diff: '--- a/hello.py\n+++ b/hello.py\n@@ -0,0 +1 @@\n+print("hello")\n', binary: false, conflict: false, protected: null },
        { path: 'README.md', status: 'modified', diff: '--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n # Project\n+Run `python hello.py`.\n', binary: false, conflict: false, protected: null },
        { path: '.vscode/tasks.json', status: 'added', diff: '--- a/.vscode/tasks.json\n+++ b/.vscode/tasks.json\n@@ -0,0 +1 @@\n+{}\n', binary: false, conflict: false, protected: 'VS Code runs tasks' },
      ],
    });
    await post(event({ type: 'message_delta', taskId: null, text: 'Done: `hello.py` prints *hello*.' }));
    await post(event({ type: 'usage', taskId: null, promptTokens: 900, completionTokens: 120, totalPromptTokens: 1800, totalCompletionTokens: 240, estimated: false, cachedTokens: 0, totalCachedTokens: 0, cost: null, totalCost: null, totalCalls: 0, contextTokens: 0, contextWindow: 0 }));
    await post(event({ type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: 'Done: `hello.py` prints *hello*.', error: '' }));
    await post(event({ type: 'changes', taskId: null, count: 2, paths: ['hello.py', 'README.md'] }));
    await post(busySessions(false));
    const changes = page.getByRole('list', { name: 'Changed files' });
    await changes.getByText('README.md').waitFor();
    await changes.getByText(/Can run code \(VS Code runs tasks\)/).waitFor();
    await page.getByRole('button', { name: 'Send prompt' }).waitFor();
    assert.match((await page.locator('.status-line').textContent()) ?? '', /Podman rootless \(pygent-test:bookworm\).*gpt-4\.1-mini.*1\.8k \/ 240 tokens.*Ready/);
    await page.screenshot({ path: artifact('chat-done.png'), fullPage: true });
    await changes.getByRole('button', { name: 'hello.py', exact: true }).click();
    assert.deepEqual(await inbox.next('openChange'), { type: 'openChange', sessionId: SID, path: 'hello.py' });
    await changes.getByRole('button', { name: 'Apply README.md' }).click();
    assert.deepEqual(await inbox.next('applyChanges'), { type: 'applyChanges', sessionId: SID, paths: ['README.md'] });
    await page.getByRole('button', { name: 'Apply all' }).click();
    assert.deepEqual(await inbox.next('applyChanges'), { type: 'applyChanges', sessionId: SID, paths: null });

    const violations = await page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations);
    assert.deepEqual(violations, [], 'no Content-Security-Policy violations');
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  it('stops a turn, denies with a message, shows a write diff and problems', async () => {
    const { page, inbox, post } = await openAsVsCodeWebview(browser, server.url, { width: 420, height: 860 }, 'light');
    await inbox.next('ready');
    await post({ ...init, sessions: (sessionsMsg as Extract<HostMessage, { type: 'sessions' }>).sessions, activeSessionId: SID });
    await post(busySessions(true));
    await post(event({ type: 'turn_started', images: [], taskId: null, prompt: 'write the file' }));
    const diff = '--- a/hello.py\n+++ b/hello.py\n@@ -1 +1,2 @@\n-print("hi")\n+print("hello")\n+print("bye")\n';
    await post(event({ type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'w1', tool: 'write_file', arguments: { path: 'hello.py', content: 'print("hello")\nprint("bye")\n' }, preview: diff }));
    await post({
      type: 'approval',
      approval: { id: 'a2', sessionId: SID, taskId: null, callId: 'w1', tool: 'write_file', preview: diff, previewKind: 'diff', path: 'hello.py', reason: '', options: [{ optionId: 'allow_once', name: 'Allow once' }, { optionId: 'allow_always', name: 'Always' }, { optionId: 'reject_once', name: 'Deny' }] },
    });
    const card = page.getByRole('group', { name: 'Let write_file change hello.py?' });
    await card.waitFor();
    assert.equal(await card.locator('.diff-add').count(), 2);
    assert.equal(await card.locator('.diff-del').count(), 1);
    await page.screenshot({ path: artifact('chat-diff-approval-light.png') });
    await card.getByRole('button', { name: 'Open in diff editor' }).click();
    assert.deepEqual(await inbox.next('openApprovalDiff'), { type: 'openApprovalDiff', id: 'a2' });
    // Typing a message and pressing Enter denies with it.
    const reason = card.getByRole('textbox', { name: /Message to the agent/ });
    await reason.fill('write it to src/hello.py instead');
    await reason.press('Enter');
    assert.deepEqual(await inbox.next('answerApproval'), { type: 'answerApproval', id: 'a2', optionId: 'reject_once', message: 'write it to src/hello.py instead' });

    // Escape in the prompt box stops the turn, so does the Stop button.
    await page.getByRole('textbox', { name: 'Prompt' }).press('Escape');
    assert.deepEqual(await inbox.next('cancel'), { type: 'cancel', sessionId: SID });
    await page.getByRole('button', { name: 'Stop the running turn' }).click();
    assert.deepEqual(await inbox.next('cancel'), { type: 'cancel', sessionId: SID });
    await post({ type: 'approvalClosed', id: 'a2', outcome: 'cancelled' });
    await post(event({ type: 'tool_call_finished', taskId: null, callId: 'w1', tool: 'write_file', ok: false, output: '', status: 'cancelled' }));
    await post(event({ type: 'turn_ended', taskId: null, stopReason: 'cancelled', text: '', error: '' }));
    await post(busySessions(false));
    await page.locator('.turn-end', { hasText: 'Cancelled' }).waitFor();
    await page.getByRole('button', { name: 'Send prompt' }).waitFor();

    // A crashed server: the banner offers a restart.
    await post({ type: 'status', status: { connection: 'failed', runtime: 'docker', sandbox: '', model: 'gpt-4.1-mini', busy: false, problem: { kind: 'crashed', message: 'The Pygent server stopped unexpectedly.', actions: ['restartServer', 'showLogs'] } } });
    const banner = page.getByRole('alert').filter({ hasText: 'stopped unexpectedly' });
    await banner.waitFor();
    assert.ok(await page.getByRole('button', { name: 'Send prompt' }).isDisabled(), 'no prompt while the server is down');
    await page.screenshot({ path: artifact('chat-crashed-light.png') });
    await banner.getByRole('button', { name: 'Restart server' }).click();
    assert.deepEqual(await inbox.next('runAction'), { type: 'runAction', action: 'restartServer' });
    await page.context().close();
  });

  it('removes a discarded partial reply and marks estimated token counts', async () => {
    const { page, inbox, post, errors } = await openAsVsCodeWebview(browser, server.url);
    await inbox.next('ready');
    await post({ ...init, sessions: (sessionsMsg as Extract<HostMessage, { type: 'sessions' }>).sessions, activeSessionId: SID });
    await post(busySessions(true));
    await post(event({ type: 'turn_started', images: [], taskId: null, prompt: 'what is a.py?' }));
    await post(event({ type: 'message_delta', taskId: null, text: 'The file **a.py** is the ent' }));
    await page.locator('.msg.assistant strong', { hasText: 'a.py' }).waitFor();
    await post(event({ type: 'message_discarded', taskId: null, reason: 'the stream was cut' }));
    await page.locator('.msg.assistant').waitFor({ state: 'detached' });
    const answer = 'It is the **entry point**.';
    await post(event({ type: 'message_delta', taskId: null, text: answer }));
    await post(event({ type: 'message_done', taskId: null, text: answer }));
    await post(event({ type: 'usage', taskId: null, promptTokens: 900, completionTokens: 12, totalPromptTokens: 900, totalCompletionTokens: 12, estimated: true, cachedTokens: 0, totalCachedTokens: 0, cost: null, totalCost: null, totalCalls: 0, contextTokens: 0, contextWindow: 0 }));
    await post(event({ type: 'turn_ended', taskId: null, stopReason: 'end_turn', text: answer, error: '' }));
    await post(busySessions(false));
    await page.locator('.msg.assistant strong', { hasText: 'entry point' }).waitFor();
    assert.deepEqual((await page.locator('.msg.assistant').allTextContents()).map((t) => t.trim()), ['It is the entry point.'], 'only the new answer, never spliced');
    await page.waitForFunction(() => document.querySelector('.status-line .tokens')?.textContent?.includes('~') ?? false, undefined, { timeout: 5000 });
    assert.equal(await page.locator('.status-line .tokens').textContent(), '~900 / ~12 tokens (estimated)');
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  it("lists the session's MCP servers, where they run, and news of one going down", async () => {
    const { page, inbox, post, errors } = await openAsVsCodeWebview(browser, server.url);
    await inbox.next('ready');
    await post({ ...init, sessions: (sessionsMsg as Extract<HostMessage, { type: 'sessions' }>).sessions, activeSessionId: SID });
    const mcp = (name: string, state: 'ready' | 'restarting' | 'failed', where: 'sandbox' | 'host', tools: string[], reason = '', restarts = 0): HostMessage =>
      event({ type: 'mcp_server', taskId: null, name, state, where, tools, reason, restarts });
    // What the host posts at session start: the host-side warning, then each server's state.
    await post(event({ type: 'notice', taskId: null, level: 'warning', text: "MCP server 'clock' runs on the host, outside the sandbox" }));
    await post(mcp('git', 'ready', 'sandbox', ['git_status', 'git_log']));
    await post(mcp('clock', 'ready', 'host', ['now']));
    await post(mcp('broken', 'failed', 'sandbox', [], "'nope' is not installed in the sandbox image pygent-test\nserver stderr:\nsh: nope: not found"));
    const panel = page.locator('details.panel.mcp');
    await panel.waitFor();
    assert.equal(await panel.locator('summary .count').textContent(), '2/3 ready · 1 failing');
    assert.equal(await panel.getAttribute('open'), '', 'a failing server opens the section');
    const list = page.getByRole('list', { name: 'MCP servers' });
    assert.deepEqual(await list.locator('.row-title').allTextContents(), ['git', 'clock', 'broken']);
    assert.deepEqual(await list.locator('.badge').allTextContents(), ['ready', 'ready', 'failed']);
    assert.equal(await list.locator('li[data-server="git"] .stats').textContent(), '2 tools');
    assert.equal(await list.locator('li[data-server="clock"] .row-meta').textContent(), 'on the host, outside the sandbox');
    assert.equal(await list.locator('li[data-server="git"] .row-meta').textContent(), 'in the sandbox');
    assert.match((await list.locator('li[data-server="broken"] pre.mcp-reason').textContent()) ?? '', /not installed in the sandbox image[\s\S]*nope: not found/);
    await page.locator('.notice.level-warning', { hasText: 'runs on the host, outside the sandbox' }).waitFor();
    await page.screenshot({ path: artifact('chat-mcp-servers.png') });
    // Later: a server exits and is restarted; the list and the conversation say so.
    await post(mcp('git', 'restarting', 'sandbox', ['git_status', 'git_log'], 'the server exited: killed', 1));
    await list.locator('li[data-server="git"] .badge', { hasText: 'restarting' }).waitFor();
    await page.locator('.notice', { hasText: 'MCP server git exited; restarting: the server exited: killed' }).waitFor();
    await post(mcp('git', 'ready', 'sandbox', ['git_status', 'git_log', 'git_diff'], '', 1));
    await list.locator('li[data-server="git"] .stats', { hasText: '3 tools' }).waitFor();
    assert.equal(await panel.locator('summary .count').textContent(), '2/3 ready · 1 failing');
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  it('renders hostile text as text and drops malformed host messages', async () => {
    const { page, inbox, post, errors } = await openAsVsCodeWebview(browser, server.url);
    await inbox.next('ready');
    await post({ ...init, sessions: (sessionsMsg as Extract<HostMessage, { type: 'sessions' }>).sessions, activeSessionId: SID });
    const junk: Record<string, unknown>[] = [{ type: 'nonsense' }, { type: 'event', sessionId: 7, event: {} }, { type: 'approval', approval: { id: 'x' } }, { type: 'toast', level: 'fatal', text: 1 }];
    for (const message of junk) await post(message);
    await post(event({ type: 'turn_started', images: [], taskId: null, prompt: '<img src=x onerror="window.pwned=1">' }));
    await post(event({ type: 'message_delta', taskId: null, text: 'Look: <script>window.pwned=2</script> <img src="http://example.com/x.png"> ![i](http://example.com/i.png) [js](javascript:alert(1)) [ok](https://example.com)' }));
    await post(event({ type: 'tool_call_proposed', locations: [], oldText: null, taskId: null, callId: 'h1', tool: 'bash', arguments: { cmd: '<b>bold</b>' }, preview: '<b>bold</b>' }));
    await post(event({ type: 'tool_output', taskId: null, callId: 'h1', text: '<iframe src="https://example.com"></iframe>', stream: 'stdout' }));
    await page.locator('.msg.assistant').waitFor();
    await page.locator('.output-text', { hasText: '<iframe' }).waitFor();
    assert.equal(await page.locator('#app img, #app script, #app iframe, #app b').count(), 0, 'no element from model or command text');
    assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
    const links = await page.locator('.msg.assistant a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    // The image became a plain link (images are off: nothing is fetched); javascript: is gone.
    assert.deepEqual(links, ['http://example.com/i.png', 'https://example.com'], 'only http(s) links survive');
    assert.match((await page.locator('.msg.user').textContent()) ?? '', /<img src=x/);
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});
