// Starts and stops the Rust `frontend` binary for the compat suite.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout, sleep, AUTH_KEY } from './util.mjs';

const compatDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const FRONTEND_BIN = process.env.FRONTEND_BIN
  ? path.resolve(process.env.FRONTEND_BIN)
  : path.resolve(compatDir, '../target/debug/frontend');

export const VERBOSE = process.env.COMPAT_VERBOSE === '1' || process.env.COMPAT_VERBOSE === 'true';

const PORTS_FILE_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_LOG_BYTES = 2 * 1024 * 1024;

// Every process we spawn, so that a crashing test file still kills them.
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

let serial = 0;

// The frontend also reads its settings from SOCKETCLUSTER_* / FRONTEND_*
// environment variables; drop them so only the flags below apply.
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(SOCKETCLUSTER_|FRONTEND_)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

function parseHostPort(value, what) {
  const m = /^(.*):(\d+)$/.exec(String(value));
  if (!m) throw new Error(`ports file: ${what} is not "host:port": ${JSON.stringify(value)}`);
  return { host: m[1], port: Number(m[2]) };
}

/**
 * One running frontend process.
 *
 * options:
 *   port, minBinPort   fixed ports (default 0 = ephemeral); minBinPort null disables it
 *   authKey            HS256 key (default 'compat-test-key')
 *   demoRpc            --demo-rpc (default true)
 *   authRequiredPrefixes  list of --auth-required-prefix values (default ['private/'])
 *   pingIntervalMs, pingTimeoutMs
 *   extraArgs          appended verbatim
 */
export class FrontendServer {
  constructor(options = {}) {
    this.options = {
      port: 0,
      minBinPort: 0,
      authKey: AUTH_KEY,
      demoRpc: true,
      authRequiredPrefixes: ['private/'],
      pingIntervalMs: undefined,
      pingTimeoutMs: undefined,
      extraArgs: [],
      ...options,
    };
    this.id = ++serial;
    this.logs = [];
    this.logBytes = 0;
    this.child = null;
    this.exit = null; // {code, signal} once exited
    this.ports = null;
  }

  args(portsFile) {
    const o = this.options;
    const args = ['--host', '127.0.0.1', '--port', String(o.port)];
    if (o.minBinPort != null) args.push('--min-bin-port', String(o.minBinPort));
    args.push('--ports-file', portsFile);
    if (o.authKey != null) args.push('--auth-key', o.authKey);
    if (o.demoRpc) args.push('--demo-rpc');
    for (const prefix of o.authRequiredPrefixes || []) args.push('--auth-required-prefix', prefix);
    if (o.pingIntervalMs != null) args.push('--ping-interval-ms', String(o.pingIntervalMs));
    if (o.pingTimeoutMs != null) args.push('--ping-timeout-ms', String(o.pingTimeoutMs));
    args.push(...(o.extraArgs || []));
    return args;
  }

  _log(stream, chunk) {
    const text = chunk.toString('utf8');
    if (this.logBytes < MAX_LOG_BYTES) {
      this.logs.push(text);
      this.logBytes += text.length;
    }
    if (VERBOSE) {
      process.stderr.write(text.replace(/^(?=.)/gm, `[frontend#${this.id} ${stream}] `));
    }
  }

  async start() {
    if (!existsSync(FRONTEND_BIN)) {
      throw new Error(
        `frontend binary not found at ${FRONTEND_BIN} ` +
          '(build it with `cargo build -p frontend` in the repo root, or set FRONTEND_BIN)'
      );
    }
    this.tmp = mkdtempSync(path.join(tmpdir(), 'sc-compat-'));
    const portsFile = path.join(this.tmp, 'ports.json');
    const args = this.args(portsFile);
    this.commandLine = [FRONTEND_BIN, ...args].join(' ');
    this._log('cmd', Buffer.from(`$ ${this.commandLine}\n`));

    const child = spawn(FRONTEND_BIN, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnv(),
    });
    this.child = child;
    live.add(child);
    child.stdout.on('data', (c) => this._log('stdout', c));
    child.stderr.on('data', (c) => this._log('stderr', c));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(child);
        resolve(this.exit);
      });
      child.on('error', (err) => {
        this._log('spawn', Buffer.from(`spawn error: ${err.message}\n`));
        this.exit = { code: null, signal: null, error: err };
        live.delete(child);
        resolve(this.exit);
      });
    });

    const deadline = Date.now() + PORTS_FILE_TIMEOUT_MS;
    for (;;) {
      if (this.exit) {
        throw new Error(
          `frontend exited before writing the ports file: ${JSON.stringify(this.exit)}\n` +
            `command: ${this.commandLine}\n${this.logText()}`
        );
      }
      if (existsSync(portsFile)) {
        let parsed;
        try {
          parsed = JSON.parse(readFileSync(portsFile, 'utf8'));
        } catch (err) {
          // The contract says the file is written atomically, so a partial
          // read is a server bug; report it instead of retrying.
          throw new Error(`ports file is not valid JSON (should be written atomically): ${err.message}`);
        }
        this.ports = { raw: parsed };
        this.ports.json = parseHostPort(parsed.json, 'json').port;
        if (this.options.minBinPort != null) {
          if (parsed.min_bin == null) {
            throw new Error(`ports file has no min_bin entry although --min-bin-port was given: ${JSON.stringify(parsed)}`);
          }
          this.ports.minBin = parseHostPort(parsed.min_bin, 'min_bin').port;
        }
        return this;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `frontend did not write ${portsFile} within ${PORTS_FILE_TIMEOUT_MS} ms\n` +
            `command: ${this.commandLine}\n${this.logText()}`
        );
      }
      await sleep(20);
    }
  }

  /** Port for a codec name: 'json' or 'min-bin'. */
  portFor(codecName) {
    return codecName === 'min-bin' ? this.ports.minBin : this.ports.json;
  }

  logText() {
    return `----- frontend#${this.id} output -----\n${this.logs.join('')}----- end frontend#${this.id} -----`;
  }

  /** SIGTERM, wait for exit (SIGKILL after a timeout). Resolves with {code, signal, forced}. */
  async stop({ timeoutMs = STOP_TIMEOUT_MS } = {}) {
    if (!this.child) return null;
    if (!this.exit) {
      this.child.kill('SIGTERM');
      try {
        await withTimeout(this.exited, timeoutMs, `frontend#${this.id} to exit after SIGTERM`);
      } catch {
        this.child.kill('SIGKILL');
        await this.exited;
        this.exit = { ...this.exit, forced: true };
      }
    }
    this._cleanupTmp();
    return this.exit;
  }

  kill() {
    if (this.child && !this.exit) this.child.kill('SIGKILL');
    this._cleanupTmp();
  }

  _cleanupTmp() {
    if (this.tmp) {
      rmSync(this.tmp, { recursive: true, force: true });
      this.tmp = null;
    }
  }
}

export async function startServer(options) {
  const server = new FrontendServer(options);
  try {
    await server.start();
  } catch (err) {
    server.kill();
    throw err;
  }
  return server;
}
