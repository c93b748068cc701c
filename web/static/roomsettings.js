// The room-settings pane (`#room-settings-pane`): name, topic, description, read-only (owners and
// admins), the own notification preference, the member list with role and kick buttons, inviting,
// and leaving the room.

import { errorText } from './conn.js';
import { $, el, show, showError } from './ui.js';

export class RoomSettings {
  constructor(app) {
    this.app = app;
    $('#room-settings').addEventListener('click', () => this.toggle());
    $('#settings-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.save();
    });
    $('#notify-pref').addEventListener('change', async (e) => {
      const r = this.app.rooms.get(this.app.openRid);
      try {
        await this.app.call('saveNotificationSettings', { rid: this.app.openRid, desktopNotifications: e.target.value });
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
  }

  get shown() {
    return !$('#room-settings-pane').hidden;
  }

  toggle() {
    const app = this.app;
    const on = !this.shown;
    if (on) app.openPane('room-settings-pane');
    else app.closePane('room-settings-pane');
    if (on && app.openRid) {
      this.fill(app.rooms.get(app.openRid));
      this.loadMembers();
      $('#settings-name').focus();
    }
  }

  /** The form from the room entry; the fields are editable only for those allowed to save them. */
  fill(r) {
    const can = this.app.canAdministerRoom(r) && r.t !== 'd';
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

  /** Sends only the fields that changed. */
  async save() {
    const app = this.app;
    const r = app.rooms.get(app.openRid);
    if (!r) return;
    const data = { rid: r.rid };
    const name = $('#settings-name').value.trim();
    if (name && name !== r.name) data.roomName = name;
    if ($('#settings-topic').value !== (r.topic || '')) data.roomTopic = $('#settings-topic').value;
    if ($('#settings-description').value !== (r.description || '')) data.roomDescription = $('#settings-description').value;
    if ($('#settings-readonly').checked !== !!r.readOnly) data.readOnly = $('#settings-readonly').checked;
    if (Object.keys(data).length === 1) return;
    try {
      const { room } = await app.call('saveRoomSettings', data);
      app.applyRoom(r, room);
      app.sidebar.update(r.rid);
      app.renderRoomHead(r);
      showError($('#settings-error'), '');
    } catch (err) {
      showError($('#settings-error'), errorText(err));
    }
  }

  /** Reads the members afresh (the mention cache too) and watches their presence. */
  async loadMembers() {
    const app = this.app;
    const rid = app.openRid;
    const r = app.rooms.get(rid);
    const list = $('#members');
    app.members.delete(rid);
    try {
      const members = await app.roomMembers(rid);
      if (rid !== app.openRid) return;
      const admin = app.canAdministerRoom(r) && r.t !== 'd';
      const moderate = app.canModerate(r) && r.t !== 'd';
      const frag = document.createDocumentFragment();
      for (const m of members) {
        const roles = m.roles || [];
        const li = el(
          'li',
          { dataset: { username: m.username, uid: m.uid } },
          el('span.presence-dot', { dataset: { presenceUser: m.username, status: app.presence.status(m.uid) || 'offline' }, 'aria-hidden': 'true' }),
          el('span.member-name', { text: m.username }),
          ...roles.map((x) => el('span.role', { text: x }))
        );
        if (m.uid !== app.me.id) {
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
      app.presence.watch(members.map((m) => m.uid));
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  /** A member's button: its `data-action` is the method (`kick` removes them from the room). */
  async memberAction(b) {
    const app = this.app;
    const li = b.closest('li[data-username]');
    const rid = app.openRid;
    try {
      if (b.dataset.action === 'kick') await app.call('removeUserFromRoom', { rid, username: li.dataset.username });
      else await app.call(b.dataset.action, { rid, userId: li.dataset.uid });
      await this.loadMembers();
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async invite() {
    const username = $('#invite-user').value.trim().replace(/^@/, '');
    if (!username) return;
    try {
      await this.app.call('addUserToRoom', { rid: this.app.openRid, username });
      $('#invite-user').value = '';
      showError($('#members-error'), '');
      await this.loadMembers();
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }

  async leave() {
    const rid = this.app.openRid;
    try {
      await this.app.call('leaveRoom', { rid });
      this.app.forgetRoom(rid);
    } catch (err) {
      showError($('#members-error'), errorText(err));
    }
  }
}
