// What every browser test file shares: a chat cluster (lib/chat.mjs's
// ChatCluster: state server, two brokers, two frontends on one SQLite file)
// and one headless Chromium; a test that fails prints what each page logged
// (console errors, uncaught exceptions, failed requests), the node sockets'
// traces, and the cluster's logs.
import { test } from 'node:test';
import { ChatCluster } from '../../lib/chat.mjs';
import { Browser } from './browser.mjs';
import { closeAll, socketSummaries } from './seed.mjs';

/** The last lines of every process's output are enough to see why a page lost its frontend. */
const MAX_CLUSTER_LOG_CHARS = 20_000;

export class BrowserEnv {
  constructor() {
    this.cluster = null;
    this.browser = null;
  }

  async start() {
    await this.dumpOnFailure('start', async () => {
      this.cluster = await new ChatCluster().start();
      this.browser = await new Browser().launch();
    });
    return this;
  }

  async stop() {
    closeAll();
    if (this.browser) await this.browser.close();
    if (this.cluster) await this.cluster.stop().catch(() => this.cluster.kill());
  }

  async dumpOnFailure(name, fn) {
    try {
      return await fn();
    } catch (err) {
      const parts = [`\n===== browser test '${name}' failed: ${err && err.stack ? err.stack : err}`];
      if (this.browser) parts.push('----- pages', this.browser.summary());
      parts.push('----- node sockets', socketSummaries());
      if (this.cluster) parts.push('----- cluster (tail)', this.cluster.logText().slice(-MAX_CLUSTER_LOG_CHARS));
      process.stderr.write(`${parts.join('\n')}\n`);
      throw err;
    }
  }

  /** A node:test test whose failure prints the pages' and the cluster's logs. */
  test(name, fn, { timeout = 90_000 } = {}) {
    test(name, { timeout }, () => this.dumpOnFailure(name, fn));
  }
}
