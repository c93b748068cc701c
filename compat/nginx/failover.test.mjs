// The real socketcluster-client through real nginx (deploy/nginx's template)
// in front of two frontends of a cluster (state server, two brokers):
//
//   1. two subscribers connect through nginx; least_conn puts one on each
//      frontend; both subscribe, and a publish from a socket on the other
//      frontend reaches both (across the cluster fabric for one of them);
//   2. the frontend one subscriber is on is killed with SIGKILL;
//   3. that client notices, reconnects by itself through nginx (whose first
//      choice, the dead frontend, refuses: nginx retries on the other one),
//      resubscribes by itself, and receives again: a publish from a socket
//      on the surviving frontend, and one from itself through nginx. The
//      subscriber on the surviving frontend is never disconnected.
//
// Run by deploy/nginx/test (which finds nginx and the binaries), or
// `npm run test:nginx` here. Needs nginx and the three binaries (see
// README.md); every process binds 127.0.0.1 on an ephemeral port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import socketClusterClient from 'socketcluster-client';
import { ClusterInfra, httpGet, startCluster } from '../lib/cluster.mjs';
import { NginxProcess } from '../lib/nginx.mjs';
import { Collector, MemoryAuthEngine, sleep, withTimeout } from '../lib/util.mjs';

const WAIT_MS = 5_000;
// Reconnect back-off (at most 1 s here) + nginx's retry on the other frontend
// + the handshake and resubscription, with a wide margin.
const RECONNECT_WAIT_MS = 10_000;
const POLL_MS = 25;
const CHANNEL = 'nginx-failover';

/** `frontend_sockets` from a frontend's /metrics: its open client sockets. */
async function openSockets(frontend) {
  const { status, body } = await httpGet(frontend.ports.json, '/metrics');
  if (status !== 200) throw new Error(`${frontend.label} GET /metrics answered ${status}`);
  const m = /^frontend_sockets (\d+)$/m.exec(body);
  if (!m) throw new Error(`${frontend.label} /metrics has no frontend_sockets sample`);
  return Number(m[1]);
}

/** Poll until `pred(counts)` holds for the open-socket counts of `frontends`; returns the counts. */
async function waitForSockets(frontends, pred, what) {
  const deadline = Date.now() + WAIT_MS;
  let last = '(never read)';
  for (;;) {
    try {
      const counts = await Promise.all(frontends.map(openSockets));
      if (pred(counts)) return counts;
      last = JSON.stringify(counts);
    } catch (err) {
      last = `error: ${err.message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}; open sockets per frontend (${frontends.map((f) => f.label)}): ${last}`);
    }
    await sleep(POLL_MS);
  }
}

/** A socketcluster-client socket with its events and one channel recorded. */
class Client {
  constructor(name, port) {
    this.name = name;
    this.port = port;
    this.socket = socketClusterClient.create({
      hostname: '127.0.0.1',
      port,
      path: '/socketcluster/',
      autoConnect: false,
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 1000 },
      connectTimeout: 5_000,
      ackTimeout: 4_000,
      authEngine: new MemoryAuthEngine(),
    });
    this.ev = {};
    for (const event of ['connect', 'connectAbort', 'disconnect', 'close', 'error', 'subscribeFail']) {
      this.ev[event] = new Collector(this.socket.listener(event), `${name} '${event}'`);
    }
    this.data = null;
    this.subscribed = null;
  }

  async connect() {
    this.socket.connect();
    await this.ev.connect.next(WAIT_MS, `first 'connect' of ${this.name} (port ${this.port})`);
    return this.socket.id;
  }

  async subscribe(channelName) {
    const channel = this.socket.subscribe(channelName);
    this.data = new Collector(channel, `${this.name} data on '${channelName}'`);
    this.subscribed = new Collector(channel.listener('subscribe'), `${this.name} 'subscribe' on '${channelName}'`);
    await this.subscribed.waitForCount(1, WAIT_MS, `${this.name} subscribed to '${channelName}'`);
  }

  /** The `n` of every message received on the channel, in order. */
  received() {
    return this.data.items.map((d) => d && d.n);
  }

  async waitReceived(n, what) {
    await this.data.waitFor((d) => d && d.n === n, WAIT_MS, `${this.name} to receive ${JSON.stringify(n)} (${what})`);
  }

  summary() {
    const events = Object.entries(this.ev)
      .filter(([, c]) => c.count)
      .map(([k, c]) => `${k}=${JSON.stringify(c.items).slice(0, 400)}`);
    return `${this.name} (port ${this.port}, state ${this.socket.state}, id ${this.socket.id}): ${events.join(' | ') || 'no events'}; received ${JSON.stringify(this.data ? this.received() : [])}`;
  }

  close() {
    try {
      this.socket.disconnect();
      this.socket.killAllListeners();
      this.socket.killAllChannels();
    } catch {
      // already closed
    }
    for (const c of [...Object.values(this.ev), this.data, this.subscribed]) if (c) c.stop();
  }
}

async function publish(client, n, what) {
  await withTimeout(client.socket.invokePublish(CHANNEL, { n }), WAIT_MS, `${client.name}'s publish of ${JSON.stringify(n)} acknowledged (${what})`);
}

test('socketcluster-client through nginx: subscribe and receive, frontend killed, reconnect through nginx, resubscribe, receive again', { timeout: 90_000 }, async (t) => {
  const infra = new ClusterInfra();
  let cluster = null;
  let nginx = null;
  const clients = [];
  const trace = [];
  const note = (msg) => trace.push(`${new Date().toISOString()} ${msg}`);
  try {
    await infra.start();
    cluster = await startCluster(infra, {});
    const frontends = cluster.frontends;
    nginx = await new NginxProcess(frontends.map((f) => `127.0.0.1:${f.ports.json}`)).start();
    note(`nginx on ${nginx.address} in front of ${frontends.map((f) => `${f.label}=:${f.ports.json}`).join(', ')}`);

    const health = await httpGet(nginx.port, '/health');
    assert.equal(health.status, 200, `GET /health through nginx: ${health.status} ${health.body}`);
    assert.equal(JSON.parse(health.body).status, 'ok', `GET /health through nginx: ${health.body}`);
    assert.equal((await httpGet(nginx.port, '/ready')).status, 200, 'GET /ready through nginx (both frontends joined the cluster)');

    // 1. Two subscribers through nginx, one after the other, so the open
    // socket counts say which frontend each landed on.
    const subA = new Client('subscriber A (through nginx)', nginx.port);
    clients.push(subA);
    const idA = await subA.connect();
    const afterA = await waitForSockets(frontends, (c) => c[0] + c[1] === 1, "subscriber A's socket on a frontend");
    const victim = afterA.indexOf(1);
    const survivor = 1 - victim;
    note(`subscriber A (${idA}) is on ${frontends[victim].label}; it will be killed`);

    const subB = new Client('subscriber B (through nginx)', nginx.port);
    clients.push(subB);
    const idB = await subB.connect();
    // least_conn: the second WebSocket goes to the frontend without one.
    await waitForSockets(frontends, (c) => c[victim] === 1 && c[survivor] === 1, "least_conn to put subscriber B on the other frontend");
    note(`subscriber B (${idB}) is on ${frontends[survivor].label}`);

    await subA.subscribe(CHANNEL);
    await subB.subscribe(CHANNEL);

    // The publisher sits on the surviving frontend, outside nginx, so its
    // publishes reach subscriber A over the cluster fabric (frontend ->
    // broker -> the other frontend) now, and over the survivor after the kill.
    const pub = new Client(`publisher (direct to ${frontends[survivor].label})`, frontends[survivor].ports.json);
    clients.push(pub);
    await pub.connect();
    await waitForSockets(frontends, (c) => c[victim] === 1 && c[survivor] === 2, 'the publisher on the surviving frontend');

    await publish(pub, 'before-kill', 'before the kill');
    await subA.waitReceived('before-kill', 'across the fabric from the other frontend');
    await subB.waitReceived('before-kill', 'on the same frontend');

    // 2. kill -9 the frontend subscriber A is connected to.
    const dead = frontends[victim];
    note(`SIGKILL ${dead.label} (pid ${dead.child.pid})`);
    dead.kill();
    await withTimeout(dead.exited, WAIT_MS, `${dead.label} to die after SIGKILL`);

    // 3. A notices, reconnects through nginx by itself, lands on the survivor, resubscribes.
    const closed = await subA.ev.close.next(WAIT_MS, `subscriber A to see its connection through nginx close`);
    note(`subscriber A closed: ${JSON.stringify(closed)}`);
    await subA.ev.connect.next(RECONNECT_WAIT_MS, 'subscriber A to reconnect through nginx (second connect event)');
    assert.notEqual(subA.socket.id, idA, 'subscriber A should have a new socket id after reconnecting');
    assert.equal(subA.socket.state, 'open', 'subscriber A should be open after reconnecting');
    await waitForSockets([frontends[survivor]], ([n]) => n === 3, `subscriber A's new socket on ${frontends[survivor].label} (with B and the publisher)`);
    await subA.subscribed.waitForCount(2, RECONNECT_WAIT_MS, `subscriber A to resubscribe to '${CHANNEL}' by itself after reconnecting`);
    assert.equal(subA.socket.getChannelState(CHANNEL), 'subscribed', `subscriber A's channel state after the resubscription`);
    assert.equal(subA.ev.subscribeFail.count, 0, `subscriber A's resubscription failed: ${JSON.stringify(subA.ev.subscribeFail.items)}`);
    note(`subscriber A reconnected as ${subA.socket.id} and resubscribed`);

    // The resubscription is acknowledged once the frontend has the
    // subscription, so a publish from now on must reach A.
    await publish(pub, 'after-kill', 'from the surviving frontend after the kill');
    await subA.waitReceived('after-kill', 'after reconnecting and resubscribing');
    await subB.waitReceived('after-kill', 'after the other frontend died');
    await publish(subA, 'from-A-after-kill', 'through nginx after the reconnect');
    await subA.waitReceived('from-A-after-kill', 'its own publish through nginx');
    await subB.waitReceived('from-A-after-kill', "subscriber A's publish through nginx");

    assert.deepEqual(subA.received(), ['before-kill', 'after-kill', 'from-A-after-kill'], 'subscriber A: each message once, in order');
    assert.deepEqual(subB.received(), ['before-kill', 'after-kill', 'from-A-after-kill'], 'subscriber B: each message once, in order');

    // The subscriber on the surviving frontend never noticed anything.
    assert.equal(subB.socket.id, idB, 'subscriber B should keep its socket');
    assert.equal(subB.ev.close.count, 0, `subscriber B should not have been closed: ${JSON.stringify(subB.ev.close.items)}`);
    assert.equal(subB.ev.connect.count, 1, 'subscriber B should have connected once');
    assert.equal(subB.subscribed.count, 1, 'subscriber B should have subscribed once');

    // least_conn sent the reconnect to the dead frontend (no connections
    // left), which refused; proxy_next_upstream handed it to the survivor,
    // so the client's first attempt succeeded.
    const refused = nginx.errorLog().split('\n').filter((l) => /connect\(\) failed .*upstream/.test(l));
    note(`nginx logged ${refused.length} refused upstream connect(s): ${refused.join(' / ').slice(0, 300)}`);
    assert.ok(refused.length >= 1, `nginx should have tried the dead frontend and retried on the other; error.log:\n${nginx.errorLog()}`);
    assert.equal(subA.ev.connectAbort.count, 0, `subscriber A's reconnect should succeed at once: ${JSON.stringify(subA.ev.connectAbort.items)}`);
    for (const line of trace) t.diagnostic(line);
  } catch (err) {
    const parts = [`\n===== nginx failover test failed: ${err && err.stack ? err.stack : err}`, `----- trace -----\n${trace.join('\n')}`];
    for (const c of clients) parts.push(`----- ${c.summary()}`);
    if (nginx) parts.push(nginx.logText());
    parts.push(cluster ? cluster.logText() : infra.logText());
    process.stderr.write(`${parts.join('\n')}\n`);
    throw err;
  } finally {
    for (const c of clients) c.close();
    if (nginx) await nginx.stop().catch(() => nginx.kill());
    if (cluster) await cluster.stop({ timeoutMs: 3_000 }).catch(() => cluster.kill());
    await infra.stop({ timeoutMs: 3_000 }).catch(() => infra.kill());
  }
});
