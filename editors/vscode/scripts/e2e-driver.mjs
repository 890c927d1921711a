// Drives code-server's workbench in headless Chromium through the Pygent extension:
// set the API key, open the chat, send a prompt, approve a command and a file write
// (opening its diff), see the streamed reply and the file the agent wrote, apply it,
// then cancel a running turn. Then, in a copy-on-write Docker session (settings changed
// as a user would: the settings file), an approved `rm -rf *` is undone from the prompt's
// Rewind control, redone, and forked; and with a budget of 2 model calls and
// follow-along on (the workspace's .vscode/settings.json) a turn reveals the file the
// agent edits and stops with `budget`. Screenshots go to --artifacts.
// Usage: node scripts/e2e-driver.mjs --url URL --workspace DIR --model URL --artifacts DIR
//        [--user-settings FILE] (default: the user/User/settings.json e2e-code-server.sh
//        writes next to the workspace)
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: { url: { type: 'string' }, workspace: { type: 'string' }, model: { type: 'string' }, artifacts: { type: 'string' }, 'user-settings': { type: 'string' } },
});
for (const key of ['url', 'workspace', 'model', 'artifacts']) if (!args[key]) throw new Error(`--${key} is required`);
const userSettings = args['user-settings'] ?? join(dirname(args.workspace), 'user', 'User', 'settings.json');
if (!existsSync(userSettings)) throw new Error(`no user settings at ${userSettings} (pass --user-settings)`);
// The sandbox image of the Docker part (the test image .ci/docker-setup.sh builds).
const IMAGE = process.env.PYGENT_IMAGE || 'pygent-test:bookworm';

const TIMEOUT = 30_000;
const log = (message) => console.error(`e2e: ${message}`);

/** Appends replies to the scripted model's queue. */
async function script(items) {
  const res = await fetch(`${args.model}/_control/script`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(items) });
  assert.ok(res.ok, `scripting the model: HTTP ${res.status}`);
}

/** Drops replies an earlier step left unused (the cancelled turn's). */
async function resetScript() {
  const res = await fetch(`${args.model}/_control/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.ok(res.ok, `resetting the model's script: HTTP ${res.status}`);
}

async function waitForFile(file, ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!existsSync(file)) {
    if (Date.now() > end) throw new Error(`${file} never appeared`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.setDefaultTimeout(TIMEOUT);
const shot = (name) => page.screenshot({ path: join(args.artifacts, `e2e-${name}.png`) });

/**
 * Changes settings as a user does: opens the settings file with `command` (e.g.
 * "Preferences: Open User Settings (JSON)"), replaces its text, saves. (Written by VS Code
 * itself, the change applies at once: no file watcher involved, and on a loaded machine
 * the watcher may have no inotify instance left.)
 */
async function editSettings(command, file, changes) {
  const current = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  await runCommand(command);
  // VS Code 1.139 opens settings files in a floating editor, focused.
  await page.getByText('settings.json', { exact: true }).first().waitFor();
  await page.locator('.monaco-editor.focused').waitFor();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  // One line: typed text gets no auto-indent or auto-closed quotes to fight with.
  await page.keyboard.insertText(JSON.stringify({ ...current, ...changes }));
  await page.keyboard.press('Control+S');
  const end = Date.now() + TIMEOUT;
  for (;;) {
    const saved = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8').trim() || '{}') : {};
    if (Object.entries(changes).every(([k, v]) => JSON.stringify(saved[k]) === JSON.stringify(v))) break;
    if (Date.now() > end) throw new Error(`${file} was not saved with ${JSON.stringify(changes)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // The floating ("modal") editor closes with the close button of its header.
  const modal = page.locator('.modal-editor-part');
  if (await modal.isVisible()) {
    await modal.locator('.modal-editor-header .action-label.codicon-close').click();
    // A new workspace settings file can still count as unsaved (its first save races
    // the file's creation): what is on disk is already what we typed, so save again.
    const save = page.locator('.monaco-dialog-box').getByRole('button', { name: 'Save', exact: true });
    if (await save.waitFor({ timeout: 2000 }).then(() => true, () => false)) await save.click();
    await modal.waitFor({ state: 'hidden' });
  } else {
    await runCommand('View: Close Editor');
  }
}

/** Runs a command from the palette by its title. */
async function runCommand(title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor();
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await input.press('Enter');
}

try {
  log('opening the workbench');
  await page.goto(args.url);
  await page.locator('.monaco-workbench').waitFor();
  await page.locator('.statusbar-item', { hasText: 'Pygent' }).first().waitFor({ timeout: 60_000 });

  log('setting the API key through SecretStorage');
  await runCommand('Pygent: Set API Key');
  const keyBox = page.locator('.quick-input-widget input[type="password"]');
  await keyBox.waitFor();
  await keyBox.fill('sk-e2e-test');
  await keyBox.press('Enter');
  await page.locator('.notifications-toasts', { hasText: 'API key saved' }).waitFor();

  log('opening the chat');
  await runCommand('Pygent: Open Chat');
  const chat = page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
  await chat.locator('.status-line .state', { hasText: 'Ready' }).waitFor({ timeout: 60_000 });
  assert.equal(await chat.locator('.banner:not([hidden])').count(), 0, 'no problem banner once the key is set');
  await shot('1-chat-ready');

  log('prompting: a command, then a file write, then the answer');
  await script([
    { text: 'Let me check the project first.', tool_call: { name: 'bash', arguments: { cmd: 'ls && echo checked' } } },
    { tool_call: { name: 'write_file', arguments: { path: 'hello.py', content: 'print("hello from pygent")\n' } } },
    { text: 'I wrote **hello.py**; run it with `python hello.py`.' },
  ]);
  const prompt = chat.getByRole('textbox', { name: 'Prompt' });
  await prompt.fill('Write hello.py that greets');
  await prompt.press('Enter');

  const commandCard = chat.getByRole('group', { name: 'Run this command?' });
  await commandCard.waitFor();
  assert.match(await commandCard.textContent(), /ls && echo checked/);
  await shot('2-command-approval');
  await commandCard.getByRole('button', { name: 'Allow', exact: true }).click();

  const writeCard = chat.getByRole('group', { name: 'Let write_file change hello.py?' });
  await writeCard.waitFor();
  await writeCard.getByRole('button', { name: 'Open in diff editor' }).click();
  await page.locator('.tab', { hasText: 'hello.py: proposed by Pygent' }).waitFor();
  await shot('3-write-diff-editor');
  await writeCard.getByRole('button', { name: 'Allow', exact: true }).click();

  log('waiting for the streamed reply and the change set');
  await chat.locator('.msg.assistant strong', { hasText: 'hello.py' }).waitFor();
  await chat.locator('.card.tool .output-text', { hasText: 'checked' }).waitFor();
  const changes = chat.getByRole('list', { name: 'Changed files' });
  await changes.getByRole('button', { name: 'hello.py', exact: true }).waitFor();
  assert.equal(existsSync(join(args.workspace, 'hello.py')), false, 'the agent wrote its sandbox copy, not the folder');
  await shot('4-reply-and-changes');

  await changes.getByRole('button', { name: 'hello.py', exact: true }).click();
  await page.locator('.tab', { hasText: 'Pygent sandbox' }).waitFor();
  log('applying the change');
  await chat.getByRole('button', { name: 'Apply all' }).click();
  await waitForFile(join(args.workspace, 'hello.py'));
  for (let i = 0; i < 50 && readFileSync(join(args.workspace, 'hello.py'), 'utf8') === ''; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(readFileSync(join(args.workspace, 'hello.py'), 'utf8'), 'print("hello from pygent")\n');
  await chat.getByRole('list', { name: 'Changed files' }).waitFor({ state: 'hidden' });
  // The file the agent wrote, in the explorer and opened from there like any other.
  await runCommand('View: Close All Editors');
  await runCommand('View: Show Explorer');
  const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'hello.py' });
  await row.waitFor();
  await row.click();
  await page.getByRole('tab', { name: /^hello\.py(,|$)/ }).waitFor();
  await page.locator('.editor-instance .view-lines', { hasText: 'hello from pygent' }).first().waitFor();
  assert.doesNotMatch(await page.locator('.breadcrumbs-control').first().textContent(), /pygent_/, 'the workspace file, not the sandbox copy');
  await shot('5-applied');

  log('problems from the sandbox in the Problems panel, and the lightbulb actions');
  await runCommand('Pygent: Open Chat');
  await script([
    { tool_call: { name: 'bash', arguments: { cmd: 'echo "hello.py:1:1: F821 Undefined name nope"  # ruff check' } } },
    { text: 'ruff found one problem.' },
  ]);
  await prompt.fill('Lint hello.py');
  await prompt.press('Enter');
  const lintCard = chat.getByRole('group', { name: 'Run this command?' });
  await lintCard.waitFor();
  await lintCard.getByRole('button', { name: 'Allow', exact: true }).click();
  await chat.locator('.msg.assistant', { hasText: 'ruff found one problem.' }).waitFor();
  await runCommand('Problems: Focus on Problems View');
  const problem = page.locator('.markers-panel .monaco-list-row', { hasText: 'Undefined name nope' });
  await problem.first().waitFor({ timeout: 30_000 });
  assert.match(await page.locator('.markers-panel').textContent(), /pygent:ruff/);
  await shot('5b-problems-panel');
  await problem.first().dblclick(); // opens hello.py at the problem
  await page.getByRole('tab', { name: /^hello\.py(,|$)/ }).waitFor();
  // The lightbulb's menu (Ctrl+. in the editor, on the problem's line).
  await page.locator('.editor-instance .view-lines', { hasText: 'hello from pygent' }).first().click();
  await page.keyboard.press('Control+Home'); // line 1, where the problem is
  const menu = page.locator('.action-widget');
  // On a loaded machine the first Ctrl+. can come before the editor has the problem's
  // code actions (VS Code then shows nothing): ask again, as a user would.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('Control+.');
    if (await menu.getByText('Ask Pygent to fix').waitFor({ timeout: 10_000 }).then(() => true, () => false)) break;
    if (attempt === 3) throw new Error('the lightbulb menu never offered "Ask Pygent to fix"');
    await page.keyboard.press('Escape');
  }
  await menu.getByText('Explain with Pygent').waitFor();
  await shot('5c-lightbulb');
  await page.keyboard.press('Escape');

  log('cancelling a running turn');
  await runCommand('Pygent: Open Chat');
  await script([{ tool_call: { name: 'bash', arguments: { cmd: 'sleep 60' } } }, { text: 'never sent' }]);
  await prompt.fill('Wait a minute');
  await prompt.press('Enter');
  const sleepCard = chat.getByRole('group', { name: 'Run this command?' });
  await sleepCard.waitFor();
  await sleepCard.getByRole('button', { name: 'Allow', exact: true }).click();
  await chat.locator('.card.tool.status-running').waitFor();
  const stopAt = Date.now();
  await chat.getByRole('button', { name: 'Stop the running turn' }).click();
  await chat.locator('.turn-end', { hasText: 'Cancelled' }).waitFor();
  assert.ok(Date.now() - stopAt < 15_000, 'the turn stops promptly');
  await chat.getByRole('button', { name: 'Send prompt' }).waitFor();
  const status = await page.locator('.statusbar-item', { hasText: 'Pygent' }).first().textContent();
  assert.match(status, /Pygent: Local · test-model/);
  // The server ends its work-done progress too (the status bar spinner goes away).
  await page.locator('.statusbar-item', { hasText: 'Wait a minute' }).waitFor({ state: 'detached', timeout: 10_000 });
  await shot('6-cancelled');

  // --- rewind, redo and fork of an approved `rm -rf *` (copy-on-write, Docker) -------------
  log('switching new sessions to a copy-on-write Docker sandbox that asks before every command');
  await editSettings('Preferences: Open User Settings (JSON)', userSettings, {
    'pygent.runtime': 'docker',
    'pygent.syncMode': 'cow',
    'pygent.approvalMode': 'confirm',
    'pygent.image': IMAGE,
  });
  await runCommand('Pygent: Open Chat');
  const newSession = chat.getByRole('button', { name: 'New session' });
  await newSession.click();
  await page.locator('.statusbar-item', { hasText: 'Pygent: Docker' }).first().waitFor({ timeout: 120_000 });
  const projectFiles = () => ['README.md', 'hello.py'].map((f) => readFileSync(join(args.workspace, f), 'utf8'));
  const before = projectFiles();
  await resetScript();
  await script([
    { tool_call: { name: 'bash', arguments: { cmd: 'cd /workspace && rm -rf * && ls -A' } } },
    { text: 'Everything is gone.' },
  ]);
  await prompt.fill('Remove every file');
  await prompt.press('Enter');
  const rmCard = chat.getByRole('group', { name: 'Run this command?' });
  await rmCard.waitFor({ timeout: 120_000 }); // the first Docker sandbox may take a while
  assert.match(await rmCard.textContent(), /rm -rf \*/);
  await shot('7a-rm-rf-approval');
  await rmCard.getByRole('button', { name: 'Allow', exact: true }).click();
  await chat.locator('.msg.assistant', { hasText: 'Everything is gone.' }).waitFor({ timeout: 60_000 });
  const changeRows = chat.getByRole('list', { name: 'Changed files' });
  await changeRows.locator('li.change-deleted', { hasText: 'README.md' }).waitFor();
  await changeRows.locator('li.change-deleted', { hasText: 'hello.py' }).waitFor();
  assert.deepEqual(projectFiles(), before, 'copy-on-write: the folder on disk is untouched');
  await shot('7b-rm-rf-done');

  log('rewinding the rm -rf from its prompt: the plan first');
  const rmTurn = chat.locator('.user-turn', { hasText: 'Remove every file' });
  await rmTurn.locator('.rewind-button').click();
  const rewindBox = chat.getByRole('region', { name: 'Rewind' });
  await rewindBox.locator('.rewind-file').first().waitFor();
  assert.deepEqual((await rewindBox.locator('.rewind-file code').allTextContents()).sort(), ['README.md', 'hello.py']);
  assert.match(await rewindBox.locator('.rewind-title').textContent(), /Rewind to before “Remove every file”/);
  await shot('8a-rewind-plan');
  await rewindBox.getByRole('button', { name: 'Both' }).click();
  await rewindBox.locator('.rewind-done', { hasText: 'Rewound to before turn' }).waitFor({ timeout: 60_000 });
  assert.match(await rewindBox.locator('.rewind-done').textContent(), /2 file\(s\) restored/);
  await rmTurn.waitFor({ state: 'detached' }); // the conversation is cut too
  await changeRows.waitFor({ state: 'hidden' }); // the sandbox has every file again
  assert.deepEqual(projectFiles(), before);
  await shot('8b-rewound');

  log('redo: the rm -rf and its prompt come back');
  await rewindBox.getByRole('button', { name: 'Redo' }).click();
  await rewindBox.locator('.rewind-done', { hasText: 'Redone' }).waitFor({ timeout: 60_000 });
  await rmTurn.waitFor();
  await changeRows.locator('li.change-deleted', { hasText: 'README.md' }).waitFor();
  await shot('8c-redone');
  await rewindBox.getByRole('button', { name: 'Close' }).click();

  log('fork before the rm -rf: a new session whose sandbox still has the files');
  await rmTurn.locator('.rewind-button').click();
  await rewindBox.locator('.rewind-file').first().waitFor();
  await rewindBox.getByRole('button', { name: 'Fork' }).click();
  await chat.locator('.notice', { hasText: 'Forked before “Remove every file”' }).waitFor({ timeout: 60_000 });
  assert.equal(await chat.locator('.user-turn', { hasText: 'Remove every file' }).count(), 0, 'the fork starts before the prompt');
  await script([{ tool_call: { name: 'bash', arguments: { cmd: 'ls /workspace' } } }, { text: 'Both files are here.' }]);
  await prompt.fill('Which files are there?');
  await prompt.press('Enter');
  const lsCard = chat.getByRole('group', { name: 'Run this command?' });
  await lsCard.waitFor({ timeout: 60_000 });
  await lsCard.getByRole('button', { name: 'Allow', exact: true }).click();
  await chat.locator('.msg.assistant', { hasText: 'Both files are here.' }).waitFor({ timeout: 60_000 });
  const listing = await chat.locator('.card.tool .output-text').last().textContent();
  assert.match(listing, /README\.md/);
  assert.match(listing, /hello\.py/);
  await shot('8d-forked');

  // --- budgets and follow-along, from the workspace's settings -----------------------------
  log('a budget of 2 model calls and follow-along, in .vscode/settings.json');
  await editSettings('Preferences: Open Workspace Settings (JSON)', join(args.workspace, '.vscode', 'settings.json'), {
    'pygent.budget.calls': 2,
    'pygent.followAlong': true,
  });
  await runCommand('Pygent: Open Chat');
  await newSession.click(); // budgets apply to sessions made after the change
  await chat.locator('.user-turn').first().waitFor({ state: 'detached' });
  await script([
    { tool_call: { name: 'edit_file', arguments: { path: 'README.md', old_text: '# Demo project', new_text: '# Demo project, edited' } } },
    { tool_call: { name: 'bash', arguments: { cmd: 'echo second call' } } },
    { text: 'never sent: the budget stops the turn before this call' },
  ]);
  await prompt.fill('Edit the readme, then check');
  await prompt.press('Enter');
  // Follow-along: the editor shows the file the agent is about to edit.
  await page.getByRole('tab', { name: /^README\.md(,|$)/ }).waitFor({ timeout: 60_000 });
  await shot('9a-follow-along');
  // A file edit in the sandbox needs no approval (only the command does, in confirm mode).
  const echoCard = chat.getByRole('group', { name: 'Run this command?' });
  await echoCard.waitFor({ timeout: 60_000 });
  await echoCard.getByRole('button', { name: 'Allow', exact: true }).click();
  const budgetEnd = chat.locator('.turn-end.reason-budget');
  await budgetEnd.waitFor({ timeout: 60_000 });
  assert.match(await budgetEnd.textContent(), /Stopped: budget spent/);
  // The limit is named once, just above (the stop line does not repeat it).
  await chat.locator('.notice.level-error', { hasText: "budget: the session's limit of 2 model calls is reached" }).waitFor();
  assert.equal(await chat.locator('.msg.assistant', { hasText: 'never sent' }).count(), 0);
  await shot('9b-budget');
  log('all steps passed');
} catch (err) {
  await shot('failure').catch(() => undefined);
  // PYGENT_E2E_DUMP=FILE: the workbench's HTML at the failure, to find a selector.
  if (process.env.PYGENT_E2E_DUMP) (await import('node:fs')).writeFileSync(process.env.PYGENT_E2E_DUMP, await page.content());
  throw err;
} finally {
  await browser.close();
}
