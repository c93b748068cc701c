// The compat suite proper. defineSuite('json') / defineSuite('min-bin') each
// register the same tests; the codec decides which listener the clients use
// and which codecEngine they are given. With {cluster: true} (default: the
// COMPAT_CLUSTER environment variable) every test runs against a cluster of
// one state server, two brokers and two frontends, its clients alternating
// between the two frontends.
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_FROM_ENV, CODECS, DEFAULT_WAIT_MS, compatTest, modeName } from './harness.mjs';
import { AUTH_KEY, MemoryAuthEngine, forgeJwt, inspectJwt, nowSeconds, sleep, waitUntil, withTimeout } from './util.mjs';

const W = DEFAULT_WAIT_MS;
const RECONNECT_WAIT_MS = 10_000;

/**
 * Subscribe and wait for the outcome. Returns
 * {channel, data (Collector of channel data), subscribed, failed, outcome}
 * where outcome is {ok: true} or {ok: false, error}.
 */
async function subscribe(h, client, channelName) {
  const channel = client.socket.subscribe(channelName);
  const data = h.collect(channel, `${client.name} channel '${channelName}' data`);
  const subscribed = h.collect(channel.listener('subscribe'), `${client.name} channel '${channelName}' subscribe`);
  const failed = h.collect(channel.listener('subscribeFail'), `${client.name} channel '${channelName}' subscribeFail`);
  const outcome = await waitUntil(
    [subscribed, failed],
    () => {
      if (subscribed.count > 0) return { ok: true };
      if (failed.count > 0) return { ok: false, error: failed.items[0].error };
      return null;
    },
    W,
    `#subscribe reply for '${channelName}' on ${client.name} (subscribe or subscribeFail)`
  );
  return { channel, data, subscribed, failed, outcome };
}

async function subscribeOk(h, client, channelName) {
  const sub = await subscribe(h, client, channelName);
  assert.ok(
    sub.outcome.ok,
    `subscribing ${client.name} to '${channelName}' should succeed, got error ${describeError(sub.outcome.error)}`
  );
  assert.equal(client.socket.getChannelState(channelName), 'subscribed');
  return sub;
}

function describeError(err) {
  if (!err) return String(err);
  return JSON.stringify({ name: err.name, message: err.message, ...err });
}

/** Settle a promise into {value} or {error} (bounded). */
async function settle(promise, what, ms = W) {
  try {
    return { value: await withTimeout(promise, ms, what) };
  } catch (error) {
    if (/^timed out after/.test(error.message)) throw error;
    return { error };
  }
}

/** Round-trip through the server on this socket (also orders earlier packets). */
async function echoRoundTrip(client, marker) {
  const reply = await withTimeout(client.socket.invoke('echo', marker), W, `echo round trip on ${client.name}`);
  assert.deepEqual(reply, marker, `echo on ${client.name} should return what was sent`);
}

function assertStillConnected(client, expectedId) {
  assert.equal(client.socket.state, 'open', `${client.name} should still be open`);
  assert.equal(client.socket.id, expectedId, `${client.name} socket id should not change (no reconnect)`);
  assert.equal(client.ev.disconnect.count, 0, `${client.name} should not have disconnected: ${JSON.stringify(client.ev.disconnect.items)}`);
  assert.equal(client.ev.close.count, 0, `${client.name} should not have closed: ${JSON.stringify(client.ev.close.items)}`);
  const errors = client.ev.error.items.map(({ error }) => describeError(error));
  assert.deepEqual(errors, [], `${client.name} should not have emitted 'error' events`);
}

/** Flatten decoded frames into packets. */
function inboundPackets(client) {
  const packets = [];
  for (const frame of client.decodedFrames()) {
    if (!frame.packet) continue;
    if (Array.isArray(frame.packet)) packets.push(...frame.packet);
    else packets.push(frame.packet);
  }
  return packets;
}

const NESTED = {
  text: 'héllo wörld ✓',
  n: 42,
  neg: -7.25,
  flag: true,
  nothing: null,
  list: [1, 'two', { three: 3 }, [4, [5]]],
  deep: { a: { b: { c: { d: 'bottom' } } } },
};

export function defineSuite(codecName, { cluster = CLUSTER_FROM_ENV } = {}) {
  const codec = CODECS[codecName];
  assert.ok(codec, `unknown codec ${codecName}`);
  const t = (name, fn, opts) => compatTest(codec, name, fn, { ...opts, cluster });
  const target = cluster ? 'cluster (state server, 2 brokers, 2 frontends)' : 'single frontend';

  describe(`socketcluster-client 20.0.2 vs ${target} [${codecName} codec, ${modeName(cluster)} mode]`, () => {
    // 1 ------------------------------------------------------------------
    t('1. handshake: id, open state, unauthenticated', async (h) => {
      const srv = await h.server();
      const a = await h.connect(srv);
      const b = await h.connect(srv);

      assert.equal(typeof a.status.id, 'string', 'handshake id should be a string');
      assert.ok(a.status.id.length > 0, 'handshake id should be non-empty');
      assert.equal(a.socket.id, a.status.id);
      assert.equal(a.socket.state, 'open');
      assert.equal(a.status.isAuthenticated, false, 'handshake isAuthenticated should be false without a token');
      assert.ok(!a.status.authError, `no authError expected without a token, got ${describeError(a.status.authError)}`);
      assert.equal(a.socket.authState, 'unauthenticated');
      assert.equal(a.socket.authToken, null);
      assert.equal(typeof a.status.pingTimeout, 'number', 'handshake should carry a numeric pingTimeout');
      assert.ok(a.status.pingTimeout > 0, 'pingTimeout should be positive');
      assert.notEqual(a.socket.id, b.socket.id, 'two connections should get different ids');

      // The connection is usable after the handshake.
      await echoRoundTrip(a, { hello: 'world' });
      assertStillConnected(a, a.status.id);
    });

    // 2 ------------------------------------------------------------------
    t('2. subscribe on A, transmitPublish from B, A receives the exact data', async (h) => {
      const srv = await h.server();
      const a = await h.connect(srv, { label: 'A' });
      const b = await h.connect(srv, { label: 'B' });
      const { data } = await subscribeOk(h, a, 'news');

      const messages = [NESTED, 'plain string with "quotes" and \\ backslash', 12345, 3.5, 0, -1, '', [1, 2, 3], false];
      for (const m of messages) {
        await b.socket.transmitPublish('news', m);
      }
      const got = await data.waitForCount(messages.length, W, `${messages.length} messages on 'news'`);
      assert.deepEqual(got, messages, 'A should receive every published value, unchanged and in order');

      // B is not subscribed and must not see 'news' traffic.
      assert.equal(b.socket.isSubscribed('news', true), false);
    });

    // 3 ------------------------------------------------------------------
    t('3. invokePublish is acked and delivered (also back to a subscribed publisher)', async (h) => {
      const srv = await h.server();
      const a = await h.connect(srv, { label: 'A' });
      const b = await h.connect(srv, { label: 'B' });
      const subA = await subscribeOk(h, a, 'acked');
      const subB = await subscribeOk(h, b, 'acked');

      const r1 = await settle(b.socket.invokePublish('acked', { seq: 1, body: NESTED }), 'invokePublish ack');
      assert.ok(!r1.error, `invokePublish should resolve, got ${describeError(r1.error)}`);
      assert.deepEqual(await subA.data.next(W, 'first acked publish on A'), { seq: 1, body: NESTED });
      // SocketCluster delivers a publish to every subscriber, including the publisher.
      assert.deepEqual(await subB.data.next(W, 'own publish echoed back to subscribed publisher B'), { seq: 1, body: NESTED });

      const r2 = await settle(b.socket.invokePublish('acked', 'second'), 'second invokePublish ack');
      assert.ok(!r2.error, `second invokePublish should resolve, got ${describeError(r2.error)}`);
      assert.equal(await subA.data.next(W, 'second acked publish on A'), 'second');

      // Publishing to a channel nobody subscribes to is still acked.
      const r3 = await settle(b.socket.invokePublish('nobody-listens', 1), 'invokePublish to empty channel');
      assert.ok(!r3.error, `invokePublish to an empty channel should resolve, got ${describeError(r3.error)}`);
    });

    t('3b. a subscribed publisher gets its own message before its invokePublish ack', async (h) => {
      // socketcluster-server fans a publish out locally before acking it
      // (protocol doc 1.5 and appendix item 11), so after `await
      // invokePublish(...)` a subscribed publisher already has its own copy.
      const srv = await h.server();
      const b = await h.connect(srv, { label: 'B', rawMessages: true });
      const sub = await subscribeOk(h, b, 'self/order');

      // The v20 client numbers requests with socket._cid++ (version pinned).
      const cid = b.socket._cid;
      await withTimeout(b.socket.invokePublish('self/order', 'mine'), W, 'invokePublish ack');
      assert.equal(await sub.data.next(W, 'own message'), 'mine');

      const packets = inboundPackets(b);
      const ackIndex = packets.findIndex((p) => p && p.rid === cid);
      const pubIndex = packets.findIndex(
        (p) => p && p.event === '#publish' && p.data && p.data.channel === 'self/order' && p.data.data === 'mine'
      );
      assert.ok(ackIndex >= 0, `ack with rid ${cid} should be among the inbound packets`);
      assert.ok(pubIndex >= 0, 'own #publish should be among the inbound packets');
      assert.ok(
        pubIndex < ackIndex,
        `own #publish (packet #${pubIndex}) should arrive before the ack {rid:${cid}} (packet #${ackIndex}); ` +
          `inbound packets: ${JSON.stringify(packets)}`
      );
    });

    // 4 ------------------------------------------------------------------
    t('4. unsubscribe stops delivery', async (h) => {
      const srv = await h.server();
      const a = await h.connect(srv, { label: 'A', rawMessages: true });
      const b = await h.connect(srv, { label: 'B' });
      const gone = await subscribeOk(h, a, 'unsub/gone');
      const marker = await subscribeOk(h, a, 'unsub/marker');

      await b.socket.invokePublish('unsub/gone', 'before');
      assert.equal(await gone.data.next(W, "'before' on unsub/gone"), 'before');

      a.socket.unsubscribe('unsub/gone');
      assert.equal(a.socket.getChannelState('unsub/gone'), 'unsubscribed');
      // #unsubscribe is a transmit (no ack); an echo round trip on the same
      // socket makes sure the server has processed it before B publishes.
      await echoRoundTrip(a, 'sync-after-unsubscribe');

      await b.socket.invokePublish('unsub/gone', 'after');
      await b.socket.invokePublish('unsub/marker', 'marker');
      assert.equal(await marker.data.next(W, 'marker message'), 'marker');

      // The client drops #publish for channels it is not subscribed to, so
      // look at the raw frames the server actually sent.
      const goneFrames = inboundPackets(a).filter(
        (p) => p && p.event === '#publish' && p.data && p.data.channel === 'unsub/gone'
      );
      assert.deepEqual(
        goneFrames.map((p) => p.data.data),
        ['before'],
        'after #unsubscribe the server must not push further messages of that channel'
      );
      assert.equal(gone.data.count, 1);

      // Re-subscribing works and delivers again.
      const again = await subscribeOk(h, a, 'unsub/gone');
      await b.socket.invokePublish('unsub/gone', 'again');
      assert.equal(await again.data.waitFor((d) => d === 'again', W, "'again' after resubscribe"), 'again');
    });

    // 5 ------------------------------------------------------------------
    t('5. custom invoke: echo data, fail with DemoError', async (h) => {
      const srv = await h.server();
      const a = await h.connect(srv);

      assert.deepEqual(await withTimeout(a.socket.invoke('echo', NESTED), W, 'echo NESTED'), NESTED);
      assert.equal(await withTimeout(a.socket.invoke('echo', 'just a string'), W, 'echo string'), 'just a string');
      assert.equal(await withTimeout(a.socket.invoke('echo', 99), W, 'echo number'), 99);

      const failed = await settle(a.socket.invoke('fail', { message: 'boom from compat' }), "invoke 'fail'");
      assert.ok(failed.error, `invoke('fail') should reject, resolved with ${JSON.stringify(failed.value)}`);
      assert.equal(failed.error.name, 'DemoError');
      assert.equal(failed.error.message, 'boom from compat');

      const failedDefault = await settle(a.socket.invoke('fail', {}), "invoke 'fail' without message");
      assert.ok(failedDefault.error, "invoke('fail', {}) should reject");
      assert.equal(failedDefault.error.name, 'DemoError');
      assert.equal(failedDefault.error.message, 'demo failure');

      // An error reply does not hurt the connection.
      await echoRoundTrip(a, ['still', 'fine']);
      assertStillConnected(a, a.status.id);
    });

    // 6 ------------------------------------------------------------------
    t('6. login sets a token, token is reused on reconnect, deauthenticate drops it', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'] });
      const a = await h.connect(srv, { label: 'A' });
      assert.equal(a.socket.authState, 'unauthenticated');

      const reply = await withTimeout(a.socket.invoke('login', { username: 'alice' }), W, "invoke 'login'");
      assert.deepEqual(reply, { username: 'alice' }, 'login should reply {username}');
      await a.ev.authenticate.next(W, "'authenticate' event after #setAuthToken");
      assert.equal(a.socket.authState, 'authenticated');
      assert.ok(a.socket.authToken, 'client should hold a decoded token');
      assert.equal(a.socket.authToken.username, 'alice');

      const signed = a.socket.signedAuthToken;
      const jwt = inspectJwt(signed, AUTH_KEY);
      assert.ok(jwt.ok, `#setAuthToken token should be a 3-part JWT: ${jwt.reason}`);
      assert.equal(jwt.header.alg, 'HS256');
      assert.ok(jwt.signatureValid, 'token should be HS256-signed with --auth-key');
      if (jwt.payload.exp != null) {
        assert.ok(jwt.payload.exp > nowSeconds(), `exp ${jwt.payload.exp} should be in the future`);
      }
      // The client stored it for the next handshake.
      assert.equal(a.socket.auth.store.get('compat.authToken'), signed, 'client should have saved the token');

      // Server-side the socket is authenticated now.
      await subscribeOk(h, a, 'private/alice-before');

      // Reconnect: the stored token goes into the new #handshake.
      const oldId = a.socket.id;
      a.socket.disconnect();
      a.socket.connect();
      const status = await a.ev.connect.next(W, "'connect' after manual reconnect");
      assert.notEqual(a.socket.id, oldId, 'a new connection should get a new id');
      assert.equal(status.isAuthenticated, true, 'handshake with a valid token should report isAuthenticated');
      assert.ok(!status.authError, `no authError expected, got ${describeError(status.authError)}`);
      assert.equal(a.socket.authState, 'authenticated');
      assert.equal(a.socket.authToken.username, 'alice');
      await subscribeOk(h, a, 'private/alice-after-reconnect');

      // Deauthenticate: client sends #removeAuthToken and forgets the token.
      await a.socket.deauthenticate();
      assert.equal(a.socket.authState, 'unauthenticated');
      assert.equal(a.socket.authToken, null);
      const refused = await subscribe(h, a, 'private/after-logout');
      assert.equal(refused.outcome.ok, false, 'after deauthenticate a private/ channel must be refused');
      assert.equal(refused.outcome.error.name, 'AuthRequiredError');
      const pub = await settle(a.socket.invokePublish('private/after-logout', 'x'), 'invokePublish after logout');
      assert.ok(pub.error, 'publishing to private/ after deauthenticate must be refused');
      assert.equal(pub.error.name, 'AuthRequiredError');
      // Still the same, healthy connection.
      await echoRoundTrip(a, 'after-logout');
    });

    // 7 ------------------------------------------------------------------
    const badTokens = () => {
      const now = nowSeconds();
      return [
        { kind: 'expired', token: forgeJwt({ username: 'eve', exp: now - 120 }), errorName: 'AuthTokenExpiredError' },
        {
          kind: 'wrong key',
          token: forgeJwt({ username: 'eve', exp: now + 3600 }, { key: 'not-the-compat-key' }),
          errorName: 'AuthTokenInvalidError',
        },
        { kind: 'alg none', token: forgeJwt({ username: 'eve', exp: now + 3600 }, { alg: 'none' }), errorName: 'AuthTokenInvalidError' },
      ];
    };

    t('7a. control: a correctly signed forged token is accepted (handshake and #authenticate)', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'] });
      const token = forgeJwt({ username: 'carol', exp: nowSeconds() + 3600 });

      const viaHandshake = await h.connect(srv, {
        label: 'handshake',
        authEngine: new MemoryAuthEngine({ 'compat.authToken': token }),
      });
      assert.equal(viaHandshake.status.isAuthenticated, true, 'valid preloaded token should authenticate the handshake');
      assert.equal(viaHandshake.socket.authState, 'authenticated');
      assert.equal(viaHandshake.socket.authToken.username, 'carol');
      await subscribeOk(h, viaHandshake, 'private/carol');

      const viaAuth = await h.connect(srv, { label: 'authenticate' });
      const r = await settle(viaAuth.socket.authenticate(token), 'authenticate(valid token)');
      assert.ok(!r.error, `authenticate(valid token) should resolve, got ${describeError(r.error)}`);
      assert.equal(r.value.isAuthenticated, true);
      assert.equal(viaAuth.socket.authState, 'authenticated');
      await subscribeOk(h, viaAuth, 'private/carol2');
    });

    t('7b. expired / wrong-key / alg:none tokens refused in the handshake', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'] });
      for (const { kind, token, errorName } of badTokens()) {
        const engine = new MemoryAuthEngine({ 'compat.authToken': token });
        const c = await h.connect(srv, { label: `handshake(${kind})`, authEngine: engine });
        const what = `[${kind} token in #handshake]`;
        assert.equal(c.status.isAuthenticated, false, `${what} handshake must report isAuthenticated false`);
        assert.ok(c.status.authError, `${what} handshake reply must carry authError`);
        assert.equal(c.status.authError.name, errorName, `${what} authError name`);
        assert.equal(c.socket.authState, 'unauthenticated', `${what} client authState`);
        assert.equal(c.socket.authToken, null, `${what} client must not hold the token`);

        const refused = await subscribe(h, c, 'private/secret');
        assert.equal(refused.outcome.ok, false, `${what} private/ subscribe must be refused`);
        assert.equal(refused.outcome.error.name, 'AuthRequiredError', `${what} refusal error name`);
        await echoRoundTrip(c, kind);
        assertStillConnected(c, c.status.id);

        // The server tells the client to drop the bad token (#removeAuthToken).
        await c.ev.removeAuthToken.next(W, `${what} #removeAuthToken after failed handshake auth`);
        assert.equal(engine.store.has('compat.authToken'), false, `${what} token should be removed from the client store`);
      }
    });

    t('7c. expired / wrong-key / alg:none tokens refused by #authenticate', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'] });
      for (const { kind, token, errorName } of badTokens()) {
        const c = await h.connect(srv, { label: `authenticate(${kind})` });
        const what = `[${kind} token via authenticate()]`;
        const r = await settle(c.socket.authenticate(token), `${what} reply`);
        assert.ok(r.error, `${what} must reject, resolved with ${JSON.stringify(r.value)}`);
        assert.equal(r.error.name, errorName, `${what} error name (message: ${r.error.message})`);
        assert.equal(c.socket.authState, 'unauthenticated', `${what} client authState`);

        const refused = await subscribe(h, c, 'private/secret');
        assert.equal(refused.outcome.ok, false, `${what} private/ subscribe must be refused`);
        assert.equal(refused.outcome.error.name, 'AuthRequiredError', `${what} refusal error name`);
        await echoRoundTrip(c, kind);
        assertStillConnected(c, c.status.id);
      }
    });

    t('7d. a token that expires while connected stops granting access', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'], pingIntervalMs: 200, pingTimeoutMs: 2000 });
      const c = await h.connect(srv, { label: 'C' });
      const exp = nowSeconds() + 2;
      const r = await settle(c.socket.authenticate(forgeJwt({ username: 'shortlived', exp })), 'authenticate(short-lived token)');
      assert.ok(!r.error, `short-lived token should be accepted while valid, got ${describeError(r.error)}`);
      await subscribeOk(h, c, 'private/while-valid');

      // Wait until the token is unambiguously past exp (seconds granularity).
      while (Date.now() / 1000 < exp + 1) await sleep(100);
      // The server checks expiry on pings and inbound packets and then sends #removeAuthToken.
      await c.ev.removeAuthToken.next(W, '#removeAuthToken after the token expired');
      assert.equal(c.socket.authState, 'unauthenticated');
      const refused = await subscribe(h, c, 'private/after-expiry');
      assert.equal(refused.outcome.ok, false, 'a private/ subscribe after exp must be refused');
      assert.equal(refused.outcome.error.name, 'AuthRequiredError');
      await echoRoundTrip(c, 'expired-but-connected');
      assertStillConnected(c, c.status.id);
    });

    // 8 ------------------------------------------------------------------
    t('8. auth-required prefix: refused before login, accepted after', async (h) => {
      const srv = await h.server({ authRequiredPrefixes: ['private/'] });
      const a = await h.connect(srv, { label: 'A' });
      const b = await h.connect(srv, { label: 'B' });

      const refused = await subscribe(h, a, 'private/room');
      assert.equal(refused.outcome.ok, false, 'unauthenticated subscribe to private/room must fail');
      assert.equal(refused.outcome.error.name, 'AuthRequiredError');
      assert.equal(a.socket.getChannelState('private/room'), 'unsubscribed');
      const pubRefused = await settle(a.socket.invokePublish('private/room', 'nope'), 'unauthenticated invokePublish');
      assert.ok(pubRefused.error, 'unauthenticated invokePublish to private/room must be refused');
      assert.equal(pubRefused.error.name, 'AuthRequiredError');

      // Channels outside the prefix are unaffected.
      const marker = await subscribeOk(h, a, 'public/marker');

      await withTimeout(a.socket.invoke('login', { username: 'alice' }), W, 'login alice');
      await a.ev.authenticate.next(W, "A 'authenticate'");
      const room = await subscribeOk(h, a, 'private/room');

      // Unauthenticated B: transmitPublish is dropped silently, invokePublish rejected.
      await b.socket.transmitPublish('private/room', 'leak');
      const bRefused = await settle(b.socket.invokePublish('private/room', 'leak2'), 'B unauthenticated invokePublish');
      assert.ok(bRefused.error, 'unauthenticated B must not publish to private/room');
      assert.equal(bRefused.error.name, 'AuthRequiredError');
      await b.socket.invokePublish('public/marker', 'm1');
      assert.equal(await marker.data.next(W, 'public marker m1'), 'm1');
      assert.deepEqual(room.data.items, [], 'no unauthenticated publish may reach private/room');

      // After B logs in it can publish there.
      await withTimeout(b.socket.invoke('login', { username: 'bob' }), W, 'login bob');
      await b.ev.authenticate.next(W, "B 'authenticate'");
      assert.equal(b.socket.authToken.username, 'bob');
      const ok = await settle(b.socket.invokePublish('private/room', { from: 'bob' }), 'authenticated invokePublish');
      assert.ok(!ok.error, `authenticated publish should succeed, got ${describeError(ok.error)}`);
      assert.deepEqual(await room.data.next(W, 'bob message on private/room'), { from: 'bob' });
    });

    // 9 ------------------------------------------------------------------
    t('9. idle connection survives many short ping intervals', async (h) => {
      const srv = await h.server({ pingIntervalMs: 200, pingTimeoutMs: 1000 });
      const a = await h.connect(srv, { label: 'A', rawMessages: true });
      assert.equal(a.status.pingTimeout, 1000, 'handshake pingTimeout should equal --ping-timeout-ms');
      const id = a.socket.id;

      await sleep(3_200);

      assertStillConnected(a, id);
      assert.equal(a.ev.connect.count, 1, 'no second connect (reconnect) expected');
      const frames = a.decodedFrames();
      const pings = frames.filter((f) => f.ping).length;
      assert.ok(pings >= 8, `expected >= 8 empty-text pings in 3.2 s at 200 ms interval, saw ${pings}`);
      const junk = frames.filter((f) => f.undecodable);
      assert.deepEqual(junk, [], 'every non-ping frame should decode with the codec');
      await echoRoundTrip(a, 'alive');
    });

    // 10 -----------------------------------------------------------------
    t('10. reconnect and resubscribe after a server restart on the same port', async (h) => {
      const first = await h.server();
      const a = await h.connect(first, { label: 'A' });
      const b = await h.connect(first, { label: 'B' });
      const sub = await subscribeOk(h, a, 'restart/news');
      await b.socket.invokePublish('restart/news', 'before restart');
      assert.equal(await sub.data.next(W, "'before restart'"), 'before restart');
      const oldId = a.socket.id;

      const exit = await first.stop();
      h.note(`frontend#${first.id} exit ${JSON.stringify(exit)}`);
      assert.deepEqual(
        { code: exit.code, signal: exit.signal, forced: !!exit.forced },
        { code: 0, signal: null, forced: false },
        'SIGTERM should make the frontend exit 0 promptly'
      );
      const disc = await a.ev.disconnect.next(W, "A 'disconnect' on shutdown");
      assert.equal(disc.code, 1005, `shutdown should close with an empty close frame (1005), got ${disc.code} ${disc.reason || ''}`);

      const second = await h.server({ port: first.ports.json, minBinPort: first.ports.minBin });
      assert.equal(second.ports.json, first.ports.json);
      assert.equal(second.ports.minBin, first.ports.minBin);

      await a.ev.connect.next(RECONNECT_WAIT_MS, "A reconnect 'connect'");
      await b.ev.connect.next(RECONNECT_WAIT_MS, "B reconnect 'connect'");
      assert.notEqual(a.socket.id, oldId);
      // The client re-sends #subscribe by itself; wait for the second 'subscribe'.
      await sub.subscribed.waitForCount(2, RECONNECT_WAIT_MS, "A's automatic resubscribe to 'restart/news'");
      assert.equal(a.socket.getChannelState('restart/news'), 'subscribed');

      const r = await settle(b.socket.invokePublish('restart/news', 'after restart'), 'invokePublish after restart');
      assert.ok(!r.error, `publish after restart should be acked, got ${describeError(r.error)}`);
      assert.equal(await sub.data.next(W, "'after restart' on A"), 'after restart');
    });

    // 11 -----------------------------------------------------------------
    t('11. a token issued before a restart is accepted after it (same --auth-key)', async (h) => {
      const first = await h.server({ authRequiredPrefixes: ['private/'] });
      const a = await h.connect(first, { label: 'A' });
      await withTimeout(a.socket.invoke('login', { username: 'alice' }), W, 'login alice');
      await a.ev.authenticate.next(W, "'authenticate' after login");
      const privateSub = await subscribeOk(h, a, 'private/restart');

      await first.stop();
      await h.server({ port: first.ports.json, minBinPort: first.ports.minBin, authRequiredPrefixes: ['private/'] });

      const status = await a.ev.connect.next(RECONNECT_WAIT_MS, "A reconnect 'connect'");
      assert.equal(status.isAuthenticated, true, 'reconnect handshake with the stored token should be authenticated');
      assert.ok(!status.authError, `no authError expected, got ${describeError(status.authError)}`);
      assert.equal(a.socket.authToken.username, 'alice');
      await privateSub.subscribed.waitForCount(2, RECONNECT_WAIT_MS, 'resubscribe to private/restart');
      assert.equal(a.socket.getChannelState('private/restart'), 'subscribed');
    });
  });
}
