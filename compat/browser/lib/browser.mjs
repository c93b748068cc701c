// Headless Chromium (Debian's package, /usr/bin/chromium or $CHROMIUM) driven
// by playwright-core, for the browser tests in compat/browser/.
//
// playwright-core never downloads a browser: it drives the Chromium the
// machine has (.ci/run installs it). Each chat user gets their own browser
// context (own cookies and localStorage, as two people on two machines) and
// one page on a frontend's own origin, http://127.0.0.1:<port>/. Everything
// the page logs as an error, every uncaught exception and every failed
// request is recorded, and `summary()` prints it when a test fails.
//
// Every wait here is bounded and says what it waited for when it times out.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { compatDir } from '../../lib/server.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// --no-sandbox: CI runs as root, where Chromium refuses its sandbox. The
// background-networking flags stop Chromium from calling home: this machine
// has no network but loopback, and those connections would only fail.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A DOM change the page makes in answer to something local (a click, a keystroke, a live event). */
export const UI_WAIT_MS = 10_000;
/** A killed frontend noticed, the client's back-off and its reconnect, the catch-up. */
export const RECOVER_WAIT_MS = 30_000;
const LAUNCH_TIMEOUT_MS = 30_000;
const MAX_RECORDED_LOGS = 200;

/** target/browser-artifacts/ at the repo root: screenshots and figures.json. */
export const ARTIFACTS_DIR = path.resolve(process.env.BROWSER_ARTIFACTS || path.join(compatDir, '..', 'target', 'browser-artifacts'));

let artifactsAnnounced = false;
function artifactsDir() {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  if (!artifactsAnnounced) {
    artifactsAnnounced = true;
    process.stdout.write(`browser artefacts (screenshots, figures.json): ${ARTIFACTS_DIR}\n`);
  }
  return ARTIFACTS_DIR;
}

/** Merge `figures` into target/browser-artifacts/figures.json (one file for the whole run). */
export function writeFigures(figures) {
  const file = path.join(artifactsDir(), 'figures.json');
  let old = {};
  try {
    old = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    old = {};
  }
  writeFileSync(file, `${JSON.stringify({ ...old, ...figures, updatedAt: new Date().toISOString() }, null, 2)}\n`);
  return file;
}


/** One Chromium for a test file; a context per user. */
export class Browser {
  constructor() {
    this.browser = null;
    this.users = [];
  }

  async launch() {
    this.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: LAUNCH_TIMEOUT_MS });
    return this;
  }

  /** A new browser context (a person on their own machine) with one page on frontend `port`. */
  async user(name, port) {
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(UI_WAIT_MS);
    const u = new BrowserUser(name, context, port);
    await u.newPage();
    this.users.push(u);
    return u;
  }

  summary() {
    return this.users.map((u) => u.summary()).join('\n');
  }

  async close() {
    for (const u of this.users) await u.close();
    if (this.browser) await this.browser.close().catch(() => {});
    this.browser = null;
  }
}

/** A person: a browser context and its page on one frontend's origin. */
export class BrowserUser {
  constructor(name, context, port) {
    this.name = name;
    this.context = context;
    this.port = port;
    this.page = null;
    this.logs = []; // console errors/warnings, page errors, failed requests, in order
    this.closed = false;
  }

  get url() {
    return `http://127.0.0.1:${this.port}/`;
  }

  record(kind, text) {
    if (this.logs.length < MAX_RECORDED_LOGS) this.logs.push(`${new Date().toISOString()} ${kind}: ${text}`);
  }

  /** Errors the page itself reported (console.error, uncaught exceptions), not failed requests. */
  get errors() {
    return this.logs.filter((l) => / (console\.error|pageerror): /.test(l));
  }

  async newPage() {
    if (this.page && !this.page.isClosed()) await this.page.close();
    const page = await this.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') this.record(`console.${m.type()}`, m.text());
    });
    page.on('pageerror', (e) => this.record('pageerror', e.stack || String(e)));
    page.on('requestfailed', (r) => this.record('requestfailed', `${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on('websocket', (ws) => {
      this.record('websocket', `open ${ws.url()}`);
      ws.on('close', () => this.record('websocket', `closed ${ws.url()}`));
    });
    this.page = page;
    return page;
  }

  /** Load the client from this user's frontend. */
  async open() {
    await this.page.goto(this.url, { waitUntil: 'load', timeout: UI_WAIT_MS });
    return this.page;
  }

  /** Log in through the login form and wait for the app to show this user's name. */
  async login(username, password) {
    const p = this.page;
    await waitVisible(p, '#login-form', `${this.name}: the login form`);
    await p.fill('#login-user', username);
    await p.fill('#login-password', password);
    await p.click('#login-submit');
    await waitFor(
      p,
      (u) => {
        const me = document.querySelector('#me');
        const app = document.querySelector('#app');
        return !!app && !!me && me.textContent.trim().includes(u) && app.offsetParent !== null;
      },
      username,
      `${this.name}: #app shown with #me = '${username}' after logging in`,
      UI_WAIT_MS,
      () => p.evaluate(() => (document.querySelector('#login-error') || {}).textContent || '(no #login-error)')
    );
  }

  async screenshot(name) {
    const file = path.join(artifactsDir(), `${name}.png`);
    await this.page.screenshot({ path: file, fullPage: false, timeout: UI_WAIT_MS });
    return file;
  }

  summary() {
    return [`${this.name} (${this.url}, page ${this.page && !this.page.isClosed() ? this.page.url() : 'closed'})`, ...this.logs.map((l) => `  ${l}`)].join('\n');
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.context.close().catch(() => {});
  }
}

/**
 * Wait until `fn(arg)`, evaluated in the page, is truthy; resolve with its
 * value. On timeout, throw with `what` and what `observe()` (node side) saw
 * at that moment.
 */
export async function waitFor(page, fn, arg, what, ms = UI_WAIT_MS, observe = null) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
    return await handle.jsonValue();
  } catch (err) {
    let seen = '';
    if (observe) {
      try {
        seen = `; seen: ${JSON.stringify(await observe()).slice(0, 1500)}`;
      } catch (e) {
        seen = `; (could not observe: ${e.message})`;
      }
    }
    throw new Error(`timed out after ${ms} ms waiting for: ${what}${seen}\n(${err.message.split('\n')[0]})`);
  }
}

/** Wait until `selector` is attached and visible. */
export async function waitVisible(page, selector, what, ms = UI_WAIT_MS) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout: ms });
  } catch (err) {
    throw new Error(`timed out after ${ms} ms waiting for: ${what} (${selector} visible)\n(${err.message.split('\n')[0]})`);
  }
}
