// Who is there: the `presence/<uid>` channels and every `[data-presence-user]` indicator, the own
// status select, going away after a while without input, and the open room's "bob is typing…" line.

import { $, $$, throttle } from './ui.js';

/** DM peers and members watched for presence at once. */
const MAX_PRESENCE = 300;
const AWAY_AFTER_MS = 5 * 60 * 1000;
/** A typing notice that is not renewed disappears after this (the sender may have closed the page). */
const TYPING_SHOW_MS = 6000;

export class Presence {
  constructor(app) {
    this.app = app;
    this.statuses = new Map(); // uid -> status
    this.watched = new Set(); // uids with a presence channel
    this.away = false;
    this.awayTimer = null;
    $('#my-status').addEventListener('change', (e) => {
      this.app.call('setUserStatus', { status: e.target.value }).catch((err) => console.warn(err));
    });
    for (const ev of ['keydown', 'mousedown', 'mousemove', 'touchstart']) {
      window.addEventListener(ev, throttle(() => this.activity(), 10000), { passive: true });
    }
  }

  status(uid) {
    return this.statuses.get(uid);
  }

  /** The channels are gone (sign-out, another user): the next watch subscribes again. */
  forgetWatched() {
    this.watched.clear();
  }

  async watch(uids) {
    const fresh = uids.filter((u) => u && !this.watched.has(u)).slice(0, Math.max(0, MAX_PRESENCE - this.watched.size));
    if (!fresh.length) return;
    for (const uid of fresh) {
      this.watched.add(uid);
      this.app.conn.subscribe(`presence/${uid}`, (ev) => {
        if (ev && ev.uid && ev.status) this.set(ev.uid, ev.status);
      });
    }
    try {
      for (let i = 0; i < fresh.length; i += 100) {
        const { users } = await this.app.call('getUserPresence', { uids: fresh.slice(i, i + 100) });
        for (const u of users || []) this.set(u.uid, u.status);
      }
    } catch (err) {
      console.warn('getUserPresence', err);
    }
  }

  set(uid, status) {
    const app = this.app;
    this.statuses.set(uid, status);
    const username = app.usernames.get(uid);
    if (!username) return;
    for (const node of $$(`[data-presence-user="${CSS.escape(username)}"]`)) node.dataset.status = status;
    for (const r of app.rooms.values()) {
      if (r.t === 'd' && r.peers && r.peers[0] === uid) r.peerStatus = status;
    }
    if (uid === app.me.id) {
      const sel = $('#my-status');
      if (status === 'busy' || status === 'away') sel.value = status;
    }
  }

  /** Any input: back to online if the page had gone away; away again after AWAY_AFTER_MS without. */
  activity() {
    clearTimeout(this.awayTimer);
    if (this.away && this.app.me) {
      this.away = false;
      this.app.call('UserPresence:online', {}).catch(() => {});
    }
    this.awayTimer = setTimeout(() => {
      if (!this.app.me) return;
      this.away = true;
      this.app.call('UserPresence:away', {}).catch(() => {});
    }, AWAY_AFTER_MS);
  }
}

/** The `#typing` line of the open room, from the room channel's `typing` events. */
export class TypingLine {
  constructor() {
    this.timers = new Map(); // username -> timeout
  }

  start(username) {
    clearTimeout(this.timers.get(username));
    this.timers.set(username, setTimeout(() => this.stop(username), TYPING_SHOW_MS));
    this.render();
  }

  stop(username) {
    if (!this.timers.has(username)) return;
    clearTimeout(this.timers.get(username));
    this.timers.delete(username);
    this.render();
  }

  clear() {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.render();
  }

  render() {
    const names = [...this.timers.keys()];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    $('#typing').textContent = text;
  }
}
