// Cluster mode of the compat suite: one state server, two brokers and two
// frontends on 127.0.0.1, every port 0.
//
// ClusterInfra is the state server and the brokers; it lives for one test.
// FrontendCluster is the two frontends on top of it and has the interface of
// a FrontendServer (start, stop, kill, portFor, logText, ports, options), so
// the tests use it like a single frontend:
//   - stop() stops both frontends only (the state server and brokers keep
//     running); a later FrontendCluster started with restartOf: <the stopped
//     one> brings both frontends back on the ports they had;
//   - portFor(codec, i) is the listener of frontend i (0 or 1); the harness
//     alternates i between successive clients;
//   - kill() kills everything, including the shared infrastructure.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { FrontendServer, ManagedProcess, binPath, parseHostPort } from './server.mjs';
import { sleep } from './util.mjs';

export const STATE_SERVER_BIN = binPath('STATE_SERVER_BIN', 'state-server');
export const BROKER_BIN = binPath('BROKER_BIN', 'broker');
const BUILD_HINT = 'build the cluster binaries with `cargo build --workspace --bins` in the repo root';

export const BROKER_COUNT = 2;
export const FRONTEND_COUNT = 2;

/** Longest wait for the slot table, a frontend's /ready, and so on. */
const READY_TIMEOUT_MS = 10_000;
const POLL_MS = 25;
const STOP_TIMEOUT_MS = 3_000;

/** Short timers, so joins, leaves and restarts settle quickly. */
const STATE_SERVER_TIMING = [
  '--settle-up-ms', '100',
  '--settle-down-ms', '100',
  '--heartbeat-ms', '200',
  '--grace-ms', '1000',
  '--rebuild-wait-ms', '300',
];

export class StateServerProcess extends ManagedProcess {
  constructor(clusterKey) {
    super('state-server', STATE_SERVER_BIN, BUILD_HINT);
    this.clusterKey = clusterKey;
  }

  args(portsFile) {
    return [
      '--host', '127.0.0.1', '--port', '0', '--http-port', '0',
      '--cluster-key', this.clusterKey, '--ports-file', portsFile,
      ...STATE_SERVER_TIMING,
    ];
  }

  parsePorts(parsed) {
    return {
      raw: parsed,
      control: parsed.control,
      controlPort: parseHostPort(parsed.control, 'control').port,
      http: parsed.http,
      httpPort: parseHostPort(parsed.http, 'http').port,
    };
  }

  /** GET /status as parsed JSON. */
  async status() {
    const { status, body } = await httpGet(this.ports.httpPort, '/status');
    if (status !== 200) throw new Error(`${this.label} GET /status answered ${status}: ${body.slice(0, 300)}`);
    return JSON.parse(body);
  }
}

export class BrokerProcess extends ManagedProcess {
  constructor(nodeId, stateServer, clusterKey) {
    super(nodeId, BROKER_BIN, BUILD_HINT);
    this.nodeId = nodeId;
    this.stateServer = stateServer;
    this.clusterKey = clusterKey;
  }

  args(portsFile) {
    return [
      '--id', this.nodeId, '--host', '127.0.0.1', '--port', '0', '--admin-port', '0',
      '--state-server', this.stateServer, '--cluster-key', this.clusterKey, '--ports-file', portsFile,
      // Teardown: leave quickly instead of waiting up to 30 s for a commit.
      '--leave-timeout-ms', '1000', '--leave-drain-ms', '100', '--heartbeat-ms', '200',
    ];
  }

  parsePorts(parsed) {
    return {
      raw: parsed,
      fabric: parsed.fabric,
      fabricPort: parseHostPort(parsed.fabric, 'fabric').port,
      admin: parsed.admin,
      adminPort: parseHostPort(parsed.admin, 'admin').port,
    };
  }
}

/** A plain GET on 127.0.0.1; resolves {status, body}, rejects on a socket error or after timeoutMs. */
export function httpGet(port, urlPath, timeoutMs = 1_000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} on :${port} timed out`)));
    req.on('error', reject);
  });
}

/**
 * Poll `probe()` until it returns a truthy value; throw with the last
 * observation (and `context()`) after `ms`.
 */
export async function pollUntil(probe, ms, what, context = () => '') {
  const deadline = Date.now() + ms;
  let last = '(never probed)';
  for (;;) {
    try {
      const r = await probe();
      if (r && r.ok) return r.value;
      last = r ? r.why : 'falsy';
    } catch (err) {
      last = `error: ${err.message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last seen: ${last}\n${context()}`);
    }
    await sleep(POLL_MS);
  }
}

/** The state server and the brokers of one test's cluster. */
export class ClusterInfra {
  constructor() {
    this.clusterKey = `compat-cluster-${randomBytes(8).toString('hex')}`;
    this.stateServer = null;
    this.brokers = [];
    this.nodeCounter = 0;
  }

  get processes() {
    return [this.stateServer, ...this.brokers].filter(Boolean);
  }

  async start() {
    this.stateServer = new StateServerProcess(this.clusterKey);
    await this.stateServer.start();
    const control = this.stateServer.ports.control;
    this.brokers = Array.from({ length: BROKER_COUNT }, (_, i) => new BrokerProcess(`broker-${i + 1}`, control, this.clusterKey));
    await Promise.all(this.brokers.map((b) => b.start()));
    // Every broker in the committed table and no reshard under way, so no
    // test starts while channels are still moving.
    const ids = this.brokers.map((b) => b.nodeId);
    await pollUntil(
      async () => {
        this.checkAlive();
        const st = await this.stateServer.status();
        const inTable = new Set((st.slots || []).map((s) => s.id));
        const missing = ids.filter((id) => !inTable.has(id));
        if (missing.length || st.reshard || st.rebuilding) {
          return { ok: false, why: `epoch ${st.epoch}, missing from slots: ${missing}, reshard ${JSON.stringify(st.reshard)}, rebuilding ${st.rebuilding}` };
        }
        return { ok: true, value: st };
      },
      READY_TIMEOUT_MS,
      `both brokers in the state server's slot table`,
      () => this.logText()
    );
    return this;
  }

  /** Throw if a process of the infrastructure has died. */
  checkAlive() {
    for (const p of this.processes) {
      if (p.exit) throw new Error(`${p.label} exited unexpectedly: ${JSON.stringify(p.exit)}`);
    }
  }

  logText() {
    return this.processes.map((p) => p.logText()).join('\n');
  }

  /** Graceful stop: brokers first (they leave the table), then the state server. */
  async stop({ timeoutMs = STOP_TIMEOUT_MS } = {}) {
    const brokerExits = await Promise.all(this.brokers.map((b) => b.stop({ timeoutMs })));
    const stateExit = this.stateServer ? await this.stateServer.stop({ timeoutMs }) : null;
    return { brokers: brokerExits, stateServer: stateExit };
  }

  kill() {
    for (const p of this.processes) p.kill();
  }
}

/**
 * Two frontends of one cluster, with the interface of a FrontendServer.
 *
 * options: the FrontendServer options (auth key, prefixes, ping settings,
 * extraArgs, ...), applied to both frontends. port / minBinPort are only
 * accepted together with restartOf, and must then be frontend 1's ports of
 * that cluster (that is what a test that restarts "the server on the same
 * ports" passes).
 */
let clusterSerial = 0;
export class FrontendCluster {
  constructor(infra, options = {}, { restartOf = null } = {}) {
    this.infra = infra;
    this.id = ++clusterSerial;
    this.options = { minBinPort: 0, ...options };
    this.restartOf = restartOf;
    this.frontends = [];
    this.ports = null;
    this.isCluster = true;
    this.frontendCount = FRONTEND_COUNT;
  }

  get label() {
    return `cluster#${this.id}`;
  }

  async start() {
    const { port = 0, minBinPort = 0, ...common } = this.options;
    let fixed;
    if (this.restartOf) {
      const prev = this.restartOf;
      if (prev.frontends.some((f) => f.running)) throw new Error(`${prev.label}: restart asked while its frontends still run`);
      const [f1] = prev.frontends;
      if ((port && port !== f1.ports.json) || (minBinPort && minBinPort !== f1.ports.minBin)) {
        throw new Error(
          `cluster restart: port ${port}/minBinPort ${minBinPort} are not frontend 1's ports ` +
            `(${f1.ports.json}/${f1.ports.minBin}) of ${prev.label}`
        );
      }
      fixed = prev.frontends.map((f) => ({ port: f.ports.json, minBinPort: minBinPort == null ? null : f.ports.minBin }));
    } else {
      if (port || minBinPort) {
        throw new Error('cluster mode: fixed ports are only supported when restarting a stopped cluster (restartOf)');
      }
      fixed = Array.from({ length: FRONTEND_COUNT }, () => ({ port: 0, minBinPort }));
    }
    this.infra.checkAlive();
    this.frontends = fixed.map(
      (p, i) =>
        new FrontendServer({
          ...common,
          ...p,
          nodeId: `frontend-${i + 1}`,
          stateServer: this.infra.stateServer.ports.control,
          clusterKey: this.infra.clusterKey,
        })
    );
    await Promise.all(this.frontends.map((f) => f.start()));
    if (this.restartOf) {
      this.frontends.forEach((f, i) => {
        const old = this.restartOf.frontends[i];
        if (f.ports.json !== old.ports.json || f.ports.minBin !== old.ports.minBin) {
          throw new Error(`${f.label} came back on ${JSON.stringify(f.ports.raw)}, not on ${JSON.stringify(old.ports.raw)}`);
        }
      });
    }
    await this.waitReady();
    const [f1] = this.frontends;
    this.ports = {
      json: f1.ports.json,
      minBin: f1.ports.minBin,
      raw: {
        frontends: this.frontends.map((f) => ({ id: f.options.nodeId, ...f.ports.raw })),
        stateServer: this.infra.stateServer.ports.raw,
        brokers: this.infra.brokers.map((b) => ({ id: b.nodeId, ...b.ports.raw })),
      },
    };
    return this;
  }

  /** Every frontend answers /ready, and the state server has them all and no reshard running. */
  async waitReady() {
    await Promise.all(
      this.frontends.map((f) =>
        pollUntil(
          async () => {
            if (f.exit) throw new Error(`${f.label} exited: ${JSON.stringify(f.exit)}`);
            this.infra.checkAlive();
            const { status, body } = await httpGet(f.ports.json, '/ready');
            return status === 200 ? { ok: true } : { ok: false, why: `/ready ${status} ${body.slice(0, 200)}` };
          },
          READY_TIMEOUT_MS,
          `${f.label} GET /ready = 200`,
          () => this.logText()
        )
      )
    );
    const ids = this.frontends.map((f) => f.options.nodeId);
    await pollUntil(
      async () => {
        const st = await this.infra.stateServer.status();
        const connected = new Set((st.frontends || []).filter((f) => f.connected).map((f) => f.id));
        const missing = ids.filter((id) => !connected.has(id));
        if (missing.length || st.reshard) {
          return { ok: false, why: `frontends not connected: ${missing}, reshard ${JSON.stringify(st.reshard)}` };
        }
        return { ok: true };
      },
      READY_TIMEOUT_MS,
      'both frontends connected to the state server, no reshard under way',
      () => this.logText()
    );
  }

  /** Port of frontend `index` (0-based) for a codec name: 'json' or 'min-bin'. */
  portFor(codecName, index = 0) {
    return this.frontends[index % this.frontends.length].portFor(codecName);
  }

  labelFor(index = 0) {
    return this.frontends[index % this.frontends.length].label;
  }

  /**
   * Stop both frontends (SIGTERM, in parallel). The state server and the
   * brokers keep running. Resolves like FrontendServer.stop(): with the exit
   * of the first frontend that did not exit cleanly, or else a clean
   * {code: 0, signal: null}; `frontends` lists every exit.
   */
  async stop(opts = {}) {
    const exits = await Promise.all(this.frontends.map((f) => f.stop(opts)));
    const bad = exits.find((e) => !e || e.code !== 0 || e.signal != null || e.forced);
    const first = bad || exits[0] || { code: null, signal: null };
    return { ...first, frontends: exits.map((e, i) => ({ id: this.frontends[i].options.nodeId, ...e })) };
  }

  /** SIGKILL the frontends and the shared state server and brokers. */
  kill() {
    for (const f of this.frontends) f.kill();
    this.infra.kill();
  }

  /** The frontends' output only. */
  frontendLogText() {
    return this.frontends.map((f) => f.logText()).join('\n');
  }

  logText() {
    return `${this.frontendLogText()}\n${this.infra.logText()}`;
  }
}

/** Start the infrastructure if needed, then a FrontendCluster on it. Kills what it started on failure. */
export async function startCluster(infra, options, { restartOf } = {}) {
  const cluster = new FrontendCluster(infra, options, { restartOf });
  try {
    await cluster.start();
  } catch (err) {
    for (const f of cluster.frontends) f.kill();
    throw err;
  }
  return cluster;
}

