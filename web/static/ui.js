// Small DOM helpers and the rendering of one message (shared by the room, the thread and search).

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** `el('li.message', {dataset: {mid}}, child, 'text')` */
export function el(spec, props, ...children) {
  const [tag, ...classes] = spec.split('.');
  const node = document.createElement(tag || 'div');
  if (classes.length) node.className = classes.join(' ');
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';

/** A small padlock (private groups), drawn rather than an emoji so it looks the same everywhere. */
export function lockIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '12');
  svg.setAttribute('height', '12');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon-lock');
  const body = document.createElementNS(SVG, 'rect');
  for (const [k, v] of Object.entries({ x: 3, y: 7, width: 10, height: 8, rx: 1.5, fill: 'currentColor' })) body.setAttribute(k, v);
  const shackle = document.createElementNS(SVG, 'path');
  shackle.setAttribute('d', 'M5 7V5a3 3 0 0 1 6 0v2');
  shackle.setAttribute('fill', 'none');
  shackle.setAttribute('stroke', 'currentColor');
  shackle.setAttribute('stroke-width', '1.6');
  svg.append(body, shackle);
  return svg;
}

export function show(node, on = true) {
  node.hidden = !on;
}

export function showError(node, text) {
  node.textContent = text || '';
  node.hidden = !text;
}

export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

/** A short-name table for the picker and for showing reactions; other names show as text. */
export const EMOJI = [
  [':thumbsup:', '👍'],
  [':heart:', '❤️'],
  [':smile:', '😄'],
  [':joy:', '😂'],
  [':tada:', '🎉'],
  [':eyes:', '👀'],
  [':rocket:', '🚀'],
  [':pray:', '🙏'],
  [':white_check_mark:', '✅'],
  [':x:', '❌'],
  [':thinking:', '🤔'],
  [':fire:', '🔥'],
];
/** Names other clients (Slack imports, Rocket.Chat) use for the same and a few more; shown, not offered. */
const EMOJI_ALIASES = [
  [':+1:', '👍'],
  [':-1:', '👎'],
  [':thumbsdown:', '👎'],
  [':smiley:', '😃'],
  [':slightly_smiling_face:', '🙂'],
  [':wink:', '😉'],
  [':laughing:', '😆'],
  [':ok_hand:', '👌'],
  [':clap:', '👏'],
  [':wave:', '👋'],
  [':100:', '💯'],
  [':heavy_check_mark:', '✔️'],
  [':sparkles:', '✨'],
  [':star:', '⭐'],
  [':cry:', '😢'],
];
const EMOJI_MAP = new Map([...EMOJI, ...EMOJI_ALIASES]);
export const emojiChar = (name) => EMOJI_MAP.get(name) || name;

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
}

const SYSTEM = {
  uj: (m) => `${m.u.username} joined`,
  ul: (m) => `${m.u.username} left`,
  au: (m) => `${m.msg} was added by ${m.u.username}`,
  ru: (m) => `${m.msg} was removed by ${m.u.username}`,
  r: (m) => `${m.u.username} renamed the room to ${m.msg}`,
  room_changed_topic: (m) => `${m.u.username} changed the topic to “${m.msg}”`,
  // The text is "<username> <role>".
  'subscription-role-added': (m) => `${m.u.username} made ${m.msg.replace(' ', ' a room ')}`,
  'subscription-role-removed': (m) => `${m.u.username} removed ${m.msg.split(' ')[0]} as room ${m.msg.split(' ')[1] || 'role'}`,
  'room-archived': (m) => `${m.u.username} archived the room`,
  'room-unarchived': (m) => `${m.u.username} unarchived the room`,
  message_pinned: (m) => `${m.u.username} pinned a message`,
};

/** Text with @mentions, links and known `:emoji:` short names marked up, built from text nodes (never innerHTML). */
export function richText(text, myUsername) {
  const frag = document.createDocumentFragment();
  const re = /(@[A-Za-z0-9_.-]+|https?:\/\/[^\s<>"]+|:[a-z0-9_+-]+:)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    // A sentence's full stop after a mention or link is not part of it ("thanks @bob.").
    const tok = m[0].replace(/\.+$/, '');
    if (tok.startsWith('@')) {
      const name = tok.slice(1);
      const mine = name === myUsername || name === 'all' || name === 'here';
      frag.append(el(mine ? 'span.mention.mention-me' : 'span.mention', { text: tok }));
    } else if (tok.startsWith(':')) {
      // Short names as Slack and Rocket.Chat write them in text; unknown ones stay as typed.
      const emoji = EMOJI_MAP.get(tok);
      frag.append(emoji ? el('span.emoji', { text: emoji, title: tok }) : tok);
    } else {
      frag.append(el('a', { href: tok, target: '_blank', rel: 'noopener noreferrer', text: tok }));
    }
    last = m.index + tok.length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

function attachments(m) {
  if (!m.attachments || !m.attachments.length) return null;
  const box = el('div.msg-files');
  for (const a of m.attachments) {
    const link = typeof a.title_link === 'string' && a.title_link.startsWith('/file-upload/') ? a.title_link : null;
    if (!link) {
      if (a.text || a.title) box.append(el('div.attachment', { text: a.title || a.text }));
      continue;
    }
    const size = typeof a.size === 'number' ? ` · ${formatSize(a.size)}` : '';
    const card = el('div.attachment');
    if (a.image_url && a.image_url.startsWith('/file-upload/')) {
      card.append(el('img.attachment-image', { src: a.image_url, alt: a.title || 'image', loading: 'lazy' }));
    }
    card.append(el('a.attachment-link', { href: link, download: a.title || '', text: `⤓ ${a.title || 'file'}` }), size);
    if (a.description) card.append(el('div.muted', { text: a.description }));
    box.append(card);
  }
  return box;
}

export function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function reactions(m) {
  const box = el('div.reactions');
  for (const [name, users] of Object.entries(m.reactions || {})) {
    if (!users || !users.length) continue;
    box.append(
      el(
        'button.reaction',
        { type: 'button', dataset: { emoji: name }, title: name, 'aria-label': `${name} ${users.length}` },
        el('span.emoji', { text: emojiChar(name) }),
        ' ',
        el('span.count', { text: String(users.length) })
      )
    );
  }
  return box;
}

/**
 * One message as `li.message[data-mid][data-seq]`; `opts.actions` adds the hover/focus buttons,
 * `opts.me` (the signed-in user) marks own messages and mentions.
 */
export function renderMessage(m, opts = {}) {
  const deleted = !!m.deletedAt || m.t === 'rm';
  const li = el('li.message', { dataset: { mid: m.id || m._id, seq: String(m.seq) }, tabindex: '-1' });
  if (deleted) li.classList.add('deleted');
  const system = m.t && m.t !== 'rm' ? SYSTEM[m.t] : null;
  if (m.t && m.t !== 'rm') li.classList.add('system');
  if (opts.me && m.u && m.u._id === opts.me.id) li.classList.add('own');
  const head = el(
    'div.msg-head',
    null,
    el('span.msg-author', { text: m.u ? m.u.username : '?' }),
    el('time.msg-time', { datetime: new Date(m.ts).toISOString(), title: new Date(m.ts).toLocaleString(), text: formatTime(m.ts) })
  );
  if (m.editedAt && !deleted) head.append(el('span.msg-edited', { text: '(edited)', title: `edited ${new Date(m.editedAt).toLocaleString()}` }));
  li.append(head);
  const text = el('div.msg-text');
  if (deleted) text.textContent = 'This message was deleted.';
  else if (system) text.textContent = (SYSTEM[m.t] || (() => m.msg))(m);
  else text.append(richText(m.msg || '', opts.me && opts.me.username));
  li.append(text);
  if (!deleted) {
    const files = attachments(m);
    if (files) li.append(files);
    li.append(reactions(m));
    if (m.tcount > 0 && opts.threadLink !== false) {
      li.append(
        el(
          'button.thread-link',
          { type: 'button', dataset: { tmid: m.id } },
          `${m.tcount} ${m.tcount === 1 ? 'reply' : 'replies'}`
        )
      );
    }
    if (opts.actions && !system) li.append(actions(m, opts));
  }
  return li;
}

function actions(m, opts) {
  // Out of the Tab order (a long room would be thousands of stops): the log is one stop, arrows move
  // between messages, Enter enters a message's toolbar, Left/Right move in it (app.js, logKeys).
  const bar = el('div.msg-actions', { role: 'toolbar', 'aria-label': 'Message actions' });
  bar.append(el('button.act-react', { type: 'button', tabindex: '-1', 'aria-label': 'Add reaction' }, 'React'));
  if (opts.thread !== false) bar.append(el('button.act-thread', { type: 'button', tabindex: '-1', 'aria-label': 'Reply in thread' }, 'Reply'));
  const own = opts.me && m.u && m.u._id === opts.me.id;
  if (own) bar.append(el('button.act-edit', { type: 'button', tabindex: '-1', 'aria-label': 'Edit message' }, 'Edit'));
  if (own || opts.canDeleteAny) bar.append(el('button.act-delete', { type: 'button', tabindex: '-1', 'aria-label': 'Delete message' }, 'Delete'));
  return bar;
}

/** Calls `fn` at most once per `ms` (for events that fire continuously, like mousemove). */
export function throttle(fn, ms) {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last > ms) {
      last = now;
      fn();
    }
  };
}

/** The fields of `obj` named in `keys` that are set. */
export function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}
