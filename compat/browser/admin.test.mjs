// The administration pages (web/static/admin.js) in headless Chromium on a local cluster (two
// frontends, two brokers, one SQLite file): the admin opens them from the client's Administration
// button on frontend 1, creates a user and deactivates them, toggles a permission, creates an incoming
// webhook and posts through it, and sees both frontends (with their connection counts), both brokers
// and the slot table in the cluster tab; a plain user on frontend 2 gets no admin button and is refused
// the cluster status. What the page shows is checked against the server through a node socket.
// Screenshots go to target/browser-artifacts/ (admin-*.png).
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { UI_WAIT_MS, waitFor, waitVisible } from './lib/browser.mjs';
import { waitConnState } from './lib/chat-page.mjs';
import { PASSWORD, connectAdmin, createUsers } from './lib/seed.mjs';
import { BrowserEnv } from './lib/setup.mjs';
import { ADMIN_USERNAME } from '../lib/chat.mjs';

const env = new BrowserEnv();

describe('the administration pages in Chromium', { timeout: 180_000 }, () => {
  let admin; // node socket, frontend 1
  let page; // the admin's page, frontend 1
  let bob; // a plain user's page, frontend 2
  let general;

  before(async () => {
    await env.start();
    await env.dumpOnFailure('seed', async () => {
      admin = await connectAdmin(env.cluster, env.cluster.ports[0]);
      await createUsers(admin, ['bob']);
      general = (await admin.invoke('createChannel', { name: 'general', members: ['bob'] })).room;
    });
  });

  after(() => env.stop());

  const tab = (name) => page.page.click(`button[data-admin-tab="${name}"]`);

  env.test('an admin opens the pages; a plain user has no button and is refused the cluster status', async () => {
    bob = await env.browser.user('bob (frontend 2)', env.cluster.ports[1]);
    await bob.open();
    await bob.login('bob', PASSWORD);
    await waitConnState(bob, ['connected'], 'bob after login');
    assert.equal(await bob.page.locator('#admin-button').isVisible(), false, 'no Administration button for bob');
    const refused = await bob.page.evaluate(() => window.chatApp.call('getClusterStatus', {}).then(() => 'allowed', (e) => e.error || e.message));
    assert.equal(refused, 'error-not-allowed');

    page = await env.browser.user('admin (frontend 1)', env.cluster.ports[0]);
    await page.open();
    await page.login(ADMIN_USERNAME, env.cluster.adminPassword);
    await page.page.click('#admin-button');
    await waitVisible(page.page, '#admin [role=tablist]', 'the admin tabs');
    const tabs = await page.page.locator('#admin button[data-admin-tab]').evaluateAll((bs) => bs.map((b) => b.dataset.adminTab));
    assert.deepEqual(tabs, ['users', 'permissions', 'integrations', 'cluster']);
    await waitVisible(page.page, `#admin-users tr[data-username="${ADMIN_USERNAME}"]`, 'the admin in the user list');
    await waitVisible(page.page, '#admin-users tr[data-username="bob"]', 'bob in the user list');
    // Keyboard: arrow keys move between tabs.
    await page.page.focus('button[data-admin-tab="users"]');
    await page.page.keyboard.press('ArrowRight');
    await waitFor(page.page, () => document.activeElement?.dataset.adminTab === 'permissions' && !document.querySelector('#admin-panel-permissions').hidden, undefined, 'ArrowRight selects Permissions');
    await tab('users');
    await page.screenshot('admin-01-users');
  });

  env.test('the admin creates a user, then deactivates them', async () => {
    await page.page.fill('#admin-new-username', 'carol');
    await page.page.fill('#admin-new-name', 'Carol');
    await page.page.fill('#admin-new-password', PASSWORD);
    await page.page.click('#admin-create-user button[type=submit]');
    const row = '#admin-users tr[data-username="carol"]';
    await waitVisible(page.page, row, 'carol in the list after creating her');
    const { users } = await admin.invoke('getUsers', { limit: 100 });
    const carol = users.find((u) => u.username === 'carol');
    assert.ok(carol && carol.active && carol.roles.includes('user'), `carol stored, active: ${JSON.stringify(carol)}`);

    await page.page.click(`${row} button[data-action="deactivate"]`);
    await waitFor(page.page, (sel) => document.querySelector(sel)?.dataset.active === 'false', row, 'carol shown deactivated');
    const after = (await admin.invoke('getUsers', { limit: 100 })).users.find((u) => u.username === 'carol');
    assert.equal(after.active, false, 'carol deactivated in the store');
    await page.screenshot('admin-02-user-deactivated');
  });

  env.test('the admin toggles a permission and the server has it', async () => {
    await tab('permissions');
    const box = '#admin-permissions tr[data-permission="create-c"] input[data-role="guest"]';
    await waitVisible(page.page, box, 'the create-c row');
    assert.equal(await page.page.locator(box).isChecked(), false, 'guests cannot create channels by default');
    await page.page.click(box);
    const stored = async () => (await admin.invoke('permissions.get', {})).permissions.find((p) => p._id === 'create-c').roles;
    for (let i = 0; i < 50 && !(await stored()).includes('guest'); i++) await sleep(100);
    assert.ok((await stored()).includes('guest'), `create-c for guest stored: ${await stored()}`);
    await waitFor(page.page, () => /create-c/.test(document.querySelector('#admin-permissions-status')?.textContent || ''), undefined, 'the change is confirmed on the page');
    await page.screenshot('admin-03-permissions');
  });

  env.test('the admin creates an incoming webhook, sees its URL and token once, and it posts', async () => {
    await tab('integrations');
    await waitVisible(page.page, '#admin-create-incoming', 'the incoming webhook form');
    await page.page.fill('#admin-in-name', 'deploys');
    await page.page.selectOption('#admin-in-room', general.id);
    await page.page.click('#admin-create-incoming button[type=submit]');
    await waitVisible(page.page, '#admin-integration-secret code[data-secret="url"]', 'the webhook URL shown');
    const url = await page.page.locator('#admin-integration-secret code[data-secret="url"]').textContent();
    const token = await page.page.locator('#admin-integration-secret code[data-secret="token"]').textContent();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/hooks\/[^/]+\/[0-9a-f]+$/);
    assert.ok(url.endsWith(token), 'the URL carries the token');
    await waitVisible(page.page, '#admin-integrations tr[data-integration]', 'the webhook in the list');
    await page.screenshot('admin-04-integrations');
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'deployed from the admin test' }) });
    assert.equal(res.status, 200, await res.text());
    const { messages } = await admin.invoke('loadHistory', { rid: general.id, limit: 10 });
    assert.ok(messages.some((m) => m.msg === 'deployed from the admin test'), 'the webhook posted into general');
  });

  env.test('the cluster tab shows both frontends with their connections, the brokers and the slot table', async () => {
    await tab('cluster');
    const shown = await waitFor(
      page.page,
      () => {
        const rows = [...document.querySelectorAll('#cluster-frontends tbody tr[data-node]')];
        const conns = rows.map((r) => Number(r.querySelector('[data-field=connections]')?.textContent));
        const brokers = document.querySelectorAll('#cluster-brokers tbody tr[data-node]').length;
        const slots = document.querySelectorAll('#cluster-slots tbody tr[data-slot]').length;
        return rows.length === 2 && conns.every((c) => c > 0) && brokers === 2 && slots === 2 ? { conns, epoch: document.querySelector('#cluster-epoch').textContent } : false;
      },
      undefined,
      'two frontends with connections > 0, two brokers, two slots',
      15_000,
      () => page.page.evaluate(() => document.querySelector('#admin-panel-cluster')?.innerText),
    );
    // Frontend 1 holds the admin's page and node socket; frontend 2 bob's page.
    assert.ok(shown.conns.every((c) => c >= 1), JSON.stringify(shown));
    const status = await admin.invoke('getClusterStatus', {});
    assert.equal(shown.epoch, String(status.epoch));
    assert.equal(await page.page.locator('#cluster-stale').isVisible(), false, 'not stale with the state server up');
    await page.screenshot('admin-05-cluster');

    // Leaving the admin pages stops the refreshing.
    await page.page.evaluate(() => {
      window.__clusterCalls = 0;
      const conn = window.chatApp.conn;
      const call = conn.call.bind(conn);
      conn.call = (m, d) => {
        if (m === 'getClusterStatus') window.__clusterCalls += 1;
        return call(m, d);
      };
    });
    await sleep(2500);
    assert.ok((await page.page.evaluate(() => window.__clusterCalls)) >= 1, 'refreshed every 2 s while shown');
    await page.page.click('#admin-button');
    await waitFor(page.page, () => document.querySelector('#admin').hidden, undefined, '#admin hidden after leaving');
    await page.page.evaluate(() => { window.__clusterCalls = 0; });
    await sleep(4500);
    assert.equal(await page.page.evaluate(() => window.__clusterCalls), 0, 'no refresh after leaving');
    assert.deepEqual(page.errors, [], 'the admin page logged no error');
  }, { timeout: UI_WAIT_MS * 6 });

  env.test('with the state server gone, the cluster tab answers from the frontend and says it is stale', async () => {
    await page.page.click('#admin-button');
    await waitVisible(page.page, '#admin [role=tablist]', 'the admin tabs again');
    await tab('cluster');
    await waitVisible(page.page, '#cluster-frontends tbody tr[data-node]', 'the cluster tables');
    env.cluster.infra.stateServer.kill();
    const seen = await waitFor(
      page.page,
      () => {
        const notice = document.querySelector('#cluster-stale');
        const slots = document.querySelectorAll('#cluster-slots tbody tr[data-slot]').length;
        return notice && !notice.hidden && slots === 2 ? notice.textContent : false;
      },
      undefined,
      'the stale notice, with the slot table still shown',
      10_000,
    );
    assert.match(seen, /Stale/);
    await page.screenshot('admin-06-cluster-stale');
  });
});
