// The chat client's coordinator: owns the state (who is signed in, the rooms, the open room and its
// timeline) and routes the connection's events to the modules that draw them. Each module binds its
// own controls and reaches the others through the `App` it is given:
//   composer.js (sending, typing, mentions, uploads), messages.js (reactions, edit, delete, keyboard
//   in a list), thread.js, search.js, roomsettings.js (settings, members), newroom.js (new rooms,
//   DMs), presence.js (presence, away, the typing line), notify.js, adminentry.js; sidebar.js,
//   timeline.js and conn.js underneath.
// Plain ES modules, no framework: state lives in a few Maps; the DOM is updated per event.

import { AdminEntry } from './adminentry.js';
import { Composer } from './composer.js';
import { Connection, errorText, isAuthError, libraryMissing } from './conn.js';
import { MessageActions } from './messages.js';
import { NewRoomForm } from './newroom.js';
import { DesktopNotifications } from './notify.js';
import { Presence, TypingLine } from './presence.js';
import { RoomSettings } from './roomsettings.js';
import { SearchPane } from './search.js';
import { Sidebar } from './sidebar.js';
import { ThreadPane } from './thread.js';
import { PAGE_OPEN, Timeline } from './timeline.js';
import { $, $$, debounce, el, lockIcon, pick, show, showError } from './ui.js';

/** Rooms whose `room/<rid>` channel is kept for live badges; beyond this, badges refresh on reconnect. */
const MAX_ROOM_CHANNELS = 500;
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
    this.members = new Map(); // rid -> [subscription] cache for mentions and the member list
    this.usernames = new Map(); // uid -> username
    this.started = false;
    this.sidebar = new Sidebar({ onOpen: (rid) => this.openRoom(rid) });
    this.presence = new Presence(this);
    this.typing = new TypingLine();
    this.composer = new Composer(this);
    this.messages = new MessageActions(this);
    this.thread = new ThreadPane(this);
    this.search = new SearchPane(this);
    this.settings = new RoomSettings(this);
    this.newRoom = new NewRoomForm(this);
    this.notifications = new DesktopNotifications(this);
    this.admin = new AdminEntry(this);
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
      this.notifications.offer();
      show($('#login'), false);
      show($('#app'), true);
      this.conn.subscribe(`user/${me.id}`, (ev) => this.userEvent(ev), () => this.refreshSubscriptions());
      this.presence.watch([me.id]);
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
    this.presence.forgetWatched();
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
          r.peerStatus = others.length ? this.presence.status(others[0].uid) : this.presence.status(this.me.id);
          this.sidebar.update(r.rid);
          if (r.rid === this.openRid) this.renderRoomHead(r);
        } catch (err) {
          console.warn('members of a DM', err);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const peers = [...this.rooms.values()].filter((r) => r.t === 'd' && r.peers).map((r) => r.peers[0]).filter(Boolean);
    this.presence.watch(peers);
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
      this.notifications.show(ev);
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
        if (m.tmid && m.tmid === this.thread.tmid) this.thread.add(m);
        if (m.tmid && open) this.thread.bumpCount(m);
        if (r && m.seq > (r.lastSeq || 0)) r.lastSeq = m.seq;
        if (r && m.u && m.u._id !== this.me.id) {
          if (open && this.visible()) this.markRead();
          else if (!open || !this.visible()) {
            r.unread += 1;
            if ((m.mentions || []).some((x) => (x._id || x.id) === this.me.id)) r.userMentions += 1;
            else if (m.groupMention) r.groupMentions += 1;
            this.sidebar.update(rid);
          }
          this.typing.stop(m.u.username);
        }
        break;
      }
      case 'message.updated':
        if (open) this.timeline.patch(ev.id, pick(ev, ['msg', 'editedAt', 'editedBy', 'mentions', 'updatedAt', 'reactions', 'pinned', 'tcount', 'tlm', 'replies']));
        this.thread.patch(ev.id, ev);
        break;
      case 'message.deleted':
        if (open) this.timeline.patch(ev.id, { deletedAt: ev.deletedAt || Date.now(), t: 'rm', msg: '', attachments: [], reactions: {} });
        this.thread.patch(ev.id, { deletedAt: ev.deletedAt || Date.now(), t: 'rm', msg: '' });
        break;
      case 'typing':
        if (open && ev.username && ev.username !== this.me.username) {
          if (ev.typing) this.typing.start(ev.username);
          else this.typing.stop(ev.username);
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
    if (this.admin.isOpen) this.admin.close();
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
    this.thread.close();
    this.typing.clear();
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
    if (this.settings.shown) this.settings.fill(r);
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

  /** The room's members, read once per room (the settings pane reads them afresh). */
  async roomMembers(rid) {
    if (!this.members.has(rid)) {
      const { members } = await this.call('getRoomMembers', { rid, limit: 200 });
      for (const m of members) this.usernames.set(m.uid, m.username);
      this.members.set(rid, members);
    }
    return this.members.get(rid);
  }

  announce(m) {
    if (!m.u || m.u._id === this.me.id) return;
    $('#announce').textContent = `${m.u.username}: ${(m.msg || '').slice(0, 140)}`;
  }

  // ---- side panes ---------------------------------------------------------------------------------

  /** Shows one side pane (they share the column on the right) and closes the others. */
  openPane(id) {
    for (const other of PANES) {
      if (other === id || $(`#${other}`).hidden) continue;
      if (other === 'thread') this.thread.close();
      else show($(`#${other}`), false);
    }
    $('#room-settings').setAttribute('aria-expanded', String(id === 'room-settings-pane'));
    show($(`#${id}`), true);
  }

  closePane(id) {
    if (id === 'thread') this.thread.close();
    else if (id === 'new-room-form') this.newRoom.toggle(false);
    else {
      show($(`#${id}`), false);
      if (id === 'room-settings-pane') $('#room-settings').setAttribute('aria-expanded', 'false');
    }
    if (this.openRid) $('#composer').focus();
  }

  /** Closes every side pane that is shown (the administration takes the room's place). */
  closeSidePanes() {
    for (const id of PANES) if (!$(`#${id}`).hidden) this.closePane(id);
  }

  // ---- DOM wiring (the modules bind their own controls) ---------------------------------------------

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
      this.admin.close();
      document.cookie = 'rc_token=; path=/; max-age=0';
      document.cookie = 'rc_uid=; path=/; max-age=0';
      this.resetState();
      this.me = null;
      this.started = false;
      await this.conn.logout();
      this.loggedOut(null);
    });

    for (const b of $$('[data-close]')) {
      b.addEventListener('click', () => this.closePane(b.dataset.close));
    }
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      if (this.messages.picker) return this.messages.closePicker();
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
    window.addEventListener('hashchange', () => {
      const rid = decodeURIComponent(location.hash.slice(1));
      if (rid && rid !== this.openRid && this.rooms.has(rid)) this.openRoom(rid);
    });
  }
}

if (libraryMissing) {
  const fatal = document.getElementById('fatal');
  fatal.textContent = libraryMissing;
  fatal.hidden = false;
  document.getElementById('conn-status').dataset.state = 'disconnected';
} else {
  window.chatApp = new App();
}

