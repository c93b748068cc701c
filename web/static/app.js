// The chat client: wires the connection, the sidebar, the open room with its composer, the thread,
// search and room-settings panes, presence and typing, and the administration entry point.
// Plain ES modules, no framework: state lives in a few Maps; the DOM is updated per event.

import { Connection, errorText, isAuthError, libraryMissing } from './conn.js';
import { Sidebar } from './sidebar.js';
import { PAGE_OPEN, Timeline } from './timeline.js';
import { $, $$, EMOJI, debounce, el, lockIcon, renderMessage, show, showError } from './ui.js';

const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOW_MS = 6000;
const AWAY_AFTER_MS = 5 * 60 * 1000;
/** Rooms whose `room/<rid>` channel is kept for live badges; beyond this, badges refresh on reconnect. */
const MAX_ROOM_CHANNELS = 500;
/** DM peers and members watched for presence at once. */
const MAX_PRESENCE = 300;
/** `syncMessages` page (the server's maximum); more changes than this answer `reset`. */
const SYNC_LIMIT = 500;
/**
 * Safety nets for publishes the server could not deliver (it logs them and relies on clients to
 * catch up): the open room is synced, and the badges re-read, this often while the page is visible.
 */
const RESYNC_ROOM_MS = 30000;
const RESYNC_BADGES_MS = 120000;
/** The side panes; one is shown at a time. */
const PANES = ['thread', 'search-pane', 'room-settings-pane'];

class App {
  constructor() {
    this.me = null;
    this.rooms = new Map(); // rid -> entry {rid, t, name, display, unread, userMentions, groupMentions, roles, ...}
    this.openRid = null;
    this.timeline = null;
    this.thread = null; // {tmid, root, replies: Map}
    this.members = new Map(); // rid -> [subscription] cache for mentions
    this.presence = new Map(); // uid -> status
    this.usernames = new Map(); // uid -> username
    this.watched = new Set(); // uids with a presence channel
    this.typing = new Map(); // username -> timeout (open room)
    this.typingSentAt = 0;
    this.typingStop = null;
    this.admin = null;
    this.started = false;
    this.sidebar = new Sidebar({ onOpen: (rid) => this.openRoom(rid) });
    this.conn = new Connection({
      onState: (s) => this.connState(s),
      onLogin: (me) => this.loggedIn(me),
      onLoggedOut: (why) => this.loggedOut(why),
    });
    this.markRead = debounce(() => this.doMarkRead(), 400);
    this.refreshBadges = debounce(() => this.loadBadges(), 500);
    setInterval(() => {
      if (this.me && this.openRid && this.visible() && this.conn.socket.state === 'open') this.sync(this.openRid, false);
    }, RESYNC_ROOM_MS);
    setInterval(() => {
      if (this.me && this.visible() && this.conn.socket.state === 'open') this.loadBadges();
    }, RESYNC_BADGES_MS);
    this.bind();
  }

  call(method, data) {
    return this.conn.call(method, data);
  }

  // ---- connection and session -------------------------------------------------------------------

  connState(state) {
    const s = $('#conn-status');
    s.dataset.state = state;
    s.textContent = { connected: 'Connected', connecting: 'Connecting…', disconnected: 'Offline — reconnecting…' }[state] || state;
    document.body.dataset.conn = state;
  }

  loggedOut(why) {
    this.me = null;
    this.started = false;
    show($('#app'), false);
    show($('#login'), true);
    showError($('#login-error'), why || '');
    $('#login-submit').disabled = false;
    if (!why) $('#login-user').focus();
  }

  async loggedIn(me) {
    const first = !this.started || !this.me || this.me.id !== me.id;
    this.me = me;
    this.usernames.set(me.id, me.username);
    document.cookie = `rc_token=${encodeURIComponent(this.conn.session.token)}; path=/; SameSite=Strict`;
    document.cookie = `rc_uid=${encodeURIComponent(me.id)}; path=/; SameSite=Strict`;
    if (first) {
      this.started = true;
      this.resetState();
      $('#me').textContent = me.username;
      $('#me-presence').dataset.presenceUser = me.username;
      show($('#admin-button'), me.roles.includes('admin'));
      this.offerNotifications();
      show($('#login'), false);
      show($('#app'), true);
      this.conn.subscribe(`user/${me.id}`, (ev) => this.userEvent(ev), () => this.refreshSubscriptions());
      this.watchPresence([me.id]);
    } else {
      this.conn.ensureSubscribed();
    }
  }

  resetState() {
    for (const name of [...this.conn.channels.keys()]) this.conn.unsubscribe(name);
    this.rooms.clear();
    this.sidebar.rooms = this.rooms;
    this.sidebar.renderAll();
    this.members.clear();
    this.watched.clear();
    this.closeRoom();
  }

  // ---- rooms and the sidebar --------------------------------------------------------------------

  entry(sub, room) {
    const old = this.rooms.get(sub.rid) || {};
    const r = Object.assign(old, {
      rid: sub.rid,
      t: sub.t || (room && room.t) || old.t || 'c',
      open: sub.open !== false,
      roles: sub.roles || [],
      notify: sub.notify || 'default',
      favorite: !!sub.favorite,
      unread: sub.unread ?? old.unread ?? 0,
      userMentions: sub.userMentions ?? old.userMentions ?? 0,
      groupMentions: sub.groupMentions ?? old.groupMentions ?? 0,
      lastSeq: sub.lastSeq ?? old.lastSeq ?? 0,
    });
    if (room) this.applyRoom(r, room);
    r.display = r.t === 'd' ? r.peer || r.display || 'direct message' : r.fname || r.name || r.display || r.rid;
    this.rooms.set(r.rid, r);
    return r;
  }

  applyRoom(r, room) {
    Object.assign(r, {
      t: room.t,
      name: room.name || r.name,
      fname: room.fname || '',
      topic: room.topic || '',
      description: room.description || '',
      readOnly: !!room.readOnly,
      archived: !!room.archived,
      usersCount: room.usersCount,
    });
    if (r.t !== 'd') r.display = r.fname || r.name || r.rid;
  }

  /** Every subscription and room (first login and every reconnect): badges come from the store. */
  async refreshSubscriptions() {
    try {
      const [subs, rooms] = await Promise.all([this.call('subscriptions.get', {}), this.call('rooms.get', {})]);
      const roomById = new Map((rooms.update || []).map((r) => [r.id, r]));
      const seen = new Set();
      for (const s of subs.update || []) {
        seen.add(s.rid);
        this.entry(s, roomById.get(s.rid));
      }
      for (const rid of [...this.rooms.keys()]) if (!seen.has(rid)) this.forgetRoom(rid);
      this.sidebar.rooms = this.rooms;
      this.sidebar.renderAll();
      this.resolveDmPeers();
      this.subscribeRooms();
      if (this.openRid && this.rooms.has(this.openRid)) {
        const r = this.rooms.get(this.openRid);
        this.renderRoomHead(r);
        if (r.unread) this.markRead();
      } else if (!this.openRid) {
        const wanted = decodeURIComponent(location.hash.slice(1));
        if (wanted && this.rooms.has(wanted)) this.openRoom(wanted);
      }
    } catch (err) {
      if (isAuthError(err)) return;
      console.warn('subscriptions.get failed; trying again', err);
      clearTimeout(this.refreshRetry);
      this.refreshRetry = setTimeout(() => {
        if (this.me && this.conn.socket.state === 'open') this.refreshSubscriptions();
      }, 3000);
    }
  }

  /** `room/<rid>` for every room (live messages, typing, badges), up to MAX_ROOM_CHANNELS. */
  subscribeRooms() {
    let n = 0;
    for (const r of this.rooms.values()) {
      if (n >= MAX_ROOM_CHANNELS && r.rid !== this.openRid) continue;
      n += 1;
      this.conn.subscribe(`room/${r.rid}`, (ev) => this.roomEvent(r.rid, ev), () => this.roomSubscribed(r.rid));
    }
  }

  /** DM rows show the other participant; learned from `getRoomMembers`, a few DMs at a time. */
  async resolveDmPeers() {
    const dms = [...this.rooms.values()].filter((r) => r.t === 'd' && !r.peer);
    const worker = async () => {
      for (let r = dms.shift(); r; r = dms.shift()) {
        try {
          const { members } = await this.call('getRoomMembers', { rid: r.rid, limit: 10 });
          const others = members.filter((m) => m.uid !== this.me.id);
          for (const m of members) this.usernames.set(m.uid, m.username);
          r.peers = others.map((m) => m.uid);
          r.peer = others.map((m) => m.username).join(', ') || this.me.username;
          r.display = r.peer;
          r.peerStatus = others.length ? this.presence.get(others[0].uid) : this.presence.get(this.me.id);
          this.sidebar.update(r.rid);
          if (r.rid === this.openRid) this.renderRoomHead(r);
        } catch (err) {
          console.warn('members of a DM', err);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const peers = [...this.rooms.values()].filter((r) => r.t === 'd' && r.peers).map((r) => r.peers[0]).filter(Boolean);
    this.watchPresence(peers);
  }

  forgetRoom(rid) {
    this.rooms.delete(rid);
    this.conn.unsubscribe(`room/${rid}`);
    this.sidebar.update(rid);
    if (this.openRid === rid) this.closeRoom();
  }

  userEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'subscription.changed') {
      if (ev.action === 'removed') {
        this.forgetRoom(ev.rid);
        return;
      }
      const sub = ev.subscription || (this.rooms.get(ev.rid) ? { rid: ev.rid, t: this.rooms.get(ev.rid).t } : null);
      if (!sub) {
        this.refreshSubscriptions();
        return;
      }
      const fields = { ...sub };
      if (ev.unread) {
        fields.unread = ev.unread.messages;
        fields.userMentions = ev.unread.userMentions;
        fields.groupMentions = ev.unread.groupMentions;
      }
      const isNew = !this.rooms.has(ev.rid);
      const r = this.entry(fields, ev.room);
      if (isNew) {
        this.conn.subscribe(`room/${r.rid}`, (e) => this.roomEvent(r.rid, e), () => this.roomSubscribed(r.rid));
        if (r.t === 'd') this.resolveDmPeers();
        if (!ev.room) this.refreshRoom(r.rid);
      }
      this.sidebar.update(r.rid);
      if (r.rid === this.openRid) this.renderRoomHead(r);
    } else if (ev.type === 'session.revoked') {
      // Another device's logout revokes only its own session; this page ends only if it was ours.
      const mine = this.conn.sessionId;
      const revoked = ev.sessions || (ev.sessionId ? [ev.sessionId] : null);
      if (!revoked || (mine && revoked.includes(mine))) {
        this.conn.session = null;
        this.resetState();
        this.started = false;
        this.loggedOut('You were signed out.');
      }
    } else if (ev.type === 'notification') {
      this.notify(ev);
    } else if (ev.type === 'user.updated' && ev.roles) {
      this.me.roles = ev.roles;
      show($('#admin-button'), ev.roles.includes('admin'));
    }
  }

  async refreshRoom(rid) {
    try {
      const { room, subscription } = await this.call('getRoomInfo', { rid });
      this.entry(subscription || { rid, t: room.t }, room);
      this.sidebar.update(rid);
      if (rid === this.openRid) this.renderRoomHead(this.rooms.get(rid));
    } catch (err) {
      console.warn('getRoomInfo', err);
    }
  }

  // ---- live room events ----------------------------------------------------------------------------

  roomEvent(rid, ev) {
    if (!ev || typeof ev !== 'object') return;
    const r = this.rooms.get(rid);
    const open = rid === this.openRid && this.timeline;
    switch (ev.type) {
      case 'message.new': {
        const m = ev.message;
        if (!m) return;
        if (open) {
          const added = this.timeline.upsert(m);
          if (added && !this.timeline.showingLatest) show($('#jump-latest'), true);
          if (added) this.announce(m);
        }
        if (this.thread && m.tmid === this.thread.tmid) this.threadAdd(m);
        if (m.tmid && open) this.bumpThreadCount(m);
        if (r && m.seq > (r.lastSeq || 0)) r.lastSeq = m.seq;
        if (r && m.u && m.u._id !== this.me.id) {
          if (open && this.visible()) this.markRead();
          else if (!open || !this.visible()) {
            r.unread += 1;
            if ((m.mentions || []).some((x) => (x._id || x.id) === this.me.id)) r.userMentions += 1;
            else if (m.groupMention) r.groupMentions += 1;
            this.sidebar.update(rid);
          }
          this.stopTyping(m.u.username);
        }
        break;
      }
      case 'message.updated':
        if (open) this.timeline.patch(ev.id, pick(ev, ['msg', 'editedAt', 'editedBy', 'mentions', 'updatedAt', 'reactions', 'pinned', 'tcount', 'tlm', 'replies']));
        if (this.thread) this.threadPatch(ev.id, ev);
        break;
      case 'message.deleted':
        if (open) this.timeline.patch(ev.id, { deletedAt: ev.deletedAt || Date.now(), t: 'rm', msg: '', attachments: [], reactions: {} });
        if (this.thread) this.threadPatch(ev.id, { deletedAt: ev.deletedAt || Date.now(), t: 'rm', msg: '' });
        break;
      case 'typing':
        if (open && ev.username && ev.username !== this.me.username) {
          if (ev.typing) this.startTyping(ev.username);
          else this.stopTyping(ev.username);
        }
        break;
      case 'room.updated':
        if (r && ev.room) {
          this.applyRoom(r, ev.room);
          this.sidebar.update(rid);
          if (open) this.renderRoomHead(r);
        }
        break;
      case 'room.deleted':
        this.forgetRoom(rid);
        break;
      default:
    }
  }

  /** The room channel is (re)subscribed: fill whatever happened while it was not. */
  roomSubscribed(rid) {
    if (rid === this.openRid && this.timeline && this.timeline.ready) this.sync(rid);
    // Messages sent before this subscription took effect were not seen live: once the burst of
    // (re)subscriptions settles, the store's counters are read again.
    else this.refreshBadges();
  }

  /** Unread and mention counts from the store, applied to the rows that changed. */
  async loadBadges() {
    try {
      const subs = await this.call('subscriptions.get', {});
      for (const s of subs.update || []) {
        const r = this.rooms.get(s.rid);
        if (!r) continue;
        const open = s.rid === this.openRid;
        const changed = r.unread !== s.unread || r.userMentions !== s.userMentions || r.groupMentions !== s.groupMentions;
        r.lastSeq = s.lastSeq ?? r.lastSeq;
        if (changed && !open) {
          r.unread = s.unread;
          r.userMentions = s.userMentions;
          r.groupMentions = s.groupMentions;
          this.sidebar.update(s.rid);
        }
      }
    } catch (err) {
      if (!isAuthError(err)) console.warn('subscriptions.get failed', err);
    }
  }

  /**
   * Fills what the open room missed: messages after the contiguous `seq` watermark and, after a
   * reconnect (`withUpdates`), edits/deletions/reactions since the newest server time seen (minus a
   * second for clock differences between frontends). More than a page of changes answers `reset`:
   * first the updates are dropped (new messages still come), then the room is reloaded — once.
   */
  async sync(rid, withUpdates = true) {
    const tl = this.timeline;
    if (!tl || tl.rid !== rid) return;
    if (tl.syncing) {
      tl.syncAgain = true;
      return;
    }
    tl.syncing = true;
    try {
      const data = { rid, afterSeq: tl.contig, limit: SYNC_LIMIT };
      if (withUpdates && tl.serverTime) data.updatedSince = Math.max(0, tl.serverTime - 1000);
      const res = await this.call('syncMessages', data);
      if (this.timeline !== tl) return;
      if (res.reset) {
        if (data.updatedSince) {
          tl.syncing = false;
          await this.sync(rid, false);
        } else if (!tl.fresh) {
          this.loadRoom(rid);
        }
        return;
      }
      let top = tl.contig;
      for (const m of res.messages || []) {
        tl.upsert(m);
        if (m.seq > top) top = m.seq;
      }
      for (const m of res.updated || []) {
        if (tl.byId.has(m.id)) tl.patch(m.id, m);
      }
      for (const d of res.deleted || []) {
        const id = d.id || d._id;
        if (tl.byId.has(id)) tl.patch(id, { deletedAt: d.deletedAt || Date.now(), t: 'rm', msg: '', attachments: [], reactions: {} });
      }
      tl.caughtUpTo(top);
      if (this.visible()) this.markRead();
    } catch (err) {
      console.warn('syncMessages failed', err);
    } finally {
      if (this.timeline === tl && tl.syncing) {
        tl.syncing = false;
        tl.fresh = false;
        if (tl.syncAgain) {
          tl.syncAgain = false;
          this.sync(rid, withUpdates);
        }
      }
    }
  }

  // ---- the open room ---------------------------------------------------------------------------

  async openRoom(rid) {
    if (!this.rooms.has(rid)) return;
    if (this.admin) this.closeAdmin();
    if (rid === this.openRid) {
      $('#composer').focus();
      return;
    }
    this.closeRoom();
    this.openRid = rid;
    history.replaceState(null, '', `#${rid}`);
    this.sidebar.setOpen(rid);
    const r = this.rooms.get(rid);
    this.renderRoomHead(r);
    show($('#empty-room'), false);
    show($('#messages'), true);
    show($('#composer-wrap'), true);
    $('#room-settings').disabled = false;
    this.conn.subscribe(`room/${rid}`, (ev) => this.roomEvent(rid, ev), () => this.roomSubscribed(rid));
    await this.loadRoom(rid);
    $('#composer').focus();
  }

  async loadRoom(rid) {
    const r = this.rooms.get(rid);
    if (this.timeline) this.timeline.destroy();
    const tl = new Timeline($('#messages'), {
      rid,
      me: this.me,
      onLoadOlder: async (before, limit) => (await this.call('loadHistory', { rid, before, limit })).messages || [],
      onGap: () => this.sync(rid, false),
      actions: { canDeleteAny: () => this.canModerate(this.rooms.get(rid)), scrolled: () => this.scrolled() },
    });
    this.timeline = tl;
    $('#messages').setAttribute('aria-busy', 'true');
    try {
      const { messages } = await this.call('loadHistory', { rid, limit: PAGE_OPEN });
      if (this.timeline !== tl) return;
      tl.setInitial(messages || [], r ? r.lastSeq : 0);
      tl.ready = true;
      tl.fresh = true;
      // Only what arrived between the page and the subscription: the page itself is current.
      this.sync(rid, false);
      // At once, not debounced: a reader who opens a room and leaves the page at once has read it.
      this.doMarkRead();
    } catch (err) {
      showError($('#composer-error'), errorText(err));
    } finally {
      $('#messages').removeAttribute('aria-busy');
    }
  }

  closeRoom() {
    if (this.timeline) this.timeline.destroy();
    this.timeline = null;
    this.openRid = null;
    this.closeThread();
    this.clearTyping();
    this.sidebar.setOpen(null);
    $('#room-title').textContent = 'No room open';
    $('#room-topic').textContent = '';
    show($('#empty-room'), true);
    show($('#messages'), false);
    show($('#composer-wrap'), false);
    show($('#room-settings-pane'), false);
    $('#room-settings').disabled = true;
  }

  renderRoomHead(r) {
    const title = $('#room-title');
    title.replaceChildren(r.t === 'p' ? lockIcon() : '', r.t === 'd' ? `@${r.display}` : r.t === 'p' ? r.display : `#${r.display}`);
    title.dataset.rid = r.rid;
    $('#room-topic').textContent = r.topic || '';
    const blocked = r.archived || (r.readOnly && !this.canModerate(r));
    $('#composer').disabled = blocked;
    $('#composer').placeholder = r.archived ? 'This room is archived' : blocked ? 'This room is read-only' : `Message ${r.t === 'c' ? '#' : r.t === 'd' ? '@' : ''}${r.display}`;
    if (!$('#room-settings-pane').hidden) this.fillSettings(r);
  }

  canModerate(r) {
    if (!this.me) return false;
    return this.me.roles.includes('admin') || (r && (r.roles || []).some((x) => x === 'owner' || x === 'moderator'));
  }

  canAdministerRoom(r) {
    return this.me && (this.me.roles.includes('admin') || (r && (r.roles || []).includes('owner')));
  }

  visible() {
    // Visible is enough (not focus): a chat on a second screen is being read.
    return document.visibilityState === 'visible';
  }

  scrolled() {
    if (this.timeline && this.timeline.showingLatest && this.timeline.nearBottom()) show($('#jump-latest'), false);
  }

  async doMarkRead() {
    const rid = this.openRid;
    const r = rid && this.rooms.get(rid);
    if (!r || !this.visible()) return;
    r.unread = 0;
    r.userMentions = 0;
    r.groupMentions = 0;
    this.sidebar.update(rid);
    try {
      await this.call('readMessages', { rid });
    } catch (err) {
      console.warn('readMessages', err);
    }
  }

  announce(m) {
    if (!m.u || m.u._id === this.me.id) return;
    $('#announce').textContent = `${m.u.username}: ${(m.msg || '').slice(0, 140)}`;
  }

  // ---- sending, editing, reactions --------------------------------------------------------------

  async send(text, tmid) {
    const rid = this.openRid;
    if (!rid || !text.trim()) return;
    const clientMsgId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const data = { rid, msg: text, clientMsgId };
    if (tmid) data.tmid = tmid;
    this.sendTyping(false);
    // A send that fails because the socket dropped is retried with the same clientMsgId: the server
    // stores it once however many times it arrives.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      try {
        const { message } = await this.call('sendMessage', data);
        if (this.timeline && this.timeline.rid === rid && (!message.tmid || message.tshow)) {
          // Sending takes the reader to the newest messages, where their own now is.
          this.timeline.upsert(message);
          this.timeline.jumpToLatest();
          show($('#jump-latest'), false);
        }
        if (tmid && this.thread && this.thread.tmid === tmid) this.threadAdd(message);
        showError($('#composer-error'), '');
        return true;
      } catch (err) {
        const retry = !err.error && (err.name === 'TimeoutError' || err.name === 'BadConnectionError');
        if (!retry || attempt === 3) {
          showError($('#composer-error'), errorText(err));
          return false;
        }
        await sleep(1000 * (attempt + 1));
      }
    }
    return false;
  }

  startEdit(mid) {
    const li = $(`#messages li.message[data-mid="${CSS.escape(mid)}"]`);
    const m = this.timeline && this.timeline.byId.get(mid);
    if (!li || !m || li.querySelector('.edit-box')) return;
    const box = el('textarea.edit-box', { 'aria-label': 'Edit message', rows: 2 });
    box.value = m.msg;
    const text = li.querySelector('.msg-text');
    text.replaceWith(box);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    const finish = async (save) => {
      if (save && box.value.trim() && box.value !== m.msg) {
        try {
          const { message } = await this.call('updateMessage', { msgId: mid, msg: box.value });
          this.timeline.patch(mid, message);
        } catch (err) {
          showError($('#composer-error'), errorText(err));
          this.timeline.redraw(m);
        }
      } else {
        this.timeline.redraw(m);
      }
      $('#composer').focus();
    };
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        finish(true);
      } else if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation();
        finish(false);
      }
    });
  }

  async deleteMessage(mid) {
    try {
      const res = await this.call('deleteMessage', { msgId: mid });
      const fields = { deletedAt: res.deletedAt || Date.now(), t: 'rm', msg: '', attachments: [], reactions: {} };
      if (this.timeline) this.timeline.patch(mid, fields);
      if (this.thread) this.threadPatch(mid, fields);
    } catch (err) {
      showError($('#composer-error'), errorText(err));
    }
  }

  async react(mid, emoji) {
    try {
      const { message } = await this.call('setReaction', { messageId: mid, reaction: emoji });
      if (this.timeline) this.timeline.patch(mid, { reactions: message.reactions });
      if (this.thread) this.threadPatch(mid, { reactions: message.reactions });
    } catch (err) {
      showError($('#composer-error'), errorText(err));
    }
  }

  showPicker(button, mid) {
    this.closePicker();
    const picker = el('div.emoji-picker', { role: 'dialog', 'aria-label': 'Pick a reaction' });
    for (const [name, ch] of EMOJI) {
      picker.append(el('button.emoji-pick', { type: 'button', dataset: { emoji: name }, title: name, 'aria-label': name, text: ch }));
    }
    picker.addEventListener('click', (e) => {
      const b = e.target.closest('.emoji-pick');
      if (!b) return;
      this.closePicker();
      this.react(mid, b.dataset.emoji);
    });
    picker.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        this.closePicker();
        button.focus();
      }
    });
    button.closest('li.message').append(picker);
    this.picker = picker;
    picker.querySelector('button').focus();
  }

  closePicker() {
    if (this.picker) this.picker.remove();
    this.picker = null;
  }

  /** Clicks inside a message list: reactions, action buttons, thread links. */
  messageClick(e, inThread) {
    const li = e.target.closest('li.message');
    if (!li) return;
    const mid = li.dataset.mid;
    const b = e.target.closest('button');
    if (!b) return;
    if (b.classList.contains('reaction')) this.react(mid, b.dataset.emoji);
    else if (b.classList.contains('act-react')) this.showPicker(b, mid);
    else if (b.classList.contains('act-thread') || b.classList.contains('thread-link')) this.openThread(inThread && this.thread ? this.thread.tmid : mid);
    else if (b.classList.contains('act-edit')) (inThread ? this.threadEdit(mid) : this.startEdit(mid));
    else if (b.classList.contains('act-delete')) this.deleteMessage(mid);
  }

  // ---- threads ------------------------------------------------------------------------------------

  async openThread(tmid) {
    const root = (this.timeline && this.timeline.byId.get(tmid)) || null;
    this.thread = { tmid, root, replies: new Map() };
    const list = $('#thread-messages');
    list.replaceChildren();
    this.openPane('thread');
    if (root) list.append(renderMessage(root, { me: this.me, actions: false, threadLink: false }));
    try {
      const { messages } = await this.call('getThreadMessages', { tmid, limit: 100 });
      if (!this.thread || this.thread.tmid !== tmid) return;
      for (const m of messages || []) this.threadAdd(m);
    } catch (err) {
      list.append(el('li.muted', { text: errorText(err) }));
    }
    $('#thread-composer').focus();
  }

  threadAdd(m) {
    const t = this.thread;
    if (!t || t.replies.has(m.id)) return;
    t.replies.set(m.id, m);
    const li = renderMessage(m, { me: this.me, actions: true, thread: false, canDeleteAny: this.canModerate(this.rooms.get(this.openRid)) });
    const list = $('#thread-messages');
    const after = [...list.children].find((x) => Number(x.dataset.seq) > m.seq && x !== list.firstChild);
    list.insertBefore(li, after || null);
    list.scrollTop = list.scrollHeight;
  }

  threadPatch(id, fields) {
    const t = this.thread;
    if (!t) return;
    const m = t.replies.get(id) || (t.root && t.root.id === id ? t.root : null);
    if (!m) return;
    Object.assign(m, pick(fields, ['msg', 'editedAt', 'reactions', 'deletedAt', 't', 'attachments', 'tcount']));
    const old = $(`#thread-messages li.message[data-mid="${CSS.escape(id)}"]`);
    if (old) old.replaceWith(renderMessage(m, { me: this.me, actions: m !== t.root, thread: false, threadLink: false }));
  }

  threadEdit(mid) {
    const m = this.thread && this.thread.replies.get(mid);
    if (!m) return;
    const text = prompt('Edit reply', m.msg);
    if (text && text !== m.msg) {
      this.call('updateMessage', { msgId: mid, msg: text })
        .then(({ message }) => this.threadPatch(mid, message))
        .catch((err) => showError($('#composer-error'), errorText(err)));
    }
  }

  bumpThreadCount(reply) {
    const root = this.timeline && this.timeline.byId.get(reply.tmid);
    if (!root) return;
    const key = `_seen_${reply.id}`;
    if (root[key]) return;
    root[key] = true;
    root.tcount = (root.tcount || 0) + 1;
    root.tlm = reply.ts;
    this.timeline.redraw(root);
  }

  closeThread() {
    this.thread = null;
    show($('#thread'), false);
  }

  // ---- desktop notifications ---------------------------------------------------------------------

  /**
   * The server sends `notification` only when this user's preferences for the room want one (DMs,
   * mentions, threads, or every message at level `all`); shown as a desktop notification when allowed
   * and the user is not already looking at that room.
   */
  notify(ev) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (ev.rid === this.openRid && this.visible()) return;
    const r = this.rooms.get(ev.rid);
    const where = r ? (r.t === 'd' ? '' : ` in ${r.t === 'c' ? '#' : ''}${r.display}`) : '';
    const who = ev.sender && ev.sender.username ? ev.sender.username : 'Someone';
    try {
      const n = new Notification(`${who}${where}`, { body: ev.text || '', tag: ev.messageId || ev.rid });
      n.onclick = () => {
        window.focus();
        this.openRoom(ev.rid);
        n.close();
      };
    } catch (err) {
      console.warn('notification', err);
    }
  }

  offerNotifications() {
    const b = $('#enable-notifications');
    show(b, 'Notification' in window && Notification.permission === 'default');
  }

  // ---- typing ---------------------------------------------------------------------------------------

  sendTyping(on) {
    const rid = this.openRid;
    if (!rid) return;
    clearTimeout(this.typingStop);
    if (on) {
      const now = Date.now();
      if (now - this.typingSentAt > TYPING_SEND_EVERY_MS) {
        this.typingSentAt = now;
        this.call('typing', { rid, typing: true }).catch(() => {});
      }
      this.typingStop = setTimeout(() => this.sendTyping(false), TYPING_IDLE_MS);
    } else if (this.typingSentAt) {
      this.typingSentAt = 0;
      this.call('typing', { rid, typing: false }).catch(() => {});
    }
  }

  startTyping(username) {
    clearTimeout(this.typing.get(username));
    this.typing.set(username, setTimeout(() => this.stopTyping(username), TYPING_SHOW_MS));
    this.renderTyping();
  }

  stopTyping(username) {
    if (!this.typing.has(username)) return;
    clearTimeout(this.typing.get(username));
    this.typing.delete(username);
    this.renderTyping();
  }

  clearTyping() {
    for (const t of this.typing.values()) clearTimeout(t);
    this.typing.clear();
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.keys()];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    $('#typing').textContent = text;
  }

  // ---- presence ---------------------------------------------------------------------------------

  async watchPresence(uids) {
    const fresh = uids.filter((u) => u && !this.watched.has(u)).slice(0, Math.max(0, MAX_PRESENCE - this.watched.size));
    if (!fresh.length) return;
    for (const uid of fresh) {
      this.watched.add(uid);
      this.conn.subscribe(`presence/${uid}`, (ev) => {
        if (ev && ev.uid && ev.status) this.setPresence(ev.uid, ev.status);
      });
    }
    try {
      for (let i = 0; i < fresh.length; i += 100) {
        const { users } = await this.call('getUserPresence', { uids: fresh.slice(i, i + 100) });
        for (const u of users || []) this.setPresence(u.uid, u.status);
      }
    } catch (err) {
      console.warn('getUserPresence', err);
    }
  }

  setPresence(uid, status) {
    this.presence.set(uid, status);
    const username = this.usernames.get(uid);
    if (!username) return;
    for (const node of $$(`[data-presence-user="${CSS.escape(username)}"]`)) node.dataset.status = status;
    for (const r of this.rooms.values()) {
      if (r.t === 'd' && r.peers && r.peers[0] === uid) r.peerStatus = status;
    }
    if (uid === this.me.id) {
      const sel = $('#my-status');
      if (status === 'busy' || status === 'away') sel.value = status;
    }
  }

  // ---- mentions autocomplete ----------------------------------------------------------------------

  async roomMembers(rid) {
    if (!this.members.has(rid)) {
      const { members } = await this.call('getRoomMembers', { rid, limit: 200 });
      for (const m of members) this.usernames.set(m.uid, m.username);
      this.members.set(rid, members);
    }
    return this.members.get(rid);
  }

  async mentionInput() {
    const box = $('#composer');
    const before = box.value.slice(0, box.selectionStart);
    const m = /(^|\s)@([A-Za-z0-9_.-]*)$/.exec(before);
    const list = $('#mention-list');
    if (!m || !this.openRid) {
      show(list, false);
      return;
    }
    const prefix = m[2].toLowerCase();
    let members = [];
    try {
      members = await this.roomMembers(this.openRid);
    } catch {
      return;
    }
    const names = members.map((x) => x.username).filter((u) => u !== this.me.username);
    if (!this.rooms.get(this.openRid) || this.rooms.get(this.openRid).t !== 'd') names.push('all', 'here');
    const hits = names.filter((u) => u.toLowerCase().startsWith(prefix)).slice(0, 8);
    if (!hits.length) {
      show(list, false);
      return;
    }
    list.replaceChildren(
      ...hits.map((u, i) => el('li', { role: 'option', dataset: { username: u }, id: `mention-${i}`, 'aria-selected': i === 0 ? 'true' : 'false', text: `@${u}` }))
    );
    show(list, true);
  }

  mentionKey(e) {
    const list = $('#mention-list');
    if (list.hidden) return false;
    const items = $$('li', list);
    let i = items.findIndex((x) => x.getAttribute('aria-selected') === 'true');
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      i = (i + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
      items.forEach((x, k) => x.setAttribute('aria-selected', k === i ? 'true' : 'false'));
      e.preventDefault();
      return true;
    }
    if (e.key === 'Enter' || e.key === 'Tab') {
      e.preventDefault();
      this.pickMention(items[Math.max(0, i)].dataset.username);
      return true;
    }
    if (e.key === 'Escape') {
      e.preventDefault();
      show(list, false);
      return true;
    }
    return false;
  }

  pickMention(username) {
    const box = $('#composer');
    const pos = box.selectionStart;
    const before = box.value.slice(0, pos).replace(/@([A-Za-z0-9_.-]*)$/, `@${username} `);
    box.value = before + box.value.slice(pos);
    box.setSelectionRange(before.length, before.length);
    show($('#mention-list'), false);
    box.focus();
  }

  // ---- uploads --------------------------------------------------------------------------------------

  async upload(file) {
    const rid = this.openRid;
    const session = this.conn.session;
    if (!rid || !file || !session) return;
    const form = new FormData();
    form.append('file', file, file.name);
    const status = $('#composer-error');
    showError(status, `Uploading ${file.name}…`);
    try {
      const res = await fetch(`/api/v1/rooms.upload/${encodeURIComponent(rid)}`, {
        method: 'POST',
        headers: { 'X-Auth-Token': session.token, 'X-User-Id': session.uid },
        body: form,
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok || body.success === false) throw new Error(body.error || `upload failed (${res.status})`);
      if (body.message && this.timeline && this.timeline.rid === rid) this.timeline.upsert(body.message);
      showError(status, '');
    } catch (err) {
      showError(status, errorText(err));
    }
  }

  // ---- search -----------------------------------------------------------------------------------------

  async search(text) {
    const results = $('#search-results');
    this.openPane('search-pane');
    $('#search-status').textContent = 'Searching…';
    results.replaceChildren();
    try {
      const { messages } = await this.call('messageSearch', { text, limit: 50 });
      $('#search-status').textContent = messages.length ? `${messages.length} result${messages.length === 1 ? '' : 's'}` : 'No results';
      const frag = document.createDocumentFragment();
      for (const m of messages) {
        const li = renderMessage(m, { me: this.me, actions: false, threadLink: false });
        const r = this.rooms.get(m.rid);
        li.prepend(el('div.search-room', { text: r ? (r.t === 'd' ? `@${r.display}` : `#${r.display}`) : '' }));
        li.dataset.rid = m.rid;
        li.tabIndex = 0;
        frag.append(li);
      }
      results.append(frag);
    } catch (err) {
      $('#search-status').textContent = errorText(err);
    }
  }

  async openSearchResult(li) {
    const { rid, mid } = li.dataset;
    await this.openRoom(rid);
    const target = $(`#messages li.message[data-mid="${CSS.escape(mid)}"]`);
    if (target) {
      target.scrollIntoView({ block: 'center' });
      target.classList.add('highlight');
      setTimeout(() => target.classList.remove('highlight'), 2000);
    }
  }

  // ---- room settings, members, new rooms --------------------------------------------------------

  toggleSettings() {
    const pane = $('#room-settings-pane');
    const on = pane.hidden;
    if (on) this.openPane('room-settings-pane');
    else this.closePane('room-settings-pane');
    if (on && this.openRid) {
      this.fillSettings(this.rooms.get(this.openRid));
      this.loadMembers();
      $('#settings-name').focus();
    }
  }

  fillSettings(r) {
    const can = this.canAdministerRoom(r) && r.t !== 'd';
    $('#settings-name').value = r.name || '';
    $('#settings-topic').value = r.topic || '';
    $('#settings-description').value = r.description || '';
    $('#settings-readonly').checked = !!r.readOnly;
    for (const id of ['#settings-name', '#settings-topic', '#settings-description', '#settings-readonly', '#settings-save']) $(id).disabled = !can;
    $('#notify-pref').value = r.notify || 'default';
    show($('#invite-form'), r.t !== 'd');
    show($('#leave-room'), r.t !== 'd');
    showError($('#settings-error'), '');
    showError($('#members-error'), '');
  }

  async saveSettings() {
    const r = this.rooms.get(this.openRid);
    if (!r) return;
    const data = { rid: r.rid };
    const name = $('#settings-name').value.trim();
    if (name && name !== r.name) data.roomName = name;
    if ($('#settings-topic').value !== (r.topic || '')) data.roomTopic = $('#settings-topic').value;
    if ($('#settings-description').value !== (r.description || '')) data.roomDescription = $('#settings-description').value;
    if ($('#settings-readonly').checked !== !!r.readOnly) data.readOnly = $('#settings-readonly').checked;
    if (Object.keys(data).length === 1) return;
    try {
      const { room } = await this.call('saveRoomSettings', data);
      this.applyRoom(r, room);
      this.sidebar.update(r.rid);
      this.renderRoomHead(r);
      showError($('#settings-error'), '');
    } catch (err) {
      showError($('#settings-error'), errorText(err));
    }
  }

  async loadMembers() {
    const rid = this.openRid;
    const r = this.rooms.get(rid);
    const list = $('#members');
    this.members.delete(rid);
    try {
      const members = await this.roomMembers(rid);
      if (rid !== this.openRid) return;
      const admin = this.canAdministerRoom(r) && r.t !== 'd';
      const moderate = this.canModerate(r) && r.t !== 'd';
      const frag = document.createDocumentFragment();
      for (const m of members) {
        const roles = m.roles || [];
        const li = el(
          'li',
          { dataset: { username: m.username, uid: m.uid } },
          el('span.presence-dot', { dataset: { presenceUser: m.username, status: this.presence.get(m.uid) || 'offline' }, 'aria-hidden': 'true' }),
          el('span.member-name', { text: m.username }),
          ...roles.map((x) => el('span.role', { text: x }))
        );
        if (m.uid !== this.me.id) {
          const tools = el('span.member-tools');
          if (admin) {
            const owner = roles.includes('owner');
            const mod = roles.includes('moderator');
            tools.append(el('button.set-owner', { type: 'button', dataset: { action: owner ? 'removeRoomOwner' : 'addRoomOwner' }, text: owner ? 'Remove owner' : 'Make owner' }));
            tools.append(el('button.set-moderator', { type: 'button', dataset: { action: mod ? 'removeRoomModerator' : 'addRoomModerator' }, text: mod ? 'Remove moderator' : 'Make moderator' }));
          }
          if (moderate) tools.append(el('button.kick', { type: 'button', dataset: { action: 'kick' }, text: 'Remove' }));
          if (tools.childElementCount) li.append(tools);
        }
        frag.append(li);
      }
      list.replaceChildren(frag);
      this.watchPresence(members.map((m) => m.uid));
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async memberAction(b) {
    const li = b.closest('li[data-username]');
    const rid = this.openRid;
    try {
      if (b.dataset.action === 'kick') await this.call('removeUserFromRoom', { rid, username: li.dataset.username });
      else await this.call(b.dataset.action, { rid, userId: li.dataset.uid });
      await this.loadMembers();
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async invite() {
    const username = $('#invite-user').value.trim().replace(/^@/, '');
    if (!username) return;
    try {
      await this.call('addUserToRoom', { rid: this.openRid, username });
      $('#invite-user').value = '';
      showError($('#members-error'), '');
      await this.loadMembers();
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async leave() {
    const rid = this.openRid;
    try {
      await this.call('leaveRoom', { rid });
      this.forgetRoom(rid);
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async createRoom() {
    const name = $('#new-room-name').value.trim();
    const priv = $('#new-room-private').checked;
    const members = $('#new-room-members').value.split(/[\s,]+/).map((s) => s.replace(/^@/, '')).filter(Boolean);
    try {
      const { room } = await this.call(priv ? 'createPrivateGroup' : 'createChannel', { name, members });
      this.entry({ rid: room.id, t: room.t, roles: ['owner'], unread: 0, userMentions: 0, groupMentions: 0 }, room);
      this.sidebar.update(room.id);
      $('#new-room-form').reset();
      this.toggleNewRoom(false);
      await this.openRoom(room.id);
    } catch (err) {
      showError($('#new-room-error'), errorText(err));
    }
  }

  toggleNewRoom(on) {
    show($('#new-room-form'), on);
    $('#new-room').setAttribute('aria-expanded', String(on));
    showError($('#new-room-error'), '');
    if (on) $('#new-room-name').focus();
  }

  async openDirect(username) {
    try {
      const { room } = await this.call('createDirectMessage', { username });
      if (!this.rooms.has(room.id)) {
        this.entry({ rid: room.id, t: 'd', unread: 0, userMentions: 0, groupMentions: 0 }, room);
        this.sidebar.update(room.id);
        await this.resolveDmPeers();
      }
      $('#new-dm-user').value = '';
      await this.openRoom(room.id);
    } catch (err) {
      showError($('#new-room-error'), errorText(err));
      show($('#new-room-error'), true);
    }
  }

  // ---- administration ---------------------------------------------------------------------------

  async openAdmin() {
    const root = $('#admin');
    if (this.admin) {
      this.closeAdmin();
      return;
    }
    show($('#room'), false);
    for (const id of PANES) if (!$(`#${id}`).hidden) this.closePane(id);
    show(root, true);
    $('#admin-button').setAttribute('aria-pressed', 'true');
    root.replaceChildren(el('p.muted', { text: 'Loading administration…' }));
    this.admin = { unmount: null };
    try {
      const mod = await import('./admin.js');
      root.replaceChildren();
      const ctx = { call: (method, data) => this.call(method, data), me: { ...this.me }, socket: this.conn.socket };
      const mounted = await mod.mountAdmin(root, ctx);
      if (this.admin) this.admin.unmount = mounted && typeof mounted.unmount === 'function' ? () => mounted.unmount() : null;
    } catch (err) {
      console.warn('admin.js', err);
      root.replaceChildren(el('p.error', { role: 'alert', text: 'Administration is not available' }));
    }
  }

  closeAdmin() {
    if (this.admin && this.admin.unmount) {
      try {
        this.admin.unmount();
      } catch (err) {
        console.warn('unmount admin', err);
      }
    }
    this.admin = null;
    $('#admin').replaceChildren();
    show($('#admin'), false);
    show($('#room'), true);
    $('#admin-button').setAttribute('aria-pressed', 'false');
  }

  // ---- away detection ---------------------------------------------------------------------------

  activity() {
    clearTimeout(this.awayTimer);
    if (this.away && this.me) {
      this.away = false;
      this.call('UserPresence:online', {}).catch(() => {});
    }
    this.awayTimer = setTimeout(() => {
      if (!this.me) return;
      this.away = true;
      this.call('UserPresence:away', {}).catch(() => {});
    }, AWAY_AFTER_MS);
  }

  // ---- DOM wiring -----------------------------------------------------------------------------------

  bind() {
    $('#login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const btn = $('#login-submit');
      btn.disabled = true;
      showError($('#login-error'), '');
      try {
        await this.conn.login($('#login-user').value.trim(), $('#login-password').value);
        $('#login-password').value = '';
      } catch (err) {
        showError($('#login-error'), err && err.error === 'error-unauthorized' ? 'Wrong username or password.' : errorText(err));
        $('#login-password').select();
      } finally {
        btn.disabled = false;
      }
    });
    $('#logout').addEventListener('click', async () => {
      this.closeAdmin();
      document.cookie = 'rc_token=; path=/; max-age=0';
      document.cookie = 'rc_uid=; path=/; max-age=0';
      this.resetState();
      this.me = null;
      this.started = false;
      await this.conn.logout();
      this.loggedOut(null);
    });
    $('#my-status').addEventListener('change', (e) => {
      this.call('setUserStatus', { status: e.target.value }).catch((err) => console.warn(err));
    });

    const composer = $('#composer');
    composer.addEventListener('keydown', (e) => {
      if (this.mentionKey(e)) return;
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('#composer-form').requestSubmit();
      } else if (e.key === 'ArrowUp' && !composer.value && this.timeline) {
        const m = this.timeline.lastOwn();
        if (m) {
          e.preventDefault();
          this.startEdit(m.id);
        }
      }
    });
    composer.addEventListener('input', () => {
      autoGrow(composer);
      if (composer.value) this.sendTyping(true);
      else this.sendTyping(false);
      this.mentionInput();
    });
    $('#composer-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const text = composer.value;
      if (!text.trim()) return;
      composer.value = '';
      autoGrow(composer);
      show($('#mention-list'), false);
      if (!(await this.send(text))) composer.value = text;
    });
    $('#mention-list').addEventListener('mousedown', (e) => {
      const li = e.target.closest('li[data-username]');
      if (li) {
        e.preventDefault();
        this.pickMention(li.dataset.username);
      }
    });
    $('#upload-input').addEventListener('change', (e) => {
      const file = e.target.files[0];
      e.target.value = '';
      this.upload(file);
    });

    $('#messages').addEventListener('click', (e) => this.messageClick(e, false));
    $('#messages').addEventListener('keydown', (e) => logKeys(e));
    $('#thread-messages').addEventListener('keydown', (e) => logKeys(e));
    $('#thread-messages').addEventListener('click', (e) => this.messageClick(e, true));
    const threadBox = $('#thread-composer');
    threadBox.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('#thread-form').requestSubmit();
      }
    });
    $('#thread-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const text = threadBox.value;
      if (!text.trim() || !this.thread) return;
      threadBox.value = '';
      if (!(await this.send(text, this.thread.tmid))) threadBox.value = text;
    });

    $('#search-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target.value.trim()) {
        e.preventDefault();
        this.search(e.target.value.trim());
      }
    });
    $('#search-results').addEventListener('click', (e) => {
      const li = e.target.closest('li[data-mid]');
      if (li) this.openSearchResult(li);
    });
    $('#search-results').addEventListener('keydown', (e) => {
      const li = e.target.closest('li[data-mid]');
      if (li && e.key === 'Enter') this.openSearchResult(li);
    });

    $('#room-settings').addEventListener('click', () => this.toggleSettings());
    $('#settings-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveSettings();
    });
    $('#notify-pref').addEventListener('change', async (e) => {
      const r = this.rooms.get(this.openRid);
      try {
        await this.call('saveNotificationSettings', { rid: this.openRid, desktopNotifications: e.target.value });
        if (r) r.notify = e.target.value;
      } catch (err) {
        showError($('#settings-error'), errorText(err));
      }
    });
    $('#invite-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.invite();
    });
    $('#members').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action]');
      if (b) this.memberAction(b);
    });
    $('#leave-room').addEventListener('click', () => this.leave());

    $('#new-room').addEventListener('click', () => this.toggleNewRoom($('#new-room-form').hidden));
    $('#new-room-cancel').addEventListener('click', () => this.toggleNewRoom(false));
    $('#new-room-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.createRoom();
    });
    $('#new-dm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const u = $('#new-dm-user').value.trim().replace(/^@/, '');
      if (u) this.openDirect(u);
    });
    $('#admin-button').addEventListener('click', () => this.openAdmin());
    $('#enable-notifications').addEventListener('click', async () => {
      try {
        await Notification.requestPermission();
      } finally {
        this.offerNotifications();
      }
    });

    for (const b of $$('[data-close]')) {
      b.addEventListener('click', () => this.closePane(b.dataset.close));
    }
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      if (this.picker) return this.closePicker();
      for (const id of ['thread', 'search-pane', 'room-settings-pane', 'new-room-form']) {
        if (!$(`#${id}`).hidden) {
          this.closePane(id);
          return;
        }
      }
    });

    const jump = el('button.jump', { id: 'jump-latest', type: 'button', hidden: true, text: 'New messages ↓' });
    jump.addEventListener('click', () => {
      if (this.timeline) this.timeline.jumpToLatest();
      show(jump, false);
    });
    $('#composer-wrap').prepend(jump);

    document.addEventListener('visibilitychange', () => {
      if (this.visible() && this.openRid) this.markRead();
    });
    window.addEventListener('focus', () => {
      if (this.openRid) this.markRead();
    });
    for (const ev of ['keydown', 'mousedown', 'mousemove', 'touchstart']) {
      window.addEventListener(ev, throttle(() => this.activity(), 10000), { passive: true });
    }
    window.addEventListener('hashchange', () => {
      const rid = decodeURIComponent(location.hash.slice(1));
      if (rid && rid !== this.openRid && this.rooms.has(rid)) this.openRoom(rid);
    });
  }

  /** Shows one side pane (they share the column on the right) and closes the others. */
  openPane(id) {
    for (const other of PANES) {
      if (other === id || $(`#${other}`).hidden) continue;
      if (other === 'thread') this.closeThread();
      else show($(`#${other}`), false);
    }
    $('#room-settings').setAttribute('aria-expanded', String(id === 'room-settings-pane'));
    show($(`#${id}`), true);
  }

  closePane(id) {
    if (id === 'thread') this.closeThread();
    else if (id === 'new-room-form') this.toggleNewRoom(false);
    else {
      show($(`#${id}`), false);
      if (id === 'room-settings-pane') $('#room-settings').setAttribute('aria-expanded', 'false');
    }
    if (this.openRid) $('#composer').focus();
  }
}

/**
 * Keyboard in a message list: Up/Down (or Home/End) move between messages, Enter goes into the
 * focused message's actions, Left/Right move between them, Escape goes back to the message.
 */
function logKeys(e) {
  const list = e.currentTarget;
  const t = e.target;
  const inBar = t.closest('.msg-actions');
  if (inBar) {
    const buttons = [...inBar.querySelectorAll('button')];
    const i = buttons.indexOf(t);
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      buttons[(i + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length].focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      t.closest('li.message').focus();
    }
    return;
  }
  if (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT') return;
  const items = () => [...list.querySelectorAll(':scope > li.message')];
  const li = t.closest('li.message');
  let next = null;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    if (!li) next = e.key === 'ArrowUp' ? list.lastElementChild : list.firstElementChild;
    else next = e.key === 'ArrowUp' ? li.previousElementSibling : li.nextElementSibling;
  } else if (e.key === 'Home') next = items()[0];
  else if (e.key === 'End') next = items().pop();
  else if (e.key === 'Enter' && li) {
    const first = li.querySelector('.msg-actions button, .reaction, .thread-link, a');
    if (first) {
      e.preventDefault();
      first.focus();
    }
    return;
  }
  if (next) {
    e.preventDefault();
    next.focus();
    next.scrollIntoView({ block: 'nearest' });
  }
}

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function throttle(fn, ms) {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last > ms) {
      last = now;
      fn();
    }
  };
}

function autoGrow(box) {
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

if (libraryMissing) {
  const fatal = document.getElementById('fatal');
  fatal.textContent = libraryMissing;
  fatal.hidden = false;
  document.getElementById('conn-status').dataset.state = 'disconnected';
} else {
  window.chatApp = new App();
}

