// Fills the chat before a browser opens it, through the same socket API the
// client uses (real socketcluster-client sockets from node, lib/chat.mjs):
// users, rooms, and many messages sent by several sockets in parallel, each
// with a bounded number of calls in flight. What the pages then show is
// compared with what was sent here.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADMIN_USERNAME, ChatClient } from '../../lib/chat.mjs';

export const PASSWORD = 'correct horse battery staple';

/** Every socket this file opened, closed by `closeAll()`. */
const opened = [];

/** A logged-in socket for `username` on the frontends `ports` (first choice first). */
export async function connectAs(username, password, ports, label = username) {
  const c = new ChatClient(label, ports);
  opened.push(c);
  await c.connect();
  await c.login(username, password);
  return c;
}

export async function connectAdmin(cluster, port = cluster.ports[0]) {
  return connectAs(ADMIN_USERNAME, cluster.adminPassword, [port], 'admin (node)');
}

export function closeAll() {
  for (const c of opened.splice(0)) c.close();
}

export function socketSummaries() {
  return opened.map((c) => c.summary()).join('\n');
}

/** The admin creates each user (password PASSWORD); resolves {username: user}. */
export async function createUsers(admin, names) {
  const users = {};
  for (const username of names) {
    const { user } = await admin.invoke('createUser', { username, password: PASSWORD, name: username[0].toUpperCase() + username.slice(1) });
    assert.equal(user.username, username);
    users[username] = user;
  }
  return users;
}

/**
 * Run `fn(item, i)` over `items` with at most `concurrency` calls in flight;
 * resolves with the results in the order of `items`.
 */
export async function pool(items, concurrency, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

let msgSerial = 0;

/**
 * `who` sends `msg` into `rid` with a client message id, waiting out
 * `error-too-many-requests` and retrying a call lost with its connection, a
 * few times, as a client does. Resolves with the stored message.
 */
export async function send(who, rid, msg, extra = {}) {
  const clientMsgId = `${who.username}-seed-${++msgSerial}-${Date.now()}`;
  for (let attempt = 0; ; attempt++) {
    try {
      const { message } = await who.invoke('sendMessage', { rid, msg, clientMsgId, ...extra });
      return message;
    } catch (err) {
      if (attempt >= 5) throw err;
      if (err.error === 'error-too-many-requests') {
        await sleep(Math.min(err.retryAfterMs || 200, 3_000));
      } else if (err.name === 'BadConnectionError') {
        // The socket dropped with the call in flight (it reconnects by itself): send the same
        // client message id again; if the first one was stored, the server answers `created: false`
        // with that message instead of storing it twice.
        who.note(`${err.message}; sending '${msg.slice(0, 40)}' again`);
        await sleep(200);
      } else {
        throw err;
      }
    }
  }
}

/**
 * `count` messages into `rid`, text `text(i)` for i = 1..count, spread over
 * the sockets `senders` (each with `inFlight` calls outstanding). Message i
 * is sent only after message i - inFlight * senders.length was stored, so
 * the seq order follows i closely but not exactly; the result (sorted by
 * seq) is what the room holds.
 */
export async function sendMany(senders, rid, count, text, inFlight = 16) {
  const indexes = Array.from({ length: count }, (_, i) => i + 1);
  const messages = await pool(indexes, senders.length * inFlight, (i) => send(senders[i % senders.length], rid, text(i)));
  return messages.sort((a, b) => a.seq - b.seq);
}

/** The admin creates `count` private groups named `name(i)` (i = 1..count) with `members`; resolves the rooms. */
export async function createGroups(admin, count, name, members, concurrency = 8) {
  const indexes = Array.from({ length: count }, (_, i) => i + 1);
  return pool(indexes, concurrency, async (i) => {
    const { room } = await admin.invoke('createPrivateGroup', { name: name(i), members }, 15_000);
    return room;
  });
}
