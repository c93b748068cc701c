// The open room's composer (`#composer`): sending with retries, telling the room we are typing,
// `@mention` suggestions, Up to edit the last own message, and file uploads (`#upload-input`).

import { errorText } from './conn.js';
import { $, $$, el, show, showError } from './ui.js';

/** `typing: true` is repeated this often while typing, so the others' notice does not expire. */
const TYPING_SEND_EVERY_MS = 3000;
/** No input for this long sends `typing: false`. */
const TYPING_IDLE_MS = 4000;

export class Composer {
  constructor(app) {
    this.app = app;
    this.typingSentAt = 0;
    this.typingStop = null;
    const composer = $('#composer');
    composer.addEventListener('keydown', (e) => {
      if (this.mentionKey(e)) return;
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('#composer-form').requestSubmit();
      } else if (e.key === 'ArrowUp' && !composer.value && this.app.timeline) {
        const m = this.app.timeline.lastOwn();
        if (m) {
          e.preventDefault();
          this.app.messages.startEdit(m.id);
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
  }

  /** Sends to the open room (into thread `tmid` if given); true when the server stored it. */
  async send(text, tmid) {
    const app = this.app;
    const rid = app.openRid;
    if (!rid || !text.trim()) return;
    const clientMsgId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const data = { rid, msg: text, clientMsgId };
    if (tmid) data.tmid = tmid;
    this.sendTyping(false);
    // A send that fails because the socket dropped is retried with the same clientMsgId: the server
    // stores it once however many times it arrives.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      try {
        const { message } = await app.call('sendMessage', data);
        if (app.timeline && app.timeline.rid === rid && (!message.tmid || message.tshow)) {
          // Sending takes the reader to the newest messages, where their own now is.
          app.timeline.upsert(message);
          app.timeline.jumpToLatest();
          show($('#jump-latest'), false);
        }
        if (tmid && app.thread.tmid === tmid) app.thread.add(message);
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

  sendTyping(on) {
    const rid = this.app.openRid;
    if (!rid) return;
    clearTimeout(this.typingStop);
    if (on) {
      const now = Date.now();
      if (now - this.typingSentAt > TYPING_SEND_EVERY_MS) {
        this.typingSentAt = now;
        this.app.call('typing', { rid, typing: true }).catch(() => {});
      }
      this.typingStop = setTimeout(() => this.sendTyping(false), TYPING_IDLE_MS);
    } else if (this.typingSentAt) {
      this.typingSentAt = 0;
      this.app.call('typing', { rid, typing: false }).catch(() => {});
    }
  }

  // ---- mention suggestions --------------------------------------------------------------------

  async mentionInput() {
    const app = this.app;
    const box = $('#composer');
    const before = box.value.slice(0, box.selectionStart);
    const m = /(^|\s)@([A-Za-z0-9_.-]*)$/.exec(before);
    const list = $('#mention-list');
    if (!m || !app.openRid) {
      show(list, false);
      return;
    }
    const prefix = m[2].toLowerCase();
    let members = [];
    try {
      members = await app.roomMembers(app.openRid);
    } catch {
      return;
    }
    const names = members.map((x) => x.username).filter((u) => u !== app.me.username);
    if (!app.rooms.get(app.openRid) || app.rooms.get(app.openRid).t !== 'd') names.push('all', 'here');
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

  /** Keys while suggestions are shown; true when the key was theirs (the composer ignores it). */
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

  // ---- uploads --------------------------------------------------------------------------------

  /** Through the REST route (the socket carries no files), authenticated with the chat session. */
  async upload(file) {
    const app = this.app;
    const rid = app.openRid;
    const session = app.conn.session;
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
      if (body.message && app.timeline && app.timeline.rid === rid) app.timeline.upsert(body.message);
      showError(status, '');
    } catch (err) {
      showError(status, errorText(err));
    }
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** The composer grows with its text up to 200 px, then scrolls. */
function autoGrow(box) {
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}
