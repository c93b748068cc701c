// The chat client's page as a person uses it: every selector the browser
// tests rely on is here, and only the ones web/README.md promises (its DOM
// contract), so a change of the client's markup is fixed in one place.
import { UI_WAIT_MS, waitFor, waitVisible } from './browser.mjs';

/** The sidebar row of the room called `name`. */
export const roomRow = (name) => `#sidebar li[data-rid][data-name="${name}"]`;

/** `#conn-status`'s data-state: connected, connecting or disconnected (null before the app exists). */
export function connState(u) {
  return u.page.evaluate(() => {
    const el = document.querySelector('#conn-status');
    return el ? el.getAttribute('data-state') : null;
  });
}

/** Wait until `#conn-status` is in one of `states`; resolves with the state seen. */
export function waitConnState(u, states, what, ms = UI_WAIT_MS) {
  return waitFor(
    u.page,
    (wanted) => {
      const el = document.querySelector('#conn-status');
      const s = el && el.getAttribute('data-state');
      return wanted.includes(s) ? s : null;
    },
    states,
    `${u.name}: #conn-status data-state in ${JSON.stringify(states)} (${what})`,
    ms,
    () => connState(u)
  );
}

/** Click the room's row in the sidebar and wait until it is the open room. */
export async function openRoom(u, name, ms = UI_WAIT_MS) {
  await waitVisible(u.page, roomRow(name), `${u.name}: sidebar row of '${name}'`, ms);
  await u.page.click(roomRow(name));
  await waitRoomOpen(u, name, ms);
}

export function waitRoomOpen(u, name, ms = UI_WAIT_MS) {
  return waitFor(
    u.page,
    (n) => {
      const row = document.querySelector(`#sidebar li[data-rid][data-name="${n}"]`);
      const title = document.querySelector('#room-title');
      return !!row && row.getAttribute('aria-current') === 'page' && !!title && title.textContent.includes(n);
    },
    name,
    `${u.name}: '${name}' open (its row aria-current=page, #room-title shows it)`,
    ms,
    () => u.page.evaluate(() => ({ title: (document.querySelector('#room-title') || {}).textContent, current: [...document.querySelectorAll('#sidebar li[aria-current="page"]')].map((r) => r.dataset.name) }))
  );
}

/** The open room's messages as the page shows them: [{mid, seq, author, text, deleted}], top to bottom. */
export function shownMessages(u) {
  return u.page.evaluate(() =>
    [...document.querySelectorAll('#messages li.message')].map((li) => ({
      mid: li.getAttribute('data-mid'),
      seq: Number(li.getAttribute('data-seq')),
      author: ((li.querySelector('.msg-author') || {}).textContent || '').trim(),
      text: ((li.querySelector('.msg-text') || {}).textContent || '').trim(),
      deleted: li.classList.contains('deleted'),
    }))
  );
}

/** The `.msg-text` of every message shown, top to bottom. */
export async function shownTexts(u) {
  return (await shownMessages(u)).map((m) => m.text);
}

/** Wait until a message with exactly `text` is shown in the open room. */
export function waitMessage(u, text, what, ms = UI_WAIT_MS) {
  return waitFor(
    u.page,
    (t) => [...document.querySelectorAll('#messages li.message .msg-text')].some((el) => el.textContent.trim() === t),
    text,
    `${u.name}: message '${text}' shown (${what})`,
    ms,
    async () => (await shownTexts(u)).slice(-10)
  );
}

/** Type `text` into the composer and send it with the send button; wait until it is shown. */
export async function sendFromComposer(u, text) {
  await u.page.fill('#composer', text);
  await u.page.click('#send');
  await waitMessage(u, text, 'own message after #send');
}

/** The sidebar row's badges: {unread: number (0 when absent or hidden), mention: bool}. */
export function rowBadges(u, name) {
  return u.page.evaluate((n) => {
    const row = document.querySelector(`#sidebar li[data-rid][data-name="${n}"]`);
    if (!row) return null;
    const visible = (el) => !!el && el.offsetParent !== null && !el.hidden && el.textContent.trim() !== '';
    const unread = row.querySelector('.badge-unread');
    const mention = row.querySelector('.badge-mention');
    return {
      unread: visible(unread) ? Number(unread.textContent.trim()) : 0,
      mention: !!mention && mention.offsetParent !== null && !mention.hidden,
    };
  }, name);
}

/** Wait until the row of `name` shows exactly `expected` ({unread, mention}). */
export function waitBadges(u, name, expected, what, ms = UI_WAIT_MS) {
  return waitFor(
    u.page,
    ([n, want]) => {
      const row = document.querySelector(`#sidebar li[data-rid][data-name="${n}"]`);
      if (!row) return null;
      const visible = (el) => !!el && el.offsetParent !== null && !el.hidden && el.textContent.trim() !== '';
      const unread = row.querySelector('.badge-unread');
      const mention = row.querySelector('.badge-mention');
      const b = { unread: visible(unread) ? Number(unread.textContent.trim()) : 0, mention: !!mention && mention.offsetParent !== null && !mention.hidden };
      return b.unread === want.unread && b.mention === want.mention ? b : null;
    },
    [name, expected],
    `${u.name}: badges of '${name}' = ${JSON.stringify(expected)} (${what})`,
    ms,
    () => rowBadges(u, name)
  );
}

/** Wait until `[data-presence-user=<username>]` somewhere in the page has data-status `status`. */
export function waitPresence(u, username, status, what, ms = UI_WAIT_MS) {
  return waitFor(
    u.page,
    ([n, s]) => document.querySelector(`[data-presence-user="${n}"][data-status="${s}"]`) !== null,
    [username, status],
    `${u.name}: [data-presence-user=${username}][data-status=${status}] (${what})`,
    ms,
    () => u.page.evaluate((n) => [...document.querySelectorAll(`[data-presence-user="${n}"]`)].map((e) => e.getAttribute('data-status')), username)
  );
}

/** The text of `#typing` (trimmed; '' when hidden or empty). */
export function typingText(u) {
  return u.page.evaluate(() => {
    const el = document.querySelector('#typing');
    return el && el.offsetParent !== null && !el.hidden ? el.textContent.trim() : '';
  });
}
