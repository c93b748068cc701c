// The way into the administration pages: `#admin-button` (admins only) loads `./admin.js` on the
// first click, so the chat never downloads it for anyone else, and mounts it in `#admin` in place of
// the room; a second click, opening a room or signing out unmounts it.

import { $, el, show } from './ui.js';

export class AdminEntry {
  constructor(app) {
    this.app = app;
    this.mounted = null; // {unmount} while the administration is shown
    $('#admin-button').addEventListener('click', () => this.toggle());
  }

  get isOpen() {
    return this.mounted !== null;
  }

  async toggle() {
    const app = this.app;
    const root = $('#admin');
    if (this.mounted) {
      this.close();
      return;
    }
    show($('#room'), false);
    app.closeSidePanes();
    show(root, true);
    $('#admin-button').setAttribute('aria-pressed', 'true');
    root.replaceChildren(el('p.muted', { text: 'Loading administration…' }));
    this.mounted = { unmount: null };
    try {
      const mod = await import('./admin.js');
      root.replaceChildren();
      const ctx = { call: (method, data) => app.call(method, data), me: { ...app.me }, socket: app.conn.socket };
      const mounted = await mod.mountAdmin(root, ctx);
      if (this.mounted) this.mounted.unmount = mounted && typeof mounted.unmount === 'function' ? () => mounted.unmount() : null;
    } catch (err) {
      console.warn('admin.js', err);
      root.replaceChildren(el('p.error', { role: 'alert', text: 'Administration is not available' }));
    }
  }

  close() {
    if (this.mounted && this.mounted.unmount) {
      try {
        this.mounted.unmount();
      } catch (err) {
        console.warn('unmount admin', err);
      }
    }
    this.mounted = null;
    $('#admin').replaceChildren();
    show($('#admin'), false);
    show($('#room'), true);
    $('#admin-button').setAttribute('aria-pressed', 'false');
  }
}
