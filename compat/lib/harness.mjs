// Per-test harness: starts servers, creates real socketcluster-client sockets,
// records their events, and tears everything down even when the test fails.
import { test } from 'node:test';
import socketClusterClient from 'socketcluster-client';
import minBinCodec from 'sc-codec-min-bin';
import { startServer, VERBOSE } from './server.mjs';
import { ClusterInfra, startCluster } from './cluster.mjs';
import { Collector, MemoryAuthEngine, withTimeout } from './util.mjs';

export const CODECS = {
  json: { name: 'json', codecEngine: undefined },
  'min-bin': { name: 'min-bin', codecEngine: minBinCodec },
};

// Socket-level events recorded for every client.
const SOCKET_EVENTS = [
  'connect',
  'connecting',
  'connectAbort',
  'disconnect',
  'close',
  'error',
  'authenticate',
  'deauthenticate',
  'authStateChange',
  'removeAuthToken',
  'subscribeFail',
];

export const DEFAULT_WAIT_MS = 5_000;

/** COMPAT_CLUSTER=1 (or true): test/json.test.mjs and test/min-bin.test.mjs run against a cluster. */
export const CLUSTER_FROM_ENV = process.env.COMPAT_CLUSTER === '1' || process.env.COMPAT_CLUSTER === 'true';

/** 'single' (one frontend) or 'cluster' (state server, 2 brokers, 2 frontends). */
export const modeName = (cluster) => (cluster ? 'cluster' : 'single');

export class Harness {
  constructor(t, codec, { cluster = false } = {}) {
    this.t = t;
    this.codec = codec;
    this.cluster = cluster;
    this.infra = null; // cluster mode: the state server and brokers of this test
    this.servers = [];
    this.clients = [];
    this.collectors = [];
    this.closed = false;
    this.trace = [];
  }

  note(msg) {
    this.trace.push(`${new Date().toISOString()} ${msg}`);
  }

  /**
   * Start a frontend (both listeners) and remember it for teardown.
   *
   * Cluster mode: start this test's state server and two brokers (once per
   * test), then two frontends with `options` applied to both, and return a
   * FrontendCluster (lib/cluster.mjs), which the tests use like one
   * frontend. Asking for fixed ports (`port` / `minBinPort`) after the
   * previous cluster was stopped restarts its frontends on their old ports,
   * on the same state server and brokers.
   */
  async server(options = {}) {
    if (this.cluster) return this.clusterServer(options);
    const srv = await startServer({ minBinPort: 0, ...options });
    this.servers.push(srv);
    this.note(`started frontend#${srv.id} ports=${JSON.stringify(srv.ports.raw)}`);
    return srv;
  }

  async clusterServer(options) {
    let restartOf = null;
    if (options.port || options.minBinPort) {
      restartOf = this.servers.find((s) => s.ports && s.ports.json === options.port);
      if (!restartOf) {
        throw new Error(`cluster mode: no earlier cluster of this test has frontend 1 on port ${options.port}`);
      }
    }
    if (!this.infra) {
      this.infra = new ClusterInfra();
      try {
        await this.infra.start();
      } catch (err) {
        this.infra.kill();
        throw err;
      }
      this.note(
        `started state server ${JSON.stringify(this.infra.stateServer.ports.raw)} and brokers ` +
          JSON.stringify(this.infra.brokers.map((b) => ({ id: b.nodeId, ...b.ports.raw })))
      );
    }
    const srv = await startCluster(this.infra, { minBinPort: 0, ...options }, { restartOf });
    this.servers.push(srv);
    this.note(`${restartOf ? 're' : ''}started ${srv.label} frontends ${JSON.stringify(srv.ports.raw.frontends)}`);
    return srv;
  }

  collect(stream, label) {
    const c = new Collector(stream, label);
    this.collectors.push(c);
    return c;
  }

  /**
   * Create a client for `srv` using this pass's codec and port. Returns
   * {socket, ev, decodedFrames?}; ev[name] is a Collector for each socket
   * event, and with options.rawMessages decodedFrames() returns every inbound
   * frame decoded with the client's codec.
   * The client is not connected yet unless options.autoConnect is true;
   * use connect() for the usual "create and wait for 'connect'".
   */
  client(srv, options = {}) {
    const { rawMessages = false, label, ...clientOptions } = options;
    // Cluster mode: successive clients alternate between the frontends
    // (first client on frontend 1, second on frontend 2, ...), so a
    // subscriber and a publisher sit on different frontends.
    const frontendIndex = srv.isCluster ? this.clients.length % srv.frontendCount : 0;
    const port = srv.portFor(this.codec.name, frontendIndex);
    const socket = socketClusterClient.create({
      hostname: '127.0.0.1',
      port,
      path: '/socketcluster/',
      autoConnect: false,
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 1000 },
      connectTimeout: 5_000,
      ackTimeout: 4_000,
      authTokenName: 'compat.authToken',
      // Never depend on a global localStorage (newer Node versions have one).
      authEngine: new MemoryAuthEngine(),
      ...(this.codec.codecEngine ? { codecEngine: this.codec.codecEngine } : {}),
      ...clientOptions,
    });
    const name = label || `client${this.clients.length + 1}`;
    const ev = {};
    for (const event of SOCKET_EVENTS) {
      ev[event] = this.collect(socket.listener(event), `${name} '${event}'`);
    }
    const handle = { socket, ev, name, port };
    if (srv.isCluster) {
      handle.frontend = srv.labelFor(frontendIndex);
      this.note(`${name} -> ${handle.frontend} (port ${port})`);
    }
    if (rawMessages) {
      // Every inbound frame, decoded with the same codec the client uses.
      // Pings are recorded as {ping: true}.
      handle.rawCollector = this.collect(socket.listener('message'), `${name} raw frames`);
      handle.decodedFrames = () =>
        handle.rawCollector.items.map(({ message }) => {
          if (message === '') return { ping: true };
          try {
            return { packet: socket.decode(message) };
          } catch (err) {
            return { undecodable: true, error: err.message, message };
          }
        });
    }
    this.clients.push(handle);
    return handle;
  }

  /** client() + connect() + wait for the first 'connect' event. */
  async connect(srv, options = {}) {
    const handle = this.client(srv, options);
    handle.socket.connect();
    handle.status = await handle.ev.connect.next(DEFAULT_WAIT_MS, `first 'connect' of ${handle.name}`);
    this.note(`${handle.name} connected id=${handle.socket.id}`);
    return handle;
  }

  async cleanup() {
    if (this.closed) return;
    this.closed = true;
    for (const { socket } of this.clients) {
      try {
        socket.disconnect();
      } catch {
        // ignore
      }
    }
    for (const c of this.collectors) c.stop();
    for (const { socket } of this.clients) {
      try {
        socket.killAllListeners();
        socket.killAllChannels();
        socket.killAllReceivers();
        socket.killAllProcedures();
      } catch {
        // ignore
      }
    }
    await Promise.all(
      this.servers.map(async (srv) => {
        try {
          await srv.stop({ timeoutMs: 3_000 });
        } catch {
          srv.kill();
        }
      })
    );
    // Cluster mode: the frontends are down; now the brokers, then the state server.
    if (this.infra) {
      try {
        await this.infra.stop({ timeoutMs: 3_000 });
      } catch {
        this.infra.kill();
      }
    }
  }

  /** Last resort: SIGKILL every process of this test. */
  killAll() {
    for (const srv of this.servers) srv.kill();
    if (this.infra) this.infra.kill();
  }

  dump(err) {
    const parts = [`\n===== compat failure (${this.codec.name}, ${modeName(this.cluster)}): ${err && err.stack ? err.stack : err}`];
    if (this.trace.length) parts.push(`----- harness trace -----\n${this.trace.join('\n')}`);
    for (const c of this.clients) {
      const summary = Object.entries(c.ev)
        .filter(([, col]) => col.count > 0)
        .map(([name, col]) => `${name}=${JSON.stringify(col.items, replacer).slice(0, 600)}`);
      const where = c.frontend ? ` (on ${c.frontend})` : '';
      parts.push(`----- ${c.name}${where} events: ${summary.join(' | ') || '(none)'}`);
    }
    if (!VERBOSE) {
      for (const srv of this.servers) parts.push(srv.isCluster ? srv.frontendLogText() : srv.logText());
      if (this.infra) parts.push(this.infra.logText());
    }
    process.stderr.write(`${parts.join('\n')}\n`);
  }
}

function replacer(key, value) {
  if (value instanceof Error) return { name: value.name, message: value.message, ...value };
  if (typeof value === 'function') return undefined;
  return value;
}

/**
 * Define one compat test for a codec pass. `fn(h)` gets a fresh Harness;
 * servers and clients are always torn down afterwards, and server logs are
 * printed when the test fails. With `cluster: true`, h.server() starts a
 * cluster (see Harness.server).
 */
export function compatTest(codec, name, fn, { timeout = 60_000, cluster = false } = {}) {
  test(name, { timeout }, async (t) => {
    const h = new Harness(t, codec, { cluster });
    t.after(() => h.cleanup());
    try {
      await fn(h);
    } catch (err) {
      h.dump(err);
      throw err;
    } finally {
      await withTimeout(h.cleanup(), 15_000, 'harness cleanup').catch(() => h.killAll());
    }
  });
}
