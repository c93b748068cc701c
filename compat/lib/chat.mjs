// The chat on a cluster, for the scenario tests in compat/chat/: one state
// server, two brokers and two frontends running the chat on ONE SQLite file
// (`--store sqlite:<tmp>/chat.db`), and ChatClient, a real
// socketcluster-client socket with the chat's RPCs and channels recorded.
//
// Everything binds 127.0.0.1 on port 0 (a restarted frontend takes back the
// port it had); every wait is bounded; ChatCluster.stop() (or kill()) removes
// every process and the temp directory, and server.mjs's exit hooks kill
// whatever a crashing test leaves behind.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import socketClusterClient from 'socketcluster-client';
import { ClusterInfra, httpGet, pollUntil } from './cluster.mjs';
import { FrontendServer } from './server.mjs';
import { Collector, MemoryAuthEngine, waitUntil, withTimeout } from './util.mjs';

/** An RPC answer, an event, a subscription. */
export const WAIT_MS = 5_000;
/** A killed frontend noticed, the client's back-off, the other frontend's handshake and resubscription. */
export const RECONNECT_WAIT_MS = 15_000;
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 3_000;

export const ADMIN_USERNAME = 'admin';
export const PRESENCE_HEARTBEAT_MS = 250;

/**
 * State server, two brokers and two chat frontends sharing one SQLite store.
 * Both frontends start at the same moment with the same flags, as a
 * deployment would start them, so both open the fresh file, migrate it and
 * bootstrap the admin concurrently (the store takes SQLite's write lock for
 * each step; the second finds the work done). `ports[i]` is frontend i's
 * JSON port.
 */
export class ChatCluster {
  constructor({ frontendCount = 2 } = {}) {
    this.frontendCount = frontendCount;
    this.adminPassword = `admin-${randomBytes(12).toString('hex')}`;
    this.infra = new ClusterInfra();
    this.frontends = [];
    // Every frontend process ever started, for the logs of a failure.
    this.allFrontends = [];
    // The state servers and brokers stopped by restartAll(), for the logs of a failure.
    this.oldInfras = [];
    this.dir = null;
    this.storePath = null;
  }

  get store() {
    return `sqlite:${this.storePath}`;
  }

  get ports() {
    return this.frontends.map((f) => f.ports.json);
  }

  async start() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'sc-chat-'));
    this.storePath = path.join(this.dir, 'chat.db');
    await this.infra.start();
    this.frontends = await Promise.all(Array.from({ length: this.frontendCount }, (_, i) => this.startFrontend(i, 0)));
    return this;
  }

  frontendOptions(i, port) {
    return {
      port,
      minBinPort: null,
      demoRpc: false,
      authRequiredPrefixes: [],
      nodeId: `frontend-${i + 1}`,
      stateServer: this.infra.stateServer.ports.control,
      clusterKey: this.infra.clusterKey,
      // Presence: report every 250 ms, so the survivors drop a killed frontend's users
      // (4 heartbeats without a report) within about a second rather than 20 s.
      extraArgs: ['--store', this.store, '--bootstrap-admin', ADMIN_USERNAME, '--presence-heartbeat-ms', String(PRESENCE_HEARTBEAT_MS)],
      env: { CHAT_ADMIN_PASSWORD: this.adminPassword },
    };
  }

  /** Start frontend i (on `port`, 0 = ephemeral) and wait until it is ready and the state server has it. */
  async startFrontend(i, port) {
    const f = new FrontendServer(this.frontendOptions(i, port));
    this.allFrontends.push(f);
    try {
      await f.start();
      await this.waitReady(f);
    } catch (err) {
      f.kill();
      throw err;
    }
    return f;
  }

  async waitReady(f) {
    await pollUntil(
      async () => {
        if (f.exit) throw new Error(`${f.label} exited: ${JSON.stringify(f.exit)}`);
        this.infra.checkAlive();
        const { status, body } = await httpGet(f.ports.json, '/ready');
        return status === 200 ? { ok: true } : { ok: false, why: `/ready ${status} ${body.slice(0, 200)}` };
      },
      READY_TIMEOUT_MS,
      `${f.label} GET /ready = 200`,
      () => f.logText()
    );
    const id = f.options.nodeId;
    await pollUntil(
      async () => {
        const st = await this.infra.stateServer.status();
        const connected = (st.frontends || []).some((x) => x.id === id && x.connected);
        return connected && !st.reshard ? { ok: true } : { ok: false, why: `connected ${connected}, reshard ${JSON.stringify(st.reshard)}` };
      },
      READY_TIMEOUT_MS,
      `${id} connected to the state server, no reshard under way`,
      () => this.infra.logText()
    );
  }

  /** SIGKILL frontend i and wait until it is gone. */
  async killFrontend(i) {
    const f = this.frontends[i];
    f.kill();
    await withTimeout(f.exited, WAIT_MS, `${f.label} to die after SIGKILL`);
    return f.exit;
  }

  /** Start frontend i again on the port it had (after killFrontend). */
  async restartFrontend(i) {
    const old = this.frontends[i];
    if (old.running) throw new Error(`${old.label} is still running`);
    this.frontends[i] = await this.startFrontend(i, old.ports.json);
    return this.frontends[i];
  }

  /**
   * Every node down and up again on the same store file, as after a power
   * cut with a graceful shutdown: the frontends (SIGTERM, in parallel), then
   * the brokers and the state server; then a new state server and brokers and
   * both frontends on new ephemeral ports. Resolves with every exit
   * (`forced` when SIGTERM was not enough), so a test can check the stop was
   * clean.
   */
  async restartAll() {
    const frontends = await Promise.all(this.frontends.map((f) => f.stop({ timeoutMs: STOP_TIMEOUT_MS })));
    const { brokers, stateServer } = await this.infra.stop({ timeoutMs: STOP_TIMEOUT_MS });
    const exits = { frontends, brokers, stateServer };
    this.oldInfras.push(this.infra);
    this.infra = new ClusterInfra();
    await this.infra.start();
    this.frontends = await Promise.all(Array.from({ length: this.frontendCount }, (_, i) => this.startFrontend(i, 0)));
    return exits;
  }

  logText() {
    return [...this.allFrontends.map((f) => f.logText()), ...this.oldInfras.map((i) => i.logText()), this.infra.logText()].join('\n');
  }

  /** Frontends (SIGTERM), then brokers and state server, then the store's directory. */
  async stop() {
    await Promise.all(this.frontends.map((f) => f.stop({ timeoutMs: STOP_TIMEOUT_MS }).catch(() => f.kill())));
    // A frontend whose sibling failed to start is in no list but this one; left running, it would
    // keep the test file alive until the runner's timeout.
    for (const f of this.allFrontends) f.kill();
    await this.infra.stop({ timeoutMs: STOP_TIMEOUT_MS }).catch(() => this.infra.kill());
    this.removeDir();
  }

  kill() {
    for (const f of this.allFrontends) f.kill();
    for (const i of this.oldInfras) i.kill();
    this.infra.kill();
    this.removeDir();
  }

  removeDir() {
    if (this.dir) {
      rmSync(this.dir, { recursive: true, force: true });
      this.dir = null;
    }
  }
}

const SOCKET_EVENTS = ['connect', 'connectAbort', 'disconnect', 'close', 'error', 'subscribeFail', 'authenticate', 'deauthenticate'];

/**
 * A chat user's socket: the real socketcluster-client, JSON codec.
 *
 * `ports` lists the frontends it may use, first choice first. With more than
 * one, every 'close' (a dropped connection or a failed attempt) moves the
 * client to the next frontend before its automatic reconnect, like a client
 * given several server URLs. The client builds the URI from its options at
 * each connect, so changing `options.port` is enough.
 */
export class ChatClient {
  constructor(name, ports) {
    this.name = name;
    this.ports = ports;
    this.portIndex = 0;
    this.socket = socketClusterClient.create({
      hostname: '127.0.0.1',
      port: ports[0],
      path: '/socketcluster/',
      autoConnect: false,
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 1000 },
      connectTimeout: 5_000,
      ackTimeout: 4_000,
      authEngine: new MemoryAuthEngine(),
    });
    this.ev = {};
    for (const event of SOCKET_EVENTS) this.ev[event] = new Collector(this.socket.listener(event), `${name} '${event}'`);
    this.trace = [];
    this.channels = new Map(); // name -> {channel, data, subscribed, failed}
    this.user = null; // the login reply
    if (ports.length > 1) {
      (async () => {
        for await (const ev of this.socket.listener('close')) {
          this.portIndex = (this.portIndex + 1) % this.ports.length;
          this.socket.options.port = this.ports[this.portIndex];
          this.note(`closed (${ev.code}); next attempt on port ${this.socket.options.port}`);
        }
      })();
    }
  }

  note(msg) {
    this.trace.push(`${new Date().toISOString()} ${msg}`);
  }

  get port() {
    return this.socket.options.port;
  }

  get uid() {
    return this.user && this.user.id;
  }

  async connect() {
    this.socket.connect();
    await this.ev.connect.next(WAIT_MS, `first 'connect' of ${this.name} (port ${this.port})`);
    this.note(`connected to port ${this.port} as ${this.socket.id}`);
    return this;
  }

  /** A chat RPC; rejects with the server's error (`err.error` is the stable id). */
  async invoke(name, data = {}, ms = WAIT_MS) {
    const reply = await withTimeout(this.socket.invoke(name, data), ms, `${this.name}: ${name} ${JSON.stringify(data).slice(0, 200)}`);
    this.note(`${name} ok`);
    return reply;
  }

  /** A chat RPC that must fail; resolves with the error. */
  async invokeError(name, data = {}, ms = WAIT_MS) {
    let reply;
    try {
      reply = await withTimeout(this.socket.invoke(name, data), ms, `${this.name}: ${name} (expected to fail)`);
    } catch (err) {
      if (/^timed out/.test(err.message)) throw err;
      this.note(`${name} refused: ${err.error || err.name}`);
      return err;
    }
    throw new Error(`${this.name}: ${name} ${JSON.stringify(data)} should have failed, answered ${JSON.stringify(reply).slice(0, 300)}`);
  }

  async login(username, password) {
    this.user = await this.invoke('login', { user: username, password });
    this.username = username;
    return this.user;
  }

  /** Subscribe and wait for the server's acceptance; records the channel's data. */
  async subscribe(channelName) {
    const rec = this.record(channelName);
    await rec.subscribed.waitForCount(1, WAIT_MS, `${this.name} subscribed to '${channelName}'`);
    return rec;
  }

  /** Subscribe where the server must refuse; resolves with the error and forgets the channel. */
  async subscribeRefused(channelName) {
    const rec = this.record(channelName);
    const { error } = await rec.failed.next(WAIT_MS, `${this.name}: subscription to '${channelName}' refused`);
    if (rec.subscribed.count) throw new Error(`${this.name}: '${channelName}' was accepted`);
    this.forget(channelName);
    return error;
  }

  record(channelName) {
    if (this.channels.has(channelName)) throw new Error(`${this.name} already subscribed to ${channelName}`);
    const channel = this.socket.subscribe(channelName);
    const rec = {
      channel,
      data: new Collector(channel, `${this.name} data on '${channelName}'`),
      subscribed: new Collector(channel.listener('subscribe'), `${this.name} 'subscribe' on '${channelName}'`),
      failed: new Collector(channel.listener('subscribeFail'), `${this.name} 'subscribeFail' on '${channelName}'`),
    };
    this.channels.set(channelName, rec);
    return rec;
  }

  forget(channelName) {
    const rec = this.channels.get(channelName);
    if (!rec) return;
    for (const c of [rec.data, rec.subscribed, rec.failed]) c.stop();
    this.socket.unsubscribe(channelName);
    this.socket.closeChannel(channelName);
    this.channels.delete(channelName);
  }

  /** Everything published on a subscribed channel so far. */
  received(channelName) {
    const rec = this.channels.get(channelName);
    if (!rec) throw new Error(`${this.name} is not subscribed to ${channelName}`);
    return rec.data.items;
  }

  /** The first event on the channel (recorded earlier or to come) that satisfies `pred`. */
  async waitEvent(channelName, pred, what, ms = WAIT_MS) {
    const rec = this.channels.get(channelName);
    if (!rec) throw new Error(`${this.name} is not subscribed to ${channelName}`);
    return waitUntil([rec.data], () => rec.data.items.find(pred), ms, `${this.name} on '${channelName}': ${what}`);
  }

  summary() {
    const events = Object.entries(this.ev)
      .filter(([, c]) => c.count)
      .map(([k, c]) => `${k}=${JSON.stringify(c.items).slice(0, 400)}`);
    const channels = [...this.channels].map(([n, r]) => `${n}: ${r.data.count} events ${JSON.stringify(r.data.items.map((d) => [d.type, d.seq]))}`);
    return [
      `${this.name} (port ${this.port}, state ${this.socket.state}, id ${this.socket.id}): ${events.join(' | ') || 'no events'}`,
      ...channels.map((c) => `  ${c.slice(0, 600)}`),
      ...this.trace.map((t) => `  ${t}`),
    ].join('\n');
  }

  close() {
    try {
      this.socket.disconnect();
      this.socket.killAllListeners();
      this.socket.killAllChannels();
    } catch {
      // already closed
    }
    for (const c of Object.values(this.ev)) c.stop();
    for (const rec of this.channels.values()) for (const c of [rec.data, rec.subscribed, rec.failed]) c.stop();
  }
}

/** Room channel name. */
export const roomChannel = (rid) => `room/${rid}`;
/** User channel name. */
export const userChannel = (uid) => `user/${uid}`;

/** Users' own messages (system messages such as "joined" have a type `t`). */
export const userMessages = (messages) => messages.filter((m) => m.t == null);
