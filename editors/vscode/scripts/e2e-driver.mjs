// Drives code-server's workbench in headless Chromium through the Pygent extension:
// set the API key, open the chat, send a prompt, approve a command and a file write
// (opening its diff), see the streamed reply and the file the agent wrote, apply it,
// then cancel a running turn. Screenshots go to --artifacts.
// Usage: node scripts/e2e-driver.mjs --url URL --workspace DIR --model URL --artifacts DIR
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: { url: { type: 'string' }, workspace: { type: 'string' }, model: { type: 'string' }, artifacts: { type: 'string' } },
});
for (const key of ['url', 'workspace', 'model', 'artifacts']) if (!args[key]) throw new Error(`--${key} is required`);

const TIMEOUT = 30_000;
const log = (message) => console.error(`e2e: ${message}`);

/** Appends replies to the scripted model's queue. */
async function script(items) {
  const res = await fetch(`${args.model}/_control/script`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(items) });
  assert.ok(res.ok, `scripting the model: HTTP ${res.status}`);
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
  await page.keyboard.press('Control+.');
  const menu = page.locator('.action-widget');
  await menu.getByText('Ask Pygent to fix').waitFor();
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
  log('all steps passed');
} catch (err) {
  await shot('failure').catch(() => undefined);
  throw err;
} finally {
  await browser.close();
}
