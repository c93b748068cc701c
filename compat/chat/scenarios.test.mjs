// Chat scenarios with real socketcluster-client users on two frontends of a
// cluster (state server, two brokers, two frontends sharing one SQLite file;
// lib/chat.mjs). alice is on frontend 1, bob and carol on frontend 2, so
// every live event between alice and bob crosses a broker, and every read of
// what the other wrote goes through the shared store.
//
// One cluster serves the whole file; each scenario makes its own rooms, and
// the kill scenario brings its frontend back before it ends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { authHeaders, downloadHashed, restJson, uploadGenerated } from '../lib/rest.mjs';
import { ADMIN_USERNAME, ChatClient, ChatCluster, RECONNECT_WAIT_MS, WAIT_MS, roomChannel, userChannel, userMessages } from '../lib/chat.mjs';

const PASSWORD = 'correct horse battery staple';

let cluster;
const clients = [];
const users = {};

function client(name, ports) {
  const c = new ChatClient(name, ports);
  clients.push(c);
  return c;
}

async function dumpOnFailure(name, fn) {
  try {
    await fn();
  } catch (err) {
    const parts = [`\n===== chat scenario '${name}' failed: ${err && err.stack ? err.stack : err}`];
    for (const c of clients) parts.push(`----- ${c.summary()}`);
    if (cluster) parts.push(cluster.logText());
    process.stderr.write(`${parts.join('\n')}\n`);
    throw err;
  }
}

/** A test of this file: the cluster's and clients' logs are printed when it fails. */
function scenario(name, fn, { timeout = 60_000 } = {}) {
  test(name, { timeout }, () => dumpOnFailure(name, fn));
}

let clientMsgSerial = 0;
/** Longest a sender waits out the message rate limit (5/s, burst 10) before giving up. */
const MAX_RATE_WAIT_MS = 3_000;

/**
 * `who` sends each text in turn into `rid`, as a client does: with a client
 * message id, and when the server says `error-too-many-requests` it waits
 * `retryAfterMs` and sends again (a few times at most). Resolves with the
 * stored messages.
 */
async function send(who, rid, texts, extra = {}) {
  const sent = [];
  for (const msg of texts) {
    const clientMsgId = `${who.username}-${++clientMsgSerial}`;
    let reply;
    for (let attempt = 0; !reply; attempt++) {
      try {
        reply = await who.invoke('sendMessage', { rid, msg, clientMsgId, ...extra });
      } catch (err) {
        if (err.error !== 'error-too-many-requests' || attempt >= 5) throw err;
        assert.ok(err.retryAfterMs > 0 && err.retryAfterMs <= MAX_RATE_WAIT_MS, `retryAfterMs: ${JSON.stringify(err)}`);
        await sleep(err.retryAfterMs);
      }
    }
    const { message, created } = reply;
    assert.equal(created, true, `${who.name}'s '${msg}' should be stored as a new message`);
    assert.equal(message.msg, msg);
    assert.equal(message.clientMsgId, clientMsgId);
    sent.push(message);
  }
  return sent;
}

/** The `message.new` events a client received on a room's channel, in arrival order. */
const newMessages = (who, rid) => who.received(roomChannel(rid)).filter((e) => e.type === 'message.new');

/**
 * `who` has received exactly `expected` (stored messages) on room/<rid> as
 * message.new events: each once, in order of `seq`, with the text and author
 * that were stored.
 */
async function assertTimeline(who, rid, expected, what) {
  const last = expected[expected.length - 1];
  await who.waitEvent(roomChannel(rid), (e) => e.type === 'message.new' && e.seq === last.seq, `${what}: seq ${last.seq}`);
  const got = newMessages(who, rid).filter((e) => e.message.t == null);
  assert.deepEqual(
    got.map((e) => [e.seq, e.message.u.username, e.message.msg]),
    expected.map((m) => [m.seq, m.u.username, m.msg]),
    `${who.name} on ${roomChannel(rid)} (${what}): every message once, in seq order`
  );
  for (const e of got) {
    assert.equal(e.rid, rid);
    assert.equal(e.id, e.message.id);
  }
}

/** A conversation: alice and bob alternate `rounds` times in `rid`; both must see all of it, in order. */
async function converse(alice, bob, rid, label, rounds = 3) {
  const sent = [];
  for (let i = 1; i <= rounds; i++) {
    sent.push(...(await send(alice, rid, [`${label}: alice says ${i}`])));
    sent.push(...(await send(bob, rid, [`${label}: bob answers ${i}`])));
  }
  const seqs = sent.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${label}: seq grows with each send`);
  assert.equal(new Set(seqs).size, seqs.length, `${label}: every message has its own seq`);
  await assertTimeline(alice, rid, sent, label);
  await assertTimeline(bob, rid, sent, label);
  return sent;
}

/** bob's subscription to `rid` as subscriptions.get reports it. */
async function subscriptionOf(who, rid) {
  const { update } = await who.invoke('subscriptions.get', {});
  const s = update.find((x) => x.rid === rid);
  assert.ok(s, `${who.name} should have a subscription to ${rid}; has ${JSON.stringify(update.map((x) => x.rid))}`);
  return s;
}

/** The error a non-member gets must be the one for a room that does not exist. */
function assertLooksNotFound(err, unknown, what) {
  assert.equal(err.error, 'error-not-found', `${what}: ${JSON.stringify(err)}`);
  assert.equal(err.name, unknown.name, `${what}: same error name as for an unknown room`);
  assert.equal(err.message, unknown.message, `${what}: same message as for an unknown room`);
  assert.equal(err.error, unknown.error, `${what}: same error id as for an unknown room`);
}

/**
 * `who` subscribes to `presence/<uid>`; `waitStatus(s)` waits for the next
 * `presence` event with status `s` (after the ones already waited for).
 */
async function watchPresence(who, uid) {
  const channel = `presence/${uid}`;
  const rec = await who.subscribe(channel);
  const presence = (e) => e && e.type === 'presence' && e.uid === uid;
  return {
    statuses: () => rec.data.items.filter(presence).map((e) => e.status),
    waitStatus: (status, what) => rec.data.waitFor((e) => presence(e) && e.status === status, WAIT_MS, `${who.name}: presence ${status} (${what})`),
  };
}

/** An upload or download of ~100 MB through a debug build on a shared machine. */
const UPLOAD_TIMEOUT_MS = 240_000;

const UNKNOWN_RID = 'NoSuchRoom0000000';

describe('chat scenarios: socketcluster-client users on two frontends sharing one SQLite store', { timeout: 300_000 }, () => {
  let alice;
  let bob;
  let carol;
  let admin;

  before(async () => {
    await dumpOnFailure('cluster start', async () => {
      cluster = new ChatCluster();
      await cluster.start();
      const [p1, p2] = cluster.ports;
      admin = await client('admin (frontend 1)', [p1]).connect();
      await admin.login(ADMIN_USERNAME, cluster.adminPassword);
      for (const name of ['alice', 'bob', 'carol', 'erin']) {
        const { user } = await admin.invoke('createUser', { username: name, password: PASSWORD, name: name[0].toUpperCase() + name.slice(1) });
        assert.equal(user.username, name);
        users[name] = user;
      }
      alice = await client('alice (frontend 1)', [p1]).connect();
      // bob may fail over: frontend 2 first, then frontend 1.
      bob = await client('bob (frontend 2)', [p2, p1]).connect();
      carol = await client('carol (frontend 2)', [p2]).connect();
      await alice.login('alice', PASSWORD);
      await bob.login('bob', PASSWORD);
      await carol.login('carol', PASSWORD);
      for (const c of [alice, bob, carol]) {
        assert.equal(c.user.username, c.username);
        await c.subscribe(userChannel(c.uid));
      }
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    if (cluster) await cluster.stop().catch(() => cluster.kill());
  });

  scenario('a conversation in a public channel across the two frontends', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'general' });
    assert.equal(room.t, 'c');
    await alice.subscribe(roomChannel(room.id));
    // bob finds the channel through the shared store and joins it from the other frontend.
    const { subscription } = await bob.invoke('joinRoom', { rid: room.id });
    assert.equal(subscription.rid, room.id);
    await bob.subscribe(roomChannel(room.id));
    await converse(alice, bob, room.id, 'general');
  });

  scenario('a conversation in a private group', async () => {
    const { room } = await alice.invoke('createPrivateGroup', { name: 'secret-plans', members: ['bob'] });
    assert.equal(room.t, 'p');
    // bob was added at creation: he learns it on his user channel, on the other frontend.
    const added = await bob.waitEvent(
      userChannel(bob.uid),
      (e) => e.type === 'subscription.changed' && e.action === 'inserted' && e.rid === room.id,
      'subscription.changed inserted for the new group'
    );
    assert.equal(added.room.t, 'p');
    await alice.subscribe(roomChannel(room.id));
    await bob.subscribe(roomChannel(room.id));
    await converse(alice, bob, room.id, 'group');
  });

  scenario('a conversation in a direct message', async () => {
    const { room } = await alice.invoke('createDirectMessage', { usernames: ['bob'] });
    assert.equal(room.t, 'd');
    const again = await bob.invoke('createDirectMessage', { usernames: ['alice'] });
    assert.equal(again.room.id, room.id, 'bob opening a DM with alice gets the same room');
    await alice.subscribe(roomChannel(room.id));
    await bob.subscribe(roomChannel(room.id));
    const sent = await converse(alice, bob, room.id, 'dm', 2);
    // A DM peer is notified on his user channel.
    const note = await bob.waitEvent(
      userChannel(bob.uid),
      (e) => e.type === 'notification' && e.rid === room.id && e.seq === sent[0].seq,
      "notification for alice's first DM"
    );
    assert.equal(note.sender.username, 'alice');
  });

  scenario('edit and delete are seen by the other user, and history shows them', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'edits', members: ['bob'] });
    await alice.subscribe(roomChannel(room.id));
    await bob.subscribe(roomChannel(room.id));
    const [fromAlice] = await send(alice, room.id, ['helo bob']);
    const [fromBob] = await send(bob, room.id, ['this one will go']);
    await assertTimeline(bob, room.id, [fromAlice, fromBob], 'before edit');

    const { message: edited } = await alice.invoke('updateMessage', { msgId: fromAlice.id, msg: 'hello bob' });
    assert.equal(edited.msg, 'hello bob');
    const upd = await bob.waitEvent(roomChannel(room.id), (e) => e.type === 'message.updated' && e.id === fromAlice.id, 'message.updated');
    assert.equal(upd.msg, 'hello bob');
    assert.equal(upd.seq, fromAlice.seq, 'an edit keeps the seq');
    assert.equal(upd.editedBy, alice.uid, 'edited by alice');

    const del = await bob.invoke('deleteMessage', { msgId: fromBob.id });
    assert.equal(del.seq, fromBob.seq);
    const gone = await alice.waitEvent(roomChannel(room.id), (e) => e.type === 'message.deleted' && e.id === fromBob.id, 'message.deleted');
    assert.equal(gone.seq, fromBob.seq, 'a delete keeps the seq');

    // bob cannot edit alice's message (a plain member); the error is a clear refusal.
    const refused = await bob.invokeError('updateMessage', { msgId: fromAlice.id, msg: 'hijacked' });
    assert.equal(refused.error, 'error-not-allowed');

    for (const who of [alice, bob]) {
      const { messages } = await who.invoke('loadHistory', { rid: room.id });
      const a = messages.find((m) => m.id === fromAlice.id);
      const b = messages.find((m) => m.id === fromBob.id);
      assert.equal(a.msg, 'hello bob', `${who.name}: the edit is stored`);
      assert.ok(a.editedAt, `${who.name}: editedAt is set`);
      assert.equal(b.t, 'rm', `${who.name}: the deleted message is a tombstone`);
      assert.equal(b.msg, '', `${who.name}: the tombstone has no text`);
      assert.equal(b.seq, fromBob.seq);
    }
  });

  scenario('reactions: bob reacts on frontend 2, alice sees it live on frontend 1; toggling removes it', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'reactions', members: ['bob'] });
    await alice.subscribe(roomChannel(room.id));
    const [m] = await send(alice, room.id, ['we shipped!']);
    const on = await bob.invoke('setReaction', { messageId: m.id, reaction: ':tada:' });
    assert.deepEqual(on.message.reactions, { ':tada:': [bob.uid] });
    const seen = await alice.waitEvent(roomChannel(room.id), (e) => e.type === 'message.updated' && e.id === m.id, 'reaction added');
    assert.deepEqual(seen.reactions, { ':tada:': [bob.uid] });
    assert.equal(seen.seq, m.seq);
    await alice.invoke('setReaction', { messageId: m.id, reaction: ':tada:', shouldReact: true });
    const both = await bob.invoke('loadHistory', { rid: room.id });
    assert.deepEqual(userMessages(both.messages).find((x) => x.id === m.id).reactions, { ':tada:': [bob.uid, alice.uid] }, 'both reactions, in order');
    // The same call again (no shouldReact) toggles bob's off.
    await bob.invoke('setReaction', { messageId: m.id, reaction: ':tada:' });
    const off = await alice.waitEvent(
      roomChannel(room.id),
      (e) => e.type === 'message.updated' && e.id === m.id && JSON.stringify(e.reactions) === JSON.stringify({ ':tada:': [alice.uid] }),
      "bob's reaction removed"
    );
    assert.ok(off);
  });

  scenario('a thread: replies across frontends, off the main timeline, read back with getThreadMessages', async () => {
    const { room } = await alice.invoke('createPrivateGroup', { name: 'threads', members: ['bob'] });
    await alice.subscribe(roomChannel(room.id));
    await bob.subscribe(roomChannel(room.id));
    const [root] = await send(alice, room.id, ['should we upgrade sqlite?']);
    const replies = [
      ...(await send(bob, room.id, ['yes, for the fts fixes'], { tmid: root.id })),
      ...(await send(alice, room.id, ['ok, I will do it'], { tmid: root.id })),
      ...(await send(bob, room.id, ['thanks'], { tmid: root.id })),
    ];
    for (const r of replies) assert.equal(r.tmid, root.id);
    // Live: every reply reaches the other side on the room's channel, marked with its thread.
    await assertTimeline(alice, room.id, [root, ...replies], 'thread');
    await assertTimeline(bob, room.id, [root, ...replies], 'thread');
    assert.ok(newMessages(bob, room.id).filter((e) => e.message.tmid === root.id).length === 3);

    for (const who of [alice, bob]) {
      const { messages } = await who.invoke('getThreadMessages', { tmid: root.id });
      assert.deepEqual(
        messages.map((m) => [m.seq, m.u.username, m.msg]),
        replies.map((m) => [m.seq, m.u.username, m.msg]),
        `${who.name}: the thread's replies in seq order`
      );
      const after = await who.invoke('getThreadMessages', { tmid: root.id, afterSeq: replies[0].seq });
      assert.deepEqual(after.messages.map((m) => m.seq), replies.slice(1).map((m) => m.seq), 'thread catch-up after a seq');
      // The main timeline has the root, with its reply count, and not the replies.
      const { messages: timeline } = await who.invoke('loadHistory', { rid: room.id });
      const texts = userMessages(timeline).map((m) => m.msg);
      assert.deepEqual(texts, [root.msg], `${who.name}: replies stay off the main timeline`);
      assert.equal(userMessages(timeline)[0].tcount, 3, 'the root counts its replies');
    }
    // carol is not in the group: its thread does not exist for her.
    const refused = await carol.invokeError('getThreadMessages', { tmid: root.id });
    assert.equal(refused.error, 'error-not-found');
  });

  scenario('search finds what a member may read, across frontends, and nothing of rooms she is not in', async () => {
    const word = `zebra${Date.now().toString(36)}`;
    const { room: open } = await alice.invoke('createChannel', { name: 'search-open', members: ['bob'] });
    const { room: closed } = await alice.invoke('createPrivateGroup', { name: 'search-closed', members: ['bob'] });
    const [inOpen] = await send(alice, open.id, [`the ${word} crossed the road`]);
    const [inClosed] = await send(alice, closed.id, [`a secret ${word} plan`]);
    await send(alice, open.id, ['nothing to see here']);

    // bob (frontend 2) finds both, written on frontend 1.
    const { messages: bobs } = await bob.invoke('messageSearch', { text: word });
    assert.deepEqual(bobs.map((m) => m.id).sort(), [inOpen.id, inClosed.id].sort(), 'bob finds the word in both his rooms');
    const { messages: inRoom } = await bob.invoke('messageSearch', { text: word, rid: closed.id });
    assert.deepEqual(inRoom.map((m) => m.id), [inClosed.id], 'search limited to one room');
    // carol is in neither: nothing without rid, a preview of the public channel, and not-found for the group.
    const { messages: carols } = await carol.invoke('messageSearch', { text: word });
    assert.deepEqual(carols, [], 'carol finds nothing in rooms she is not in');
    const { messages: preview } = await carol.invoke('messageSearch', { text: word, rid: open.id });
    assert.deepEqual(preview.map((m) => m.id), [inOpen.id], 'a public channel can be previewed');
    const refused = await carol.invokeError('messageSearch', { text: word, rid: closed.id });
    assertLooksNotFound(refused, await carol.invokeError('messageSearch', { text: word, rid: UNKNOWN_RID }), 'search in the group');
    // Deleted messages leave the index.
    await alice.invoke('deleteMessage', { msgId: inOpen.id });
    const { messages: afterDelete } = await bob.invoke('messageSearch', { text: word });
    assert.deepEqual(afterDelete.map((m) => m.id), [inClosed.id], 'a deleted message is not found');
  });

  scenario('history pages by seq, and catch-up returns what was missed', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'history', members: ['bob'] });
    const sent = await send(alice, room.id, Array.from({ length: 25 }, (_, i) => `line ${i + 1}`));
    // bob, on the other frontend, pages backwards 10 at a time until the start.
    const pages = [];
    let before;
    for (let i = 0; i < 10; i++) {
      const { messages } = await bob.invoke('loadHistory', { rid: room.id, limit: 10, ...(before ? { before } : {}) });
      if (!messages.length) break;
      const seqs = messages.map((m) => m.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'a page is ascending by seq');
      if (before) assert.ok(seqs[seqs.length - 1] < before, `page before ${before} ends below it: ${seqs}`);
      assert.ok(messages.length <= 10, `page of at most 10, got ${messages.length}`);
      pages.push(messages);
      before = seqs[0];
    }
    assert.equal(pages[0].length, 10, 'the first page is full');
    assert.deepEqual(
      userMessages(pages[0]).map((m) => m.msg),
      sent.slice(-10).map((m) => m.msg),
      'the first page is the newest 10'
    );
    const all = pages.reverse().flat();
    const seqs = all.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0] + i), 'pages join with no gap and no overlap');
    assert.deepEqual(
      userMessages(all).map((m) => [m.seq, m.msg]),
      sent.map((m) => [m.seq, m.msg]),
      'paging back to the start gives every message once'
    );

    // Catch-up: bob saw up to line 20; lines 21-25 are what he missed.
    const lastSeen = sent[19].seq;
    const sync = await bob.invoke('syncMessages', { rid: room.id, afterSeq: lastSeen });
    assert.equal(sync.reset, false);
    assert.deepEqual(
      sync.messages.map((m) => [m.seq, m.msg]),
      sent.slice(20).map((m) => [m.seq, m.msg]),
      'syncMessages after the last seen seq'
    );
  });

  scenario('unread counts go up for bob while he is away and back to zero after readMessages', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'standup', members: ['bob'] });
    const start = await subscriptionOf(bob, room.id);
    assert.deepEqual([start.unread, start.userMentions, start.alert], [0, 0, false], 'nothing unread after being added');
    // bob is not in the room (not subscribed to its channel, reading nothing) while alice posts.
    const sent = await send(alice, room.id, ['yesterday: shipped it', 'today: @bob please review', 'blockers: none']);
    const mention = await bob.waitEvent(
      userChannel(bob.uid),
      (e) => e.type === 'notification' && e.rid === room.id && e.seq === sent[1].seq,
      'notification of the @bob mention'
    );
    assert.equal(mention.sender.username, 'alice');
    const away = await subscriptionOf(bob, room.id);
    assert.deepEqual([away.unread, away.userMentions, away.alert], [3, 1, true], `bob's unread while away: ${JSON.stringify(away)}`);
    assert.equal(away.lastSeq, sent[2].seq);
    const own = await subscriptionOf(alice, room.id);
    assert.equal(own.unread, 0, "alice's own messages are not unread for her");

    const one = await send(alice, room.id, ['one more']);
    assert.equal((await subscriptionOf(bob, room.id)).unread, 4, 'unread goes up with each message');

    const { subscription } = await bob.invoke('readMessages', { rid: room.id });
    assert.equal(subscription.unread, 0);
    const back = await subscriptionOf(bob, room.id);
    assert.deepEqual([back.unread, back.userMentions, back.alert], [0, 0, false], 'read: back to zero');
    assert.equal(back.lastSeq, one[0].seq);
    // …and alice, on the other frontend, sees the same store.
    assert.equal((await subscriptionOf(alice, room.id)).unread, 0);
  });

  scenario('a non-member can neither subscribe to a private group nor load its history: it looks not found', async () => {
    const { room } = await alice.invoke('createPrivateGroup', { name: 'inner-circle', members: ['bob'] });
    await send(alice, room.id, ['carol must not read this']);

    const unknownSub = await carol.subscribeRefused(roomChannel(UNKNOWN_RID));
    const refusedSub = await carol.subscribeRefused(roomChannel(room.id));
    assertLooksNotFound(refusedSub, unknownSub, 'subscribe to the group channel');
    const unknownHist = await carol.invokeError('loadHistory', { rid: UNKNOWN_RID });
    const refusedHist = await carol.invokeError('loadHistory', { rid: room.id });
    assertLooksNotFound(refusedHist, unknownHist, 'loadHistory of the group');
    const refusedSync = await carol.invokeError('syncMessages', { rid: room.id, afterSeq: 0 });
    assertLooksNotFound(refusedSync, await carol.invokeError('syncMessages', { rid: UNKNOWN_RID, afterSeq: 0 }), 'syncMessages');
    const refusedInfo = await carol.invokeError('getRoomInfo', { rid: room.id });
    assertLooksNotFound(refusedInfo, await carol.invokeError('getRoomInfo', { rid: UNKNOWN_RID }), 'getRoomInfo');
    // A member on the same frontend as carol reads it.
    const { messages } = await bob.invoke('loadHistory', { rid: room.id });
    assert.deepEqual(userMessages(messages).map((m) => m.msg), ['carol must not read this']);
    // carol cannot listen on bob's user channel either.
    const other = await carol.subscribeRefused(userChannel(bob.uid));
    assert.ok(other && other.error, `refusal of another user's channel: ${JSON.stringify(other)}`);
  });

  scenario('typing: bob typing on frontend 2 reaches alice on frontend 1, is never stored, and a non-member cannot type', async () => {
    const { room } = await alice.invoke('createChannel', { name: 'typing', members: ['bob'] });
    await alice.subscribe(roomChannel(room.id));
    const [m] = await send(alice, room.id, ['anyone?']);
    const on = await bob.invoke('typing', { rid: room.id, typing: true });
    assert.equal(on.sent, true);
    const started = await alice.waitEvent(roomChannel(room.id), (e) => e.type === 'typing' && e.typing === true, 'bob typing');
    assert.deepEqual([started.rid, started.uid, started.username], [room.id, bob.uid, 'bob']);
    await bob.invoke('typing', { rid: room.id, typing: false });
    const stopped = await alice.waitEvent(roomChannel(room.id), (e) => e.type === 'typing' && e.typing === false, 'bob stopped typing');
    assert.equal(stopped.username, 'bob');
    // Ephemeral: nothing in the room's history or catch-up, no seq used.
    const { messages } = await bob.invoke('loadHistory', { rid: room.id });
    assert.deepEqual(messages.map((x) => x.seq), [m.seq], 'typing stores nothing');
    const sync = await bob.invoke('syncMessages', { rid: room.id, afterSeq: m.seq });
    assert.deepEqual(sync.messages, []);
    // carol is not a member of the channel: refused.
    const refused = await carol.invokeError('typing', { rid: room.id, typing: true });
    assert.ok(['error-not-found', 'error-not-allowed'].includes(refused.error), JSON.stringify(refused));
  });

  scenario("presence: erin's status, seen from the other frontend, goes offline only when her last socket closes", async () => {
    const [p1, p2] = cluster.ports;
    const watch = await watchPresence(alice, users.erin.id);
    const erin1 = await client('erin socket 1 (frontend 2)', [p2]).connect();
    await erin1.login('erin', PASSWORD);
    await watch.waitStatus('online', 'erin online after logging in on frontend 2');
    const erin2 = await client('erin socket 2 (frontend 1)', [p1]).connect();
    await erin2.login('erin', PASSWORD);
    const { users: seen } = await alice.invoke('getUserPresence', { uid: users.erin.id });
    assert.equal(seen[0].status, 'online');

    await erin2.invoke('setUserStatus', { status: 'busy' });
    await watch.waitStatus('busy', 'manual busy');
    await erin2.invoke('setUserStatus', { status: 'online' });
    await watch.waitStatus('online', 'automatic again');

    // One socket closes: she is still online (the other is open on the other frontend).
    erin1.close();
    await sleep(500);
    assert.equal(watch.statuses().slice(-1)[0], 'online', `erin still online with one socket left: ${watch.statuses()}`);
    assert.equal((await alice.invoke('getUserPresence', { uid: users.erin.id })).users[0].status, 'online');
    // Her last socket closes: offline, seen by alice on the other frontend.
    erin2.close();
    await watch.waitStatus('offline', "erin offline after her last socket closed");
    assert.equal((await alice.invoke('getUserPresence', { uid: users.erin.id })).users[0].status, 'offline');
  });

  scenario('REST and sockets are one chat: a bot-style REST post on frontend 2 reaches a socket on frontend 1, and REST history follows the same rules', async () => {
    const [p1, p2] = cluster.ports;
    const { room } = await alice.invoke('createPrivateGroup', { name: 'rest-and-socket', members: ['bob'] });
    await alice.subscribe(roomChannel(room.id));
    const [fromSocket] = await send(alice, room.id, ['posted over the socket']);
    const posted = await restJson(p2, 'POST', '/api/v1/chat.postMessage', {
      headers: authHeaders(bob.uid, bob.user.token),
      body: { roomId: room.id, text: 'posted over REST' },
    });
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
    assert.equal(posted.body.success, true);
    assert.equal(posted.body.channel, room.id);
    const live = await alice.waitEvent(roomChannel(room.id), (e) => e.type === 'message.new' && e.id === posted.body.message.id, 'the REST post, live');
    assert.equal(live.seq, fromSocket.seq + 1, 'one seq sequence for both surfaces');
    assert.equal(live.message.u.username, 'bob');

    const history = await restJson(p1, 'GET', `/api/v1/groups.history?roomId=${room.id}`, { headers: authHeaders(alice.uid, alice.user.token) });
    assert.equal(history.status, 200, JSON.stringify(history.body));
    assert.deepEqual(userMessages(history.body.messages).map((m) => m.msg), ['posted over the socket', 'posted over REST']);
    // carol: the group is not found over REST either, the same as an unknown room.
    const refused = await restJson(p2, 'GET', `/api/v1/groups.history?roomId=${room.id}`, { headers: authHeaders(carol.uid, carol.user.token) });
    const unknown = await restJson(p2, 'GET', `/api/v1/groups.history?roomId=${UNKNOWN_RID}`, { headers: authHeaders(carol.uid, carol.user.token) });
    assert.equal(refused.status, 404, JSON.stringify(refused.body));
    assert.deepEqual(refused.body, unknown.body, 'same answer as an unknown room');
    const anon = await restJson(p2, 'GET', `/api/v1/groups.history?roomId=${room.id}`);
    assert.equal(anon.status, 401);
  });

  scenario(
    'an upload over 100 MB streams in over REST on frontend 1, is read back by a member on frontend 2, and refused to a non-member',
    async () => {
      const [p1, p2] = cluster.ports;
      const size = 100 * 1024 * 1024 + 54_321;
      // The default limit is 100 MiB; the admin raises it (cluster-wide).
      await admin.invoke('settings.set', { _id: 'FileUpload_MaxFileSize', value: 200 * 1024 * 1024 });
      const { room } = await alice.invoke('createPrivateGroup', { name: 'files', members: ['bob'] });
      await bob.subscribe(roomChannel(room.id));

      const started = Date.now();
      const up = await uploadGenerated(p1, `/api/v1/rooms.upload/${room.id}`, {
        headers: authHeaders(alice.uid, alice.user.token),
        filename: 'dump.bin',
        size,
        fields: { msg: 'the full dump' },
        timeoutMs: UPLOAD_TIMEOUT_MS,
      });
      const uploadMs = Date.now() - started;
      assert.equal(up.status, 200, `upload: ${JSON.stringify(up.body).slice(0, 500)}`);
      const message = up.body.message;
      assert.equal(message.rid, room.id);
      const [att] = message.attachments;
      assert.equal(att.size, size, 'the stored size');
      assert.equal(att.sha256, up.sha256, 'the server hashed what was sent');
      assert.ok(att.title_link.startsWith('/file-upload/'), att.title_link);

      // bob sees the message live on the other frontend.
      const live = await bob.waitEvent(roomChannel(room.id), (e) => e.type === 'message.new' && e.id === message.id, 'the upload message');
      assert.equal(live.message.attachments[0].fileId, att.fileId);

      // bob, a member, downloads it through frontend 2: same bytes.
      const started2 = Date.now();
      const got = await downloadHashed(p2, att.title_link, { headers: authHeaders(bob.uid, bob.user.token), timeoutMs: UPLOAD_TIMEOUT_MS });
      const downloadMs = Date.now() - started2;
      assert.equal(got.status, 200, got.body);
      assert.equal(got.size, size);
      assert.equal(got.sha256, up.sha256, 'the member reads back exactly what was uploaded');
      process.stderr.write(`# upload of ${size} bytes: ${uploadMs} ms in, ${downloadMs} ms out (debug build)\n`);

      // carol, not in the group, gets the 404 of an unknown file, on either frontend, and cannot upload there.
      for (const port of [p1, p2]) {
        const refused = await downloadHashed(port, att.title_link, { headers: authHeaders(carol.uid, carol.user.token), timeoutMs: 10_000 });
        assert.equal(refused.status, 404, `carol's download on :${port}: ${refused.body}`);
        assert.equal(refused.size < 4096, true, 'no file bytes for a non-member');
      }
      const unknown = await downloadHashed(p2, `/file-upload/NoSuchFile0000000/dump.bin`, { headers: authHeaders(carol.uid, carol.user.token), timeoutMs: 10_000 });
      assert.equal(unknown.status, 404);
      const anon = await downloadHashed(p2, att.title_link, { timeoutMs: 10_000 });
      assert.ok([401, 404].includes(anon.status), `anonymous download: ${anon.status}`);
      const carolUp = await uploadGenerated(p2, `/api/v1/rooms.upload/${room.id}`, {
        headers: authHeaders(carol.uid, carol.user.token),
        filename: 'sneaky.bin',
        size: 1024,
        timeoutMs: 10_000,
      });
      assert.equal(carolUp.status, 404, `carol's upload into the group: ${JSON.stringify(carolUp.body)}`);
    },
    { timeout: 400_000 }
  );

  scenario(
    "bob's frontend is killed mid-conversation: he reconnects to the other one and catches up by seq with nothing missing",
    async () => {
      const { room } = await alice.invoke('createChannel', { name: 'failover', members: ['bob'] });
      const channel = roomChannel(room.id);
      await alice.subscribe(channel);
      const bobRoom = await bob.subscribe(channel);
      const before = await converse(alice, bob, room.id, 'failover', 2);
      const [toEdit, toDelete] = before;
      const lastSeen = Math.max(...newMessages(bob, room.id).map((e) => e.seq));
      const lastSeenAt = Math.max(...newMessages(bob, room.id).map((e) => e.message.updatedAt));
      const oldId = bob.socket.id;
      const bobPort = bob.port;
      assert.equal(bobPort, cluster.ports[1], 'bob is on frontend 2');

      // carol's only frontend is the one that dies: alice, on the survivor, watches her presence.
      const carolPresence = await watchPresence(alice, carol.uid);
      const exit = await cluster.killFrontend(1);
      assert.equal(exit.signal, 'SIGKILL');
      await bob.ev.close.next(WAIT_MS, "bob's connection to the killed frontend to close");

      // The conversation goes on without him: new messages, an edit and a delete of older ones.
      const missed = await send(alice, room.id, ['are you there?', 'frontend 2 is gone', 'you will catch up']);
      await alice.invoke('updateMessage', { msgId: toEdit.id, msg: 'failover: alice says 1 (edited)' });
      await alice.invoke('deleteMessage', { msgId: toDelete.id });

      // bob's client reconnects by itself, to frontend 1, with the same token, and resubscribes.
      const status = await bob.ev.connect.next(RECONNECT_WAIT_MS, "bob's reconnect (second 'connect')");
      assert.equal(bob.port, cluster.ports[0], 'bob reconnected to frontend 1');
      assert.notEqual(bob.socket.id, oldId);
      assert.equal(status.isAuthenticated, true, 'the socket token is accepted by the other frontend');
      await bobRoom.subscribed.waitForCount(2, RECONNECT_WAIT_MS, 'bob to resubscribe to the room by himself');
      assert.equal(bob.ev.subscribeFail.count, 0, `resubscription refused: ${JSON.stringify(bob.ev.subscribeFail.items)}`);

      // Catch-up from the last seq he saw: exactly the messages he missed, in order.
      const sync = await bob.invoke('syncMessages', { rid: room.id, afterSeq: lastSeen, updatedSince: lastSeenAt + 1 });
      assert.equal(sync.reset, false);
      assert.deepEqual(
        sync.messages.map((m) => [m.seq, m.msg]),
        missed.map((m) => [m.seq, m.msg]),
        'syncMessages gives exactly the messages sent while bob was away'
      );
      assert.equal(missed[0].seq, lastSeen + 1, 'nothing between what he saw and what he missed');
      assert.deepEqual(sync.updated.map((m) => [m.id, m.msg]), [[toEdit.id, 'failover: alice says 1 (edited)']], 'the edit made while away');
      assert.deepEqual(sync.deleted.map((m) => [m.id, m.t]), [[toDelete.id, 'rm']], 'the delete made while away');
      const known = new Set([...newMessages(bob, room.id).map((e) => e.seq), ...sync.messages.map((m) => m.seq)]);
      const top = missed[missed.length - 1].seq;
      for (let s = before[0].seq; s <= top; s++) assert.ok(known.has(s), `bob has seq ${s} (live or caught up)`);

      // Live again, through frontend 1 now: both ways.
      const [afterAlice] = await send(alice, room.id, ['welcome back']);
      await bob.waitEvent(channel, (e) => e.type === 'message.new' && e.seq === afterAlice.seq, 'live message after the reconnect');
      const [afterBob] = await send(bob, room.id, ['thanks, caught up']);
      await alice.waitEvent(channel, (e) => e.type === 'message.new' && e.seq === afterBob.seq, "bob's message after his reconnect");
      const live = newMessages(bob, room.id).map((e) => e.seq);
      assert.equal(new Set(live).size, live.length, `bob got no event twice: ${live}`);

      // Nobody speaks for the dead frontend: its lease runs out and the survivor turns carol offline.
      await carolPresence.waitStatus('offline', "carol offline once the dead frontend's lease ran out");
      assert.equal((await alice.invoke('getUserPresence', { uid: bob.uid })).users[0].status, 'online', 'bob is online through frontend 1');

      // Frontend 2 comes back on its port with the same store; carol (whose only frontend it was) reconnects.
      await cluster.restartFrontend(1);
      await carol.ev.connect.waitForCount(2, RECONNECT_WAIT_MS, 'carol to reconnect to the restarted frontend 2');
      await carolPresence.waitStatus('online', 'carol online again after reconnecting with her token');
      const { messages } = await carol.invoke('loadHistory', { rid: room.id });
      assert.equal(messages[messages.length - 1].seq, afterBob.seq, 'the restarted frontend reads the same store');
    },
    { timeout: 90_000 }
  );
});
