// The chat client (web/, served by every frontend at `/`) in headless
// Chromium: two people in two browser contexts on two different frontends of
// a local cluster (lib/chat.mjs's ChatCluster: state server, two brokers, two
// frontends on one SQLite file). alice's page is on frontend 1, bob's on
// frontend 2, so everything one sees of the other crossed a broker.
//
// Users and rooms are made through the socket API before the pages open;
// the pages log in through the login form. Screenshots of the main views go
// to target/browser-artifacts/.
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RECOVER_WAIT_MS, UI_WAIT_MS, waitFor, waitVisible } from './lib/browser.mjs';
import {
  openRoom,
  rowBadges,
  sendFromComposer,
  shownMessages,
  typingText,
  waitBadges,
  waitConnState,
  waitMessage,
  waitPresence,
  waitRoomOpen,
} from './lib/chat-page.mjs';
import { PASSWORD, connectAdmin, connectAs, createUsers, send } from './lib/seed.mjs';
import { BrowserEnv } from './lib/setup.mjs';
import { ADMIN_USERNAME, RECONNECT_WAIT_MS } from '../lib/chat.mjs';
import { pollUntil } from '../lib/cluster.mjs';

const env = new BrowserEnv();

describe('the chat client in Chromium, two users on two frontends', { timeout: 240_000 }, () => {
  let admin;
  const rooms = {};
  let p0;
  let p1;

  before(async () => {
    await env.start();
    await env.dumpOnFailure('seed', async () => {
      [p0, p1] = env.cluster.ports;
      admin = await connectAdmin(env.cluster, p0);
      await createUsers(admin, ['alice', 'bob']);
      // 'general' is where they talk, 'side' where bob writes while alice looks elsewhere,
      // 'recovery' where the frontends die.
      rooms.general = (await admin.invoke('createChannel', { name: 'general', members: ['alice', 'bob'] })).room;
      rooms.side = (await admin.invoke('createPrivateGroup', { name: 'side', members: ['alice', 'bob'] })).room;
      rooms.recovery = (await admin.invoke('createChannel', { name: 'recovery', members: ['alice', 'bob'] })).room;
      // A DM puts bob in alice's sidebar with his presence dot.
      const aliceSock = await connectAs('alice', PASSWORD, [p0], 'alice (node, frontend 1)');
      rooms.dm = (await aliceSock.invoke('createDirectMessage', { usernames: ['bob'] })).room;
      aliceSock.close();
    });
  });

  after(() => env.stop());

  /** A person's page on frontend `i`, logged in through the form. */
  async function personOn(name, i, { screenshotLogin = false } = {}) {
    const u = await env.browser.user(`${name} (frontend ${i + 1})`, env.cluster.ports[i]);
    await u.open();
    if (screenshotLogin) await u.screenshot('01-login');
    await u.login(name, PASSWORD);
    await waitConnState(u, ['connected'], 'after login');
    return u;
  }

  env.test('each frontend serves the client: the page loads, shows the login form, logs no error', async () => {
    for (const i of [0, 1]) {
      const u = await env.browser.user(`visitor (frontend ${i + 1})`, env.cluster.ports[i]);
      const response = await u.page.goto(u.url, { waitUntil: 'load', timeout: UI_WAIT_MS });
      assert.equal(response.status(), 200, `GET / on frontend ${i + 1}`);
      assert.match(response.headers()['content-type'] || '', /text\/html/, `GET / on frontend ${i + 1}: content type`);
      await waitVisible(u.page, '#login-form', `login form from frontend ${i + 1}`);
      if (i === 0) await u.screenshot('01-login');
      // A wrong password is refused in the page, and says so.
      await u.page.fill('#login-user', 'alice');
      await u.page.fill('#login-password', 'not her password');
      await u.page.click('#login-submit');
      await waitVisible(u.page, '#login-error', 'the login error after a wrong password');
      assert.notEqual((await u.page.textContent('#login-error')).trim(), '', '#login-error says something');
      assert.equal(await u.page.locator('#app').isVisible(), false, 'no app after a refused login');
      assert.deepEqual(u.errors, [], `frontend ${i + 1}: the page reported no error`);
      await u.close();
    }
  });

  let alice;
  let bob;

  env.test('alice and bob talk in a channel from two frontends; typing and presence reach the other', async () => {
    alice = await personOn('alice', 0);
    bob = await personOn('bob', 1);
    await openRoom(alice, 'general');
    await openRoom(bob, 'general');

    await sendFromComposer(alice, 'hello bob, this is alice on frontend 1');
    await waitMessage(bob, 'hello bob, this is alice on frontend 1', 'alice wrote from the other frontend');
    await sendFromComposer(bob, 'hi alice, bob here on frontend 2');
    await waitMessage(alice, 'hi alice, bob here on frontend 2', 'bob wrote from the other frontend');
    // Both see the same conversation: same messages, same order, same authors.
    const a = (await shownMessages(alice)).map((m) => [m.seq, m.author, m.text]);
    const b = (await shownMessages(bob)).map((m) => [m.seq, m.author, m.text]);
    assert.deepEqual(a, b, 'alice and bob see the same messages in the same order');
    assert.deepEqual(
      a.slice(-2).map(([, , t]) => t),
      ['hello bob, this is alice on frontend 1', 'hi alice, bob here on frontend 2']
    );
    assert.ok(/alice/i.test(a.slice(-2)[0][1]) && /bob/i.test(a.slice(-1)[0][1]), `authors: ${JSON.stringify(a.slice(-2))}`);

    // bob types: alice sees it in #typing; when he sends, it goes away.
    assert.equal(await typingText(alice), '', 'nobody is typing yet');
    await bob.page.click('#composer');
    await bob.page.keyboard.type('I am writing something long', { delay: 40 });
    await waitFor(
      alice.page,
      () => {
        const el = document.querySelector('#typing');
        return !!el && /bob/i.test(el.textContent) && /typing/i.test(el.textContent);
      },
      undefined,
      'alice: #typing says bob is typing',
      UI_WAIT_MS,
      () => typingText(alice)
    );
    await alice.screenshot('03-typing');
    await bob.page.click('#send');
    await waitMessage(alice, 'I am writing something long', 'bob sent what he typed');
    await waitFor(
      alice.page,
      () => {
        const el = document.querySelector('#typing');
        return !el || el.hidden || el.offsetParent === null || !/bob/i.test(el.textContent);
      },
      undefined,
      'alice: #typing no longer shows bob after he sent',
      UI_WAIT_MS,
      () => typingText(alice)
    );

    // Presence: alice sees bob online; he closes his page (his only connection) and she sees him offline.
    await waitPresence(alice, 'bob', 'online', 'bob has his page open');
    await bob.close();
    await waitPresence(alice, 'bob', 'offline', 'bob closed his page', RECONNECT_WAIT_MS);
    assert.deepEqual(alice.errors, [], 'alice: the page reported no error');
  });

  env.test('unread badges: bob writes in a room alice is not viewing; badges appear, clear when she opens it, stay cleared after a reload', async () => {
    assert.ok(alice, 'alice logged in by the previous test');
    await waitRoomOpen(alice, 'general');
    const start = await rowBadges(alice, 'side');
    assert.deepEqual(start, { unread: 0, mention: false }, "'side' starts read");
    const bobSock = await connectAs('bob', PASSWORD, [p1], 'bob (node, frontend 2)');
    await send(bobSock, rooms.side.id, 'first thing alice has not seen');
    await send(bobSock, rooms.side.id, 'second thing');
    await waitBadges(alice, 'side', { unread: 2, mention: false }, 'two messages, no mention');
    await send(bobSock, rooms.side.id, '@alice this one is for you');
    await waitBadges(alice, 'side', { unread: 3, mention: true }, 'a third with @alice');
    // The room she is looking at counts nothing.
    await send(bobSock, rooms.general.id, 'in the room alice has open');
    await waitMessage(alice, 'in the room alice has open', 'live in the open room');
    assert.deepEqual(await rowBadges(alice, 'general'), { unread: 0, mention: false }, 'the open room has no badge');
    await alice.screenshot('04-sidebar-unread');

    await openRoom(alice, 'side');
    await waitMessage(alice, '@alice this one is for you', 'the mention in side');
    await waitBadges(alice, 'side', { unread: 0, mention: false }, 'cleared once she opened it');
    // The page tells the server (readMessages) once she has looked at the room for a moment.
    const aliceSock = await connectAs('alice', PASSWORD, [p0], 'alice (node, frontend 1)');
    await pollUntil(
      async () => {
        const { update } = await aliceSock.invoke('subscriptions.get', {});
        const sub = update.find((x) => x.rid === rooms.side.id);
        return sub && sub.unread === 0 && sub.userMentions === 0 ? { ok: true } : { ok: false, why: JSON.stringify(sub) };
      },
      UI_WAIT_MS,
      "alice's subscription to 'side' read on the server (unread 0, no mention)"
    );
    aliceSock.close();

    // After a reload (logging in again if the page asks), 'side' is still read.
    await alice.page.reload({ waitUntil: 'load', timeout: UI_WAIT_MS });
    const again = await waitFor(
      alice.page,
      () => {
        const form = document.querySelector('#login-form');
        if (form && form.offsetParent !== null) return 'login';
        return document.querySelector('#sidebar li[data-rid][data-name="side"]') ? 'app' : null;
      },
      undefined,
      'alice: after reload, the login form or her sidebar'
    );
    if (again === 'login') await alice.login('alice', PASSWORD);
    await waitConnState(alice, ['connected'], 'after the reload');
    await openRoom(alice, 'general');
    await sleep(500); // a badge coming back from a stale count would show by now
    assert.deepEqual(await rowBadges(alice, 'side'), { unread: 0, mention: false }, "'side' still read after the reload");
    // Counting starts again from what she read.
    await send(bobSock, rooms.side.id, 'one more after the reload');
    await waitBadges(alice, 'side', { unread: 1, mention: false }, 'only the new one');
    assert.deepEqual(alice.errors, [], 'alice: the page reported no error');
  });

  env.test('frontends killed under both pages: each page reconnects by itself and shows every message once, in order', async () => {
    const rid = rooms.recovery.id;
    bob = await personOn('bob', 1);
    await openRoom(alice, 'recovery');
    await openRoom(bob, 'recovery');
    // bob's node socket writes the numbered messages; it may fail over to frontend 1.
    const writer = await connectAs('bob', PASSWORD, [p1, p0], 'bob writer (node, frontend 2 then 1)');
    const sent = [];
    const sendNumbered = async (from, to) => {
      for (let n = from; n <= to; n++) {
        sent.push(await send(writer, rid, `recovery #${n}`));
        await sleep(50);
      }
    };
    const expectAll = async (u, what) => {
      const texts = sent.slice().sort((x, y) => x.seq - y.seq).map((m) => m.msg);
      await waitMessage(u, texts[texts.length - 1], what, RECOVER_WAIT_MS);
      const shown = await shownMessages(u);
      const ours = new Set(texts);
      assert.deepEqual(
        shown.filter((m) => ours.has(m.text)).map((m) => m.text),
        texts,
        `${u.name} (${what}): every message sent, exactly once, in seq order`
      );
      const seqs = shown.map((m) => m.seq);
      assert.deepEqual(seqs, [...new Set(seqs)].sort((x, y) => x - y), `${u.name} (${what}): data-seq strictly increasing, no message twice`);
    };

    await sendNumbered(1, 5);
    await expectAll(alice, 'live before any kill');
    await expectAll(bob, 'live before any kill');

    await waitPresence(bob, 'alice', 'online', 'her page is open');

    // Round 1: alice's frontend dies while bob goes on writing.
    await env.cluster.killFrontend(0);
    await waitConnState(alice, ['disconnected', 'connecting'], 'her frontend was killed', RECONNECT_WAIT_MS);
    await alice.screenshot('05-disconnected');
    await sendNumbered(6, 15);
    await expectAll(bob, 'bob, whose frontend lives, during the outage');
    // Nobody told the cluster alice left: her presence lease runs out (ChatCluster's frontends report
    // every 250 ms) and bob's page, through the DM in his sidebar, shows her offline.
    await waitPresence(bob, 'alice', 'offline', "her frontend died; its presence lease ran out", RECONNECT_WAIT_MS);
    await env.cluster.restartFrontend(0);
    await sendNumbered(16, 20);
    await waitConnState(alice, ['connected'], 'her frontend is back on its port', RECOVER_WAIT_MS);
    await expectAll(alice, 'after frontend 1 came back');
    await waitPresence(bob, 'alice', 'online', 'her page reconnected', RECONNECT_WAIT_MS);

    // Round 2: bob's frontend (and the writer's) dies; the writer moves to frontend 1, alice writes too.
    await env.cluster.killFrontend(1);
    await waitConnState(bob, ['disconnected', 'connecting'], 'his frontend was killed', RECONNECT_WAIT_MS);
    await writer.ev.connect.next(RECONNECT_WAIT_MS, 'the node writer reconnected to frontend 1');
    await sendNumbered(21, 28);
    await sendFromComposer(alice, 'alice while bob is cut off');
    sent.push({ msg: 'alice while bob is cut off', seq: (await shownMessages(alice)).find((m) => m.text === 'alice while bob is cut off').seq });
    await sendNumbered(29, 30);
    await expectAll(alice, 'alice, whose frontend lives, during the second outage');
    await env.cluster.restartFrontend(1);
    await waitConnState(bob, ['connected'], 'his frontend is back on its port', RECOVER_WAIT_MS);
    await sendNumbered(31, 35);
    await expectAll(bob, 'after frontend 2 came back');
    await expectAll(alice, 'at the end');
    // Both pages still send: a message from bob's recovered page reaches alice.
    await sendFromComposer(bob, 'bob is back');
    await waitMessage(alice, 'bob is back', "bob's page sends after recovering");
    await alice.screenshot('06-room-after-recovery');
  });

  env.test('screenshots of the main views: room, thread, search, room settings, admin', async () => {
    await openRoom(alice, 'general');
    await alice.screenshot('02-room');

    // Thread pane: open the thread of bob's first message and reply in it.
    const root = alice.page.locator('#messages li.message', { hasText: 'hi alice, bob here on frontend 2' }).first();
    await root.hover();
    await root.locator('.act-thread').click();
    await waitVisible(alice.page, '#thread', 'alice: #thread pane');
    await alice.page.fill('#thread-composer', 'a reply in the thread');
    await alice.page.press('#thread-composer', 'Enter');
    await waitFor(
      alice.page,
      () => [...document.querySelectorAll('#thread-messages .msg-text')].some((e) => e.textContent.trim() === 'a reply in the thread'),
      undefined,
      'alice: her reply in #thread-messages'
    );
    await alice.screenshot('07-thread');

    // Search results.
    await alice.page.fill('#search-input', 'hello');
    await alice.page.press('#search-input', 'Enter');
    await waitFor(alice.page, () => document.querySelectorAll('#search-results li[data-mid]').length > 0, undefined, 'alice: search results for "hello"');
    const found = await alice.page.locator('#search-results li[data-mid]').allTextContents();
    assert.ok(found.some((t) => t.includes('hello bob, this is alice on frontend 1')), `search found alice's hello: ${JSON.stringify(found)}`);
    await alice.screenshot('08-search');

    // Room settings and members.
    await alice.page.click('#room-settings');
    await waitVisible(alice.page, '#room-settings-pane', 'alice: #room-settings-pane');
    await waitFor(alice.page, () => !!document.querySelector('#members li[data-username="bob"]'), undefined, "alice: bob in 'general''s #members");
    await alice.screenshot('09-room-settings');

    // The admin's pages, if the client has them (tested elsewhere; here only a screenshot).
    const root2 = await env.browser.user('admin (frontend 1)', p0);
    await root2.open();
    await root2.login(ADMIN_USERNAME, env.cluster.adminPassword);
    if (await root2.page.locator('#admin-button').isVisible()) {
      await root2.page.click('#admin-button');
      await waitVisible(root2.page, '#admin', 'admin: #admin');
      // Loaded (admin.js comes on the first click); its own tests are admin.test.mjs.
      await waitVisible(root2.page, '#admin [role=tablist]', 'admin: the administration tabs');
      await root2.screenshot('10-admin');
    } else {
      process.stdout.write('no #admin-button in the client: no admin screenshot\n');
    }
  });
});
