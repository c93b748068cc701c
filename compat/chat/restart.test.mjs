// Data survives a restart of every node (issue 6): the chat cluster of
// lib/chat.mjs (state server, two brokers, two frontends on one SQLite file)
// is filled with users, rooms, messages (an edit, a delete, a reaction, a
// thread reply), a bot's personal access token, an upload, unread counts, a
// changed setting and a changed permission; then EVERY process is stopped
// (SIGTERM) and started again on the same file, on new ports, and real
// socketcluster-client users check that all of it is still there and still
// in effect, and that the cluster works (seq goes on, live delivery across
// the two frontends).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil } from '../lib/cluster.mjs';
import { authHeaders, downloadHashed, uploadGenerated } from '../lib/rest.mjs';
import { ADMIN_USERNAME, ChatClient, ChatCluster, WAIT_MS, roomChannel, userMessages } from '../lib/chat.mjs';

const PASSWORD = 'correct horse battery staple';
const UPLOAD_SIZE = 70_001;
const UPLOAD_TIMEOUT_MS = 30_000;
/** The admin lowers the longest message allowed (default 5000) to this before the restart. */
const MAX_MESSAGE = 300;

let cluster;
const clients = [];

function client(name, port) {
  const c = new ChatClient(name, [port]);
  clients.push(c);
  return c;
}

function closeClients() {
  for (const c of clients.splice(0)) c.close();
}

async function dumpOnFailure(name, fn) {
  try {
    await fn();
  } catch (err) {
    const parts = [`\n===== chat restart '${name}' failed: ${err && err.stack ? err.stack : err}`];
    for (const c of clients) parts.push(`----- ${c.summary()}`);
    if (cluster) parts.push(cluster.logText());
    process.stderr.write(`${parts.join('\n')}\n`);
    throw err;
  }
}

let serial = 0;
/** `who` sends `msg` into `rid` with a client message id, waiting out the rate limit a few times at most. */
async function send(who, rid, msg, extra = {}) {
  const clientMsgId = `${who.username}-restart-${++serial}`;
  for (let attempt = 0; ; attempt++) {
    try {
      const { message, created } = await who.invoke('sendMessage', { rid, msg, clientMsgId, ...extra });
      assert.equal(created, true);
      assert.equal(message.msg, msg);
      return message;
    } catch (err) {
      if (err.error !== 'error-too-many-requests' || attempt >= 5) throw err;
      await sleep(Math.min(err.retryAfterMs || 500, 3_000));
    }
  }
}

/** `who`'s subscriptions by room id. */
async function subscriptionsOf(who) {
  const { update } = await who.invoke('subscriptions.get', {});
  return Object.fromEntries(update.map((s) => [s.rid, s]));
}

const history = async (who, rid) => (await who.invoke('loadHistory', { rid })).messages;
const lastSeq = (messages) => Math.max(...messages.map((m) => m.seq));
const settingOf = async (who, id) => (await who.invoke('settings.get', {})).settings.find((s) => s._id === id);
const rolesOf = async (who, perm) => (await who.invoke('permissions.get', {})).permissions.find((p) => p._id === perm).roles;
/** Waits (bounded) until `probe` holds on `who`'s frontend: a policy change it has reloaded. */
const reloaded = (who, what, probe) =>
  pollUntil(async () => ((await probe()) ? { ok: true } : { ok: false, why: 'not yet' }), WAIT_MS, `${who.name}'s frontend to reload the ${what}`);

describe('chat: data survives a restart of every node (one SQLite file)', { timeout: 240_000 }, () => {
  /** Everything recorded before the restart. */
  const before_ = {};

  before(async () => {
    cluster = new ChatCluster();
    await dumpOnFailure('cluster start', () => cluster.start());
  });

  after(async () => {
    closeClients();
    if (cluster) await cluster.stop().catch(() => cluster.kill());
  });

  test('before the restart: users, rooms, messages, a token, an upload, unread counts, a setting, a permission', { timeout: 90_000 }, () =>
    dumpOnFailure('fill', async () => {
      const [p1, p2] = cluster.ports;
      const admin = await client('admin (frontend 1)', p1).connect();
      await admin.login(ADMIN_USERNAME, cluster.adminPassword);
      for (const username of ['alice', 'bob']) {
        await admin.invoke('createUser', { username, password: PASSWORD, name: username });
      }
      const { user: bot } = await admin.invoke('createUser', { username: 'deploybot', password: `${PASSWORD} bot`, roles: ['bot'] });
      const pat = await admin.invoke('generatePersonalAccessToken', { tokenName: 'ci', userId: bot.id });
      assert.equal(pat.userId, bot.id);
      assert.ok(pat.token, 'the secret is returned once');
      before_.bot = { id: bot.id, token: pat.token };

      const alice = await client('alice (frontend 1)', p1).connect();
      const bob = await client('bob (frontend 2)', p2).connect();
      await alice.login('alice', PASSWORD);
      const bobLogin = await bob.login('bob', PASSWORD);
      assert.ok(bobLogin.token, 'a password login returns the session token');
      before_.bob = { id: bobLogin.id, token: bobLogin.token, sessionId: bobLogin.sessionId };
      before_.alice = { id: alice.uid };

      // A public channel: an edit, a delete, a reaction.
      const { room: general } = await alice.invoke('createChannel', { name: 'general', members: ['bob'] });
      const edited = await send(alice, general.id, 'helo everyone');
      await alice.invoke('updateMessage', { msgId: edited.id, msg: 'hello everyone' });
      const deleted = await send(bob, general.id, 'this one will go');
      await bob.invoke('deleteMessage', { msgId: deleted.id });
      const reacted = await send(alice, general.id, 'we shipped!');
      await bob.invoke('setReaction', { messageId: reacted.id, reaction: ':tada:' });
      // bob reads up to here; two more arrive after: he has 2 unread.
      await bob.invoke('readMessages', { rid: general.id });
      await send(alice, general.id, 'retro at 3');
      await send(alice, general.id, 'bring snacks');

      // A private group with a thread and an upload.
      const { room: group } = await alice.invoke('createPrivateGroup', { name: 'restart-plans', members: ['bob'] });
      const root = await send(alice, group.id, 'should we restart everything?');
      const reply = await send(bob, group.id, 'yes, every node', { tmid: root.id });
      assert.equal(reply.tmid, root.id);
      const up = await uploadGenerated(p1, `/api/v1/rooms.upload/${group.id}`, {
        headers: authHeaders(alice.uid, alice.user.token),
        filename: 'plan.bin',
        size: UPLOAD_SIZE,
        fields: { msg: 'the plan' },
        timeoutMs: UPLOAD_TIMEOUT_MS,
      });
      assert.equal(up.status, 200, `upload: ${JSON.stringify(up.body).slice(0, 500)}`);
      const [att] = up.body.message.attachments;
      assert.equal(att.sha256, up.sha256);
      before_.upload = { link: att.title_link, sha256: up.sha256, size: UPLOAD_SIZE };

      // A setting and a permission changed by the admin, each seen in effect now.
      // The change reaches the other frontend through `sys/internal` a moment after the admin's
      // reply: wait until the users' own frontends show it before checking its effect.
      await admin.invoke('settings.set', { _id: 'Message_MaxAllowedSize', value: MAX_MESSAGE });
      await reloaded(alice, 'Message_MaxAllowedSize setting', async () => (await settingOf(alice, 'Message_MaxAllowedSize'))?.value === MAX_MESSAGE);
      const tooLong = await alice.invokeError('sendMessage', { rid: general.id, msg: 'x'.repeat(MAX_MESSAGE + 1) });
      assert.ok(tooLong.error, JSON.stringify(tooLong));
      before_.tooLongError = tooLong.error;
      await admin.invoke('permissions.update', { permissions: [{ _id: 'create-c', roles: ['admin', 'bot'] }] });
      await reloaded(bob, 'create-c permission', async () => (await rolesOf(bob, 'create-c')).join() === 'admin,bot');
      const noChannel = await bob.invokeError('createChannel', { name: 'bobs-own' });
      assert.equal(noChannel.error, 'error-not-allowed');

      before_.rooms = { general: general.id, group: group.id };
      before_.ids = { edited: edited.id, deleted: deleted.id, reacted: reacted.id, root: root.id, reply: reply.id };
      before_.history = { general: await history(alice, general.id), group: await history(bob, group.id) };
      before_.thread = (await bob.invoke('getThreadMessages', { tmid: root.id })).messages;
      before_.subs = { alice: await subscriptionsOf(alice), bob: await subscriptionsOf(bob) };
      assert.equal(before_.subs.bob[general.id].unread, 2, `bob's unread in general: ${JSON.stringify(before_.subs.bob[general.id])}`);
      assert.ok(before_.subs.bob[group.id].unread > 0, "bob has unread messages in the group (alice's root and upload)");
      closeClients();
    })
  );

  test('every node stops (SIGTERM) and starts again on the same store file', { timeout: 60_000 }, () =>
    dumpOnFailure('restart', async () => {
      assert.ok(before_.rooms, 'the fill test ran');
      const oldPorts = cluster.ports;
      const started = Date.now();
      const exits = await cluster.restartAll();
      const ms = Date.now() - started;
      const all = [
        ...exits.frontends.map((e, i) => [`frontend ${i + 1}`, e]),
        ...exits.brokers.map((e, i) => [`broker ${i + 1}`, e]),
        ['state server', exits.stateServer],
      ];
      for (const [what, e] of all) {
        assert.ok(e && !e.forced, `${what} should exit on SIGTERM without being killed: ${JSON.stringify(e)}`);
      }
      process.stderr.write(`# full restart (stop + start of 5 processes): ${ms} ms; frontends ${oldPorts} -> ${cluster.ports}\n`);
    })
  );

  test('after the restart: logins, sessions, subscriptions, unread, history, token, upload, settings and permissions are as before', { timeout: 90_000 }, () =>
    dumpOnFailure('check', async () => {
      assert.ok(before_.subs, 'the fill test ran');
      const [p1, p2] = cluster.ports;
      const { general, group } = before_.rooms;

      // Passwords still log in; bob's old session resumes (same session id) on the other frontend.
      const alice = await client('alice after (frontend 1)', p1).connect();
      await alice.login('alice', PASSWORD);
      assert.equal(alice.uid, before_.alice.id);
      const bob = await client('bob resumed (frontend 2)', p2).connect();
      bob.user = await bob.invoke('login', { resume: before_.bob.token });
      bob.username = 'bob';
      assert.equal(bob.uid, before_.bob.id);
      assert.equal(bob.user.sessionId, before_.bob.sessionId, 'the same session, not a new one');
      const bobAgain = await client('bob by password (frontend 1)', p1).connect();
      await bobAgain.login('bob', PASSWORD);
      assert.equal(bobAgain.uid, before_.bob.id);
      const wrong = await client('bob, wrong password', p2).connect();
      const refused = await wrong.invokeError('login', { user: 'bob', password: 'not it' });
      assert.ok(refused.error, 'a wrong password is still refused');

      // The bot's personal access token still authenticates.
      const bot = await client('deploybot (frontend 2)', p2).connect();
      const botLogin = await bot.invoke('login', { resume: before_.bot.token });
      assert.equal(botLogin.id, before_.bot.id);
      assert.equal(botLogin.username, 'deploybot');

      // Same rooms, same subscription state, same unread counts.
      const subs = { alice: await subscriptionsOf(alice), bob: await subscriptionsOf(bob) };
      assert.deepEqual(Object.keys(subs.bob).sort(), Object.keys(before_.subs.bob).sort(), "bob's rooms");
      assert.deepEqual(subs, before_.subs, 'subscriptions.get answers exactly as before the restart');
      assert.equal(subs.bob[general].unread, 2, "bob's 2 unread in general");

      // Same history: seq, edit, tombstone, reaction, thread count.
      const hist = { general: await history(alice, general), group: await history(bob, group) };
      assert.deepEqual(hist, before_.history, 'loadHistory answers exactly as before the restart');
      const byId = (list, id) => list.find((m) => m.id === id);
      const { edited, deleted, reacted, root, reply } = before_.ids;
      assert.equal(byId(hist.general, edited).msg, 'hello everyone');
      assert.ok(byId(hist.general, edited).editedAt, 'still marked edited');
      assert.equal(byId(hist.general, deleted).t, 'rm', 'still a tombstone');
      assert.equal(byId(hist.general, deleted).msg, '');
      assert.deepEqual(byId(hist.general, reacted).reactions, { ':tada:': [before_.bob.id] });
      assert.equal(byId(hist.group, root).tcount, 1, 'the root still counts its reply');
      assert.equal(byId(hist.group, reply), undefined, 'the reply stays off the main timeline');
      const { messages: thread } = await alice.invoke('getThreadMessages', { tmid: root });
      assert.deepEqual(thread, before_.thread, 'the thread as before');

      // The upload downloads byte-identical, with bob's pre-restart bearer token, from the other frontend.
      const got = await downloadHashed(p2, before_.upload.link, { headers: authHeaders(before_.bob.id, before_.bob.token), timeoutMs: UPLOAD_TIMEOUT_MS });
      assert.equal(got.status, 200, got.body);
      assert.equal(got.size, before_.upload.size);
      assert.equal(got.sha256, before_.upload.sha256, 'the same bytes');

      // The setting and the permission changed before the restart are still in effect.
      assert.equal((await settingOf(alice, 'Message_MaxAllowedSize'))?.value, MAX_MESSAGE);
      const tooLong = await alice.invokeError('sendMessage', { rid: general, msg: 'x'.repeat(MAX_MESSAGE + 1) });
      assert.equal(tooLong.error, before_.tooLongError, 'a message over the lowered limit is still refused');
      const admin = await client('admin after (frontend 2)', p2).connect();
      await admin.login(ADMIN_USERNAME, cluster.adminPassword);
      assert.deepEqual(await rolesOf(admin, 'create-c'), ['admin', 'bot']);
      const noChannel = await bob.invokeError('createChannel', { name: 'bobs-own' });
      assert.equal(noChannel.error, 'error-not-allowed', 'bob still may not create channels');

      // The cluster works: seq goes on from the stored last one, and messages cross the two frontends live.
      await alice.subscribe(roomChannel(general));
      await bob.subscribe(roomChannel(general));
      const last = lastSeq(hist.general);
      const fromAlice = await send(alice, general, 'we are back');
      assert.equal(fromAlice.seq, last + 1, 'the next seq after the restart');
      const seenByBob = await bob.waitEvent(roomChannel(general), (e) => e.type === 'message.new' && e.id === fromAlice.id, "alice's message, live on frontend 2", WAIT_MS);
      assert.equal(seenByBob.seq, last + 1);
      const fromBob = await send(bob, general, 'welcome back');
      assert.equal(fromBob.seq, last + 2);
      await alice.waitEvent(roomChannel(general), (e) => e.type === 'message.new' && e.id === fromBob.id, "bob's message, live on frontend 1", WAIT_MS);
      assert.deepEqual(userMessages(await history(bob, general)).slice(-2).map((m) => [m.seq, m.msg]), [
        [last + 1, 'we are back'],
        [last + 2, 'welcome back'],
      ]);
      const after = await subscriptionsOf(bob);
      assert.equal(after[general].unread, 3, "alice's new message adds to bob's unread (his own does not)");
    })
  );
});
