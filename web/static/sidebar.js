// The sidebar: channels, private groups and DMs with unread and mention badges. Built once with one
// DocumentFragment per list; afterwards every event replaces the one row it concerns. The filter box
// hides rows by name (no re-render), so 500 rooms stay cheap.

import { $, el, lockIcon } from './ui.js';

export class Sidebar {
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.rooms = new Map(); // rid -> room entry (see App.roomEntry)
    this.rows = new Map(); // rid -> li
    this.openRid = null;
    this.filter = '';
    this.lists = { c: $('#rooms-c'), p: $('#rooms-p'), d: $('#rooms-d') };
    for (const list of Object.values(this.lists)) {
      list.addEventListener('click', (e) => {
        const li = e.target.closest('li[data-rid]');
        if (li) {
          e.preventDefault();
          this.onOpen(li.dataset.rid);
        }
      });
    }
    $('#room-filter').addEventListener('input', (e) => {
      this.filter = e.target.value.trim().toLowerCase();
      for (const [rid, li] of this.rows) li.hidden = !this.matches(this.rooms.get(rid));
    });
  }

  matches(r) {
    return !this.filter || r.display.toLowerCase().includes(this.filter);
  }

  /** Replaces every row (first load, or after a reconnect's full `subscriptions.get`). */
  renderAll() {
    const sorted = [...this.rooms.values()].filter((r) => r.open !== false).sort(byName);
    const frags = { c: document.createDocumentFragment(), p: document.createDocumentFragment(), d: document.createDocumentFragment() };
    this.rows.clear();
    for (const r of sorted) {
      const li = this.row(r);
      this.rows.set(r.rid, li);
      (frags[r.t] || frags.c).append(li);
    }
    for (const [t, list] of Object.entries(this.lists)) list.replaceChildren(frags[t]);
    this.updateTitle();
  }

  row(r) {
    const li = el('li', { dataset: { rid: r.rid, name: r.name || r.display, type: r.t } });
    if (r.rid === this.openRid) li.setAttribute('aria-current', 'page');
    const unread = r.unread > 0 && r.rid !== this.openRid;
    if (unread) li.classList.add('has-unread');
    const link = el('a.room-link', { href: `#${r.rid}` });
    if (r.t === 'd') {
      link.append(el('span.presence-dot', { dataset: { presenceUser: r.peer || '', status: r.peerStatus || 'offline' }, 'aria-hidden': 'true' }));
    } else {
      link.append(el('span.room-icon', { 'aria-hidden': 'true' }, r.t === 'p' ? lockIcon() : '#'));
    }
    link.append(el('span.room-name', { text: r.display }));
    const mentions = r.userMentions + r.groupMentions;
    if (mentions > 0 && r.rid !== this.openRid) {
      link.append(el('span.badge-mention', { title: `${mentions} mention${mentions === 1 ? '' : 's'}`, text: '@' }));
    }
    if (unread) {
      link.append(el('span.badge-unread', { 'aria-label': `${r.unread} unread`, text: r.unread > 999 ? '999+' : String(r.unread) }));
    }
    li.append(link);
    li.hidden = !this.matches(r);
    return li;
  }

  /** Redraws one room's row (or inserts it in name order, or removes it). */
  update(rid) {
    this.updateTitle();
    const r = this.rooms.get(rid);
    const old = this.rows.get(rid);
    if (!r || r.open === false) {
      if (old) old.remove();
      this.rows.delete(rid);
      return;
    }
    const li = this.row(r);
    this.rows.set(rid, li);
    if (old && old.dataset.type === r.t && old.dataset.name === li.dataset.name) {
      old.replaceWith(li);
      return;
    }
    if (old) old.remove();
    const list = this.lists[r.t] || this.lists.c;
    const next = [...list.children].find((x) => byName(r, this.rooms.get(x.dataset.rid) || { display: '' }) < 0);
    list.insertBefore(li, next || null);
  }

  /** The page title carries the number of unread messages (other tabs and the taskbar show it). */
  updateTitle() {
    let total = 0;
    for (const r of this.rooms.values()) if (r.open !== false && r.rid !== this.openRid) total += r.unread || 0;
    const title = total ? `(${total > 999 ? '999+' : total}) Chat` : 'Chat';
    if (document.title !== title) document.title = title;
  }

  setOpen(rid) {
    const prev = this.openRid;
    this.openRid = rid;
    if (prev) this.update(prev);
    if (rid) this.update(rid);
  }
}

function byName(a, b) {
  return a.display.localeCompare(b.display, undefined, { sensitivity: 'base' });
}
