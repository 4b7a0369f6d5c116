// Drives Debian's headless Chromium through playwright-core for the debug console's browser tests.
//
// Protocol (one JSON object per line), like tests/e2e/js/driver.mjs:
//   stdin  {"id": 1, "cmd": "open", "url": "..."}   a command
//   stdout {"id": 1, "ok": true, "result": ...}     its reply (or "ok": false, "error": "...")
//   stdout {"report": "console", ...}               what the page logged, and page errors
// Commands: open {url}, wait {selector, text?, ms?} (until visible), texts {selector}, count {selector},
// fill {selector, value}, click {selector}, check {selector, on}, screenshot {path, fullPage?}, content, quit.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--headless',
];

const browser = await chromium.launch({ executablePath: EXECUTABLE, args: ARGS, headless: true });
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
page.on('console', (msg) => write({ report: 'console', level: msg.type(), text: msg.text() }));
page.on('pageerror', (error) => write({ report: 'pageerror', text: String(error) }));

function write(obj) {
  process.stdout.write(JSON.stringify({ ...obj, t: Date.now() }) + '\n');
}

function locate(selector, text) {
  const locator = page.locator(selector);
  return text === undefined || text === null ? locator : locator.filter({ hasText: text });
}

const commands = {
  async open({ url }) {
    const response = await page.goto(url, { waitUntil: 'domcontentloaded' });
    return { status: response ? response.status() : null };
  },
  async wait({ selector, text, ms }) {
    await locate(selector, text).first().waitFor({ state: 'visible', timeout: ms ?? 5000 });
    return true;
  },
  async texts({ selector }) {
    return page.locator(selector).allTextContents();
  },
  async count({ selector, text }) {
    return locate(selector, text).count();
  },
  async fill({ selector, value }) {
    await page.locator(selector).fill(value);
    return true;
  },
  async click({ selector }) {
    await page.locator(selector).click();
    return true;
  },
  async check({ selector, on }) {
    await page.locator(selector).setChecked(Boolean(on));
    return true;
  },
  async screenshot({ path, fullPage }) {
    await page.screenshot({ path, fullPage: Boolean(fullPage) });
    return path;
  },
  async content() {
    return page.content();
  },
  async quit() {
    await browser.close();
    setImmediate(() => process.exit(0));
    return true;
  },
};

// One command at a time, in order: a wait must not race the navigation before it.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const msg = JSON.parse(line);
  queue = queue.then(async () => {
    try {
      const handler = commands[msg.cmd];
      if (!handler) throw new Error(`unknown command ${msg.cmd}`);
      write({ id: msg.id, ok: true, result: await handler(msg) });
    } catch (error) {
      write({ id: msg.id, ok: false, error: String(error && error.message ? error.message : error) });
    }
  });
});
lines.on('close', () => {
  queue.then(() => browser.close()).catch(() => {}).finally(() => process.exit(0));
});
write({ report: 'ready' });
