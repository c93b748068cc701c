// Real nginx in front of frontends, configured from the repo's own
// deploy/nginx/nginx.conf.template (rendered by deploy/nginx/render), so the
// test exercises exactly the config we ship. Runs as any user: everything
// nginx writes is under a temporary prefix, and it listens on 127.0.0.1 only.
import { execFileSync, spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { compatDir } from './server.mjs';
import { httpGet } from './cluster.mjs';
import { sleep, withTimeout } from './util.mjs';

const RENDER = path.resolve(compatDir, '../deploy/nginx/render');
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
// The port is picked by binding port 0 and closing it; another process may
// take it before nginx binds it, so a start that loses that race is retried.
const START_ATTEMPTS = 3;

function executable(p) {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** $NGINX, else nginx on the PATH, else Debian's /usr/sbin/nginx. */
export function nginxBin() {
  if (process.env.NGINX) return process.env.NGINX;
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  const found = [...dirs, '/usr/sbin'].map((d) => path.join(d, 'nginx')).find(executable);
  if (!found) throw new Error('nginx not found: apt-get install nginx (or set NGINX)');
  return found;
}

/** An ephemeral port on 127.0.0.1 that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

export class NginxProcess {
  /** upstreams: the frontends' JSON listeners, ['127.0.0.1:P1', '127.0.0.1:P2']. */
  constructor(upstreams) {
    if (upstreams.length !== 2) throw new Error('deploy/nginx/render takes exactly two frontends');
    this.upstreams = upstreams;
    this.bin = nginxBin();
    this.prefix = null;
    this.child = null;
    this.exit = null;
    this.exited = null;
    this.output = [];
    this.port = null;
  }

  get address() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    for (let attempt = 1; ; attempt++) {
      try {
        await this._startOnce();
        return this;
      } catch (err) {
        const lostRace = /Address already in use/.test(this.stderrText());
        this.kill();
        if (this.exited) await this.exited;
        if (!lostRace || attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  async _startOnce() {
    this.port = await freePort();
    this.output = [];
    this.exit = null;
    const conf = execFileSync(RENDER, [String(this.port), ...this.upstreams], { encoding: 'utf8' });
    this.prefix = mkdtempSync(path.join(tmpdir(), 'nginx-compat-'));
    // Started by root, nginx's workers run as `nobody` and must read the prefix.
    chmodSync(this.prefix, 0o755);
    mkdirSync(path.join(this.prefix, 'logs'));
    const confPath = path.join(this.prefix, 'nginx.conf');
    writeFileSync(confPath, conf);
    const child = spawn(this.bin, ['-p', this.prefix, '-c', confPath, '-e', 'stderr', '-g', 'daemon off;'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    running.add(child);
    child.stdout.on('data', (c) => this.output.push(c.toString('utf8')));
    child.stderr.on('data', (c) => this.output.push(c.toString('utf8')));
    this.exited = new Promise((resolve) => {
      const done = (exit) => {
        this.exit = exit;
        running.delete(child);
        resolve(exit);
      };
      child.on('exit', (code, signal) => done({ code, signal }));
      child.on('error', (err) => done({ code: null, signal: null, error: err.message }));
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = '(never probed)';
    for (;;) {
      if (this.exit) throw new Error(`nginx exited while starting: ${JSON.stringify(this.exit)}\n${this.stderrText()}`);
      try {
        const { status } = await httpGet(this.port, '/nginx-health');
        if (status === 200) return;
        last = `status ${status}`;
      } catch (err) {
        last = err.message;
      }
      if (Date.now() > deadline) {
        throw new Error(`nginx did not answer /nginx-health within ${START_TIMEOUT_MS} ms (last: ${last})\n${this.stderrText()}`);
      }
      await sleep(25);
    }
  }

  stderrText() {
    return this.output.join('');
  }

  /** nginx's error.log (upstream failures and retries are logged there). */
  errorLog() {
    if (!this.prefix) return '';
    try {
      return readFileSync(path.join(this.prefix, 'logs', 'error.log'), 'utf8');
    } catch {
      return '';
    }
  }

  logText() {
    return `----- nginx stderr -----\n${this.stderrText()}----- nginx error.log -----\n${this.errorLog()}----- end nginx -----`;
  }

  /** SIGQUIT (graceful shutdown), SIGKILL after a timeout; then remove the prefix. */
  async stop() {
    if (this.child && !this.exit) {
      this.child.kill('SIGQUIT');
      try {
        await withTimeout(this.exited, STOP_TIMEOUT_MS, 'nginx to exit after SIGQUIT');
      } catch {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    this._removePrefix();
  }

  kill() {
    if (this.child && !this.exit) this.child.kill('SIGKILL');
    this._removePrefix();
  }

  _removePrefix() {
    if (this.prefix) {
      rmSync(this.prefix, { recursive: true, force: true });
      this.prefix = null;
    }
  }
}
