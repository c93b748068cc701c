// The thread pane (`#thread`): a thread's root and replies, live replies and edits, the reply
// composer, and the "N replies" count under the root in the room.

import { errorText } from './conn.js';
import { $, el, pick, renderMessage, show, showError } from './ui.js';

export class ThreadPane {
  constructor(app) {
    this.app = app;
    this.current = null; // {tmid, root, replies: Map} while the pane shows a thread
    const box = $('#thread-composer');
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('#thread-form').requestSubmit();
      }
    });
    $('#thread-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const text = box.value;
      if (!text.trim() || !this.current) return;
      box.value = '';
      if (!(await this.app.composer.send(text, this.current.tmid))) box.value = text;
    });
  }

  /** The open thread's root id, or null when no thread is shown. */
  get tmid() {
    return this.current ? this.current.tmid : null;
  }

  async open(tmid) {
    const app = this.app;
    const root = (app.timeline && app.timeline.byId.get(tmid)) || null;
    this.current = { tmid, root, replies: new Map() };
    const list = $('#thread-messages');
    list.replaceChildren();
    app.openPane('thread');
    if (root) list.append(renderMessage(root, { me: app.me, actions: false, threadLink: false }));
    try {
      const { messages } = await app.call('getThreadMessages', { tmid, limit: 100 });
      if (!this.current || this.current.tmid !== tmid) return;
      for (const m of messages || []) this.add(m);
    } catch (err) {
      list.append(el('li.muted', { text: errorText(err) }));
    }
    $('#thread-composer').focus();
  }

  add(m) {
    const t = this.current;
    if (!t || t.replies.has(m.id)) return;
    const app = this.app;
    t.replies.set(m.id, m);
    const li = renderMessage(m, { me: app.me, actions: true, thread: false, canDeleteAny: app.canModerate(app.rooms.get(app.openRid)) });
    const list = $('#thread-messages');
    const after = [...list.children].find((x) => Number(x.dataset.seq) > m.seq && x !== list.firstChild);
    list.insertBefore(li, after || null);
    list.scrollTop = list.scrollHeight;
  }

  /** An edit, deletion or reaction of a message shown in the pane (ignored for any other). */
  patch(id, fields) {
    const t = this.current;
    if (!t) return;
    const m = t.replies.get(id) || (t.root && t.root.id === id ? t.root : null);
    if (!m) return;
    Object.assign(m, pick(fields, ['msg', 'editedAt', 'reactions', 'deletedAt', 't', 'attachments', 'tcount']));
    const old = $(`#thread-messages li.message[data-mid="${CSS.escape(id)}"]`);
    if (old) old.replaceWith(renderMessage(m, { me: this.app.me, actions: m !== t.root, thread: false, threadLink: false }));
  }

  edit(mid) {
    const m = this.current && this.current.replies.get(mid);
    if (!m) return;
    const text = prompt('Edit reply', m.msg);
    if (text && text !== m.msg) {
      this.app
        .call('updateMessage', { msgId: mid, msg: text })
        .then(({ message }) => this.patch(mid, message))
        .catch((err) => showError($('#composer-error'), errorText(err)));
    }
  }

  /** A live reply counts once under its root in the room (the event, send reply and sync may repeat it). */
  bumpCount(reply) {
    const tl = this.app.timeline;
    const root = tl && tl.byId.get(reply.tmid);
    if (!root) return;
    const key = `_seen_${reply.id}`;
    if (root[key]) return;
    root[key] = true;
    root.tcount = (root.tcount || 0) + 1;
    root.tlm = reply.ts;
    tl.redraw(root);
  }

  close() {
    this.current = null;
    show($('#thread'), false);
  }
}
