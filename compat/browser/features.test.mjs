// Every feature of the chat client's feature list (web/README.md) walked through in headless
// Chromium by two people on two frontends of a local cluster: alice's page on frontend 1, bob's on
// frontend 2, so everything one sees of the other crossed a broker. What is checked is what each
// page shows (the DOM contract of web/README.md), and, where cheap, that the other page shows it
// live: creating a channel and a private group and inviting, @mention autocomplete and the mention
// badge, edit, delete, reactions, threads, a file upload and its download, search, room settings
// and roles, the notification preference across a reload, and leaving a room.
// Screenshots go to target/browser-artifacts/ (features-*.png).
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { waitFor, waitVisible } from './lib/browser.mjs';
import { openRoom, roomRow, sendFromComposer, waitBadges, waitConnState, waitMessage, waitRoomOpen } from './lib/chat-page.mjs';
import { PASSWORD, connectAdmin, createUsers } from './lib/seed.mjs';
import { BrowserEnv } from './lib/setup.mjs';

const env = new BrowserEnv();

/** The message of the open room whose text contains `text` (a locator; hover it to show its buttons). */
const messageWith = (u, text) => u.page.locator('#messages li.message', { hasText: text }).first();

/** Hover the message with `text`, then click its action button `action` (`.act-edit`, …). */
async function act(u, text, action) {
  const li = messageWith(u, text);
  await li.hover();
  await li.locator(action).click();
}

/**
 * Wait until the open room's message containing `text` has an element `inner` (whose text matches
 * the regular expression source `pattern`, when given).
 */
function waitMessageState(u, text, inner, pattern, what) {
  return waitFor(
    u.page,
    ([t, sel, re]) => {
      const li = [...document.querySelectorAll('#messages li.message')].find((x) => x.textContent.includes(t));
      const el = li && li.querySelector(sel);
      return !!el && (re === null || new RegExp(re).test(el.textContent.trim()));
    },
    [text, inner, pattern],
    `${u.name}: ${what}`,
    undefined,
    () => u.page.evaluate((t) => [...document.querySelectorAll('#messages li.message')].filter((x) => x.textContent.includes(t)).map((x) => x.outerHTML.slice(0, 600)), text)
  );
}

/** Wait until the message with `text` has the reaction `emoji` with `count` (0: no such reaction). */
function waitReaction(u, text, emoji, count, what) {
  return waitFor(
    u.page,
    ([t, e, n]) => {
      const li = [...document.querySelectorAll('#messages li.message')].find((x) => x.textContent.includes(t));
      if (!li) return false;
      const r = li.querySelector(`.reaction[data-emoji="${e}"]`);
      if (n === 0) return !r;
      return !!r && r.textContent.trim().endsWith(String(n));
    },
    [text, emoji, count],
    `${u.name}: ${count ? `reaction ${emoji} with count ${count}` : `no reaction ${emoji}`} under '${text}' (${what})`,
    undefined,
    () => u.page.evaluate((t) => [...document.querySelectorAll('#messages li.message')].filter((x) => x.textContent.includes(t)).map((x) => [...x.querySelectorAll('.reaction')].map((r) => `${r.dataset.emoji} ${r.textContent}`)), text)
  );
}

function waitNoRow(u, name, what) {
  return waitFor(u.page, (n) => !document.querySelector(`#sidebar li[data-rid][data-name="${n}"]`), name, `${u.name}: no sidebar row '${name}' (${what})`);
}

describe('every feature of the chat client, two users on two frontends', { timeout: 180_000 }, () => {
  let admin;
  let alice; // page on frontend 1
  let bob; // page on frontend 2
  const upload = { name: 'notes.txt', bytes: Buffer.concat([Buffer.from('notes for bob\n'), Buffer.from(randomBytes(32).toString('hex'))]) };

  before(async () => {
    await env.start();
    await env.dumpOnFailure('seed', async () => {
      admin = await connectAdmin(env.cluster, env.cluster.ports[0]);
      await createUsers(admin, ['alice', 'bob']);
      // Where bob is while alice works elsewhere (mention badge, search).
      await admin.invoke('createChannel', { name: 'lobby', members: ['alice', 'bob'] });
    });
  });

  after(() => env.stop());

  async function personOn(name, i) {
    const u = await env.browser.user(`${name} (frontend ${i + 1})`, env.cluster.ports[i]);
    await u.open();
    await u.login(name, PASSWORD);
    await waitConnState(u, ['connected'], `${name} after login`);
    return u;
  }

  env.test('alice creates a channel with bob and a private group, invites bob; bob sees both appear', async () => {
    alice = await personOn('alice', 0);
    bob = await personOn('bob', 1);
    await openRoom(bob, 'lobby');

    await alice.page.click('#new-room');
    await waitVisible(alice.page, '#new-room-form', 'alice: #new-room-form after #new-room');
    await alice.page.fill('#new-room-name', 'projects');
    await alice.page.fill('#new-room-members', 'bob');
    await alice.page.click('#new-room-submit');
    await waitRoomOpen(alice, 'projects');
    assert.equal(await alice.page.getAttribute(roomRow('projects'), 'data-type'), 'c', 'projects is a channel');
    await waitVisible(bob.page, roomRow('projects'), 'bob: projects appears in his sidebar (he was a member at creation)');

    await alice.page.click('#new-room');
    await waitVisible(alice.page, '#new-room-form', 'alice: #new-room-form again');
    await alice.page.fill('#new-room-name', 'secret');
    await alice.page.check('#new-room-private');
    await alice.page.click('#new-room-submit');
    await waitRoomOpen(alice, 'secret');
    assert.equal(await alice.page.getAttribute(roomRow('secret'), 'data-type'), 'p', 'secret is a private group');
    assert.equal(await bob.page.locator(roomRow('secret')).count(), 0, 'bob has no row for secret before the invite');

    await alice.page.click('#room-settings');
    await waitVisible(alice.page, '#room-settings-pane', 'alice: room settings of secret');
    await alice.page.fill('#invite-user', 'bob');
    await alice.page.press('#invite-user', 'Enter');
    await waitVisible(alice.page, '#members li[data-username="bob"]', 'alice: bob in the members of secret after the invite');
    await waitVisible(bob.page, `${roomRow('secret')}[data-type="p"]`, 'bob: secret appears in his sidebar after the invite');
    await alice.page.click('#room-settings'); // close the pane
  });

  env.test('@mention autocomplete inserts @bob; bob, elsewhere, gets a mention badge', async () => {
    await openRoom(alice, 'projects');
    await alice.page.locator('#composer').pressSequentially('@bo');
    await waitVisible(alice.page, '#mention-list li[data-username="bob"]', 'alice: bob suggested after typing @bo');
    await alice.page.click('#mention-list li[data-username="bob"]');
    assert.equal(await alice.page.inputValue('#composer'), '@bob ', 'picking bob puts @bob in the composer');
    await alice.page.locator('#composer').pressSequentially('please look at this');
    await alice.page.press('#composer', 'Enter');
    await waitMessage(alice, '@bob please look at this', 'alice: her mention sent');
    await waitBadges(bob, 'projects', { unread: 1, mention: true }, 'alice mentioned him in projects while he is in lobby');
    await bob.screenshot('features-01-mention-badge');
    await openRoom(bob, 'projects');
    await waitMessage(bob, '@bob please look at this', 'bob: the mention in projects');
    await waitBadges(bob, 'projects', { unread: 0, mention: false }, 'opening projects clears its badges');
  });

  env.test('edit and delete show on both pages', async () => {
    await act(alice, '@bob please look at this', '.act-edit');
    const box = alice.page.locator('#messages li.message textarea.edit-box');
    await box.fill('@bob please look at this, updated');
    await box.press('Enter');
    for (const u of [alice, bob]) {
      await waitMessage(u, '@bob please look at this, updated', 'the edited text');
      await waitMessageState(u, 'please look at this, updated', '.msg-edited', null, '.msg-edited on the edited message');
    }

    await sendFromComposer(alice, 'a message to be deleted');
    await waitMessage(bob, 'a message to be deleted', 'bob: the message before it is deleted');
    const mid = await messageWith(alice, 'a message to be deleted').getAttribute('data-mid');
    await act(alice, 'a message to be deleted', '.act-delete');
    for (const u of [alice, bob]) {
      await waitFor(
        u.page,
        (m) => {
          const li = document.querySelector(`#messages li.message[data-mid="${m}"]`);
          return !!li && li.classList.contains('deleted') && li.querySelector('.msg-text').textContent.trim() === 'This message was deleted.';
        },
        mid,
        `${u.name}: message ${mid} has class deleted and says "This message was deleted."`
      );
    }
  });

  env.test('a reaction from the picker shows with count 1 on both pages; clicking it again removes it', async () => {
    await sendFromComposer(alice, 'react to this one');
    await waitMessage(bob, 'react to this one', 'bob: the message to react to');
    await act(alice, 'react to this one', '.act-react');
    await waitVisible(alice.page, '.emoji-picker .emoji-pick[data-emoji=":tada:"]', 'alice: the emoji picker');
    await alice.page.click('.emoji-picker .emoji-pick[data-emoji=":tada:"]');
    await waitReaction(alice, 'react to this one', ':tada:', 1, 'her own reaction');
    await waitReaction(bob, 'react to this one', ':tada:', 1, "alice's reaction, live");
    await bob.screenshot('features-02-edit-delete-react');
    await messageWith(alice, 'react to this one').locator('.reaction[data-emoji=":tada:"]').click();
    await waitReaction(alice, 'react to this one', ':tada:', 0, 'toggled off');
    await waitReaction(bob, 'react to this one', ':tada:', 0, 'toggled off by alice, live');
  });

  env.test('a thread reply: bob opens the thread and sees it; the root shows the reply count', async () => {
    await sendFromComposer(alice, 'thread root about the budget');
    await waitMessage(bob, 'thread root about the budget', 'bob: the thread root');
    await act(alice, 'thread root about the budget', '.act-thread');
    await waitVisible(alice.page, '#thread', 'alice: #thread pane');
    await alice.page.fill('#thread-composer', 'first reply in the budget thread');
    await alice.page.press('#thread-composer', 'Enter');
    await waitFor(
      alice.page,
      () => [...document.querySelectorAll('#thread-messages .msg-text')].some((e) => e.textContent.trim() === 'first reply in the budget thread'),
      undefined,
      'alice: her reply in #thread-messages'
    );
    for (const u of [alice, bob]) {
      await waitMessageState(u, 'thread root about the budget', '.thread-link', '^1 reply$', 'the root shows "1 reply"');
    }
    await messageWith(bob, 'thread root about the budget').locator('.thread-link').click();
    await waitVisible(bob.page, '#thread', 'bob: #thread pane after clicking "1 reply"');
    await waitFor(
      bob.page,
      () => [...document.querySelectorAll('#thread-messages .msg-text')].some((e) => e.textContent.trim() === 'first reply in the budget thread'),
      undefined,
      "bob: alice's reply in #thread-messages",
      undefined,
      () => bob.page.locator('#thread-messages .msg-text').allTextContents()
    );
    await bob.screenshot('features-03-thread');
    await bob.page.keyboard.press('Escape');
  });

  env.test('an uploaded file shows for bob and its link returns the same bytes (with his credentials only)', async () => {
    await alice.page.setInputFiles('#upload-input', { name: upload.name, mimeType: 'text/plain', buffer: upload.bytes });
    const link = '#messages li.message a.attachment-link';
    await waitFor(
      bob.page,
      ([sel, name]) => [...document.querySelectorAll(sel)].some((a) => a.textContent.includes(name)),
      [link, upload.name],
      `bob: a message with the attachment link '${upload.name}'`,
      undefined,
      () => bob.page.evaluate(() => [(document.querySelector('#composer-error') || {}).textContent, ...[...document.querySelectorAll('#messages li.message')].slice(-3).map((li) => li.outerHTML.slice(0, 400))])
    );
    const got = await bob.page.evaluate(async (sel) => {
      const a = [...document.querySelectorAll(sel)].pop();
      const res = await fetch(a.getAttribute('href'));
      return { href: a.getAttribute('href'), status: res.status, bytes: [...new Uint8Array(await res.arrayBuffer())] };
    }, link);
    // The same URL from node, without bob's cookies (from the page it would log a console error).
    const anon = (await fetch(`${bob.url.replace(/\/$/, '')}${got.href}`)).status;
    assert.match(got.href, /^\/file-upload\//, `the link is the file route: ${got.href}`);
    assert.equal(got.status, 200, `bob downloads ${got.href}`);
    assert.deepEqual(Buffer.from(got.bytes), upload.bytes, 'the downloaded bytes are the uploaded ones');
    assert.notEqual(anon, 200, 'without the session cookie the file is not served');
  });

  env.test('search finds a message by a word and the result opens it', async () => {
    await openRoom(alice, 'lobby');
    await sendFromComposer(alice, 'the zebrafish report is ready');
    await openRoom(bob, 'projects');
    await bob.page.fill('#search-input', 'zebrafish');
    await bob.page.press('#search-input', 'Enter');
    const result = '#search-results li[data-mid]';
    await waitFor(bob.page, (sel) => [...document.querySelectorAll(sel)].some((li) => li.textContent.includes('the zebrafish report is ready')), result, 'bob: a search result for "zebrafish"', undefined, () =>
      bob.page.locator('#search-results').textContent()
    );
    const results = await bob.page.locator(result).allTextContents();
    assert.ok(results.every((t) => t.includes('zebrafish')), `every result has the word: ${JSON.stringify(results)}`);
    await bob.screenshot('features-04-search');
    const hit = bob.page.locator(result, { hasText: 'the zebrafish report is ready' }).first();
    const mid = await hit.getAttribute('data-mid');
    await hit.click();
    await waitRoomOpen(bob, 'lobby');
    await waitVisible(bob.page, `#messages li.message[data-mid="${mid}"]`, 'bob: the found message in lobby after clicking the result');
  });

  env.test('room settings: the owner sets the topic and makes bob a moderator; bob cannot save settings', async () => {
    await openRoom(alice, 'projects');
    await openRoom(bob, 'projects');
    await alice.page.click('#room-settings');
    await waitVisible(alice.page, '#room-settings-pane', 'alice: room settings of projects');
    assert.equal(await alice.page.isEnabled('#settings-save'), true, 'the owner can save');
    await alice.page.fill('#settings-topic', 'Q3 planning');
    await alice.page.click('#settings-save');
    await waitFor(bob.page, () => document.querySelector('#room-topic')?.textContent.trim() === 'Q3 planning', undefined, 'bob: #room-topic shows the new topic, live', undefined, () =>
      bob.page.locator('#room-topic').textContent()
    );

    const bobRow = '#members li[data-username="bob"]';
    await waitVisible(alice.page, `${bobRow} button[data-action="addRoomModerator"]`, 'alice: a "Make moderator" button on bob');
    await alice.page.click(`${bobRow} button[data-action="addRoomModerator"]`);
    await waitFor(alice.page, (sel) => [...document.querySelectorAll(`${sel} .role`)].some((r) => r.textContent.trim() === 'moderator'), bobRow, 'alice: bob tagged moderator in #members');
    await waitVisible(alice.page, `${bobRow} button[data-action="removeRoomModerator"]`, 'alice: the button turned into "Remove moderator"');
    await alice.screenshot('features-05-room-settings-owner');

    await bob.page.click('#room-settings');
    await waitVisible(bob.page, '#room-settings-pane', 'bob: room settings of projects');
    await waitVisible(bob.page, '#members li[data-username="alice"]', 'bob: the member list');
    for (const sel of ['#settings-save', '#settings-name', '#settings-topic', '#settings-description', '#settings-readonly']) {
      assert.equal(await bob.page.isDisabled(sel), true, `bob (not an owner) cannot use ${sel}`);
    }
    assert.equal(await bob.page.inputValue('#settings-topic'), 'Q3 planning', 'bob sees the topic in the form');
    const roleButtons = await bob.page.locator('#members button[data-action$="RoomOwner"], #members button[data-action$="RoomModerator"]').count();
    assert.equal(roleButtons, 0, 'bob gets no owner/moderator buttons');
    // As a moderator now (his subscription's roles came live on user/<uid>), he may remove alice.
    await waitVisible(bob.page, '#members li[data-username="alice"] button[data-action="kick"]', 'bob (moderator): a "Remove" button on alice');
    await bob.screenshot('features-06-room-settings-member');
  });

  env.test('notification preference "nothing" is saved: still "nothing" after a reload', async () => {
    await bob.page.selectOption('#notify-pref', 'nothing');
    await waitFor(
      bob.page,
      () => {
        const app = window.chatApp;
        return app.rooms.get(app.openRid)?.notify === 'nothing';
      },
      undefined,
      'bob: the server accepted notify = nothing (saveNotificationSettings answered)',
      undefined,
      () => bob.page.locator('#settings-error').textContent()
    );
    await bob.page.reload({ waitUntil: 'load' });
    await waitFor(bob.page, () => document.querySelector('#me')?.textContent.trim() === 'bob' && document.querySelector('#app').offsetParent !== null, undefined, 'bob: the session resumed after the reload');
    await openRoom(bob, 'projects');
    await bob.page.click('#room-settings');
    await waitVisible(bob.page, '#room-settings-pane', 'bob: room settings after the reload');
    assert.equal(await bob.page.inputValue('#notify-pref'), 'nothing', 'the preference came back from the server');
    await bob.page.click('#room-settings');
  });

  env.test('bob leaves the private group: it disappears from his sidebar', async () => {
    await openRoom(bob, 'secret');
    await bob.page.click('#room-settings');
    await waitVisible(bob.page, '#leave-room', 'bob: #leave-room in the settings of secret');
    await bob.page.click('#leave-room');
    await waitNoRow(bob, 'secret', 'after #leave-room');
    // The admin is no member of the private group: ask through alice's page (the owner).
    const rid = await alice.page.getAttribute(roomRow('secret'), 'data-rid');
    const members = await alice.page.evaluate(async (r) => (await window.chatApp.call('getRoomMembers', { rid: r, limit: 50 })).members.map((m) => m.username), rid);
    assert.deepEqual(members, ['alice'], 'the store has only alice left in secret');
    for (const u of [alice, bob]) assert.deepEqual(u.errors, [], `${u.name}: the page reported no error`);
  });
});
