// Per-test harness: starts servers, creates real socketcluster-client sockets,
// records their events, and tears everything down even when the test fails.
import { test } from 'node:test';
import socketClusterClient from 'socketcluster-client';
import minBinCodec from 'sc-codec-min-bin';
import { startServer, VERBOSE } from './server.mjs';
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

export class Harness {
  constructor(t, codec) {
    this.t = t;
    this.codec = codec;
    this.servers = [];
    this.clients = [];
    this.collectors = [];
    this.closed = false;
    this.trace = [];
  }

  note(msg) {
    this.trace.push(`${new Date().toISOString()} ${msg}`);
  }

  /** Start a frontend (both listeners) and remember it for teardown. */
  async server(options = {}) {
    const srv = await startServer({ minBinPort: 0, ...options });
    this.servers.push(srv);
    this.note(`started frontend#${srv.id} ports=${JSON.stringify(srv.ports.raw)}`);
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
    const port = srv.portFor(this.codec.name);
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
    const handle = { socket, ev, name };
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
  }

  dump(err) {
    const parts = [`\n===== compat failure (${this.codec.name}): ${err && err.stack ? err.stack : err}`];
    if (this.trace.length) parts.push(`----- harness trace -----\n${this.trace.join('\n')}`);
    for (const c of this.clients) {
      const summary = Object.entries(c.ev)
        .filter(([, col]) => col.count > 0)
        .map(([name, col]) => `${name}=${JSON.stringify(col.items, replacer).slice(0, 600)}`);
      parts.push(`----- ${c.name} events: ${summary.join(' | ') || '(none)'}`);
    }
    if (!VERBOSE) {
      for (const srv of this.servers) parts.push(srv.logText());
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
 * printed when the test fails.
 */
export function compatTest(codec, name, fn, { timeout = 60_000 } = {}) {
  test(name, { timeout }, async (t) => {
    const h = new Harness(t, codec);
    t.after(() => h.cleanup());
    try {
      await fn(h);
    } catch (err) {
      h.dump(err);
      throw err;
    } finally {
      await withTimeout(h.cleanup(), 10_000, 'harness cleanup').catch(() => {
        for (const srv of h.servers) srv.kill();
      });
    }
  });
}
