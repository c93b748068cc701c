// Starts and stops the Rust `frontend` binary (and, through ManagedProcess,
// the cluster's other processes) for the compat suite.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout, sleep, AUTH_KEY } from './util.mjs';

export const compatDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * A binary of the workspace: $<envName> if set, else the debug build under
 * $CARGO_TARGET_DIR (relative to the repo root, where scripts/test runs
 * cargo), else under the repo's target/.
 */
export function binPath(envName, name) {
  if (process.env[envName]) return path.resolve(process.env[envName]);
  const repo = path.resolve(compatDir, '..');
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
  return path.join(targetDir, 'debug', name);
}

export const FRONTEND_BIN = binPath('FRONTEND_BIN', 'frontend');

export const VERBOSE = process.env.COMPAT_VERBOSE === '1' || process.env.COMPAT_VERBOSE === 'true';

const PORTS_FILE_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_LOG_BYTES = 2 * 1024 * 1024;

// Every process we spawn, so that a crashing test file still kills them.
const live = new Set();

/** SIGKILL every child process that is still running (used by exit hooks). */
export function killAllChildren() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

process.on('exit', killAllChildren);
// A test file killed by a signal (Ctrl-C, the test runner cancelling it) does
// not run 'exit' hooks by itself: kill the children, then die as asked.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.once(signal, () => {
    killAllChildren();
    process.exit(code);
  });
}

const serials = new Map();
function nextSerial(kind) {
  const n = (serials.get(kind) || 0) + 1;
  serials.set(kind, n);
  return n;
}

// The binaries also read their settings from environment variables
// (SOCKETCLUSTER_*, FRONTEND_*, SCC_*, BROKER_*, STATE_SERVER_*); drop them so
// only the flags we pass apply.
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(SOCKETCLUSTER_|FRONTEND_|SCC_|BROKER_|STATE_SERVER_)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

export function parseHostPort(value, what) {
  const m = /^(.*):(\d+)$/.exec(String(value));
  if (!m) throw new Error(`ports file: ${what} is not "host:port": ${JSON.stringify(value)}`);
  return { host: m[1], port: Number(m[2]) };
}

/**
 * One spawned process of ours that reports its bound ports in a JSON ports
 * file: keeps its output, waits for the ports file, stops it with SIGTERM
 * (SIGKILL after a timeout). FrontendServer, and the state server and broker
 * processes of lib/cluster.mjs, are built on it.
 */
export class ManagedProcess {
  /**
   * kind: label prefix ('frontend', 'broker-1', ...); bin: the binary;
   * binHint: how to build it, for the "not found" message.
   */
  constructor(kind, bin, binHint) {
    this.kind = kind;
    this.bin = bin;
    this.binHint = binHint;
    this.id = nextSerial(kind);
    this.label = `${kind}#${this.id}`;
    this.logs = [];
    this.logBytes = 0;
    this.child = null;
    this.exit = null; // {code, signal} once exited
    this.ports = null;
    // Extra environment variables for this process only (e.g. a password read from the environment).
    this.extraEnv = {};
  }

  /** Subclasses: the argument list, given the ports file path. */
  args(_portsFile) {
    throw new Error('ManagedProcess.args() not implemented');
  }

  /** Subclasses: turn the parsed ports file into this.ports. */
  parsePorts(parsed) {
    return { raw: parsed };
  }

  _log(stream, chunk) {
    const text = chunk.toString('utf8');
    if (this.logBytes < MAX_LOG_BYTES) {
      this.logs.push(text);
      this.logBytes += text.length;
    }
    if (VERBOSE) {
      process.stderr.write(text.replace(/^(?=.)/gm, `[${this.label} ${stream}] `));
    }
  }

  async start() {
    if (!existsSync(this.bin)) {
      throw new Error(`${this.kind} binary not found at ${this.bin} (${this.binHint})`);
    }
    this.tmp = mkdtempSync(path.join(tmpdir(), 'sc-compat-'));
    const portsFile = path.join(this.tmp, 'ports.json');
    const args = this.args(portsFile);
    this.commandLine = [this.bin, ...args].join(' ');
    this._log('cmd', Buffer.from(`$ ${this.commandLine}\n`));

    const child = spawn(this.bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...childEnv(), ...this.extraEnv },
    });
    this.child = child;
    live.add(child);
    child.stdout.on('data', (c) => this._log('stdout', c));
    child.stderr.on('data', (c) => this._log('stderr', c));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this._log('exit', Buffer.from(`(exited: code ${code}, signal ${signal})\n`));
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
          `${this.label} exited before writing the ports file: ${JSON.stringify(this.exit)}\n` +
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
          throw new Error(`${this.label}: ports file is not valid JSON (should be written atomically): ${err.message}`);
        }
        this.ports = this.parsePorts(parsed);
        return this;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${this.label} did not write ${portsFile} within ${PORTS_FILE_TIMEOUT_MS} ms\n` +
            `command: ${this.commandLine}\n${this.logText()}`
        );
      }
      await sleep(20);
    }
  }

  get running() {
    return !!this.child && !this.exit;
  }

  logText() {
    return `----- ${this.label} output -----\n${this.logs.join('')}----- end ${this.label} -----`;
  }

  /** SIGTERM, wait for exit (SIGKILL after a timeout). Resolves with {code, signal, forced}. */
  async stop({ timeoutMs = STOP_TIMEOUT_MS } = {}) {
    if (!this.child) return null;
    if (!this.exit) {
      this.child.kill('SIGTERM');
      try {
        await withTimeout(this.exited, timeoutMs, `${this.label} to exit after SIGTERM`);
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

/**
 * One running frontend process.
 *
 * options:
 *   port, minBinPort   fixed ports (default 0 = ephemeral); minBinPort null disables it
 *   authKey            HS256 key (default 'compat-test-key')
 *   demoRpc            --demo-rpc (default true)
 *   authRequiredPrefixes  list of --auth-required-prefix values (default ['private/'])
 *   pingIntervalMs, pingTimeoutMs
 *   nodeId, stateServer, clusterKey   cluster mode: --id, --state-server, --cluster-key
 *   extraArgs          appended verbatim
 *   env                extra environment variables for this process
 */
export class FrontendServer extends ManagedProcess {
  constructor(options = {}) {
    super('frontend', FRONTEND_BIN, 'build it with `cargo build -p frontend` in the repo root, or set FRONTEND_BIN');
    this.options = {
      port: 0,
      minBinPort: 0,
      authKey: AUTH_KEY,
      demoRpc: true,
      authRequiredPrefixes: ['private/'],
      pingIntervalMs: undefined,
      pingTimeoutMs: undefined,
      nodeId: undefined,
      stateServer: undefined,
      clusterKey: undefined,
      extraArgs: [],
      env: {},
      ...options,
    };
    this.extraEnv = { ...this.options.env };
    if (this.options.nodeId) this.label = `${this.options.nodeId}#${this.id}`;
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
    if (o.nodeId != null) args.push('--id', o.nodeId);
    if (o.stateServer != null) {
      // The state server here beats every 200 ms (cluster.mjs) and drops a node silent for 3 beats:
      // the frontend's default 1 s beat would have it dropped and reconnecting every ~0.8 s.
      args.push('--state-server', o.stateServer, '--control-heartbeat-ms', '200');
    }
    if (o.clusterKey != null) args.push('--cluster-key', o.clusterKey);
    args.push(...(o.extraArgs || []));
    return args;
  }

  parsePorts(parsed) {
    const ports = { raw: parsed };
    ports.json = parseHostPort(parsed.json, 'json').port;
    if (this.options.minBinPort != null) {
      if (parsed.min_bin == null) {
        throw new Error(`ports file has no min_bin entry although --min-bin-port was given: ${JSON.stringify(parsed)}`);
      }
      ports.minBin = parseHostPort(parsed.min_bin, 'min_bin').port;
    }
    return ports;
  }

  /** Port for a codec name: 'json' or 'min-bin'. */
  portFor(codecName) {
    return codecName === 'min-bin' ? this.ports.minBin : this.ports.json;
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
