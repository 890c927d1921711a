// A remote control for headless Chromium on code-server's workbench (and on any other
// page, such as the session host's chat page), for tests/host/test_attach_everywhere.py:
// the test drives one session from several front ends at once and checks each between
// steps, so it sends one JSON command per line on stdin ({id, op, page, ...}) and reads
// one JSON answer per line on stdout ({id, ok, result} or {id, ok: false, error}).
//
// A target is a page by name (`page`, default "editor"); `frame: true` targets the Pygent
// chat webview inside the workbench. A locator is a list of steps, each {css, text} or
// {role, name, exact}, applied in turn (the first match of the last one is used).
// Usage: node e2e-attach-driver.mjs PLAYWRIGHT_CORE_DIR CHROMIUM
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const [playwrightDir, chromiumPath] = process.argv.slice(2);
const require = createRequire(join(playwrightDir, 'package.json'));
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-dev-shm-usage'],
});
const pages = new Map(); // name -> { context, page }
const consoleLines = [];

async function openPage(name) {
  // A context per page: the editor and the web page share no storage, as two windows.
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('console', (msg) => consoleLines.push(`[${name}] ${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`[${name}] pageerror: ${err.message}`));
  pages.set(name, { context, page });
  return page;
}

function pageOf(cmd) {
  const entry = pages.get(cmd.page ?? 'editor');
  if (!entry) throw new Error(`no page ${cmd.page ?? 'editor'}`);
  return entry.page;
}

function root(cmd) {
  const page = pageOf(cmd);
  return cmd.frame ? page.frameLocator('iframe.webview.ready').frameLocator('#active-frame') : page;
}

function chain(cmd) {
  let at = root(cmd);
  for (const step of cmd.locator ?? []) {
    at = step.role ? at.getByRole(step.role, { name: step.name, exact: step.exact ?? false })
      : at.locator(step.css, step.text ? { hasText: step.text } : undefined);
  }
  return at;
}

const locate = (cmd) => chain(cmd).first();

const ops = {
  async goto(cmd) {
    const page = pages.has(cmd.page ?? 'editor') ? pageOf(cmd) : await openPage(cmd.page ?? 'editor');
    const response = await page.goto(cmd.url, { waitUntil: 'load' });
    return { status: response ? response.status() : null };
  },
  async command(cmd) {
    // A command from the palette, by its title.
    const page = pageOf(cmd);
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor();
    await input.fill(`>${cmd.title}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: cmd.title }).first().waitFor();
    await input.press('Enter');
    return null;
  },
  async wait(cmd) {
    await locate(cmd).waitFor({ state: cmd.state ?? 'visible', timeout: cmd.timeout ?? 30_000 });
    return null;
  },
  async click(cmd) {
    await locate(cmd).click({ timeout: cmd.timeout ?? 30_000 });
    return null;
  },
  async fill(cmd) {
    await locate(cmd).fill(cmd.text, { timeout: cmd.timeout ?? 30_000 });
    return null;
  },
  async press(cmd) {
    await locate(cmd).press(cmd.key, { timeout: cmd.timeout ?? 30_000 });
    return null;
  },
  async text(cmd) {
    return locate(cmd).textContent({ timeout: cmd.timeout ?? 30_000 });
  },
  async count(cmd) {
    return chain(cmd).count();
  },
  async screenshot(cmd) {
    await pageOf(cmd).screenshot({ path: cmd.path });
    return cmd.path;
  },
  async closePage(cmd) {
    const name = cmd.page ?? 'editor';
    const entry = pages.get(name);
    if (entry) await entry.context.close();
    pages.delete(name);
    return null;
  },
  async console() {
    return consoleLines.splice(0);
  },
  async quit() {
    await browser.close();
    setTimeout(() => process.exit(0), 0);
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ id: 0, ok: true, result: 'ready' }) + '\n');
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad command: ${err.message}` }) + '\n');
    continue;
  }
  try {
    const op = ops[cmd.op];
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    const result = await op(cmd);
    process.stdout.write(JSON.stringify({ id: cmd.id, ok: true, result: result ?? null }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: cmd.id, ok: false, error: String(err && err.stack ? err.stack : err) }) + '\n');
  }
}
await browser.close();
