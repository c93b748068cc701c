// Starting conversations: the new channel / private group form (`#new-room-form`) and opening (or
// creating) a DM by username (`#new-dm-user`).

import { errorText } from './conn.js';
import { $, show, showError } from './ui.js';

export class NewRoomForm {
  constructor(app) {
    this.app = app;
    $('#new-room').addEventListener('click', () => this.toggle($('#new-room-form').hidden));
    $('#new-room-cancel').addEventListener('click', () => this.toggle(false));
    $('#new-room-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.createRoom();
    });
    $('#new-dm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const u = $('#new-dm-user').value.trim().replace(/^@/, '');
      if (u) this.openDirect(u);
    });
  }

  toggle(on) {
    show($('#new-room-form'), on);
    $('#new-room').setAttribute('aria-expanded', String(on));
    showError($('#new-room-error'), '');
    if (on) $('#new-room-name').focus();
  }

  async createRoom() {
    const app = this.app;
    const name = $('#new-room-name').value.trim();
    const priv = $('#new-room-private').checked;
    const members = $('#new-room-members').value.split(/[\s,]+/).map((s) => s.replace(/^@/, '')).filter(Boolean);
    try {
      const { room } = await app.call(priv ? 'createPrivateGroup' : 'createChannel', { name, members });
      app.entry({ rid: room.id, t: room.t, roles: ['owner'], unread: 0, userMentions: 0, groupMentions: 0 }, room);
      app.sidebar.update(room.id);
      $('#new-room-form').reset();
      this.toggle(false);
      await app.openRoom(room.id);
    } catch (err) {
      showError($('#new-room-error'), errorText(err));
    }
  }

  async openDirect(username) {
    const app = this.app;
    try {
      const { room } = await app.call('createDirectMessage', { username });
      if (!app.rooms.has(room.id)) {
        app.entry({ rid: room.id, t: 'd', unread: 0, userMentions: 0, groupMentions: 0 }, room);
        app.sidebar.update(room.id);
        await app.resolveDmPeers();
      }
      $('#new-dm-user').value = '';
      await app.openRoom(room.id);
    } catch (err) {
      showError($('#new-room-error'), errorText(err));
      show($('#new-room-error'), true);
    }
  }
}
