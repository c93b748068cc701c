// Desktop notifications: `#enable-notifications` asks for the permission while it is undecided; the
// server's `notification` events (on `user/<uid>`) become notifications that open their room.

import { $, show } from './ui.js';

export class DesktopNotifications {
  constructor(app) {
    this.app = app;
    $('#enable-notifications').addEventListener('click', async () => {
      try {
        await Notification.requestPermission();
      } finally {
        this.offer();
      }
    });
  }

  /** The button shows only while the browser would still ask. */
  offer() {
    const b = $('#enable-notifications');
    show(b, 'Notification' in window && Notification.permission === 'default');
  }

  /**
   * The server sends `notification` only when this user's preferences for the room want one (DMs,
   * mentions, threads, or every message at level `all`); shown as a desktop notification when allowed
   * and the user is not already looking at that room.
   */
  show(ev) {
    const app = this.app;
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (ev.rid === app.openRid && app.visible()) return;
    const r = app.rooms.get(ev.rid);
    const where = r ? (r.t === 'd' ? '' : ` in ${r.t === 'c' ? '#' : ''}${r.display}`) : '';
    const who = ev.sender && ev.sender.username ? ev.sender.username : 'Someone';
    try {
      const n = new Notification(`${who}${where}`, { body: ev.text || '', tag: ev.messageId || ev.rid });
      n.onclick = () => {
        window.focus();
        app.openRoom(ev.rid);
        n.close();
      };
    } catch (err) {
      console.warn('notification', err);
    }
  }
}
