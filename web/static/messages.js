// What a reader does to a message in either list (`#messages`, `#thread-messages`): react (buttons and
// the emoji picker), edit in place, delete, open its thread; and moving through a list by keyboard
// (the list is one Tab stop, so a long room is not thousands of stops).

import { errorText } from './conn.js';
import { $, EMOJI, el, showError } from './ui.js';

export class MessageActions {
  constructor(app) {
    this.app = app;
    this.picker = null;
    $('#messages').addEventListener('click', (e) => this.click(e, false));
    $('#messages').addEventListener('keydown', (e) => logKeys(e));
    $('#thread-messages').addEventListener('keydown', (e) => logKeys(e));
    $('#thread-messages').addEventListener('click', (e) => this.click(e, true));
  }

  /** Clicks inside a message list: reactions, action buttons, thread links. */
  click(e, inThread) {
    const li = e.target.closest('li.message');
    if (!li) return;
    const mid = li.dataset.mid;
    const b = e.target.closest('button');
    if (!b) return;
    const thread = this.app.thread;
    if (b.classList.contains('reaction')) this.react(mid, b.dataset.emoji);
    else if (b.classList.contains('act-react')) this.showPicker(b, mid);
    else if (b.classList.contains('act-thread') || b.classList.contains('thread-link')) thread.open(inThread && thread.tmid ? thread.tmid : mid);
    else if (b.classList.contains('act-edit')) (inThread ? thread.edit(mid) : this.startEdit(mid));
    else if (b.classList.contains('act-delete')) this.deleteMessage(mid);
  }

  /** Turns an open-room message's text into a textarea: Enter saves, Escape cancels. */
  startEdit(mid) {
    const app = this.app;
    const li = $(`#messages li.message[data-mid="${CSS.escape(mid)}"]`);
    const m = app.timeline && app.timeline.byId.get(mid);
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
          const { message } = await app.call('updateMessage', { msgId: mid, msg: box.value });
          app.timeline.patch(mid, message);
        } catch (err) {
          showError($('#composer-error'), errorText(err));
          app.timeline.redraw(m);
        }
      } else {
        app.timeline.redraw(m);
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
    const app = this.app;
    try {
      const res = await app.call('deleteMessage', { msgId: mid });
      const fields = { deletedAt: res.deletedAt || Date.now(), t: 'rm', msg: '', attachments: [], reactions: {} };
      if (app.timeline) app.timeline.patch(mid, fields);
      app.thread.patch(mid, fields);
    } catch (err) {
      showError($('#composer-error'), errorText(err));
    }
  }

  async react(mid, emoji) {
    const app = this.app;
    try {
      const { message } = await app.call('setReaction', { messageId: mid, reaction: emoji });
      if (app.timeline) app.timeline.patch(mid, { reactions: message.reactions });
      app.thread.patch(mid, { reactions: message.reactions });
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
