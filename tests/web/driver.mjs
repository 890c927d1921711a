// A remote control for headless Chromium, for the `pygent ui` tests: one JSON command per
// line on stdin ({id, op, ...}), one JSON answer per line on stdout ({id, ok, result} or
// {id, ok: false, error}). Python drives the page step by step and checks the server and
// the scripted model in between. Usage: node driver.mjs PLAYWRIGHT_CORE_DIR CHROMIUM
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
const context = await browser.newContext({ viewport: { width: 1000, height: 760 }, colorScheme: 'dark' });
const pages = new Map(); // name -> page
const consoleLines = [];

async function openPage(name) {
  const page = await context.newPage();
  page.on('console', (msg) => consoleLines.push(`[${name}] ${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`[${name}] pageerror: ${err.message}`));
  pages.set(name, page);
  return page;
}

function pageOf(cmd) {
  const page = pages.get(cmd.page ?? 'main');
  if (!page) throw new Error(`no page ${cmd.page ?? 'main'}`);
  return page;
}

const ops = {
  async open(cmd) {
    const page = pages.get(cmd.page ?? 'main') ?? (await openPage(cmd.page ?? 'main'));
    const response = await page.goto(cmd.url, { waitUntil: 'load' });
    return { status: response ? response.status() : null, text: response ? await response.text() : '' };
  },
  async reload(cmd) {
    const response = await pageOf(cmd).reload({ waitUntil: 'load' });
    return { status: response ? response.status() : null };
  },
  async closePage(cmd) {
    await pageOf(cmd).close();
    pages.delete(cmd.page ?? 'main');
    return null;
  },
  async wait(cmd) {
    await pageOf(cmd).locator(cmd.selector).first().waitFor({ state: cmd.state ?? 'visible', timeout: cmd.timeout ?? 15000 });
    return null;
  },
  async waitText(cmd) {
    // Until the first element matching `selector` contains `text`.
    const page = pageOf(cmd);
    await page.waitForFunction(
      ([sel, text]) => [...document.querySelectorAll(sel)].some((el) => el.textContent.includes(text)),
      [cmd.selector, cmd.text],
      { timeout: cmd.timeout ?? 15000, polling: 50 },
    );
    return null;
  },
  async click(cmd) {
    await pageOf(cmd).locator(cmd.selector).first().click({ timeout: cmd.timeout ?? 10000 });
    return null;
  },
  async fill(cmd) {
    await pageOf(cmd).locator(cmd.selector).first().fill(cmd.text, { timeout: cmd.timeout ?? 10000 });
    return null;
  },
  async press(cmd) {
    await pageOf(cmd).locator(cmd.selector).first().press(cmd.key, { timeout: cmd.timeout ?? 10000 });
    return null;
  },
  async select(cmd) {
    await pageOf(cmd).locator(cmd.selector).first().selectOption(cmd.value, { timeout: cmd.timeout ?? 10000 });
    return null;
  },
  async texts(cmd) {
    return pageOf(cmd).locator(cmd.selector).allTextContents();
  },
  async count(cmd) {
    return pageOf(cmd).locator(cmd.selector).count();
  },
  async attr(cmd) {
    return pageOf(cmd).locator(cmd.selector).first().getAttribute(cmd.name);
  },
  async evaluate(cmd) {
    // A JS expression, e.g. "document.title" (run through the DevTools protocol, so the
    // page's CSP, which forbids eval, does not apply to it).
    return pageOf(cmd).evaluate(cmd.expression);
  },
  async screenshot(cmd) {
    await pageOf(cmd).screenshot({ path: cmd.path, fullPage: cmd.fullPage ?? false });
    return cmd.path;
  },
  async console() {
    return consoleLines.splice(0);
  },
  async quit() {
    await browser.close();
    setImmediate(() => process.exit(0));
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
