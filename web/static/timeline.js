// One room's messages: the loaded ones in memory, sorted by `seq` and keyed by id (a message is never
// shown twice, whatever order events and pages arrive in), and a window of them in the DOM.
//
// Big rooms: a room opens with its last page (PAGE_OPEN); scrolling up renders older messages from
// memory, or loads the next older page (PAGE_OLDER) by `seq`, keeping the scroll position. The DOM
// holds at most MAX_NODES messages: rendering more drops the far end (and renders it again from memory
// when the reader scrolls back). Live messages are inserted at their `seq`; one arriving above a hole
// (a `seq` skipped) asks the owner for a `syncMessages` after a short wait, since the missing one is
// usually just late.

import { renderMessage } from './ui.js';

export const PAGE_OPEN = 50;
export const PAGE_OLDER = 100;
export const MAX_NODES = 1000;
/** Messages rendered from memory per scroll step. */
const STEP = 100;
/** Pixels from an edge at which the next page is fetched or rendered. */
const EDGE = 300;
/** A message this soon after the one above it by the same author shows without its header. */
const GROUP_MS = 5 * 60 * 1000;
/** A hole in `seq` this long after the message above it is filled from the store. */
const GAP_WAIT_MS = 400;

export class Timeline {
  constructor(list, { rid, me, onLoadOlder, onGap, actions }) {
    this.list = list;
    this.rid = rid;
    this.me = me;
    this.onLoadOlder = onLoadOlder;
    this.onGap = onGap;
    this.actions = actions;
    this.items = []; // timeline messages, ascending seq
    this.byId = new Map(); // id -> message (timeline and thread replies)
    this.nodes = new Map(); // id -> li (rendered only)
    this.lo = 0;
    this.hi = 0; // rendered window: items[lo, hi)
    this.reachedStart = false;
    this.loadingOlder = false;
    this.contig = 0; // every seq up to here has been seen (or was before the first page)
    this.seen = new Set(); // seqs above `contig` that arrived
    this.maxSeq = 0;
    this.serverTime = 0; // newest server timestamp seen (for `updatedSince`)
    this.gapTimer = null;
    this.onScroll = () => this.scrolled();
    list.addEventListener('scroll', this.onScroll, { passive: true });
  }

  destroy() {
    this.destroyed = true;
    this.list.removeEventListener('scroll', this.onScroll);
    clearTimeout(this.gapTimer);
    this.list.replaceChildren();
  }

  isTimeline(m) {
    return !m.tmid || m.tshow;
  }

  nearBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 60;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /** The first page: newest messages, `reachedStart` when the page was not full. */
  setInitial(messages, lastSeq) {
    this.items = [];
    this.byId.clear();
    this.nodes.clear();
    this.list.replaceChildren();
    for (const m of messages) this.put(m);
    this.items.sort((a, b) => a.seq - b.seq);
    this.reachedStart = messages.length < PAGE_OPEN;
    const top = this.items.length ? this.items[this.items.length - 1].seq : 0;
    this.contig = Math.max(top, lastSeq || 0);
    this.maxSeq = this.contig;
    this.lo = 0;
    this.hi = this.items.length;
    const frag = document.createDocumentFragment();
    for (const m of this.items) frag.append(this.node(m));
    this.list.append(frag);
    this.groupAll();
    this.scrollToBottom();
  }

  /** Whether `li` continues the message above it (same author, within GROUP_MS, both plain). */
  group(li) {
    if (!li || !li.dataset) return;
    const m = this.byId.get(li.dataset.mid);
    const prev = li.previousElementSibling;
    const p = prev && prev.dataset ? this.byId.get(prev.dataset.mid) : null;
    const plain = (x) => x && !x.t && !x.deletedAt && x.u;
    const continued = !!(plain(m) && plain(p) && m.u._id === p.u._id && m.ts - p.ts < GROUP_MS && m.ts >= p.ts);
    li.classList.toggle('continued', continued);
  }

  groupAll() {
    for (const li of this.list.children) this.group(li);
  }

  put(m) {
    this.byId.set(m.id, m);
    if (this.isTimeline(m)) this.items.push(m);
    this.noteTime(m.updatedAt || m.ts);
  }

  noteTime(t) {
    if (typeof t === 'number' && t > this.serverTime) this.serverTime = t;
  }

  node(m) {
    const li = renderMessage(m, { actions: true, me: this.me, canDeleteAny: this.actions.canDeleteAny() });
    this.nodes.set(m.id, li);
    return li;
  }

  index(seq) {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Records that `seq` exists (timeline or thread reply); schedules a gap fill when one is missing. */
  noteSeq(seq) {
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq <= this.contig) return;
    this.seen.add(seq);
    while (this.seen.has(this.contig + 1)) {
      this.seen.delete(this.contig + 1);
      this.contig += 1;
    }
    clearTimeout(this.gapTimer);
    if (this.maxSeq > this.contig) {
      this.gapTimer = setTimeout(() => {
        if (this.maxSeq > this.contig) this.onGap(this.contig);
      }, GAP_WAIT_MS);
    }
  }

  /** After a sync: everything up to `seq` is known. */
  caughtUpTo(seq) {
    if (seq > this.contig) this.contig = seq;
    if (this.contig > this.maxSeq) this.maxSeq = this.contig;
    for (const s of this.seen) if (s <= this.contig) this.seen.delete(s);
    while (this.seen.has(this.contig + 1)) {
      this.seen.delete(this.contig + 1);
      this.contig += 1;
    }
  }

  /** A message from an event or a sync: inserted at its seq, or merged into the one with its id. */
  upsert(m) {
    this.noteSeq(m.seq);
    this.noteTime(m.updatedAt || m.ts);
    const known = this.byId.get(m.id);
    if (known) {
      Object.assign(known, m);
      this.redraw(known);
      return false;
    }
    this.byId.set(m.id, m);
    if (!this.isTimeline(m)) return false;
    const stick = this.nearBottom();
    const atEnd = this.hi === this.items.length;
    const i = this.index(m.seq);
    this.items.splice(i, 0, m);
    if (i < this.lo || (i === this.lo && this.lo > 0)) {
      this.lo += 1;
      this.hi += 1;
      return true;
    }
    if (i > this.hi || (i === this.hi && !atEnd)) return true; // below the window: shown when scrolled to
    const li = this.node(m);
    const after = this.items[i + 1];
    const before = after ? this.nodes.get(after.id) : null;
    this.list.insertBefore(li, before && before.parentNode === this.list ? before : null);
    this.group(li);
    this.group(li.nextElementSibling);
    this.hi += 1;
    this.trim('top');
    if (stick) this.scrollToBottom();
    return true;
  }

  /** Applies a partial update (`message.updated`, `message.deleted`) to a loaded message. */
  patch(id, fields) {
    const m = this.byId.get(id);
    if (!m) return null;
    Object.assign(m, fields);
    this.noteTime(fields.updatedAt || fields.deletedAt);
    this.redraw(m);
    return m;
  }

  redraw(m) {
    const old = this.nodes.get(m.id);
    if (!old) return;
    const focused = old.contains(document.activeElement);
    const li = this.node(m);
    old.replaceWith(li);
    this.group(li);
    this.group(li.nextElementSibling);
    if (focused) li.focus();
  }

  /** Older messages from `loadHistory`, ascending. */
  addOlder(messages) {
    if (this.destroyed) return; // a page that arrived after the room was closed or reloaded
    if (messages.length < PAGE_OLDER) this.reachedStart = true;
    const fresh = messages.filter((m) => !this.byId.has(m.id));
    for (const m of fresh) {
      this.byId.set(m.id, m);
      this.noteTime(m.updatedAt || m.ts);
    }
    const older = fresh.filter((m) => this.isTimeline(m)).sort((a, b) => a.seq - b.seq);
    this.items = older.concat(this.items);
    this.lo += older.length;
    this.hi += older.length;
    this.renderAbove(STEP);
  }

  renderAbove(count) {
    const from = Math.max(0, this.lo - count);
    if (from === this.lo) return;
    const frag = document.createDocumentFragment();
    for (let i = from; i < this.lo; i += 1) frag.append(this.node(this.items[i]));
    const l = this.list;
    const before = l.scrollHeight;
    const top = l.scrollTop;
    l.insertBefore(frag, l.firstChild);
    this.groupAll();
    l.scrollTop = top + (l.scrollHeight - before);
    this.lo = from;
    this.trim('bottom');
  }

  renderBelow(count) {
    const to = Math.min(this.items.length, this.hi + count);
    if (to === this.hi) return;
    const frag = document.createDocumentFragment();
    for (let i = this.hi; i < to; i += 1) frag.append(this.node(this.items[i]));
    this.list.append(frag);
    this.groupAll();
    this.hi = to;
    this.trim('top');
  }

  /** Keeps the DOM at MAX_NODES by dropping nodes at `end`, keeping what the reader sees in place. */
  trim(end) {
    const extra = this.hi - this.lo - MAX_NODES;
    if (extra <= 0) return;
    const l = this.list;
    if (end === 'bottom') {
      for (let i = this.hi - extra; i < this.hi; i += 1) this.drop(this.items[i]);
      this.hi -= extra;
    } else {
      const before = l.scrollHeight;
      const top = l.scrollTop;
      for (let i = this.lo; i < this.lo + extra; i += 1) this.drop(this.items[i]);
      this.group(l.firstElementChild);
      this.lo += extra;
      l.scrollTop = top - (before - l.scrollHeight);
    }
  }

  drop(m) {
    const li = this.nodes.get(m.id);
    if (li) li.remove();
    this.nodes.delete(m.id);
  }

  /** Shows the newest messages again (after the reader scrolled far up and the bottom was dropped). */
  jumpToLatest() {
    if (this.hi < this.items.length) {
      for (const id of this.nodes.keys()) this.nodes.get(id).remove();
      this.nodes.clear();
      this.hi = this.items.length;
      this.lo = Math.max(0, this.hi - PAGE_OPEN);
      const frag = document.createDocumentFragment();
      for (let i = this.lo; i < this.hi; i += 1) frag.append(this.node(this.items[i]));
      this.list.append(frag);
      this.groupAll();
    }
    this.scrollToBottom();
  }

  get showingLatest() {
    return this.hi === this.items.length;
  }

  async scrolled() {
    const l = this.list;
    if (l.scrollTop < EDGE) {
      if (this.lo > 0) this.renderAbove(STEP);
      else if (!this.reachedStart && !this.loadingOlder && this.items.length) {
        this.loadingOlder = true;
        l.setAttribute('aria-busy', 'true');
        try {
          const older = await this.onLoadOlder(this.items[0].seq, PAGE_OLDER);
          this.addOlder(older);
        } catch (err) {
          console.warn('loading older messages failed', err);
        } finally {
          this.loadingOlder = false;
          l.removeAttribute('aria-busy');
        }
      }
    } else if (l.scrollHeight - l.scrollTop - l.clientHeight < EDGE && this.hi < this.items.length) {
      this.renderBelow(STEP);
    }
    this.actions.scrolled();
  }

  /** The newest own message still editable (for the Up key). */
  lastOwn() {
    for (let i = this.items.length - 1; i >= 0; i -= 1) {
      const m = this.items[i];
      if (m.u && m.u._id === this.me.id && !m.deletedAt && !m.t) return m;
    }
    return null;
  }
}

