// The search pane (`#search-pane`): `messageSearch` over all my rooms from `#search-input`; a
// result opens its room and highlights the message when it is loaded.

import { errorText } from './conn.js';
import { $, el, renderMessage } from './ui.js';

export class SearchPane {
  constructor(app) {
    this.app = app;
    $('#search-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target.value.trim()) {
        e.preventDefault();
        this.search(e.target.value.trim());
      }
    });
    $('#search-results').addEventListener('click', (e) => {
      const li = e.target.closest('li[data-mid]');
      if (li) this.openResult(li);
    });
    $('#search-results').addEventListener('keydown', (e) => {
      const li = e.target.closest('li[data-mid]');
      if (li && e.key === 'Enter') this.openResult(li);
    });
  }

  async search(text) {
    const app = this.app;
    const results = $('#search-results');
    app.openPane('search-pane');
    $('#search-status').textContent = 'Searching…';
    results.replaceChildren();
    try {
      const { messages } = await app.call('messageSearch', { text, limit: 50 });
      $('#search-status').textContent = messages.length ? `${messages.length} result${messages.length === 1 ? '' : 's'}` : 'No results';
      const frag = document.createDocumentFragment();
      for (const m of messages) {
        const li = renderMessage(m, { me: app.me, actions: false, threadLink: false });
        const r = app.rooms.get(m.rid);
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

  async openResult(li) {
    const { rid, mid } = li.dataset;
    await this.app.openRoom(rid);
    const target = $(`#messages li.message[data-mid="${CSS.escape(mid)}"]`);
    if (target) {
      target.scrollIntoView({ block: 'center' });
      target.classList.add('highlight');
      setTimeout(() => target.classList.remove('highlight'), 2000);
    }
  }
}
