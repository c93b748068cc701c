// The administration pages, loaded by the client only for admins (`import('./admin.js')`):
// users (list, create, activate/deactivate, roles, log out), the permission matrix, integrations
// (incoming and outgoing webhooks, their delivery history) and the cluster view (frontends, brokers,
// slot table, connection counts, from the state server through `getClusterStatus`).
//
// Contract: `mountAdmin(root, ctx)` with `ctx = {call(method, data) → Promise, me, socket}`; returns
// `{unmount()}`. Everything is built with DOM calls (no HTML strings, no inline styles: the page's CSP
// allows only same-origin style sheets); our styles are `admin.css`, linked once beside this module.

const TABS = [
  ['users', 'Users'],
  ['permissions', 'Permissions'],
  ['integrations', 'Integrations'],
  ['cluster', 'Cluster'],
];
/** Roles a user account may hold (`bot` belongs to bot accounts only and is shown, not edited). */
const GLOBAL_ROLES = ['admin', 'user', 'guest'];
/** Columns of the permission matrix. */
const ALL_ROLES = ['admin', 'owner', 'moderator', 'user', 'guest', 'bot'];
const USERS_PAGE = 50;
/** How often the cluster tab asks for the status while it is shown. */
const CLUSTER_REFRESH_MS = 2000;

/** `h('tag.class#id', {attrs, text, on: {event: fn}}, children…)` → element. */
function h(spec, props = {}, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/i);
  const node = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') node.classList.add(part.slice(1));
    else node.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

function errorText(err) {
  if (!err) return 'failed';
  const id = err.error && err.error !== err.message ? ` (${err.error})` : '';
  return `${err.message || err.name || String(err)}${id}`;
}

function when(ms) {
  if (!ms) return '';
  try {
    return new Date(ms).toLocaleString();
  } catch {
    return String(ms);
  }
}

function ago(ms) {
  if (ms === null || ms === undefined) return 'never';
  if (ms < 1000) return `${ms} ms ago`;
  return `${(ms / 1000).toFixed(1)} s ago`;
}

function count(v) {
  return v === null || v === undefined ? '–' : String(v);
}

/** A table with a caption and column headers, in a box that scrolls sideways on narrow screens;
 * returns [box, tbody]. */
function table(id, caption, headers) {
  const body = h('tbody');
  const t = h(
    `table.admin-table#${id}`,
    {},
    h('caption', { text: caption }),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
    body,
  );
  return [h('div.admin-table-wrap', {}, t), body];
}

/** A line that tells what the last action did (`role=status`) or why it failed (`role=alert`). */
function notice(id) {
  const n = h(`p.admin-notice#${id}`, { role: 'status', 'aria-live': 'polite' });
  return {
    node: n,
    ok(text) {
      n.className = 'admin-notice ok';
      n.setAttribute('role', 'status');
      n.textContent = text;
    },
    fail(err) {
      n.className = 'admin-notice error';
      n.setAttribute('role', 'alert');
      n.textContent = typeof err === 'string' ? err : errorText(err);
    },
    clear() {
      n.className = 'admin-notice';
      n.textContent = '';
    },
  };
}

function field(label, input) {
  return h('label.admin-field', {}, h('span', { text: label }), input);
}

function ensureStyles() {
  if (document.querySelector('link[data-admin-css]')) return;
  const href = new URL('./admin.css', import.meta.url).href;
  document.head.append(h('link', { rel: 'stylesheet', href, 'data-admin-css': 'true' }));
}

// ---- users ---------------------------------------------------------------------------------------

function usersTab(ctx) {
  const status = notice('admin-users-status');
  const [tbl, body] = table('admin-users', 'User accounts', ['Username', 'Name', 'Roles', 'Active', 'Actions']);
  const more = h('button#admin-users-more', { type: 'button', text: 'Load more', hidden: true });
  let last = null;

  function rolesEditor(u, cell) {
    const boxes = GLOBAL_ROLES.map((r) =>
      h('label.admin-check', {}, h('input', { type: 'checkbox', value: r, checked: u.roles.includes(r) }), ` ${r}`),
    );
    const form = h(
      'form.admin-roles-form',
      {
        'aria-label': `Roles of ${u.username}`,
        on: {
          submit: async (e) => {
            e.preventDefault();
            const roles = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
            if (u.roles.includes('bot')) roles.push('bot');
            try {
              const r = await ctx.call('setUserRoles', { userId: u.id, roles });
              replaceRow(r.user);
              status.ok(`${u.username}: roles ${r.user.roles.join(', ')}`);
            } catch (err) {
              status.fail(err);
            }
          },
        },
      },
      boxes,
      h('button.primary', { type: 'submit', text: 'Save roles' }),
      h('button', { type: 'button', text: 'Cancel', on: { click: () => replaceRow(u) } }),
    );
    cell.replaceChildren(form);
    form.querySelector('input').focus();
  }

  function row(u) {
    const rolesCell = h('td', {}, u.roles.map((r) => h('span.admin-role', { text: r })));
    const actions = h(
      'div.admin-actions',
      {},
      h('button', {
        type: 'button',
        dataset: { action: u.active ? 'deactivate' : 'activate' },
        text: u.active ? 'Deactivate' : 'Activate',
        disabled: u.id === ctx.me.id,
        title: u.id === ctx.me.id ? 'You cannot deactivate yourself' : undefined,
        on: {
          click: async () => {
            try {
              const r = await ctx.call('setUserActiveStatus', { userId: u.id, activeStatus: !u.active });
              replaceRow(r.user);
              status.ok(`${u.username} ${r.user.active ? 'activated' : 'deactivated'}`);
            } catch (err) {
              status.fail(err);
            }
          },
        },
      }),
      h('button', {
        type: 'button',
        dataset: { action: 'roles' },
        text: 'Edit roles',
        on: { click: () => rolesEditor(u, rolesCell) },
      }),
      h('button.danger', {
        type: 'button',
        dataset: { action: 'logout' },
        text: 'Log out',
        on: {
          click: async () => {
            try {
              const r = await ctx.call('logoutUser', { userId: u.id });
              status.ok(`${u.username} logged out (${r.revoked} session${r.revoked === 1 ? '' : 's'} ended)`);
            } catch (err) {
              status.fail(err);
            }
          },
        },
      }),
    );
    return h(
      'tr',
      { dataset: { username: u.username, uid: u.id, active: String(u.active) }, class: u.active ? '' : 'inactive' },
      h('th', { scope: 'row', text: u.username }),
      h('td', { text: u.name || '' }),
      rolesCell,
      h('td', { text: u.active ? 'yes' : 'no' }),
      h('td', {}, actions),
    );
  }

  function replaceRow(u) {
    const old = body.querySelector(`tr[data-uid="${CSS.escape(u.id)}"]`);
    const fresh = row(u);
    if (old) old.replaceWith(fresh);
    else body.append(fresh);
  }

  async function loadPage() {
    more.disabled = true;
    try {
      const r = await ctx.call('getUsers', { after: last ?? undefined, limit: USERS_PAGE });
      const frag = document.createDocumentFragment();
      for (const u of r.users) frag.append(row(u));
      body.append(frag);
      if (r.users.length) last = r.users[r.users.length - 1].username;
      more.hidden = r.users.length < USERS_PAGE;
    } catch (err) {
      status.fail(err);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', loadPage);

  const inputs = {
    username: h('input#admin-new-username', { name: 'username', required: true, autocomplete: 'off' }),
    name: h('input#admin-new-name', { name: 'name', autocomplete: 'off' }),
    email: h('input#admin-new-email', { name: 'email', type: 'email', autocomplete: 'off' }),
    password: h('input#admin-new-password', { name: 'password', type: 'password', required: true, minLength: 8, autocomplete: 'new-password' }),
    role: h('select#admin-new-role', { name: 'role' }, GLOBAL_ROLES.map((r) => h('option', { value: r, text: r, defaultSelected: r === 'user' }))),
  };
  const create = h(
    'form#admin-create-user.admin-form',
    {
      'aria-labelledby': 'admin-create-user-title',
      on: {
        submit: async (e) => {
          e.preventDefault();
          const data = {
            username: inputs.username.value.trim(),
            password: inputs.password.value,
            roles: [inputs.role.value],
          };
          if (inputs.name.value.trim()) data.name = inputs.name.value.trim();
          if (inputs.email.value.trim()) data.email = inputs.email.value.trim();
          try {
            const r = await ctx.call('createUser', data);
            replaceRow(r.user);
            create.reset();
            status.ok(`created ${r.user.username}`);
          } catch (err) {
            status.fail(err);
          }
        },
      },
    },
    h('h3#admin-create-user-title', { text: 'Create a user' }),
    h(
      'div.admin-form-row',
      {},
      field('Username', inputs.username),
      field('Name', inputs.name),
      field('E-mail', inputs.email),
      field('Password', inputs.password),
      field('Role', inputs.role),
      h('button.primary', { type: 'submit', text: 'Create user' }),
    ),
  );

  const panel = h('div', {}, create, status.node, tbl, more);
  return { panel, show: () => { if (!body.firstChild) loadPage(); }, hide() {}, stop() {} };
}

// ---- permissions ---------------------------------------------------------------------------------

function permissionsTab(ctx) {
  const status = notice('admin-permissions-status');
  const [tbl, body] = table('admin-permissions', 'Permissions by role', ['Permission', ...ALL_ROLES]);
  const filter = h('input#admin-permission-filter', { type: 'search', placeholder: 'Filter permissions', 'aria-label': 'Filter permissions' });
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const tr of body.rows) tr.hidden = q !== '' && !tr.dataset.permission.includes(q);
  });

  function row(p) {
    const cells = ALL_ROLES.map((role) => {
      const box = h('input', {
        type: 'checkbox',
        checked: p.roles.includes(role),
        dataset: { role },
        'aria-label': `${p._id} for ${role}`,
      });
      box.addEventListener('change', async () => {
        const tr = box.closest('tr');
        const roles = [...tr.querySelectorAll('input[type=checkbox]')].filter((b) => b.checked).map((b) => b.dataset.role);
        box.disabled = true;
        try {
          await ctx.call('permissions.update', { permissions: [{ _id: p._id, roles }] });
          p.roles = roles;
          status.ok(`${p._id}: ${roles.join(', ') || 'nobody'}`);
        } catch (err) {
          box.checked = !box.checked; // nothing was stored: show what is
          status.fail(err);
        } finally {
          box.disabled = false;
        }
      });
      return h('td', {}, box);
    });
    return h('tr', { dataset: { permission: p._id } }, h('th', { scope: 'row', text: p._id }), cells);
  }

  async function load() {
    try {
      const r = await ctx.call('permissions.get', {});
      const rows = [...r.permissions].sort((a, b) => a._id.localeCompare(b._id));
      body.replaceChildren(...rows.map(row));
    } catch (err) {
      status.fail(err);
    }
  }
  const panel = h('div', {}, h('div.admin-toolbar', {}, filter), status.node, h('div.admin-scroll', {}, tbl));
  return { panel, show: () => { if (!body.firstChild) load(); }, hide() {}, stop() {} };
}

// ---- integrations --------------------------------------------------------------------------------

function integrationsTab(ctx) {
  const status = notice('admin-integrations-status');
  const [tbl, body] = table('admin-integrations', 'Webhooks', ['Name', 'Type', 'Room', 'User', 'Target', 'Enabled', 'Actions']);
  const secret = h('div#admin-integration-secret.admin-secret', { hidden: true, role: 'region', 'aria-label': 'New webhook credentials' });
  const history = h('div#admin-integration-history', { hidden: true });
  let rooms = new Map();

  function roomName(rid) {
    if (!rid) return 'every public channel';
    const r = rooms.get(rid);
    return r ? `#${r.name || r.fname}` : rid;
  }

  function roomSelect(id, allowAll) {
    const options = [...rooms.values()]
      .filter((r) => r.t !== 'd')
      .sort((a, b) => (a.name || a.fname).localeCompare(b.name || b.fname))
      .map((r) => h('option', { value: r.id, text: `#${r.name || r.fname}` }));
    return h(`select#${id}`, { name: 'rid', required: !allowAll }, allowAll ? h('option', { value: '', text: 'every public channel' }) : null, options);
  }

  function showOnce(title, lines) {
    secret.replaceChildren(
      h('h3', { text: title }),
      h('p.muted', { text: 'Shown once: copy it now. It cannot be read back later.' }),
      h('dl', {}, lines.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, h('code', { text: v, dataset: { secret: k.toLowerCase() } }))])),
      h('button', { type: 'button', text: 'Done', on: { click: () => { secret.hidden = true; secret.replaceChildren(); } } }),
    );
    secret.hidden = false;
  }

  async function showHistory(i) {
    try {
      const r = await ctx.call('integrations.history', { integrationId: i.id, limit: 50 });
      const [t, b] = table('admin-integration-history-table', `Deliveries of ${i.name} (newest first)`, ['When', 'Status', 'Attempts', 'HTTP', 'URL', 'Error']);
      for (const d of r.history) {
        b.append(h('tr', {}, h('td', { text: when(d.createdAt) }), h('td', { text: d.status }), h('td', { text: String(d.attempts) }), h('td', { text: count(d.responseCode) }), h('td', { text: d.url }), h('td', { text: d.error || '' })));
      }
      history.replaceChildren(r.history.length ? t : h('p.muted', { text: `${i.name}: no deliveries yet` }), h('button', { type: 'button', text: 'Close history', on: { click: () => { history.hidden = true; } } }));
      history.hidden = false;
    } catch (err) {
      status.fail(err);
    }
  }

  function row(i) {
    const incoming = i.type === 'webhook-incoming';
    return h(
      'tr',
      { dataset: { integration: i.id, type: i.type } },
      h('th', { scope: 'row', text: i.name }),
      h('td', { text: incoming ? 'incoming' : 'outgoing' }),
      h('td', { text: roomName(i.rid) }),
      h('td', { text: i.username }),
      h('td', { text: incoming ? `/hooks/${i.id}/…` : (i.urls || []).join(', ') }),
      h('td', { text: i.enabled ? 'yes' : 'no' }),
      h('td', {}, h(
        'div.admin-actions',
        {},
        incoming ? null : h('button', { type: 'button', dataset: { action: 'history' }, text: 'History', on: { click: () => showHistory(i) } }),
        h('button.danger', {
          type: 'button',
          dataset: { action: 'delete' },
          text: 'Delete',
          on: {
            click: async () => {
              if (!window.confirm(`Delete the webhook “${i.name}”?`)) return;
              try {
                await ctx.call('integrations.remove', { integrationId: i.id });
                body.querySelector(`tr[data-integration="${CSS.escape(i.id)}"]`)?.remove();
                status.ok(`deleted ${i.name}`);
              } catch (err) {
                status.fail(err);
              }
            },
          },
        }),
      )),
    );
  }

  const forms = h('div.admin-forms');

  function buildForms() {
    const inName = h('input#admin-in-name', { required: true, autocomplete: 'off' });
    const inRoom = roomSelect('admin-in-room', false);
    const inUser = h('input#admin-in-username', { required: true, value: ctx.me.username, autocomplete: 'off' });
    const incoming = h(
      'form#admin-create-incoming.admin-form',
      {
        'aria-labelledby': 'admin-create-incoming-title',
        on: {
          submit: async (e) => {
            e.preventDefault();
            try {
              const r = await ctx.call('integrations.create', { type: 'webhook-incoming', name: inName.value.trim(), rid: inRoom.value, username: inUser.value.trim() });
              body.append(row(r.integration));
              showOnce(`Incoming webhook “${r.integration.name}”`, [['URL', new URL(r.url, window.location.origin).href], ['Token', r.token]]);
              inName.value = '';
              status.ok(`created ${r.integration.name}`);
            } catch (err) {
              status.fail(err);
            }
          },
        },
      },
      h('h3#admin-create-incoming-title', { text: 'New incoming webhook' }),
      h('p.muted', { text: 'Posts what is sent to its URL into a room, as a user who is a member of it.' }),
      h('div.admin-form-row', {}, field('Name', inName), field('Room', inRoom), field('Posts as', inUser), h('button.primary', { type: 'submit', text: 'Create incoming webhook' })),
    );
    const outName = h('input#admin-out-name', { required: true, autocomplete: 'off' });
    const outRoom = roomSelect('admin-out-room', true);
    const outUrls = h('input#admin-out-urls', { required: true, type: 'text', placeholder: 'http://host:port/path', autocomplete: 'off' });
    const outWords = h('input#admin-out-words', { placeholder: 'optional, comma separated', autocomplete: 'off' });
    const outUser = h('input#admin-out-username', { required: true, value: ctx.me.username, autocomplete: 'off' });
    const outgoing = h(
      'form#admin-create-outgoing.admin-form',
      {
        'aria-labelledby': 'admin-create-outgoing-title',
        on: {
          submit: async (e) => {
            e.preventDefault();
            const split = (s) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
            const data = { type: 'webhook-outgoing', name: outName.value.trim(), urls: split(outUrls.value), username: outUser.value.trim() };
            if (outRoom.value) data.rid = outRoom.value;
            const words = split(outWords.value);
            if (words.length) data.triggerWords = words;
            try {
              const r = await ctx.call('integrations.create', data);
              body.append(row(r.integration));
              showOnce(`Outgoing webhook “${r.integration.name}”`, [['Secret', r.secret]]);
              outName.value = '';
              status.ok(`created ${r.integration.name}`);
            } catch (err) {
              status.fail(err);
            }
          },
        },
      },
      h('h3#admin-create-outgoing-title', { text: 'New outgoing webhook' }),
      h('p.muted', { text: 'POSTs new messages (signed with its secret) to up to 5 http:// URLs.' }),
      h('div.admin-form-row', {}, field('Name', outName), field('Room', outRoom), field('URLs', outUrls), field('Trigger words', outWords), field('Ignores messages of', outUser), h('button.primary', { type: 'submit', text: 'Create outgoing webhook' })),
    );
    forms.replaceChildren(incoming, outgoing);
  }

  async function load() {
    try {
      const rr = await ctx.call('rooms.get', {});
      rooms = new Map((rr.update || []).map((r) => [r.id, r]));
    } catch (err) {
      status.fail(err);
    }
    buildForms();
    try {
      const r = await ctx.call('integrations.list', {});
      body.replaceChildren(...r.integrations.map(row));
    } catch (err) {
      status.fail(err);
    }
  }
  const panel = h('div', {}, forms, secret, status.node, tbl, history);
  let loaded = false;
  return { panel, show: () => { if (!loaded) { loaded = true; load(); } }, hide() {}, stop() {} };
}

// ---- cluster -------------------------------------------------------------------------------------

function clusterTab(ctx) {
  const stale = h('p#cluster-stale.admin-notice.warn', { role: 'status', hidden: true });
  const summary = h('p#cluster-summary', { 'aria-live': 'polite' });
  const error = notice('cluster-error');
  const [fe, feBody] = table('cluster-frontends', 'Frontends', ['Id', 'Connections', 'Chat users', 'Channels', 'State server link', 'Last heard', 'Address']);
  const [br, brBody] = table('cluster-brokers', 'Brokers', ['Id', 'Frontend links', 'Channels', 'Connected', 'Last heard', 'Leaving', 'Fabric address']);
  const [sl, slBody] = table('cluster-slots', 'Slot table', ['Slot', 'Broker', 'Address']);
  let timer = null;
  let busy = false;
  let stopped = false;

  function render(s) {
    const frontends = s.frontends || [];
    const brokers = s.brokers || [];
    const slots = s.slots || [];
    const total = frontends.reduce((n, f) => n + ((f.load && f.load.connections) || 0), 0);
    const users = frontends.reduce((n, f) => n + ((f.load && f.load.users) || 0), 0);
    summary.replaceChildren(
      'Epoch ', h('strong#cluster-epoch', { text: String(s.epoch ?? '–') }),
      ` · ${frontends.length} frontend${frontends.length === 1 ? '' : 's'} · ${brokers.length} broker${brokers.length === 1 ? '' : 's'} · `,
      h('strong#cluster-connections', { text: String(total) }), ' connections · ',
      h('strong#cluster-users', { text: String(users) }), ' chat users',
      s.reshard ? ` · reshard to epoch ${s.reshard.epoch} waiting for ${s.reshard.waiting_for.join(', ') || 'nobody'}` : '',
      s.rebuilding ? ' · rebuilding after a restart' : '',
    );
    if (s.stale) {
      stale.textContent = `Stale: ${s.staleReason || 'the state server did not answer'}. Showing what this frontend knows (its committed slot table and its broker links).`;
      stale.hidden = false;
    } else {
      stale.hidden = true;
    }
    feBody.replaceChildren(
      ...frontends.map((f) =>
        h(
          'tr',
          { dataset: { node: f.id, connected: String(!!f.connected) }, class: f.id === s.thisFrontend ? 'this-node' : '' },
          h('th', { scope: 'row' }, f.id, f.id === s.thisFrontend ? h('span.admin-role', { text: 'this one' }) : null),
          h('td.num', { text: count(f.load && f.load.connections), dataset: { field: 'connections' } }),
          h('td.num', { text: count(f.load && f.load.users), dataset: { field: 'users' } }),
          h('td.num', { text: count(f.load && f.load.channels), dataset: { field: 'channels' } }),
          h('td', { text: f.connected ? 'connected' : 'down' }),
          h('td', { text: s.stale && f.id === s.thisFrontend ? 'now' : ago(f.last_seen_ms) }),
          h('td', { text: f.peer || '' }),
        ),
      ),
    );
    brBody.replaceChildren(
      ...brokers.map((b) =>
        h(
          'tr',
          { dataset: { node: b.id, connected: String(!!b.connected) } },
          h('th', { scope: 'row', text: b.id }),
          h('td.num', { text: count(b.load && b.load.connections), dataset: { field: 'links' } }),
          h('td.num', { text: count(b.load && b.load.channels), dataset: { field: 'channels' } }),
          h('td', { text: b.connected ? 'yes' : 'no' }),
          h('td', { text: ago(b.last_seen_ms) }),
          h('td', { text: b.leaving ? 'leaving' : '' }),
          h('td', { text: b.addr }),
        ),
      ),
    );
    slBody.replaceChildren(...slots.map((x) => h('tr', { dataset: { slot: String(x.slot), node: x.id } }, h('th', { scope: 'row', text: String(x.slot) }), h('td', { text: x.id }), h('td', { text: x.addr }))));
    if (!slots.length) slBody.append(h('tr', {}, h('td', { colSpan: 3, class: 'muted', text: 'no broker in the table' })));
  }

  async function refresh() {
    if (busy || stopped) return;
    busy = true;
    try {
      const s = await ctx.call('getClusterStatus', {});
      if (stopped) return;
      error.clear();
      render(s);
    } catch (err) {
      if (!stopped) error.fail(err);
    } finally {
      busy = false;
    }
  }

  const panel = h(
    'div',
    {},
    h('div.admin-toolbar', {}, summary, h('button#cluster-refresh', { type: 'button', text: 'Refresh', on: { click: refresh } })),
    stale,
    error.node,
    fe,
    br,
    sl,
    h('p.muted', { text: `Refreshed every ${CLUSTER_REFRESH_MS / 1000} s while this tab is shown. Counts come from each node's last heartbeat.` }),
  );
  return {
    panel,
    show() {
      stopped = false;
      refresh();
      if (!timer) timer = setInterval(refresh, CLUSTER_REFRESH_MS);
    },
    hide() {
      stopped = true;
      clearInterval(timer);
      timer = null;
    },
    stop() {
      this.hide();
    },
  };
}

// ---- the page ------------------------------------------------------------------------------------

export function mountAdmin(root, ctx) {
  ensureStyles();
  root.id = 'admin';
  root.classList.add('admin-root');
  const makers = { users: usersTab, permissions: permissionsTab, integrations: integrationsTab, cluster: clusterTab };
  const tabs = {};
  const buttons = [];
  const list = h('div.admin-tabs', { role: 'tablist', 'aria-label': 'Administration sections' });
  const panels = h('div.admin-panels');
  for (const [key, label] of TABS) {
    const b = h(`button#admin-tab-${key}`, {
      type: 'button',
      role: 'tab',
      text: label,
      dataset: { adminTab: key },
      'aria-selected': 'false',
      'aria-controls': `admin-panel-${key}`,
      tabIndex: -1,
    });
    b.addEventListener('click', () => select(key));
    b.addEventListener('keydown', (e) => {
      const i = buttons.indexOf(b);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: buttons.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const next = buttons[(to + buttons.length) % buttons.length];
      select(next.dataset.adminTab);
      next.focus();
    });
    buttons.push(b);
    list.append(b);
    const tab = makers[key](ctx);
    tab.container = h(`section#admin-panel-${key}.admin-panel`, { role: 'tabpanel', 'aria-labelledby': `admin-tab-${key}`, hidden: true, tabIndex: 0 }, tab.panel);
    tabs[key] = tab;
    panels.append(tab.container);
  }
  let current = null;
  function select(key) {
    if (current === key) return;
    if (current) {
      tabs[current].hide();
      tabs[current].container.hidden = true;
    }
    current = key;
    for (const b of buttons) {
      const on = b.dataset.adminTab === key;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
    }
    tabs[key].container.hidden = false;
    tabs[key].show();
  }
  root.replaceChildren(
    h('header.admin-header', {}, h('h2', { text: 'Administration' }), h('span.muted', { text: `signed in as ${ctx.me.username}` })),
    list,
    panels,
  );
  select('users');
  return {
    unmount() {
      for (const t of Object.values(tabs)) t.stop();
      root.replaceChildren();
      root.classList.remove('admin-root');
    },
  };
}
