// The Activity log page in real headless Chromium, against the running Mix Modeler demo.
//
// Started by examples/tests/browser.rs (`cargo test --workspace`), which starts the demo and
// passes: AUDIT_BASE_URL (the demo's root, ending in /), AUDIT_CHROMIUM (the browser
// executable) and AUDIT_ARTIFACTS (where screenshots and downloads go).
//
// Every check compares what the page shows with what the JSON API answers for the same
// query, so the page cannot drift from the API.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.AUDIT_BASE_URL;
const CHROMIUM = process.env.AUDIT_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.AUDIT_ARTIFACTS || path.resolve('artifacts');
assert.ok(BASE && BASE.endsWith('/'), 'AUDIT_BASE_URL must be set and end with /');
const LOG = `${BASE}admin/audit/`;
const ZONE = 'America/New_York';
const INJECTION = '<img src=x onerror=alert(1)>';
const REQUEST_ID = `browser-test-${Date.now()}`;
mkdirSync(ARTIFACTS, { recursive: true });

let browser;
let context;
let page;
/** Problems any page reported: CSP violations, script errors, console errors. */
const problems = [];
/** Console errors that a test provoked on purpose (the 401/403 fetches). */
let expectConsoleErrors = false;
let model; // the model created with the injection name

// ---------------------------------------------------------------------------------------
// The API, as alice, for the expected answers.

async function api(pathAndQuery, token = 'alice-token', init = {}) {
  const response = await fetch(`${BASE}${pathAndQuery}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers || {}) },
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** The ids `/events` answers for the query string `query` (first page of `limit`). */
async function apiIds(query, limit = 100) {
  const params = new URLSearchParams(query);
  params.set('limit', String(limit));
  const { status, body } = await api(`admin/audit/events?${params}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.items.map((e) => e.id);
}

/** Every event `/events` answers for `query`, following the cursor. */
async function apiAll(query, token = 'alice-token') {
  const items = [];
  let cursor = null;
  do {
    const params = new URLSearchParams(query);
    params.set('limit', '1000');
    if (cursor) params.set('cursor', cursor);
    const { body } = await api(`admin/audit/events?${params}`, token);
    items.push(...body.items);
    cursor = body.next_cursor;
  } while (cursor);
  return items;
}

async function waitFor(predicate, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------------------------------
// The page.

async function newPage(ctx) {
  const p = await ctx.newPage();
  p.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  p.on('console', (message) => {
    if (message.type() === 'error' && !expectConsoleErrors) problems.push(`console error: ${message.text()}`);
  });
  return p;
}

async function newContext(extra = {}) {
  const ctx = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    timezoneId: ZONE,
    locale: 'en-US',
    acceptDownloads: true,
    ...extra,
  });
  // Runs before the page's own script on every navigation: any alert() from injected
  // markup is recorded instead of shown, and every CSP violation is reported.
  await ctx.exposeBinding('__reportCsp', (_source, text) => problems.push(`CSP violation: ${text}`));
  await ctx.addInitScript(() => {
    window.__alerts = [];
    window.alert = (message) => window.__alerts.push(String(message));
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspSeen = (window.__cspSeen || 0) + 1;
      if (!window.__cspProbe) window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  return ctx;
}

async function shownIds(p = page) {
  return p.$$eval('#log-body tr', (rows) => rows.map((r) => r.dataset.id));
}

/** Waits until the list has settled (no request in flight, state rendered). */
async function settled(p = page) {
  await p.waitForFunction(() => document.body.dataset.facets === 'loaded'
    && document.body.dataset.counts !== 'loading'
    && document.body.dataset.histogram !== 'loading'
    && !document.body.classList.contains('is-loading')
    && document.querySelector('#table-state').dataset.state !== 'loading');
}

/** Runs `action`, returns the `/events` request it caused (its query parameters). */
async function eventsRequest(action, p = page) {
  const request = p.waitForRequest((r) => new URL(r.url()).pathname.endsWith('/admin/audit/events'));
  await action();
  const url = new URL((await request).url());
  await settled(p);
  return url.searchParams;
}

/** The filter part of an `/events` request (without limit and cursor). */
function filtersOf(params) {
  const copy = new URLSearchParams(params);
  copy.delete('limit');
  copy.delete('cursor');
  return copy;
}

async function assertShownMatchesApi(params, label) {
  const expected = await apiIds(filtersOf(params));
  const shown = await shownIds();
  assert.deepEqual(shown, expected, `${label}: rows shown differ from the API's answer`);
  return shown;
}

async function toggleMulti(key, value) {
  await page.click(`#multi-${key}`);
  const box = page.locator(`input[data-filter="${key}"][value="${value}"]`);
  const params = await eventsRequest(() => box.click());
  await page.keyboard.press('Escape');
  return params;
}

async function screenshot(name, p = page) {
  await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

function pageParams() {
  return new URL(page.url()).searchParams;
}

// ---------------------------------------------------------------------------------------

/** The README's picture (docs/activity-log.png is a copy): the demo's own traffic, before
 * this suite adds its test events, with one update's changes open. */
async function readmeScreenshot() {
  const ctx = await newContext({ timezoneId: 'Europe/Berlin' });
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=alice`);
  await p.waitForSelector('#log-body tr');
  await p.goto(`${LOG}?action=update&range=30d`);
  await p.waitForSelector('#log-body tr');
  await settled(p);
  const shown = (await shownIds(p)).slice(0, 8);
  const updates = (await api('admin/audit/events?action=update&limit=20')).body.items;
  const rich = updates.find((e) => shown.includes(e.id) && e.attributes.changes && Object.keys(e.attributes.changes).length >= 1);
  if (rich) {
    await p.click(`#log-body tr[data-id="${rich.id}"]`);
    await p.waitForSelector('#detail:not([hidden])');
  }
  await p.screenshot({ path: path.join(ARTIFACTS, 'readme-activity-log.png') });
  await ctx.close();
}

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  await readmeScreenshot();

  // Seed: a model named with markup, renamed (a change), trained under a known request ID,
  // and a denied delete by carol, who may not change anything.
  const created = await api('api/models', 'alice-token', { method: 'POST', body: JSON.stringify({ name: INJECTION }) });
  assert.equal(created.status, 201);
  model = created.body;
  const renamed = await api(`api/models/${model.id}`, 'alice-token', {
    method: 'PUT', body: JSON.stringify({ name: `${INJECTION} v2`, decay: 0.4 }),
  });
  assert.equal(renamed.status, 200);
  const trained = await api(`api/models/${model.id}/train`, 'alice-token', { method: 'POST', headers: { 'x-request-id': REQUEST_ID } });
  assert.ok(trained.status < 300, `train answered ${trained.status}`);
  const denied = await api(`api/models/${model.id}`, 'carol-token', { method: 'DELETE' });
  assert.equal(denied.status, 403);
  // The demo's recorder writes in the background: wait until all four are visible.
  await waitFor(async () => (await apiIds(`resource_id=${model.id}&category=Model`)).length >= 4, 'the seeded events');

  context = await newContext();
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(BASE).origin });
  page = await newPage(context);
});

after(async () => {
  if (browser) await browser.close();
});

test('signing in lands on the page: newest first, local times with the zone named', async () => {
  await page.goto(`${BASE}login?as=alice`);
  assert.equal(new URL(page.url()).pathname, '/admin/audit/');
  await page.waitForSelector('#log-body tr');
  await settled();
  await assertShownMatchesApi(new URLSearchParams(), 'unfiltered');
  assert.equal(await page.textContent('#log-head th:first-child'), `Time (${ZONE})`);
  assert.match(await page.textContent('#zone-note'), new RegExp(`Times in ${ZONE.replace('/', '\\/')} \\(UTC[−+]0[45]:00\\)`));
  assert.match(await page.textContent('#who'), /Signed in as alice@acme\.test/);
  // The first row's time is the event's instant shown in the viewer's zone.
  const first = (await api('admin/audit/events?limit=1')).body.items[0];
  const time = page.locator('#log-body tr:first-child time');
  assert.equal(await time.getAttribute('datetime'), first.occurred_at);
  const local = new Intl.DateTimeFormat('en-US', {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    hourCycle: 'h23', timeZone: ZONE,
  }).format(new Date(first.occurred_at));
  assert.equal(await time.textContent(), local);
  await screenshot('activity-log-desktop');
});

test('the demo history keeps one name per resource and lifecycles in order; olga sees every tenant and the tenantless denials', async () => {
  const all = await apiAll('', 'olga-token');
  const tenants = new Set(all.map((e) => e.tenant));
  assert.ok(tenants.has('acme') && tenants.has('globex') && tenants.has(null), [...tenants].join(', '));
  // The invented history (resource ids from 1000; this suite's own resources count from 1).
  const history = all.filter((e) => /^\d+$/.test(e.resource_id || '') && Number(e.resource_id) >= 1000).reverse();
  assert.ok(history.length > 200, `${history.length} history events`);
  const names = new Map();
  for (const e of history) {
    if (!e.resource_name) continue;
    if (!names.has(e.resource_id)) names.set(e.resource_id, new Set());
    names.get(e.resource_id).add(e.resource_name);
  }
  for (const [id, set] of names) assert.equal(set.size, 1, `resource ${id} has names ${[...set].join(' | ')}`);
  // Allowed events per resource: born by a create (or as a clone's copy), nothing after a delete.
  const born = new Set();
  const dead = new Set();
  const actions = new Set();
  for (const e of history.filter((x) => x.outcome === 'allow')) {
    actions.add(e.action);
    assert.ok(!dead.has(e.resource_id), `${e.action} of ${e.resource_id} after its delete`);
    if (e.action === 'create') born.add(e.resource_id);
    assert.ok(born.has(e.resource_id), `${e.action} of ${e.resource_id} before its create`);
    if (e.action === 'clone') born.add(e.attributes.clone_id);
    if (e.action === 'delete') dead.add(e.resource_id);
  }
  for (const action of ['create', 'update', 'train', 'clone', 'delete']) assert.ok(actions.has(action), `no ${action} in the history`);
  // Tenantless denials: olga sees them, alice (acme only) does not.
  const anonymous = all.filter((e) => e.tenant === null && e.status === 401);
  assert.ok(anonymous.length > 0, 'the history has unauthenticated attempts');
  assert.ok((await apiAll('status=deny')).every((e) => e.tenant === 'acme'));
  // olga may read and export everything, and change nothing.
  assert.equal((await api('api/models', 'olga-token', { method: 'POST', body: '{"name": "x"}' })).status, 403);
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=olga`);
  await p.goto(`${LOG}?status=deny`);
  await p.waitForSelector('#log-body tr');
  await settled(p);
  assert.match(await p.textContent('#who'), /olga@platform\.test · Tenant: all/);
  assert.equal(await p.isDisabled('#download-button'), false);
  const { total } = (await api('admin/audit/events?status=deny&limit=1', 'olga-token')).body;
  assert.equal(await p.getAttribute('#result-count', 'data-total'), String(total.count));
  assert.ok(await p.$$eval('#log-body td[data-column="actor_email"]', (cells) => cells.some((c) => c.textContent === 'Not signed in')));
  await screenshot('activity-log-olga', p);
  await ctx.close();
});

test('more rows come through the cursor', async () => {
  assert.equal((await shownIds()).length, 100);
  const params = await eventsRequest(() => page.click('#load-more'));
  assert.ok(params.get('cursor'), 'the second page is asked for with the cursor');
  const expected = await apiIds('', 200);
  assert.deepEqual(await shownIds(), expected);
  const { total } = (await api('admin/audit/events?limit=1')).body;
  assert.ok(total.exact && total.count > 200);
  assert.equal(await page.textContent('#result-count'), `${total.count.toLocaleString('en-US')} events match · 200 shown`);
});

test('the total above the table and the counts in the filter menus follow the filters', async () => {
  await page.goto(`${LOG}?category=Model`);
  await page.waitForSelector('#log-body tr');
  await settled();
  const totalOf = async (query) => (await api(`admin/audit/events?limit=1&${query}`)).body.total;
  let total = await totalOf('category=Model');
  assert.equal(total.exact, true);
  assert.equal(await page.getAttribute('#result-count', 'data-total'), String(total.count));
  assert.ok((await page.textContent('#result-count')).startsWith(`${total.count.toLocaleString('en-US')} events match`));
  const menuCounts = (key) => page.$$eval(`#multi-pop-${key} .facet-count`, (nodes) => Object.fromEntries(nodes.map((n) => [n.dataset.value, n.textContent])));
  const expectedCounts = async (query, key) => {
    const { body } = await api(`admin/audit/facets?${query}`);
    return Object.fromEntries(Object.entries(body.counts[key]).map(([value, c]) => [value, `${c.count.toLocaleString('en-US')}${c.exact ? '' : '+'}`]));
  };
  const actions = await menuCounts('action');
  assert.ok(Object.keys(actions).length >= 3, JSON.stringify(actions));
  const wanted = await expectedCounts('category=Model', 'action');
  for (const [value, text] of Object.entries(actions)) assert.equal(text, wanted[value], `action ${value}`);
  // The category menu counts what choosing each category instead would give.
  const categories = await menuCounts('category');
  assert.equal(categories.Model, `${total.count.toLocaleString('en-US')}`);
  assert.deepEqual(categories, await expectedCounts('category=Model', 'category'));
  // A further filter updates the total and the counts in place.
  await toggleMulti('status', 'deny');
  await settled();
  total = await totalOf('category=Model&status=deny');
  assert.equal(await page.getAttribute('#result-count', 'data-total'), String(total.count));
  assert.deepEqual(await menuCounts('action'), await expectedCounts('category=Model&status=deny', 'action'));
  await screenshot('activity-log-counts');
  await eventsRequest(() => page.click('#clear-filters'));
});

test('the chart shows allowed and denied events per day, and a bar narrows the list to its range', async () => {
  const request = page.waitForRequest((r) => new URL(r.url()).pathname.endsWith('/admin/audit/histogram'));
  await page.goto(`${LOG}?range=30d&category=Model`);
  const histogramParams = new URL((await request).url()).searchParams;
  await page.waitForSelector('#log-body tr');
  await settled();
  assert.equal(histogramParams.get('interval'), 'day');
  assert.deepEqual(histogramParams.getAll('category'), ['Model']);
  const from = histogramParams.get('from');
  const bars = await page.$$eval('#chart .bar', (gs) => gs.map((g) => ({ start: g.dataset.start, end: g.dataset.end, allow: Number(g.dataset.allow), deny: Number(g.dataset.deny) })));
  assert.ok(bars.length >= 30 && bars.length <= 31, `${bars.length} bars`);
  const { body } = await api(`admin/audit/histogram?${histogramParams}`);
  assert.deepEqual(bars.map((b) => [b.start, b.allow, b.deny]), body.buckets.map((b) => [b.start, b.allow.count, b.deny.count]));
  // The bars add up to the list's total.
  const total = (await api(`admin/audit/events?limit=1&category=Model&from=${encodeURIComponent(from)}`)).body.total;
  assert.equal(bars.reduce((n, b) => n + b.allow + b.deny, 0), total.count);
  await screenshot('activity-log-chart');
  // The busiest bar narrows the list to its day (clipped to the range already chosen).
  const busiest = bars.reduce((a, b) => (b.allow + b.deny > a.allow + a.deny ? b : a));
  const index = bars.indexOf(busiest);
  const params = await eventsRequest(() => page.click(`#chart .bar:nth-of-type(${index + 1})`, { position: { x: 2, y: 30 } }));
  const expectedFrom = Date.parse(from) > Date.parse(busiest.start) ? from : busiest.start;
  assert.equal(params.get('from'), expectedFrom);
  assert.equal(params.get('to'), busiest.end);
  assert.equal(pageParams().get('from'), expectedFrom);
  assert.equal(pageParams().get('to'), busiest.end);
  const shown = await assertShownMatchesApi(params, 'a bar');
  assert.equal(shown.length, busiest.allow + busiest.deny);
  // Narrowed to a day, the chart shows its hours.
  await page.waitForFunction(() => document.querySelectorAll('#chart .bar').length >= 1 && document.querySelectorAll('#chart .bar').length <= 24);
  // From the keyboard: one Tab stop (the busiest bar), arrows move, Enter narrows.
  await page.goto(`${LOG}?range=30d&category=Model`);
  await page.waitForSelector('#log-body tr');
  await settled();
  assert.equal(await page.locator('#chart .bar[tabindex="0"]').count(), 1);
  await page.focus('#chart .bar[tabindex="0"]');
  const focusedStart = () => page.evaluate(() => document.activeElement.dataset.start);
  const before = await focusedStart();
  await page.keyboard.press('Home');
  assert.equal(await focusedStart(), bars[0].start);
  assert.notEqual(bars[0].start, before === bars[0].start ? null : before);
  const firstBusy = bars.findIndex((b) => b.allow + b.deny > 0);
  for (let i = 0; i < firstBusy; i += 1) await page.keyboard.press('ArrowRight');
  assert.equal(await focusedStart(), bars[firstBusy].start);
  const keyed = await eventsRequest(() => page.keyboard.press('Enter'));
  assert.equal(keyed.get('to'), bars[firstBusy].end);
  await eventsRequest(() => page.click('#clear-filters'));
});

test('each filter shows exactly what the API answers, and they combine', async () => {
  // Category (multi-select, offered from /facets).
  let params = await toggleMulti('category', 'Model');
  assert.deepEqual(params.getAll('category'), ['Model']);
  await assertShownMatchesApi(params, 'category');
  assert.deepEqual(pageParams().getAll('category'), ['Model']);
  // Action, combined with the category; then a second action (OR within a filter).
  params = await toggleMulti('action', 'update');
  assert.deepEqual(params.getAll('action'), ['update']);
  await assertShownMatchesApi(params, 'category + action');
  params = await toggleMulti('action', 'train');
  assert.deepEqual(params.getAll('action').sort(), ['train', 'update']);
  const rows = await assertShownMatchesApi(params, 'category + two actions');
  assert.ok(rows.length > 0);
  // Outcome.
  params = await toggleMulti('status', 'deny');
  assert.deepEqual(params.getAll('status'), ['deny']);
  await assertShownMatchesApi(params, 'category + actions + outcome');
  assert.equal(await page.locator('#chips li').count(), 3);

  params = await eventsRequest(() => page.click('#clear-filters'));
  assert.equal(filtersOf(params).toString(), '');
  assert.equal(new URL(page.url()).search, '');

  // User, two of them.
  await toggleMulti('user', 'carol@acme.test');
  params = await toggleMulti('user', 'erin@acme.test');
  assert.deepEqual(params.getAll('user').sort(), ['carol@acme.test', 'erin@acme.test']);
  const users = await assertShownMatchesApi(params, 'users');
  assert.ok(users.length > 0);
  const emails = await page.$$eval('#log-body td[data-column="actor_email"]', (cells) => [...new Set(cells.map((c) => c.textContent))].sort());
  assert.deepEqual(emails, ['carol@acme.test', 'erin@acme.test']);
  await eventsRequest(() => page.click('#clear-filters'));

  // Request ID (exact).
  params = await eventsRequest(async () => {
    await page.fill('#f-request-id', REQUEST_ID);
    await page.press('#f-request-id', 'Enter');
  });
  assert.equal(params.get('request_id'), REQUEST_ID);
  assert.equal((await assertShownMatchesApi(params, 'request id')).length, 1);
  await eventsRequest(() => page.click('#clear-filters'));

  // Resource name (substring, case-insensitive), typed: applied after the pause.
  params = await eventsRequest(() => page.fill('#f-resource-name', 'ONERROR'));
  assert.equal(params.get('resource_name'), 'ONERROR');
  // Created, renamed, trained; carol's denied delete never reached the handler that names it.
  assert.equal((await assertShownMatchesApi(params, 'resource name')).length, 3);
  await eventsRequest(() => page.click('#clear-filters'));

  // Date presets: `from` is that long before now.
  for (const [preset, hours] of [['24h', 24], ['7d', 168], ['30d', 720]]) {
    const started = Date.now();
    params = await eventsRequest(() => page.selectOption('#f-range', preset));
    const from = Date.parse(params.get('from'));
    assert.ok(Math.abs(from - (started - hours * 3600e3)) < 10000, `${preset}: from ${params.get('from')}`);
    assert.equal(params.get('to'), null);
    assert.equal(pageParams().get('range'), preset);
    await assertShownMatchesApi(params, preset);
  }
  // Custom dates: local days in the viewer's zone, the end day inclusive.
  const day = (offsetDays) => new Date(Date.now() - offsetDays * 86400e3).toLocaleDateString('en-CA', { timeZone: ZONE });
  const [fromDay, toDay] = [day(20), day(10)];
  await page.selectOption('#f-range', 'custom');
  await page.fill('#f-from', fromDay);
  params = await eventsRequest(() => page.fill('#f-to', toDay));
  assert.equal(params.get('from'), localMidnight(fromDay));
  assert.equal(params.get('to'), localMidnight(nextDay(toDay)));
  const inRange = await assertShownMatchesApi(params, 'custom dates');
  assert.ok(inRange.length > 0);
  assert.equal(pageParams().get('from'), fromDay);
  assert.equal(pageParams().get('to'), toDay);
  // Combined with a category and an outcome.
  await toggleMulti('category', 'Model');
  params = await toggleMulti('status', 'allow');
  assert.equal(params.get('from'), localMidnight(fromDay));
  await assertShownMatchesApi(params, 'custom dates + category + outcome');
  await screenshot('activity-log-filtered');
});

test('a filtered URL reloads, and opens in a new tab, to the same view', async () => {
  const url = page.url();
  const ids = await shownIds();
  const chips = await page.$$eval('#chips li span', (s) => s.map((n) => n.textContent));
  await page.reload();
  await page.waitForSelector('#log-body tr');
  await settled();
  assert.equal(page.url(), url);
  assert.deepEqual(await shownIds(), ids);
  assert.deepEqual(await page.$$eval('#chips li span', (s) => s.map((n) => n.textContent)), chips);
  assert.equal(await page.inputValue('#f-range'), 'custom');
  assert.equal(await page.textContent('#multi-category .multi-value'), 'Model');
  // A shared link, opened elsewhere.
  const other = await newPage(context);
  await other.goto(url);
  await other.waitForSelector('#log-body tr');
  await settled(other);
  assert.deepEqual(await shownIds(other), ids);
  await other.close();
  // Back in history undoes the last filter.
  const beforeBack = await shownIds();
  await eventsRequest(() => page.goBack());
  assert.equal(pageParams().getAll('status').length, 0);
  assert.notDeepEqual(await shownIds(), beforeBack);
});

test('an address the page cannot apply shows a banner naming the parameter and queries nothing', async () => {
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=alice`);
  await p.waitForSelector('#log-body tr');
  const queried = [];
  p.on('request', (r) => {
    const { pathname } = new URL(r.url());
    if (/\/admin\/audit\/(events|facets|export)$/.test(pathname)) queried.push(r.url());
  });
  const cases = [
    ['categry=Model', 'categry'],
    ['category=Model&range=90d', 'range'],
    ['from=2026-13-45', 'from'],
    ['from=2026-02-30', 'from'],
    ['to=2026-03-01T25:00:00Z', 'to'],
    ['from=2026-03-01T10:00:00 01:00', 'from'],
    ['range=7d&from=2026-03-01', 'range'],
    ['from=2026-03-02&to=2026-03-01', 'from'],
    ['request_id=a&request_id=b', 'request_id'],
    ['status=maybe', 'status'],
    ['action=Train', 'action'],
    ['user=', 'user'],
    ['columns=id,nope', 'columns'],
    ['columns=id,,action', 'columns'],
    ['event=not-an-id', 'event'],
  ];
  for (const [query, parameter] of cases) {
    queried.length = 0;
    await p.goto(`${LOG}?${query}`);
    await p.waitForSelector('#notice[data-kind="url"]:not([hidden])');
    assert.equal(await p.getAttribute('#notice', 'data-parameter'), parameter, query);
    assert.equal(await p.textContent('#notice code.parameter'), parameter, query);
    assert.match(await p.textContent('#notice h2'), /cannot be applied/);
    assert.equal(await p.isVisible('#log-table'), false, `${query}: no table`);
    assert.equal(await p.isVisible('#download-button'), false, `${query}: no download`);
    assert.equal(await p.locator('#log-body tr').count(), 0);
    // The address is left as given, so the reader sees what was wrong with it.
    assert.deepEqual([...new URL(p.url()).searchParams], [...new URLSearchParams(query)], query);
    await p.waitForTimeout(150);
    assert.deepEqual(queried, [], `${query}: no query ran`);
  }
  await screenshot('activity-log-bad-url', p);
  // A value the page lets through but the API refuses (too long) gets the same banner,
  // naming the API's parameter.
  expectConsoleErrors = true; // the browser logs the refused fetch
  try {
    await p.goto(`${LOG}?resource_name=${'x'.repeat(1100)}`);
    await p.waitForSelector('#notice[data-kind="url"]:not([hidden])');
    assert.equal(await p.getAttribute('#notice', 'data-parameter'), 'resource_name');
  } finally {
    expectConsoleErrors = false;
  }
  // The way out: the page without parameters.
  await p.click('#url-error-reset');
  await p.waitForSelector('#log-body tr');
  assert.equal(new URL(p.url()).search, '');
  assert.equal(await p.isVisible('#notice'), false);
  await ctx.close();
});

test('from and to with a time of day are applied to the instant, and shown in local time', async () => {
  const all = (await api('admin/audit/events?limit=60')).body.items;
  // A window from the 50th newest event (inclusive) to the 10th newest (exclusive).
  const from = all[49].occurred_at;
  const toDate = new Date(Date.parse(all[9].occurred_at));
  // `to` with an offset (+02:00), encoded as %2B in the address.
  const shifted = new Date(toDate.getTime() + 2 * 3600e3).toISOString().replace(/\.(\d{3})Z$/, '.$1');
  const to = `${shifted}+02:00`;
  assert.equal(Date.parse(to), toDate.getTime());
  const query = new URLSearchParams({ from, to });
  const params = await eventsRequest(() => page.goto(`${LOG}?${query}`));
  assert.equal(params.get('from'), from, 'from is sent exactly as the address gave it');
  assert.equal(params.get('to'), to, 'to is sent exactly as the address gave it');
  const shown = await assertShownMatchesApi(params, 'time-of-day range');
  assert.ok(shown.length >= 1 && shown.length <= 41, `${shown.length} rows`);
  assert.ok(!shown.includes(all[9].id) || all[9].occurred_at === all[10].occurred_at, 'to is exclusive');
  assert.ok(shown.includes(all[49].id), 'from is inclusive');
  assert.equal(pageParams().get('from'), from);
  assert.equal(pageParams().get('to'), to);
  const chip = await page.textContent('#chips li span');
  assert.match(chip, /^Time from .+ \(America\/New_York\) until .+, exclusive$/);
  assert.equal(await page.inputValue('#f-range'), 'custom');
  // Reloading reproduces it.
  await page.reload();
  await page.waitForSelector('#log-body tr');
  await settled();
  assert.deepEqual(await shownIds(), shown);
});

test('columns given in the address are shown, downloaded, and do not overwrite the saved choice', async () => {
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=alice`);
  await p.waitForSelector('#log-body tr');
  await p.goto(`${LOG}?category=Model&columns=id,action,outcome`);
  await p.waitForSelector('#log-body tr');
  await settled(p);
  assert.deepEqual(await p.$$eval('#log-head th', (ths) => ths.map((t) => t.dataset.column)), ['id', 'action', 'outcome']);
  assert.deepEqual(await p.$$eval('#log-body tr:first-child td', (tds) => tds.map((t) => t.dataset.column)), ['id', 'action', 'outcome']);
  await p.click('#download-button');
  const href = new URL(await p.getAttribute('#download-link', 'href'), LOG);
  assert.equal(href.searchParams.get('columns'), 'id,action,outcome');
  await p.click('#download-cancel');
  assert.equal(await p.evaluate(() => localStorage.getItem('audit-log.columns.v1')), null);
  // Choosing columns puts them in the address, so a copied link reproduces the view.
  await p.click('#columns-button');
  await p.click('#columns-list li[data-column="category"] input');
  await p.click('#columns-apply');
  assert.equal(new URL(p.url()).searchParams.get('columns'), 'id,action,outcome,category');
  const other = await newPage(ctx);
  await other.goto(p.url());
  await other.waitForSelector('#log-body tr');
  assert.deepEqual(await other.$$eval('#log-head th', (ths) => ths.map((t) => t.dataset.column)), ['id', 'action', 'outcome', 'category']);
  await ctx.close();
});

test('the detail panel shows every field, the changes, and offers related views', async () => {
  await page.goto(`${LOG}?resource_name=onerror&action=update`);
  await page.waitForSelector('#log-body tr');
  await settled();
  const [update] = (await api(`admin/audit/events?resource_name=onerror&action=update`)).body.items;
  // Keyboard: focus the row, Enter opens the panel.
  await page.focus(`#log-body tr[data-id="${update.id}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#detail:not([hidden])');
  assert.equal(pageParams().get('event'), update.id);
  const dd = (name) => page.textContent(`#detail dd[data-field="${name}"]`);
  for (const name of ['actor_name', 'actor_email', 'actor_id', 'tenant', 'category', 'resource_name', 'resource_id', 'method', 'path', 'route', 'id']) {
    assert.equal(await dd(name), String(update[name]), name);
  }
  assert.equal(await dd('occurred_at'), update.occurred_at);
  assert.equal(await dd('status'), String(update.status));
  assert.equal(await page.textContent('#detail-request-id'), update.request_id);
  // Tamper evidence: the entry's sequence number and hashes in the store's chain.
  assert.ok(update.chain, 'events read from the store carry their chain link');
  assert.match(update.chain.hash, /^[0-9a-f]{64}$/);
  assert.equal(await dd('chain_seq'), String(update.chain.seq));
  assert.equal(await dd('chain_hash'), update.chain.hash);
  assert.equal(await dd('chain_prev_hash'), update.chain.prev_hash);
  // Field changes, before → after, as text.
  const change = (field, cls) => page.textContent(`#detail tr[data-change="${field}"] td.${cls}`);
  assert.equal(await change('name', 'before'), INJECTION);
  assert.equal(await change('name', 'after'), `${INJECTION} v2`);
  assert.equal(await change('decay', 'after'), '0.4');
  assert.equal(await page.textContent('#detail tr[data-change="decay"] td.before'), 'empty');
  const raw = JSON.parse(await page.textContent('#detail details.raw pre'));
  assert.deepEqual(raw, update);
  // The resource's history: its every event, newest first, this one marked; another opens on click.
  const historyIds = await apiIds(`category=Model&resource_id=${model.id}`, 50);
  await page.waitForSelector('#resource-history:not([aria-busy])');
  assert.deepEqual(await page.$$eval('#resource-history li', (lis) => lis.map((l) => l.dataset.id)), historyIds);
  assert.ok(historyIds.length >= 4);
  assert.equal(await page.getAttribute(`#resource-history li[data-id="${update.id}"]`, 'aria-current'), 'true');
  assert.match(await page.textContent('#resource-history h3'), new RegExp(`\\(${historyIds.length}\\)`));
  await screenshot('activity-log-history');
  const created = historyIds[historyIds.length - 1];
  await page.click(`#resource-history li[data-id="${created}"] button`);
  await page.waitForFunction((id) => document.querySelector('#detail').dataset.id === id, created);
  assert.match(await page.textContent('#detail-title'), /^Create/);
  await page.click(`#resource-history li[data-id="${update.id}"] button`);
  await page.waitForFunction((id) => document.querySelector('#detail').dataset.id === id, update.id);
  await screenshot('activity-log-detail');

  // The request ID is copied to the clipboard.
  await page.click('#copy-request-id');
  await page.waitForFunction(() => document.querySelector('#toast').textContent === 'Request ID copied');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), update.request_id);

  // Escape closes it and gives focus back to the row.
  await page.keyboard.press('Escape');
  await page.waitForSelector('#detail', { state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), update.id);
  assert.equal(pageParams().get('event'), null);

  // A link to one event opens its panel.
  await page.goto(`${LOG}?event=${update.id}`);
  await page.waitForSelector('#detail:not([hidden])');
  assert.equal(await page.textContent('#detail-request-id'), update.request_id);

  // One-click filters.
  let params = await eventsRequest(() => page.click('#same-request'));
  assert.equal(filtersOf(params).toString(), new URLSearchParams({ request_id: update.request_id }).toString());
  assert.deepEqual(await assertShownMatchesApi(params, 'same request'), [update.id]);

  await page.goto(`${LOG}?event=${update.id}`);
  await page.waitForSelector('#detail:not([hidden])');
  params = await eventsRequest(() => page.click('#same-user'));
  assert.deepEqual(params.getAll('user'), ['alice@acme.test']);
  await assertShownMatchesApi(params, 'same user');

  await page.goto(`${LOG}?event=${update.id}`);
  await page.waitForSelector('#detail:not([hidden])');
  params = await eventsRequest(() => page.click('#same-resource'));
  assert.equal(params.get('resource_id'), model.id);
  assert.deepEqual(params.getAll('category'), ['Model']);
  const sameResource = await assertShownMatchesApi(params, 'same resource');
  assert.ok(sameResource.length >= 4);
});

test('markup in event values is shown as text and runs nothing', async () => {
  await page.goto(`${LOG}?resource_name=onerror`);
  await page.waitForSelector('#log-body tr');
  await settled();
  const names = await page.$$eval('#log-body td[data-column="resource_name"]', (cells) => cells.map((c) => c.textContent));
  assert.equal(names.length, 3);
  assert.ok(names.includes(INJECTION) && names.includes(`${INJECTION} v2`), names.join(' | '));
  assert.ok(names.every((n) => n === INJECTION || n === `${INJECTION} v2`), names.join(' | '));
  await page.click('#log-body tr:first-child');
  await page.waitForSelector('#detail:not([hidden])');
  assert.ok((await page.textContent('#detail-title')).includes(INJECTION));
  // Give an onerror handler every chance to have fired.
  await page.waitForTimeout(300);
  assert.deepEqual(await page.evaluate(() => window.__alerts), []);
  const images = await page.$$eval('img', (imgs) => imgs.map((i) => i.getAttribute('src')));
  assert.deepEqual(images, ['assets/icon.svg'], 'the only image is the page icon');
});

test('the Content-Security-Policy is enforced and the page never violates it', async () => {
  const response = await page.goto(LOG);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe/);
  await page.waitForSelector('#log-body tr');
  // Prove the listener works: an inline style is refused and reported as a violation.
  expectConsoleErrors = true;
  const seen = await page.evaluate(async () => {
    window.__cspProbe = true;
    const style = document.createElement('style');
    style.textContent = 'body { background: red; }';
    document.head.append(style);
    await new Promise((r) => setTimeout(r, 200));
    style.remove();
    window.__cspProbe = false;
    return window.__cspSeen || 0;
  });
  expectConsoleErrors = false;
  assert.ok(seen >= 1, 'the probe inline style was blocked');
  assert.deepEqual(problems, [], 'no CSP violation, script error or console error so far');
});

test('columns can be chosen and reordered, Cancel discards, Apply persists across reloads', async () => {
  await page.evaluate(() => localStorage.clear());
  await page.goto(LOG);
  await page.waitForSelector('#log-body tr');
  const headers = () => page.$$eval('#log-head th', (ths) => ths.map((t) => t.dataset.column));
  const defaults = await headers();
  assert.deepEqual(defaults, ['occurred_at', 'actor_email', 'action', 'category', 'resource_name', 'outcome', 'request_id']);

  // Cancel (and Escape) change nothing.
  await page.click('#columns-button');
  await page.click('#columns-list li[data-column="request_id"] input');
  await page.click('#columns-cancel');
  assert.deepEqual(await headers(), defaults);
  await page.click('#columns-button');
  await page.click('#columns-list li[data-column="outcome"] input');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#columns-dialog[open]').count(), 0);
  assert.deepEqual(await headers(), defaults);

  // Drop Request ID, add Event ID and HTTP status, move Event ID to the front.
  await page.click('#columns-button');
  await page.click('#columns-list li[data-column="request_id"] input');
  await page.click('#columns-list li[data-column="status"] input');
  await page.click('#columns-list li[data-column="id"] input');
  for (;;) {
    const up = page.locator('#columns-list li[data-column="id"] button[data-move="up"]');
    if (await up.isDisabled()) break;
    await up.click();
  }
  // Keyboard reordering keeps focus on the moved column's button.
  assert.equal(await page.evaluate(() => document.activeElement.closest('li')?.dataset.column), 'id');
  await screenshot('activity-log-columns');
  await page.click('#columns-apply');
  const chosen = ['id', 'occurred_at', 'actor_email', 'action', 'category', 'resource_name', 'outcome', 'status'];
  assert.deepEqual(await headers(), chosen);
  const firstRow = await page.$$eval('#log-body tr:first-child td', (tds) => tds.map((t) => t.dataset.column));
  assert.deepEqual(firstRow, chosen);
  assert.equal(await page.textContent('#log-body tr:first-child td[data-column="id"]'), (await shownIds())[0]);

  await page.reload();
  await page.waitForSelector('#log-body tr');
  assert.deepEqual(await headers(), chosen);

  // Nothing ticked: Apply refuses.
  await page.click('#columns-button');
  for (const key of chosen) await page.click(`#columns-list li[data-column="${key}"] input`);
  await page.click('#columns-apply');
  assert.equal(await page.isVisible('#columns-error'), true);
  await page.click('#columns-cancel');
  assert.deepEqual(await headers(), chosen);
});

/** A small RFC 4180 parser: enough to read the export back. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

test('downloads export exactly the current filters and chosen columns, as CSV and JSON', async () => {
  const chosen = ['id', 'occurred_at', 'actor_email', 'action', 'category', 'resource_name', 'outcome', 'status'];
  await page.goto(`${LOG}?category=Model&status=allow&range=30d`);
  await page.waitForSelector('#log-body tr');
  await settled();
  await page.click('#download-button');
  await page.waitForSelector('#download-dialog[open]');
  const summary = await page.$$eval('#download-filters li', (lis) => lis.map((l) => l.textContent));
  assert.ok(summary.includes('Category: Model') && summary.includes('Outcome: Allowed'), summary.join(' | '));
  assert.ok(summary.some((s) => s.startsWith('Last 30 days (since ')), summary.join(' | '));
  await screenshot('activity-log-download');

  const href = new URL(await page.getAttribute('#download-link', 'href'), LOG);
  assert.equal(href.pathname, '/admin/audit/export');
  assert.equal(href.searchParams.get('format'), 'csv');
  assert.equal(href.searchParams.get('columns'), chosen.join(','));
  const filters = new URLSearchParams(href.searchParams);
  filters.delete('format');
  filters.delete('columns');
  assert.deepEqual(filters.getAll('category'), ['Model']);
  assert.deepEqual(filters.getAll('status'), ['allow']);
  assert.ok(filters.get('from'));
  const expected = await apiAll(filters);
  assert.ok(expected.length > 0);

  // CSV, really downloaded by the browser.
  let download = page.waitForEvent('download');
  await page.click('#download-link');
  let file = await download;
  assert.match(file.suggestedFilename(), /^audit-log-\d{4}-\d{2}-\d{2}\.csv$/);
  const csvPath = path.join(ARTIFACTS, 'export.csv');
  await file.saveAs(csvPath);
  const csv = parseCsv(readFileSync(csvPath, 'utf8'));
  assert.deepEqual(csv[0], chosen);
  const csvRows = csv.slice(1).filter((r) => r.length > 1);
  assert.equal(csvRows.length, expected.length);
  assert.deepEqual(csvRows.map((r) => r[0]), expected.map((e) => e.id));
  assert.ok(csvRows.every((r) => r[4] === 'Model' && r[6] === 'allow'));
  await page.waitForSelector('#download-dialog', { state: 'hidden' });

  // JSON.
  await page.click('#download-button');
  await page.check('#download-dialog input[value="json"]');
  assert.equal(await page.textContent('#download-link'), 'Download JSON');
  download = page.waitForEvent('download');
  await page.click('#download-link');
  file = await download;
  assert.match(file.suggestedFilename(), /\.json$/);
  const jsonPath = path.join(ARTIFACTS, 'export.json');
  await file.saveAs(jsonPath);
  const events = JSON.parse(readFileSync(jsonPath, 'utf8'));
  assert.equal(events.length, expected.length);
  for (const event of events) assert.deepEqual(Object.keys(event), chosen);
  assert.deepEqual(events.map((e) => e.id), expected.map((e) => e.id));
  assert.deepEqual(events[0], Object.fromEntries(chosen.map((k) => [k, expected[0][k]])));

  // Both downloads were recorded by the log itself, with these filters.
  const recorded = await waitFor(async () => {
    const items = (await api('admin/audit/events?category=Audit%20Log&action=download&limit=10')).body.items;
    return items.length >= 2 ? items : null;
  }, 'the downloads in the log');
  assert.deepEqual(recorded[0].attributes.columns, chosen);
  assert.deepEqual(recorded[0].attributes.filters.category, ['Model']);
});

test('a viewer without the export permission cannot open the download', async () => {
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=erin`);
  await p.waitForSelector('#log-body tr');
  // Disabled, yet focusable, with its reason for screen readers and a word when pressed.
  assert.equal(await p.getAttribute('#download-button', 'aria-disabled'), 'true');
  assert.match(await p.getAttribute('#download-button', 'title'), /export permission/);
  const described = await p.getAttribute('#download-button', 'aria-describedby');
  assert.match(await p.textContent(`#${described}`), /do not hold the audit export permission/);
  await p.focus('#download-button');
  assert.equal(await p.evaluate(() => document.activeElement.id), 'download-button');
  await p.keyboard.press('Enter');
  await p.waitForFunction(() => /export permission/.test(document.querySelector('#toast').textContent));
  assert.equal(await p.locator('#download-dialog[open]').count(), 0);
  await ctx.close();
});

test('401 and 403 from the API show a clear message, not a broken page', async () => {
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=alice`);
  await p.waitForSelector('#log-body tr');
  const origin = new URL(BASE).origin;
  expectConsoleErrors = true;
  try {
    // The session now belongs to bob, who lacks the audit permission.
    await ctx.addCookies([{ name: 'session', value: 'bob-token', url: origin }]);
    await p.selectOption('#f-range', '7d');
    await p.waitForSelector('#notice:not([hidden])');
    assert.equal(await p.getAttribute('#notice', 'data-status'), '403');
    assert.match(await p.textContent('#notice h2'), /You lack the audit permission/);
    assert.equal(await p.isVisible('#log-table'), false);
    await screenshot('activity-log-403', p);
    // Signed out altogether.
    await ctx.clearCookies();
    const signedOutResponse = await p.goto(`${LOG}?range=7d`);
    assert.equal(signedOutResponse.status(), 401);
    const signedOut = await p.textContent('h1');
    assert.match(signedOut, /Sign in to see the activity log/);
    // Styled like the page (its inline style allowed by hash), with the demo's sign-in link.
    assert.equal(await p.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(246, 247, 249)');
    assert.equal(await p.evaluate(() => getComputedStyle(document.querySelector('.notice')).borderLeftWidth), '4px');
    assert.equal(await p.getAttribute('#sign-in', 'href'), '/login');
    await screenshot('activity-log-401-page', p);
    await p.click('#sign-in');
    await p.waitForSelector('a[href="/login?as=olga"], a[href="/login?as=alice"]');
    assert.equal(new URL(p.url()).pathname, '/login');
    // bob opening the page directly gets the server's HTML answer.
    await ctx.addCookies([{ name: 'session', value: 'bob-token', url: origin }]);
    const response = await p.goto(LOG);
    assert.equal(response.status(), 403);
    assert.match(await p.textContent('h1'), /You cannot see the activity log/);
    assert.match(await p.textContent('body'), /you do not hold the audit permission/);
    assert.match(await p.textContent('#sign-in'), /Sign in as someone else/);
    await screenshot('activity-log-403-page', p);
    // A page already open when the session ends says so on its next request.
    await p.goto(`${BASE}login?as=alice`);
    await p.waitForSelector('#log-body tr');
    await ctx.clearCookies();
    await p.click('#multi-status');
    await p.click('input[data-filter="status"][value="deny"]');
    await p.waitForSelector('#notice:not([hidden])');
    assert.equal(await p.getAttribute('#notice', 'data-status'), '401');
    assert.match(await p.textContent('#notice h2'), /Sign in/);
    assert.equal(await p.getAttribute('#notice #sign-in', 'href'), '/login');
  } finally {
    expectConsoleErrors = false;
    await ctx.close();
  }
});

test('keyboard: every control is labelled, arrows move between rows', async () => {
  await page.goto(LOG);
  await page.waitForSelector('#log-body tr');
  await settled();
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('button, input, select, a[href], [tabindex="0"]:not(tr)')]
    .filter((n) => n.offsetParent !== null || n.closest('dialog'))
    .filter((n) => {
      const name = n.getAttribute('aria-label') || (n.labels && [...n.labels].map((l) => l.textContent).join('')) || n.textContent;
      return !name || !name.trim();
    }).map((n) => n.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, []);
  await page.focus('#log-body tr:first-child');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  const ids = await shownIds();
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[2]);
  await page.keyboard.press(' ');
  await page.waitForSelector('#detail:not([hidden])');
  assert.equal(await page.getAttribute('#detail', 'data-id'), ids[2]);
  await page.keyboard.press('Escape');
  // Multi-select popovers open from the keyboard and close with Escape.
  await page.focus('#multi-action');
  await page.keyboard.press('Enter');
  assert.equal(await page.getAttribute('#multi-action', 'aria-expanded'), 'true');
  await page.keyboard.press('Escape');
  assert.equal(await page.getAttribute('#multi-action', 'aria-expanded'), 'false');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'multi-action');
});

test('keyboard: the table is one Tab stop with a roving row, focus survives Load more', async () => {
  await page.evaluate(() => localStorage.clear());
  await page.goto(LOG);
  await page.waitForSelector('#log-body tr');
  await settled();
  const ids = await shownIds();
  // One row, the first, is in the Tab order; every other row is reachable by arrows only.
  assert.deepEqual(await page.$$eval('#log-body tr[tabindex="0"]', (rows) => rows.map((r) => r.dataset.id)), [ids[0]]);
  assert.equal(await page.locator('#log-body tr[tabindex="-1"]').count(), ids.length - 1);
  // Tab from the last filter control reaches the chart (one stop), then that row; one more
  // Tab leaves the table.
  await page.focus('#multi-user');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.closest('#chart') !== null), true);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[0]);
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[2]);
  assert.deepEqual(await page.$$eval('#log-body tr[tabindex="0"]', (rows) => rows.map((r) => r.dataset.id)), [ids[2]]);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'load-more');
  // Shift+Tab comes back to the row last used, not the first.
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[2]);
  await page.keyboard.press('End');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[ids.length - 1]);
  // Load more from the keyboard: the focus stays on the button, and the rows arrive.
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'load-more');
  await eventsRequest(() => page.keyboard.press('Enter'));
  assert.equal((await shownIds()).length, 200);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'load-more');
  assert.equal(await page.locator('#log-body tr[tabindex="0"]').count(), 1);
});

test('windowed rendering: hundreds of loaded events, a window of rows in the page, keyboard and scroll reach them all', async () => {
  const ctx = await newContext();
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=olga`);
  await p.waitForSelector('#log-body tr');
  await settled(p);
  const expected = (await api('admin/audit/events?limit=400', 'olga-token')).body.items.map((e) => e.id);
  assert.equal(expected.length, 400, 'the demo has 400 events for olga');
  for (let i = 0; i < 3; i += 1) await eventsRequest(() => p.click('#load-more'), p);
  assert.match(await p.textContent('#result-count'), / · 400 shown$/);
  const rendered = () => p.$$eval('#log-body tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
  let ids = await rendered();
  assert.ok(ids.length <= 120, `${ids.length} rows in the page`);
  assert.ok(await p.locator('#log-body tr.spacer').count() >= 1);
  // Whatever is rendered is a contiguous slice of the list, in order.
  const slice = (rows) => {
    const start = expected.indexOf(rows[0]);
    assert.ok(start >= 0);
    assert.deepEqual(rows, expected.slice(start, start + rows.length));
    return start;
  };
  slice(ids);
  // The keyboard walks the whole list: End and Home, arrows across the window's edge.
  await p.focus('#log-body tr[tabindex="0"]');
  await p.keyboard.press('Home');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.id), expected[0]);
  await p.keyboard.press('End');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.id), expected[399]);
  assert.equal(await p.locator('#log-body tr[tabindex="0"]').count(), 1);
  for (let i = 0; i < 3; i += 1) await p.keyboard.press('ArrowUp');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.id), expected[396]);
  await p.keyboard.press('Home');
  for (let i = 0; i < 130; i += 1) await p.keyboard.press('ArrowDown');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.id), expected[130]);
  slice(await rendered());
  // Scrolling the table box to its middle renders the rows there.
  await p.evaluate(() => { const wrap = document.querySelector('#table-wrap'); wrap.scrollTop = wrap.scrollHeight / 2; });
  await p.waitForFunction(() => Number(document.querySelector('#log-body').dataset.windowStart) > 120);
  ids = await rendered();
  const start = slice(ids);
  assert.ok(start > 120 && start < 300, `window starts at ${start}`);
  const visible = await p.evaluate(() => {
    const wrap = document.querySelector('#table-wrap').getBoundingClientRect();
    return [...document.querySelectorAll('#log-body tr[data-id]')].filter((r) => {
      const box = r.getBoundingClientRect();
      return box.bottom > wrap.top + 60 && box.top < wrap.bottom;
    }).length;
  });
  assert.ok(visible > 5, 'rows are in view, not a blank spacer');
  await screenshot('activity-log-windowed', p);
  await ctx.close();
});

test('layout at 1280 px: sticky column headers, nothing clipped, the panel beside the table', async () => {
  await page.goto(LOG);
  await page.waitForSelector('#log-body tr');
  await settled();
  const layout = () => page.evaluate(() => {
    const wrap = document.querySelector('#table-wrap').getBoundingClientRect();
    const heads = [...document.querySelectorAll('#log-head th')];
    return {
      pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
      tableOverflow: document.querySelector('#table-wrap').scrollWidth - document.querySelector('#table-wrap').clientWidth,
      truncatedHeads: heads.filter((th) => th.scrollWidth > th.clientWidth).map((th) => th.dataset.column),
      lastHeadRight: heads[heads.length - 1].getBoundingClientRect().right,
      wrapRight: wrap.right,
      buttonsVisible: [...document.querySelectorAll('.topbar-actions .button')].filter((b) => b.offsetParent)
        .every((b) => { const r = b.getBoundingClientRect(); return r.left >= 0 && r.right <= window.innerWidth; }),
    };
  });
  const wide = await layout();
  assert.ok(wide.pageOverflow <= 0, `page overflows by ${wide.pageOverflow}px`);
  assert.ok(wide.tableOverflow <= 0, `table overflows its box by ${wide.tableOverflow}px`);
  assert.deepEqual(wide.truncatedHeads, []);
  assert.ok(wide.lastHeadRight <= wide.wrapRight + 0.5);
  assert.ok(wide.buttonsVisible);
  // Scrolled through the rows, the column headers stay at the top of the table's box.
  const headTop = () => page.evaluate(() => document.querySelector('#log-head th').getBoundingClientRect().top);
  const wrapTop = await page.evaluate(() => document.querySelector('#table-wrap').getBoundingClientRect().top);
  await page.evaluate(() => { document.querySelector('#table-wrap').scrollTop = 1500; });
  assert.ok(Math.abs((await headTop()) - wrapTop) <= 1.5, 'the header row sticks');
  assert.ok(await page.evaluate(() => document.querySelector('#table-wrap').scrollTop) > 1000, 'the rows scrolled');
  await screenshot('activity-log-sticky-header');
  await page.evaluate(() => { document.querySelector('#table-wrap').scrollTop = 0; });
  // With the panel open the table shrinks beside it (scrolling sideways in its box), never under it.
  await page.click('#log-body tr:first-child');
  await page.waitForSelector('#detail:not([hidden])');
  const withPanel = await page.evaluate(() => ({
    wrapRight: document.querySelector('#table-wrap').getBoundingClientRect().right,
    panelLeft: document.querySelector('#detail').getBoundingClientRect().left,
    pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
  }));
  assert.ok(withPanel.wrapRight <= withPanel.panelLeft + 0.5, JSON.stringify(withPanel));
  assert.ok(withPanel.pageOverflow <= 0);
  assert.ok(await layout().then((l) => l.buttonsVisible), 'the top bar buttons stay visible');
  await page.keyboard.press('Escape');
});

test('phone width: no sideways scrolling, filters fold away, the panel fills the screen', async () => {
  const ctx = await newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const p = await newPage(ctx);
  await p.goto(`${BASE}login?as=alice`);
  await p.waitForSelector('#log-body tr');
  await settled(p);
  assert.equal(await p.isVisible('#filters'), false);
  assert.ok(await p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no horizontal overflow');
  await p.screenshot({ path: path.join(ARTIFACTS, 'activity-log-phone.png') });
  await p.click('#filters-toggle');
  assert.equal(await p.isVisible('#filters'), true);
  const params = await eventsRequest(() => p.fill('#f-resource-name', 'model'), p);
  assert.equal(params.get('resource_name'), 'model');
  assert.ok(await p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
  await p.screenshot({ path: path.join(ARTIFACTS, 'activity-log-phone-filters.png') });
  await p.click('#log-body tr:first-child');
  await p.waitForSelector('#detail:not([hidden])');
  const box = await p.locator('#detail').boundingBox();
  assert.ok(box.width >= 389, `panel width ${box.width}`);
  await p.screenshot({ path: path.join(ARTIFACTS, 'activity-log-phone-detail.png') });
  await ctx.close();
});

test('no page reported a CSP violation, a script error or an unexpected console error', () => {
  assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------------------------------
// Dates in the test's zone, computed independently of the page's code.

/** The UTC instant (ISO, milliseconds) of 00:00 on `day` (YYYY-MM-DD) in ZONE. */
function localMidnight(day) {
  const [y, m, d] = day.split('-').map(Number);
  const guess = Date.UTC(y, m - 1, d);
  // The zone's offset at that moment, from how Intl writes the instant there.
  const offsetAt = (instant) => {
    const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
      timeZone: ZONE, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).formatToParts(new Date(instant)).map((p) => [p.type, p.value]));
    return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second) - instant;
  };
  let instant = guess - offsetAt(guess);
  instant = guess - offsetAt(instant);
  return new Date(instant).toISOString();
}

function nextDay(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
}
