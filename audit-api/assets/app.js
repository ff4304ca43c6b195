// The Activity log page. Plain ES module, no dependencies, no build step.
//
// Safety rule for this file: event data only ever reaches the DOM as text (textContent,
// text nodes, setAttribute of plain attributes). Nothing here assigns innerHTML, so a
// resource named `<img src=x onerror=alert(1)>` is shown as those characters.
//
// Every URL is relative ("events", "facets", "export"), resolved against the page's own URL
// (or its <base href>), so the router works under any mount prefix.

'use strict';

// ---------------------------------------------------------------------------------------
// Columns: one per event field, named as in the JSON contract, so the export can use the
// same list.

const COLUMNS = [
  { key: 'occurred_at', label: 'Time' },
  { key: 'actor_email', label: 'User' },
  { key: 'action', label: 'Action' },
  { key: 'category', label: 'Category' },
  { key: 'resource_name', label: 'Resource' },
  { key: 'outcome', label: 'Outcome' },
  { key: 'request_id', label: 'Request ID' },
  { key: 'resource_id', label: 'Resource ID' },
  { key: 'actor_name', label: 'User name' },
  { key: 'actor_id', label: 'User ID' },
  { key: 'tenant', label: 'Tenant' },
  { key: 'reason', label: 'Reason' },
  { key: 'method', label: 'Method' },
  { key: 'path', label: 'Path' },
  { key: 'route', label: 'Route' },
  { key: 'status', label: 'HTTP status' },
  { key: 'duration_ms', label: 'Duration' },
  { key: 'client_ip', label: 'Client IP' },
  { key: 'user_agent', label: 'User agent' },
  { key: 'attributes', label: 'Details' },
  { key: 'id', label: 'Event ID' },
];
const COLUMN_BY_KEY = new Map(COLUMNS.map((c) => [c.key, c]));
const DEFAULT_COLUMNS = ['occurred_at', 'actor_email', 'action', 'category', 'resource_name', 'outcome', 'request_id'];
const COLUMNS_STORAGE_KEY = 'audit-log.columns.v1';
const PAGE_SIZE = 100;

// Filters: the page's query string uses the API's parameter names, plus `range` (a preset)
// and `event` (the entry open in the detail panel). `from`/`to` are local calendar days, `to`
// inclusive; they are turned into instants for the API.
const MULTI = [
  { key: 'category', label: 'Category', plural: 'categories' },
  { key: 'action', label: 'Action', plural: 'actions' },
  { key: 'status', label: 'Outcome', plural: 'outcomes' },
  { key: 'user', label: 'User', plural: 'users' },
];
const MULTI_KEYS = ['category', 'action', 'status', 'user', 'tenant'];
const SINGLE_KEYS = ['request_id', 'resource_id', 'resource_name'];
const RANGES = { '24h': 24 * 3600e3, '7d': 7 * 24 * 3600e3, '30d': 30 * 24 * 3600e3 };
const RANGE_LABELS = { '24h': 'Last 24 hours', '7d': 'Last 7 days', '30d': 'Last 30 days' };
const FILTER_LABELS = {
  category: 'Category', action: 'Action', status: 'Outcome', user: 'User', tenant: 'Tenant',
  request_id: 'Request ID', resource_id: 'Resource ID', resource_name: 'Resource name',
};

// ---------------------------------------------------------------------------------------
// Small DOM helpers.

const $ = (id) => document.getElementById(id);

/** Creates an element; string children become text nodes, never markup. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function meta(name) {
  const node = document.querySelector(`meta[name="${name}"]`);
  return node ? node.getAttribute('content') || '' : '';
}

function humanize(snake) {
  const text = String(snake).replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function outcomeLabel(outcome) {
  return outcome === 'allow' ? 'Allowed' : outcome === 'deny' ? 'Denied' : String(outcome);
}

let toastTimer = 0;
function toast(message) {
  const node = $('toast');
  node.textContent = message;
  node.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => node.classList.remove('show'), 2600);
}

// ---------------------------------------------------------------------------------------
// Time: shown in the viewer's zone, which is named.

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
});
const longTimeFormat = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'long', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
});

function zoneOffset(date) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? '−' : '+';
  const abs = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

function relativeTime(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const steps = [['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of steps) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.round(seconds / size), unit);
  }
  return rtf.format(seconds, 'second');
}

/** `YYYY-MM-DD` (a local calendar day) → the Date of its local midnight, or null. */
function localDay(text) {
  if (!isDay(text)) return null;
  const [y, m, d] = text.split('-').map(Number);
  const date = new Date(2000, m - 1, d);
  date.setFullYear(y);
  return Number.isNaN(date.getTime()) ? null : date;
}

function daysInMonth(year, month) {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Whether `text` is a real calendar day `YYYY-MM-DD` (no roll-over: 2026-02-30 is not). */
function isDay(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || '');
  if (!match) return false;
  const [y, m, d] = match.slice(1).map(Number);
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m);
}

const INSTANT = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

/** Whether `text` is a full RFC 3339 instant with a valid date, time of day and offset. */
function isInstant(text) {
  const match = INSTANT.exec(text || '');
  if (!match) return false;
  const [y, m, d, hh, mm, ss] = match.slice(1, 7).map(Number);
  const [oh, om] = [match[8] ? Number(match[8]) : 0, match[9] ? Number(match[9]) : 0];
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m)
    && hh <= 23 && mm <= 59 && ss <= 59 && oh <= 23 && om <= 59
    && !Number.isNaN(Date.parse(text));
}

/** The instant (ms) a page `from` value starts at: a local day's midnight, or the instant. */
function fromInstant(text) {
  if (isDay(text)) return localDay(text).getTime();
  return Date.parse(text);
}

/** The instant (ms) a page `to` value ends at (exclusive): after an inclusive local day, or the instant. */
function toInstant(text) {
  if (isDay(text)) {
    const next = localDay(text);
    next.setDate(next.getDate() + 1);
    return next.getTime();
  }
  return Date.parse(text);
}

// ---------------------------------------------------------------------------------------
// Filter state <-> page URL <-> API query.
//
// The page applies exactly what its URL says, or nothing: a parameter it does not know, a
// value it cannot read, or a repeat of a single-valued one stops it with a banner naming that
// parameter, and no query runs (a typo must not widen an audit query, here as in the API).

function emptyFilters() {
  return {
    category: [], action: [], status: [], user: [], tenant: [],
    request_id: '', resource_id: '', resource_name: '', range: '', from: '', to: '',
  };
}

const PAGE_ONLY_KEYS = ['range', 'from', 'to', 'event', 'columns'];

/** A parameter of the page's URL that cannot be applied. */
class UrlError extends Error {
  constructor(parameter, message) {
    super(message);
    this.parameter = parameter;
  }
}

function shortened(text) {
  const value = String(text);
  return value.length > 64 ? `${value.slice(0, 63)}…` : value;
}

/** `columns=a,b,c` → the column keys, or a UrlError. */
function parseColumns(text) {
  const keys = text.split(',').map((key) => key.trim());
  const seen = new Set();
  for (const key of keys) {
    if (!key) throw new UrlError('columns', 'Column names are separated by single commas.');
    if (!COLUMN_BY_KEY.has(key)) {
      throw new UrlError('columns', `“${shortened(key)}” is not a column. Known columns: ${COLUMNS.map((c) => c.key).join(', ')}.`);
    }
    if (seen.has(key)) throw new UrlError('columns', `The column “${key}” is listed twice.`);
    seen.add(key);
  }
  return keys;
}

const DATE_HELP = 'Use a day (YYYY-MM-DD, in your time zone) or a full RFC 3339 instant such as 2026-03-01T09:30:00Z.';

function checkTime(key, value) {
  if (isDay(value) || isInstant(value)) return;
  const hint = /\s\d{2}:\d{2}$/.test(value) ? ' A “+” in an address stands for a space: write the offset as %2B01:00, or use Z.' : '';
  throw new UrlError(key, `“${shortened(value)}” is not a valid date or instant. ${DATE_HELP}${hint}`);
}

/** Parses `search` (the page's query string) strictly: `{filters, eventId, columns}`, or throws a UrlError. */
function parseUrl(search) {
  const params = new URLSearchParams(search);
  const filters = emptyFilters();
  let eventId = '';
  let columns = null;
  const seen = new Set();
  for (const [name, value] of params) {
    const key = name === 'resource_type' ? 'category' : name;
    const multi = MULTI_KEYS.includes(key);
    if (!multi && !SINGLE_KEYS.includes(key) && !PAGE_ONLY_KEYS.includes(key)) {
      const known = [...MULTI_KEYS, 'resource_type', ...SINGLE_KEYS, ...PAGE_ONLY_KEYS];
      throw new UrlError(shortened(name), `The activity log has no parameter “${shortened(name)}”. Known parameters: ${known.join(', ')}.`);
    }
    if (!multi && seen.has(key)) throw new UrlError(name, `“${name}” may be given only once.`);
    seen.add(key);
    if (value === '') throw new UrlError(name, `“${name}” has no value; leave the parameter out instead.`);
    if (multi) {
      if (key === 'status' && value !== 'allow' && value !== 'deny') {
        throw new UrlError(name, `“${shortened(value)}” is not an outcome: use allow or deny.`);
      }
      if (key === 'action' && !/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(value)) {
        throw new UrlError(name, `“${shortened(value)}” is not an action name (snake_case, such as create or change_model).`);
      }
      if (!filters[key].includes(value)) filters[key].push(value);
    } else if (SINGLE_KEYS.includes(key)) {
      filters[key] = value;
    } else if (key === 'range') {
      if (!Object.hasOwn(RANGES, value)) {
        throw new UrlError('range', `“${shortened(value)}” is not a date range: use ${Object.keys(RANGES).join(', ')}, or from and to.`);
      }
      filters.range = value;
    } else if (key === 'from' || key === 'to') {
      checkTime(key, value);
      filters[key] = value;
    } else if (key === 'event') {
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
        throw new UrlError('event', `“${shortened(value)}” is not an event ID.`);
      }
      eventId = value;
    } else if (key === 'columns') {
      columns = parseColumns(value);
    }
  }
  if (filters.range && (filters.from || filters.to)) {
    throw new UrlError('range', 'A range preset and from/to cannot be combined: give one or the other.');
  }
  if (filters.from || filters.to) filters.range = 'custom';
  if (filters.from && filters.to && fromInstant(filters.from) >= toInstant(filters.to)) {
    throw new UrlError('from', `The start (${filters.from}) is not before the end (${filters.to}).`);
  }
  return { filters, eventId, columns };
}

function unique(values) {
  return [...new Set(values)];
}

/** Whether the chosen columns are the defaults (then the URL need not name them). */
function defaultColumns(columns) {
  return columns.length === DEFAULT_COLUMNS.length && columns.every((key, i) => key === DEFAULT_COLUMNS[i]);
}

/** The page's own query string for `filters` (and the open event, and the columns). */
function pageQuery(filters, eventId) {
  const params = new URLSearchParams();
  for (const key of MULTI_KEYS) for (const value of filters[key]) params.append(key, value);
  for (const key of SINGLE_KEYS) if (filters[key]) params.set(key, filters[key]);
  if (filters.range === 'custom') {
    if (filters.from) params.set('from', filters.from);
    if (filters.to) params.set('to', filters.to);
  } else if (filters.range) {
    params.set('range', filters.range);
  }
  if (!defaultColumns(state.columns)) params.set('columns', state.columns.join(','));
  if (eventId) params.set('event', eventId);
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The API's filter parameters for `filters`; presets are resolved against `now`. */
function apiParams(filters, now) {
  const params = new URLSearchParams();
  for (const key of MULTI_KEYS) for (const value of filters[key]) params.append(key, value);
  for (const key of SINGLE_KEYS) if (filters[key]) params.set(key, filters[key]);
  if (filters.range === 'custom') {
    // A day is local and its "to" inclusive: sent as local midnights (the API's `to` is
    // exclusive). A full instant is sent exactly as the URL gave it.
    if (filters.from) params.set('from', isDay(filters.from) ? new Date(fromInstant(filters.from)).toISOString() : filters.from);
    if (filters.to) params.set('to', isDay(filters.to) ? new Date(toInstant(filters.to)).toISOString() : filters.to);
  } else if (filters.range) {
    params.set('from', new Date(now - RANGES[filters.range]).toISOString());
  }
  return params;
}

function activeFilterCount(filters) {
  let count = 0;
  for (const key of MULTI_KEYS) count += filters[key].length ? 1 : 0;
  for (const key of SINGLE_KEYS) count += filters[key] ? 1 : 0;
  if (filters.range && (filters.range !== 'custom' || filters.from || filters.to)) count += 1;
  return count;
}

// ---------------------------------------------------------------------------------------
// HTTP.

class ApiError extends Error {
  constructor(status, code, message, parameter) {
    super(message);
    this.status = status;
    this.code = code;
    this.parameter = parameter || '';
  }
}

async function getJson(url, signal) {
  let response;
  try {
    response = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' }, signal });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body && typeof body.message === 'string' ? body.message : `The server answered ${response.status}.`;
    throw new ApiError(response.status, body && body.error, message, body && typeof body.parameter === 'string' ? body.parameter : '');
  }
  return body;
}

// ---------------------------------------------------------------------------------------
// Application state.

const state = {
  filters: emptyFilters(),
  columns: loadColumns(),
  events: [],
  nextCursor: null,
  /** The API parameters of the list shown, presets resolved once so pages stay consistent. */
  query: new URLSearchParams(),
  loading: false,
  controller: null,
  facets: { categories: [], actions: [], users: [], outcomes: ['allow', 'deny'] },
  selectedId: '',
  /** The row holding the table's one Tab stop. */
  activeId: '',
  blocked: false,
  /** `{count, exact}` of the list's filters, from `/events`. */
  total: null,
  /** Per menu and value, `{count, exact}` for the list's filters, from `/facets`. */
  counts: null,
  countsController: null,
  chartController: null,
  /** The rendered slice `{start, end}` of `events` when windowed, else null. */
  window: null,
  windowFrame: 0,
  rowHeight: 0,
  facetsLoaded: false,
  /** The page's URL could not be applied: the banner is shown, nothing is queried. */
  urlError: false,
};

function loadColumns() {
  try {
    const saved = JSON.parse(localStorage.getItem(COLUMNS_STORAGE_KEY) || 'null');
    if (Array.isArray(saved)) {
      const valid = unique(saved.filter((key) => typeof key === 'string' && COLUMN_BY_KEY.has(key)));
      if (valid.length) return valid;
    }
  } catch {
    // Unreadable or blocked storage: the defaults serve.
  }
  return [...DEFAULT_COLUMNS];
}

function saveColumns(columns) {
  try {
    localStorage.setItem(COLUMNS_STORAGE_KEY, JSON.stringify(columns));
  } catch {
    toast('Your browser would not store the columns; they apply to this visit only.');
  }
}

// ---------------------------------------------------------------------------------------
// Rendering cells. Each returns a Node built from text.

function muted(text) {
  return el('span', { class: 'muted' }, text);
}

function formatValue(value) {
  if (value === null || value === undefined) return 'empty';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

function changesOf(event) {
  const changes = event.attributes && event.attributes.changes;
  return changes && typeof changes === 'object' && !Array.isArray(changes) ? changes : null;
}

function attributesSummary(attributes) {
  if (!attributes || typeof attributes !== 'object') return '';
  const parts = [];
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'changes' && value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [field, pair] of Object.entries(value)) {
        if (Array.isArray(pair) && pair.length === 2) parts.push(`${field}: ${formatValue(pair[0])} → ${formatValue(pair[1])}`);
        else parts.push(`${field}: ${formatValue(pair)}`);
      }
    } else {
      parts.push(`${key}: ${formatValue(value)}`);
    }
  }
  const text = parts.join(' · ');
  return text.length > 140 ? `${text.slice(0, 139)}…` : text;
}

function renderCell(key, event) {
  const value = event[key];
  switch (key) {
    case 'occurred_at': {
      const date = new Date(value);
      return el('time', { datetime: value, title: `${value} (UTC)` }, Number.isNaN(date.getTime()) ? String(value) : timeFormat.format(date));
    }
    case 'actor_email':
      if (value) return el('span', { title: event.actor_name || '' }, value);
      if (event.actor_id) return document.createTextNode(event.actor_id);
      return muted('Not signed in');
    case 'action':
      return el('span', { class: 'pill', title: value }, humanize(value));
    case 'outcome':
      return el('span', { class: `badge ${value === 'deny' ? 'deny' : 'allow'}` }, outcomeLabel(value));
    case 'status':
      return el('span', { class: value >= 400 ? 'status-bad' : '' }, String(value));
    case 'duration_ms':
      return document.createTextNode(typeof value === 'number' ? `${value < 10 ? value.toFixed(1) : Math.round(value)} ms` : '');
    case 'attributes': {
      const summary = attributesSummary(value);
      return summary ? el('span', { class: 'attr-summary', title: summary }, summary) : muted('—');
    }
    case 'request_id':
    case 'id':
    case 'resource_id':
      return value ? el('code', {}, value) : muted('—');
    default:
      return value === null || value === undefined || value === '' ? muted('—') : document.createTextNode(String(value));
  }
}

function renderHead() {
  const head = $('log-head');
  head.replaceChildren(...state.columns.map((key) => {
    const label = key === 'occurred_at' ? `Time (${ZONE})` : COLUMN_BY_KEY.get(key).label;
    return el('th', { scope: 'col', 'data-column': key }, label);
  }));
}

/**
 * The table is one Tab stop: only the current row (roving tabindex) has tabindex 0, the
 * others -1; the arrow keys, Home and End move it.
 */
function rovingRow() {
  const body = $('log-body');
  return body.querySelector('tr[tabindex="0"]') || body.querySelector('tr[data-id]') || null;
}

function setRovingRow(row, focus) {
  if (!row) return;
  for (const other of $('log-body').querySelectorAll('tr[tabindex="0"]')) if (other !== row) other.tabIndex = -1;
  row.tabIndex = 0;
  state.activeId = row.dataset.id;
  if (focus) row.focus();
}

function renderRow(event) {
  const row = el('tr', {
    tabindex: '-1',
    'data-id': event.id,
    class: event.outcome === 'deny' ? 'is-deny' : '',
    'aria-selected': event.id === state.selectedId ? 'true' : 'false',
  });
  for (const key of state.columns) {
    row.append(el('td', { 'data-column': key, 'data-label': COLUMN_BY_KEY.get(key).label }, renderCell(key, event)));
  }
  return row;
}

// Windowed rendering: past WINDOW_THRESHOLD loaded events only about WINDOW_ROWS rows
// around the table box's scroll position are in the DOM, between two spacer rows sized to
// the rows left out (heights set through the CSSOM, which the CSP allows), so thousands of
// loaded events scroll as lightly as a hundred.
const WINDOW_THRESHOLD = 300;
const WINDOW_ROWS = 120;

function windowed() {
  return state.events.length > WINDOW_THRESHOLD;
}

/** The height of one data row, measured (rows are about this tall; names may wrap). */
function rowHeight() {
  const row = $('log-body').querySelector('tr[data-id]');
  const height = row ? row.getBoundingClientRect().height : 0;
  if (height > 0) state.rowHeight = height;
  return state.rowHeight || 41;
}

function spacer(rows, height) {
  const cell = el('td', { colspan: String(state.columns.length) });
  const tr = el('tr', { class: 'spacer', 'aria-hidden': 'true' }, cell);
  cell.style.height = `${Math.round(rows * height)}px`;
  return tr;
}

/** The first event index to render for the table box's current scroll position. */
function windowStartForScroll() {
  const wrap = $('table-wrap');
  const head = $('log-head').getBoundingClientRect().height || 0;
  const first = Math.floor(Math.max(0, wrap.scrollTop - head) / rowHeight());
  return Math.max(0, Math.min(first - Math.floor(WINDOW_ROWS / 3), state.events.length - WINDOW_ROWS));
}

/** Renders events `[start, start + WINDOW_ROWS)` between spacers; keeps the focused row focused. */
function renderWindow(start) {
  const body = $('log-body');
  const focusedId = document.activeElement && body.contains(document.activeElement) ? document.activeElement.dataset.id : '';
  const height = rowHeight();
  const count = state.events.length;
  const from = Math.max(0, Math.min(start, Math.max(0, count - WINDOW_ROWS)));
  const to = Math.min(count, from + WINDOW_ROWS);
  state.window = { start: from, end: to };
  body.replaceChildren(
    ...(from > 0 ? [spacer(from, height)] : []),
    ...state.events.slice(from, to).map(renderRow),
    ...(to < count ? [spacer(count - to, height)] : []),
  );
  body.dataset.windowStart = String(from);
  const current = state.activeId && body.querySelector(`tr[data-id="${CSS.escape(state.activeId)}"]`);
  setRovingRow(current || body.querySelector('tr[data-id]'), false);
  if (focusedId) body.querySelector(`tr[data-id="${CSS.escape(focusedId)}"]`)?.focus({ preventScroll: true });
}

function renderRows() {
  const body = $('log-body');
  if (windowed()) {
    renderWindow(windowStartForScroll());
    return;
  }
  state.window = null;
  delete body.dataset.windowStart;
  body.replaceChildren(...state.events.map(renderRow));
  const current = state.activeId && [...body.rows].find((r) => r.dataset.id === state.activeId);
  setRovingRow(current || body.rows[0], false);
}

/** After a scroll of the table box: a new window once the view nears the rendered edge. */
function onTableScroll() {
  if (!windowed() || state.windowFrame) return;
  state.windowFrame = requestAnimationFrame(() => {
    state.windowFrame = 0;
    let start = windowStartForScroll();
    const current = state.window || { start: -1, end: -1 };
    // A focused row in view stays rendered (focusing it is what scrolled the box).
    const focused = document.activeElement;
    if (focused && focused.dataset && focused.dataset.id && $('log-body').contains(focused)) {
      const box = focused.getBoundingClientRect();
      const view = $('table-wrap').getBoundingClientRect();
      const index = state.events.findIndex((e) => e.id === focused.dataset.id);
      if (box.bottom > view.top && box.top < view.bottom && (index < start || index >= start + WINDOW_ROWS)) {
        start = Math.max(0, index - Math.floor(WINDOW_ROWS / 2));
      }
    }
    if (Math.abs(start - current.start) >= WINDOW_ROWS / 4) renderWindow(start);
  });
}

/** Moves the table's focus to event `index`, rendering its window first when needed. */
function focusEventAt(index) {
  const event = state.events[index];
  if (!event) return;
  const body = $('log-body');
  let row = body.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`);
  if (!row && windowed()) {
    renderWindow(index - Math.floor(WINDOW_ROWS / 2));
    row = body.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`);
  }
  if (row) setRovingRow(row, true);
}

/** A bounded count as text: `515`, or `10,000+` when counting stopped at the bound. */
function countText(total) {
  return `${Number(total.count).toLocaleString()}${total.exact ? '' : '+'}`;
}

function renderSummary() {
  const count = state.events.length;
  const total = state.total;
  const node = $('result-count');
  let text = '';
  if (total && typeof total.count === 'number') {
    const noun = total.count === 1 && total.exact ? 'event matches' : 'events match';
    text = `${countText(total)} ${noun}`;
    if (count > 0 && (count < total.count || !total.exact)) text += ` · ${count.toLocaleString()} shown`;
    node.dataset.total = String(total.count);
    node.dataset.exact = String(Boolean(total.exact));
  } else {
    if (count > 0) text = `${count.toLocaleString()} ${count === 1 ? 'event' : 'events'} shown${state.nextCursor ? ', more available' : ''}`;
    delete node.dataset.total;
    delete node.dataset.exact;
  }
  node.textContent = text;
  $('zone-note').textContent = `Times in ${ZONE} (${zoneOffset(new Date())})`;
}

function setTableState(kind, message, action) {
  const box = $('table-state');
  box.className = `table-state ${kind}`;
  box.dataset.state = kind;
  if (!kind) {
    box.replaceChildren();
    return;
  }
  const children = [];
  if (kind === 'loading') children.push(el('span', { class: 'spinner', 'aria-hidden': 'true' }));
  children.push(el('p', {}, message));
  if (action) children.push(el('button', { type: 'button', class: 'button', onclick: action.run }, action.label));
  box.replaceChildren(...children);
}

/** Replaces the page with a clear message when the API refuses the viewer (401/403). */
function showBlocked(error) {
  state.blocked = true;
  const signedOut = error.status === 401;
  const title = signedOut ? 'Sign in to see the activity log' : 'You lack the audit permission';
  const text = signedOut
    ? 'Your session has ended or you are signed out. Sign in again, then reload this page.'
    : 'You are signed in, but you do not hold the audit permission needed for this. Ask an administrator for it.';
  const notice = $('notice');
  notice.className = 'notice blocked';
  notice.dataset.status = String(error.status);
  const signIn = meta('audit-sign-in-url');
  notice.replaceChildren(
    el('h2', {}, title),
    el('p', {}, text),
    el('p', { class: 'muted' }, `The server said: ${error.message}`),
    el('div', { class: 'notice-actions' },
      signIn ? el('a', { class: 'button primary', id: 'sign-in', href: signIn }, signedOut ? 'Sign in' : 'Sign in as someone else') : null,
      el('button', { type: 'button', class: 'button', onclick: () => location.reload() }, 'Reload')),
  );
  notice.hidden = false;
  document.body.classList.add('is-blocked');
  closeDetail(false);
}

/**
 * Applies the page's URL: its filters, columns and open event, then loads the list. A URL
 * that cannot be applied exactly gets the banner instead, and nothing is queried. Returns
 * whether the URL was applied.
 */
function applyUrl() {
  let parsed;
  try {
    parsed = parseUrl(location.search);
  } catch (error) {
    if (!(error instanceof UrlError)) throw error;
    showUrlError(error.parameter, error.message);
    return false;
  }
  hideUrlError();
  state.filters = parsed.filters;
  state.columns = parsed.columns || loadColumns();
  // The URL names every non-default column choice, so a copied link reproduces the view.
  history.replaceState(null, '', pageQuery(state.filters, parsed.eventId) || location.pathname);
  renderHead();
  syncControls();
  buildMultiSelects();
  loadEvents({ fromUrl: true });
  if (parsed.eventId) openDetailById(parsed.eventId);
  return true;
}

/** The banner for an address the page will not apply: names the parameter, runs nothing. */
function showUrlError(parameter, message) {
  if (state.controller) state.controller.abort();
  state.controller = null;
  state.urlError = true;
  state.events = [];
  state.nextCursor = null;
  state.query = new URLSearchParams();
  $('log-body').replaceChildren();
  const notice = $('notice');
  notice.className = 'notice url-error';
  notice.dataset.kind = 'url';
  notice.dataset.parameter = parameter;
  delete notice.dataset.status;
  notice.replaceChildren(
    el('h2', {}, 'This address cannot be applied'),
    el('p', {}, 'Problem with the parameter ', el('code', { class: 'parameter' }, parameter), ': ', message),
    el('p', { class: 'muted' }, 'Nothing was searched. The activity log shows exactly what its address asks for, so a mistyped or unreadable filter cannot show more events than intended.'),
    el('a', { class: 'button', href: location.pathname, id: 'url-error-reset' }, 'Open the activity log without these parameters'),
  );
  notice.hidden = false;
  document.body.classList.add('is-blocked', 'is-url-error');
  closeDetail(false);
}

function hideUrlError() {
  if (!state.urlError) return;
  state.urlError = false;
  const notice = $('notice');
  notice.hidden = true;
  notice.replaceChildren();
  delete notice.dataset.kind;
  delete notice.dataset.parameter;
  document.body.classList.remove('is-blocked', 'is-url-error');
}

// ---------------------------------------------------------------------------------------
// Loading events.

async function loadEvents({ append = false, fromUrl = false } = {}) {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  if (!append) {
    state.query = apiParams(state.filters, Date.now());
    state.nextCursor = null;
    state.total = null;
    loadCounts();
    loadHistogram();
  }
  const params = new URLSearchParams(state.query);
  params.set('limit', String(PAGE_SIZE));
  if (append && state.nextCursor) params.set('cursor', state.nextCursor);
  state.loading = true;
  document.body.classList.add('is-loading');
  // Not `disabled`: a disabled button drops the keyboard focus to the page.
  $('load-more').setAttribute('aria-disabled', 'true');
  if (append) {
    $('load-more').textContent = 'Loading…';
  } else {
    setTableState('loading', 'Loading events…');
    $('log-table').setAttribute('aria-busy', 'true');
  }
  try {
    const page = await getJson(`events?${params}`, controller.signal);
    if (controller !== state.controller) return;
    const items = Array.isArray(page.items) ? page.items : [];
    state.events = append ? state.events.concat(items) : items;
    state.nextCursor = page.next_cursor || null;
    state.total = page.total && typeof page.total === 'object' ? page.total : null;
    if (append) {
      const firstNew = state.events.length - items.length;
      if (windowed()) {
        renderWindow(windowStartForScroll());
      } else {
        $('log-body').append(...items.map(renderRow));
      }
      // Focus stays on Load more while there is more; when it goes, on the first new row.
      if (!state.nextCursor && document.activeElement === $('load-more') && items.length) {
        focusEventAt(firstNew);
      }
    } else {
      renderRows();
    }
    if (state.events.length === 0) {
      const filtered = activeFilterCount(state.filters) > 0;
      setTableState('empty', filtered ? 'No events match these filters.' : 'No events recorded yet.',
        filtered ? { label: 'Clear all filters', run: clearFilters } : null);
    } else {
      setTableState('', '');
    }
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (error.status === 401 || error.status === 403) {
      showBlocked(error);
    } else if (error.status === 400 && fromUrl && error.parameter) {
      // The API refused what the address asked for: the same banner as the page's own checks.
      showUrlError(error.parameter, error.message);
    } else if (error.status === 400) {
      const at = error.parameter ? ` (parameter ${error.parameter})` : '';
      setTableState('error', `These filters cannot be used${at}: ${error.message}`, { label: 'Clear all filters', run: clearFilters });
    } else {
      setTableState('error', `Could not load events. ${error.message}`, { label: 'Try again', run: () => loadEvents({ append }) });
    }
  } finally {
    if (controller === state.controller) {
      state.loading = false;
      state.controller = null;
      document.body.classList.remove('is-loading');
      $('log-table').removeAttribute('aria-busy');
      const more = $('load-more');
      if (!state.nextCursor && document.activeElement === more) setRovingRow(rovingRow(), true);
      more.hidden = !state.nextCursor;
      more.removeAttribute('aria-disabled');
      more.textContent = 'Load more';
      renderSummary();
    }
  }
}

// ---------------------------------------------------------------------------------------
// The chart: allowed and denied events per hour or day (`/histogram`) for the list's
// filters. A bar narrows the list to its time range.

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === 'class') node.setAttribute('class', value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** `hour` for spans up to three days, else `day`. */
function chartInterval(query, now) {
  const from = query.get('from') ? Date.parse(query.get('from')) : NaN;
  const to = query.get('to') ? Date.parse(query.get('to')) : now;
  if (Number.isNaN(from)) return 'day';
  return to - from <= 3 * 24 * 3600e3 ? 'hour' : 'day';
}

async function loadHistogram() {
  if (state.chartController) state.chartController.abort();
  const controller = new AbortController();
  state.chartController = controller;
  document.body.dataset.histogram = 'loading';
  const params = new URLSearchParams(state.query);
  params.set('interval', chartInterval(state.query, Date.now()));
  try {
    const histogram = await getJson(`histogram?${params}`, controller.signal);
    if (controller !== state.chartController) return;
    renderChart(histogram);
  } catch (error) {
    if (error.name === 'AbortError') return;
    // Too many bars for the range, or a store that cannot count: the list stands alone.
    $('chart-wrap').hidden = true;
  } finally {
    if (controller === state.chartController) {
      state.chartController = null;
      document.body.dataset.histogram = 'loaded';
    }
  }
}

function renderChart(histogram) {
  const buckets = Array.isArray(histogram.buckets) ? histogram.buckets : [];
  const chart = $('chart');
  const wrap = $('chart-wrap');
  const count = (c) => (c && typeof c.count === 'number' ? c.count : 0);
  const max = Math.max(0, ...buckets.map((b) => count(b.allow) + count(b.deny)));
  if (!buckets.length || max === 0) {
    wrap.hidden = true;
    chart.replaceChildren();
    return;
  }
  const height = 60;
  const step = 10;
  chart.setAttribute('viewBox', `0 0 ${buckets.length * step} ${height}`);
  const hourly = histogram.interval === 'hour';
  const label = (b) => {
    const start = new Date(Date.parse(b.start));
    const when = hourly ? timeFormat.format(start) : start.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
    return `${when}${hourly ? '' : ' (UTC)'}: ${countText(b.allow)} allowed, ${countText(b.deny)} denied`;
  };
  chart.replaceChildren(...buckets.map((b, i) => {
    const allow = count(b.allow);
    const deny = count(b.deny);
    const allowHeight = (allow / max) * height;
    const denyHeight = (deny / max) * height;
    return svg('g', {
      class: `bar${allow + deny === 0 ? ' empty' : ''}`,
      'data-start': b.start,
      'data-end': b.end,
      'data-allow': allow,
      'data-deny': deny,
      role: 'button',
      tabindex: '-1',
      'aria-label': label(b),
      'aria-disabled': allow + deny === 0 ? 'true' : null,
      onclick: () => { if (allow + deny > 0) narrowTo(b.start, b.end); },
      onkeydown: onChartKey,
    },
    svg('title', {}, label(b)),
    svg('rect', { class: 'bar-hit', x: i * step, y: 0, width: step, height }),
    svg('rect', { class: 'bar-allow', x: i * step + 1, y: height - allowHeight, width: step - 2, height: allowHeight }),
    svg('rect', { class: 'bar-deny', x: i * step + 1, y: height - allowHeight - denyHeight, width: step - 2, height: denyHeight }));
  }));
  // One Tab stop: the busiest bar; the arrow keys move between bars, Enter chooses one.
  const bars = [...chart.querySelectorAll('.bar')];
  const busiest = bars.reduce((best, bar) => (Number(bar.dataset.allow) + Number(bar.dataset.deny) > Number(best.dataset.allow) + Number(best.dataset.deny) ? bar : best), bars[0]);
  busiest.setAttribute('tabindex', '0');
  const first = new Date(Date.parse(histogram.from));
  const last = new Date(Date.parse(histogram.to));
  $('chart-note').textContent = `Per ${histogram.interval}, ${timeFormat.format(first)} to ${timeFormat.format(last)}: allowed (green) and denied (red). Choose a bar to show only its events.`;
  wrap.hidden = false;
}

function onChartKey(event) {
  const bar = event.currentTarget;
  const bars = [...$('chart').querySelectorAll('.bar')];
  const index = bars.indexOf(bar);
  let target = null;
  if (event.key === 'ArrowRight') target = bars[index + 1];
  else if (event.key === 'ArrowLeft') target = bars[index - 1];
  else if (event.key === 'Home') target = bars[0];
  else if (event.key === 'End') target = bars[bars.length - 1];
  else if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    if (bar.getAttribute('aria-disabled') !== 'true') narrowTo(bar.dataset.start, bar.dataset.end);
    return;
  }
  if (!target) return;
  event.preventDefault();
  for (const other of bars) other.setAttribute('tabindex', other === target ? '0' : '-1');
  target.focus();
}

/** Narrows the list to `[start, end)`, within the range already chosen. */
function narrowTo(start, end) {
  const from = state.query.get('from');
  const to = state.query.get('to');
  const clippedFrom = from && Date.parse(from) > Date.parse(start) ? from : start;
  const clippedTo = to && Date.parse(to) < Date.parse(end) ? to : end;
  applyFilters({ ...state.filters, range: 'custom', from: clippedFrom, to: clippedTo });
}

/** The values the menus offer, with their counts for the list's filters. */
async function loadFacets() {
  const controller = new AbortController();
  state.countsController = controller;
  document.body.dataset.counts = 'loading';
  try {
    const facets = await getJson(`facets?${state.query}`, controller.signal);
    state.facets = {
      categories: facets.categories || [],
      actions: facets.actions || [],
      users: facets.users || [],
      outcomes: facets.outcomes && facets.outcomes.length ? facets.outcomes : ['allow', 'deny'],
    };
    state.counts = facets.counts && typeof facets.counts === 'object' ? facets.counts : null;
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (error.status === 401 || error.status === 403) {
      showBlocked(error);
      return;
    }
    toast('Could not load the filter values; selected filters still apply.');
  } finally {
    if (state.countsController === controller) {
      state.countsController = null;
      document.body.dataset.counts = 'loaded';
    }
  }
  state.facetsLoaded = true;
  buildMultiSelects();
  // Lets tests (and anyone scripting the page) know the offered values are in place.
  document.body.dataset.facets = 'loaded';
}

/**
 * Refreshes the menus' counts for the list's (new) filters, in place, so an open menu keeps
 * its focus. Before the menus exist, `loadFacets` brings the counts with the values.
 */
async function loadCounts() {
  if (!state.facetsLoaded) return;
  if (state.countsController) state.countsController.abort();
  const controller = new AbortController();
  state.countsController = controller;
  document.body.dataset.counts = 'loading';
  try {
    const facets = await getJson(`facets?${state.query}`, controller.signal);
    if (controller !== state.countsController) return;
    state.counts = facets.counts && typeof facets.counts === 'object' ? facets.counts : null;
    renderCounts();
  } catch (error) {
    if (error.name === 'AbortError') return;
    // The list reports 401/403/400 itself; stale counts are hidden rather than shown wrong.
    state.counts = null;
    renderCounts();
  } finally {
    if (controller === state.countsController) {
      state.countsController = null;
      document.body.dataset.counts = 'loaded';
    }
  }
}

/** The count of `value` in menu `key` for the current filters, or null. */
function facetCount(key, value) {
  const counts = state.counts && state.counts[key];
  const count = counts && counts[value];
  return count && typeof count.count === 'number' ? count : null;
}

function renderCounts() {
  for (const node of document.querySelectorAll('.multi-options .facet-count')) {
    const count = facetCount(node.dataset.filter, node.dataset.value);
    node.textContent = count ? countText(count) : '';
    node.closest('label').classList.toggle('is-zero', Boolean(count && count.count === 0));
  }
}

// ---------------------------------------------------------------------------------------
// Applying filters.

/** Makes `filters` current: the URL (a new history entry), the controls, the list. */
function applyFilters(filters, { push = true } = {}) {
  state.filters = filters;
  if (push) history.pushState(null, '', pageQuery(filters, '') || location.pathname);
  syncControls();
  closeDetail(false);
  loadEvents();
}

function updateFilter(key, value) {
  applyFilters({ ...state.filters, [key]: value });
}

function clearFilters() {
  applyFilters(emptyFilters());
}

function syncControls() {
  const f = state.filters;
  $('f-resource-name').value = f.resource_name;
  $('f-request-id').value = f.request_id;
  $('f-range').value = f.range;
  $('f-from').value = dayOf(f.from);
  $('f-to').value = dayOf(f.to);
  for (const node of document.querySelectorAll('.custom-dates')) node.hidden = f.range !== 'custom';
  for (const multi of MULTI) updateMultiButton(multi.key);
  renderChips();
  const count = activeFilterCount(f);
  const badge = $('filters-count');
  badge.textContent = String(count);
  badge.hidden = count === 0;
}

/** The local day a page `from`/`to` value falls on, for the date inputs. */
function dayOf(text) {
  if (!text || isDay(text)) return text || '';
  const date = new Date(Date.parse(text));
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${String(date.getFullYear()).padStart(4, '0')}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function describeValue(key, value) {
  if (key === 'status') return outcomeLabel(value);
  if (key === 'action') return humanize(value);
  if (key === 'user') return userLabel(value);
  return value;
}

/** Human sentences for the active filters, for the chips and the download dialog. */
function describeFilters(filters, query) {
  const items = [];
  for (const key of MULTI_KEYS) {
    if (filters[key].length) {
      items.push({ key, text: `${FILTER_LABELS[key]}: ${filters[key].map((v) => describeValue(key, v)).join(' or ')}` });
    }
  }
  for (const key of SINGLE_KEYS) {
    if (filters[key]) {
      const verb = key === 'resource_name' ? 'contains' : 'is';
      items.push({ key, text: `${FILTER_LABELS[key]} ${verb} “${filters[key]}”` });
    }
  }
  if (filters.range && filters.range !== 'custom') {
    const from = query && query.get('from');
    const since = from ? ` (since ${timeFormat.format(new Date(from))})` : '';
    items.push({ key: 'range', text: `${RANGE_LABELS[filters.range]}${since}` });
  } else if (filters.range === 'custom' && (filters.from || filters.to)) {
    const parts = [];
    const instant = (text) => `${timeFormat.format(new Date(Date.parse(text)))} (${ZONE})`;
    if (filters.from) parts.push(isDay(filters.from) ? `from ${filters.from}` : `from ${instant(filters.from)}`);
    if (filters.to) parts.push(isDay(filters.to) ? `to ${filters.to} inclusive` : `until ${instant(filters.to)}, exclusive`);
    items.push({ key: 'range', text: `${isDay(filters.from || filters.to) ? 'Dates' : 'Time'} ${parts.join(' ')}` });
  }
  return items;
}

function renderChips() {
  const items = describeFilters(state.filters, null);
  $('chips').replaceChildren(...items.map((item) => el('li', { class: 'chip' },
    el('span', {}, item.text),
    el('button', {
      type: 'button',
      class: 'chip-remove',
      'aria-label': `Remove filter ${item.text}`,
      onclick: () => removeFilter(item.key),
    }, '×'))));
  $('chips-row').hidden = items.length === 0;
}

function removeFilter(key) {
  const next = { ...state.filters };
  if (key === 'range') {
    next.range = '';
    next.from = '';
    next.to = '';
  } else if (MULTI_KEYS.includes(key)) {
    next[key] = [];
  } else {
    next[key] = '';
  }
  applyFilters(next);
}

// ---------------------------------------------------------------------------------------
// Multi-selects (category, action, outcome, user), offered values from /facets.

function userValue(user) {
  return user.email || user.id || '';
}

function userLabel(value) {
  const user = state.facets.users.find((u) => userValue(u) === value || u.id === value);
  if (user && user.name && user.name !== value) return `${user.name} (${value})`;
  return value;
}

function optionsFor(key) {
  const f = state.facets;
  let options;
  if (key === 'category') options = f.categories.map((v) => ({ value: v, label: v }));
  else if (key === 'action') options = f.actions.map((v) => ({ value: v, label: humanize(v) }));
  else if (key === 'status') options = f.outcomes.map((v) => ({ value: v, label: outcomeLabel(v) }));
  else options = f.users.map((u) => ({ value: userValue(u), label: u.name ? `${u.name} · ${userValue(u)}` : userValue(u) }))
    .filter((o) => o.value);
  // A value from a shared link may be absent from this viewer's facets: keep it visible so it
  // can be unticked.
  for (const value of state.filters[key]) {
    if (!options.some((o) => o.value === value)) options.push({ value, label: describeValue(key, value) });
  }
  return options;
}

let openMulti = null;

function buildMultiSelects() {
  const row = $('multi-filters');
  row.replaceChildren(...MULTI.map((multi) => {
    const popId = `multi-pop-${multi.key}`;
    const button = el('button', {
      type: 'button',
      class: 'multi-button',
      id: `multi-${multi.key}`,
      'aria-haspopup': 'true',
      'aria-expanded': 'false',
      'aria-controls': popId,
      onclick: () => toggleMulti(multi.key),
    }, el('span', { class: 'multi-label' }, multi.label), el('span', { class: 'multi-value' }, 'All'));
    const options = optionsFor(multi.key);
    const list = el('ul', { class: 'multi-options' }, options.map((option) => el('li', {},
      el('label', {},
        el('input', {
          type: 'checkbox',
          value: option.value,
          'data-filter': multi.key,
          checked: state.filters[multi.key].includes(option.value),
          onchange: () => onMultiChange(multi.key),
        }),
        el('span', { class: 'option-label' }, option.label),
        el('span', { class: 'facet-count', 'data-filter': multi.key, 'data-value': option.value }, '')))));
    const pop = el('div', { class: 'multi-pop', id: popId, role: 'group', 'aria-label': multi.label, hidden: true });
    if (options.length > 8) {
      pop.append(el('input', {
        type: 'search',
        class: 'multi-search',
        placeholder: `Find ${multi.plural}`,
        'aria-label': `Find ${multi.plural}`,
        oninput: (event) => {
          const needle = event.target.value.trim().toLowerCase();
          for (const item of list.children) item.hidden = needle !== '' && !item.textContent.toLowerCase().includes(needle);
        },
      }));
    }
    pop.append(options.length ? list : el('p', { class: 'muted pad' }, `No ${multi.plural} recorded yet.`));
    pop.append(el('div', { class: 'multi-foot' },
      el('button', { type: 'button', class: 'link-button', onclick: () => { updateFilter(multi.key, []); } }, 'Clear'),
      el('button', { type: 'button', class: 'button small', onclick: () => closeMulti(true) }, 'Done')));
    return el('div', { class: 'multi', 'data-key': multi.key }, button, pop);
  }));
  for (const multi of MULTI) updateMultiButton(multi.key);
  renderCounts();
}

function updateMultiButton(key) {
  const button = $(`multi-${key}`);
  if (!button) return;
  const values = state.filters[key];
  const value = button.querySelector('.multi-value');
  value.textContent = values.length === 0 ? 'All' : values.length === 1 ? describeValue(key, values[0]) : `${values.length} selected`;
  button.classList.toggle('active', values.length > 0);
  for (const box of document.querySelectorAll(`input[data-filter="${key}"]`)) box.checked = values.includes(box.value);
}

function onMultiChange(key) {
  const values = [...document.querySelectorAll(`input[data-filter="${key}"]`)].filter((b) => b.checked).map((b) => b.value);
  updateFilter(key, values);
}

function toggleMulti(key) {
  if (openMulti === key) closeMulti(true);
  else {
    closeMulti(false);
    const pop = $(`multi-pop-${key}`);
    pop.hidden = false;
    $(`multi-${key}`).setAttribute('aria-expanded', 'true');
    openMulti = key;
    const first = pop.querySelector('input');
    if (first) first.focus();
  }
}

function closeMulti(focusButton) {
  if (!openMulti) return;
  const key = openMulti;
  openMulti = null;
  $(`multi-pop-${key}`).hidden = true;
  $(`multi-${key}`).setAttribute('aria-expanded', 'false');
  if (focusButton) $(`multi-${key}`).focus();
}

// ---------------------------------------------------------------------------------------
// Detail panel.

let detailReturnFocus = null;
/** The event shown in the detail panel. */
let lastOpened = null;

function field(label, value, options = {}) {
  const shown = value === null || value === undefined || value === '' ? muted('—') : (value instanceof Node ? value : document.createTextNode(String(value)));
  return [el('dt', {}, label), el('dd', { 'data-field': options.field || null, class: options.mono ? 'mono' : null }, shown)];
}

function valueNode(value) {
  if (value === null || value === undefined) return muted('empty');
  if (typeof value === 'object') return el('pre', { class: 'json' }, JSON.stringify(value, null, 2));
  if (typeof value === 'string' && value === '') return muted('empty string');
  return el('span', {}, typeof value === 'string' ? value : JSON.stringify(value));
}

function openDetail(event, { focus = true, fromRow = null } = {}) {
  state.selectedId = event.id;
  lastOpened = event;
  // Moving between events inside the panel (its history) keeps where focus returns to.
  const fromPanel = document.activeElement && document.activeElement.closest && document.activeElement.closest('#detail');
  if (fromRow || !fromPanel || !detailReturnFocus) detailReturnFocus = fromRow || document.activeElement;
  for (const row of document.querySelectorAll('#log-body tr[data-id]')) row.setAttribute('aria-selected', row.dataset.id === event.id ? 'true' : 'false');
  const date = new Date(event.occurred_at);
  $('detail-kicker').textContent = event.category;
  $('detail-title').textContent = `${humanize(event.action)}${event.resource_name ? ` · ${event.resource_name}` : ''}`;
  $('detail-sub').replaceChildren(
    el('span', { class: `badge ${event.outcome === 'deny' ? 'deny' : 'allow'}` }, outcomeLabel(event.outcome)),
    ' ',
    el('time', { datetime: event.occurred_at }, Number.isNaN(date.getTime()) ? event.occurred_at : `${longTimeFormat.format(date)} · ${relativeTime(date)}`),
  );
  const userKey = event.actor_email || event.actor_id;
  $('same-user').disabled = !userKey;
  $('same-resource').disabled = !event.resource_id && !event.resource_name;

  const copy = el('button', { type: 'button', class: 'button small', id: 'copy-request-id', onclick: () => copyText(event.request_id) }, 'Copy');
  const requestId = el('span', { class: 'copy-line' }, el('code', { id: 'detail-request-id' }, event.request_id), copy);

  const attributes = event.attributes && typeof event.attributes === 'object' ? event.attributes : {};
  const changes = changesOf(event);
  const body = [
    el('section', {}, el('h3', {}, 'Who'), el('dl', {},
      field('Name', event.actor_name, { field: 'actor_name' }),
      field('E-mail', event.actor_email, { field: 'actor_email' }),
      field('User ID', event.actor_id, { field: 'actor_id', mono: true }),
      field('Tenant', event.tenant, { field: 'tenant' }),
      field('Client IP', event.client_ip, { field: 'client_ip', mono: true }),
      field('User agent', event.user_agent, { field: 'user_agent' }))),
    el('section', {}, el('h3', {}, 'What'), el('dl', {},
      field('Category', event.category, { field: 'category' }),
      field('Action', event.action, { field: 'action', mono: true }),
      field('Resource', event.resource_name, { field: 'resource_name' }),
      field('Resource ID', event.resource_id, { field: 'resource_id', mono: true }),
      field('Outcome', outcomeLabel(event.outcome), { field: 'outcome' }),
      field('Reason', event.reason, { field: 'reason' }))),
  ];
  if (changes && Object.keys(changes).length) {
    body.push(el('section', {}, el('h3', {}, 'Changes'), el('table', { class: 'changes' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Field'), el('th', { scope: 'col' }, 'Before'), el('th', { scope: 'col', class: 'arrow' }, el('span', { class: 'visually-hidden' }, 'becomes')), el('th', { scope: 'col' }, 'After'))),
      el('tbody', {}, Object.entries(changes).map(([name, pair]) => {
        const [before, after] = Array.isArray(pair) && pair.length === 2 ? pair : [undefined, pair];
        return el('tr', { 'data-change': name },
          el('th', { scope: 'row' }, name),
          el('td', { class: 'before' }, valueNode(before)),
          el('td', { class: 'arrow', 'aria-hidden': 'true' }, '→'),
          el('td', { class: 'after' }, valueNode(after)));
      })))));
  }
  const others = Object.entries(attributes).filter(([key]) => key !== 'changes' || !changes);
  body.push(el('section', {}, el('h3', {}, 'Attributes'), others.length
    ? el('dl', { class: 'attributes' }, others.flatMap(([key, value]) => [el('dt', {}, key), el('dd', { 'data-attribute': key }, valueNode(value))]))
    : el('p', { class: 'muted' }, changes ? 'No other attributes.' : 'No attributes recorded.')));
  body.push(el('section', {}, el('h3', {}, 'Request'), el('dl', {},
    field('Request ID', requestId, { field: 'request_id' }),
    field('Method', event.method, { field: 'method', mono: true }),
    field('Path', event.path, { field: 'path', mono: true }),
    field('Route', event.route, { field: 'route', mono: true }),
    field('HTTP status', event.status, { field: 'status' }),
    field('Duration', typeof event.duration_ms === 'number' ? `${event.duration_ms} ms` : event.duration_ms, { field: 'duration_ms' }),
    field(`Time (${ZONE})`, Number.isNaN(date.getTime()) ? '' : longTimeFormat.format(date), { field: 'occurred_at_local' }),
    field('Time (UTC)', event.occurred_at, { field: 'occurred_at', mono: true }),
    field('Event ID', event.id, { field: 'id', mono: true }))));
  // Tamper evidence: where the entry sits in the store's hash chain (absent on events not
  // read from a chained store).
  const chain = event.chain && typeof event.chain === 'object' ? event.chain : null;
  if (chain) {
    body.push(el('section', { class: 'chain' }, el('h3', {}, 'Tamper evidence'), el('dl', {},
      field('Sequence', chain.seq, { field: 'chain_seq', mono: true }),
      field('Hash', chain.hash, { field: 'chain_hash', mono: true }),
      field('Previous hash', chain.prev_hash, { field: 'chain_prev_hash', mono: true }))));
  }
  let historySection = null;
  if (event.resource_id) {
    historySection = el('section', { class: 'history', id: 'resource-history', 'aria-busy': 'true' },
      el('h3', {}, 'History of this resource'),
      el('p', { class: 'muted' }, 'Loading…'));
    body.push(historySection);
  }
  body.push(el('details', { class: 'raw' }, el('summary', {}, 'Raw event (JSON)'), el('pre', { class: 'json' }, JSON.stringify(event, null, 2))));
  $('detail-body').replaceChildren(...body);
  $('detail-body').scrollTop = 0;
  if (historySection) loadResourceHistory(event, historySection);

  const panel = $('detail');
  panel.hidden = false;
  panel.dataset.id = event.id;
  document.body.classList.add('has-detail');
  history.replaceState(null, '', pageQuery(state.filters, event.id) || location.pathname);
  if (focus) $('detail-title').focus();
}

/** The number of a resource's events the detail panel lists. */
const HISTORY_SIZE = 50;

/** Fills the panel's history section: every event of the resource (same category and id), newest first. */
async function loadResourceHistory(event, section) {
  const params = new URLSearchParams({ category: event.category, resource_id: event.resource_id, limit: String(HISTORY_SIZE) });
  let page;
  try {
    page = await getJson(`events?${params}`);
  } catch (error) {
    if (!section.isConnected) return;
    section.removeAttribute('aria-busy');
    section.replaceChildren(el('h3', {}, 'History of this resource'), el('p', { class: 'muted' }, `Could not load it: ${error.message}`));
    return;
  }
  // Another event may have been opened meanwhile.
  if (!section.isConnected) return;
  const items = Array.isArray(page.items) ? page.items : [];
  const list = el('ol', { class: 'timeline' }, items.map((item) => {
    const date = new Date(item.occurred_at);
    const who = item.actor_email || item.actor_id || 'Not signed in';
    return el('li', { 'data-id': item.id, 'aria-current': item.id === event.id ? 'true' : null, class: item.outcome === 'deny' ? 'is-deny' : '' },
      el('button', { type: 'button', class: 'link-button', disabled: item.id === event.id, onclick: () => openDetail(item, { focus: true }) },
        humanize(item.action)),
      el('span', { class: 'muted' }, ` · ${who} · `),
      el('time', { datetime: item.occurred_at }, Number.isNaN(date.getTime()) ? item.occurred_at : timeFormat.format(date)),
      item.outcome === 'deny' ? el('span', { class: 'badge deny' }, 'Denied') : null);
  }));
  const more = page.next_cursor
    ? el('p', { class: 'muted' }, `The latest ${HISTORY_SIZE} are shown; “Same resource” lists them all.`)
    : null;
  section.removeAttribute('aria-busy');
  section.replaceChildren(el('h3', {}, `History of this resource (${items.length}${page.next_cursor ? '+' : ''})`), list, more);
}

function closeDetail(restoreFocus = true) {
  const panel = $('detail');
  if (panel.hidden) return;
  panel.hidden = true;
  delete panel.dataset.id;
  state.selectedId = '';
  document.body.classList.remove('has-detail');
  for (const row of document.querySelectorAll('#log-body tr[aria-selected="true"]')) row.setAttribute('aria-selected', 'false');
  history.replaceState(null, '', pageQuery(state.filters, '') || location.pathname);
  if (restoreFocus && detailReturnFocus && document.contains(detailReturnFocus)) detailReturnFocus.focus();
}

async function openDetailById(id) {
  const known = state.events.find((e) => e.id === id);
  if (known) {
    openDetail(known, { focus: false });
    return;
  }
  try {
    openDetail(await getJson(`events/${encodeURIComponent(id)}`), { focus: false });
  } catch (error) {
    if (error.status === 401 || error.status === 403) showBlocked(error);
    else toast(error.status === 404 ? 'That event does not exist or is not visible to you.' : `Could not open the event: ${error.message}`);
  }
}

function currentEvent() {
  return lastOpened;
}

async function copyText(text) {
  let copied = false;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      copied = false;
    }
  }
  if (!copied) {
    // Fallback for plain-HTTP deployments, where the clipboard API is unavailable.
    const area = el('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
    area.remove();
  }
  toast(copied ? 'Request ID copied' : 'Could not copy: select the ID and press Ctrl+C');
  if (!copied) {
    const code = $('detail-request-id');
    if (code) window.getSelection().selectAllChildren(code);
  }
}

// ---------------------------------------------------------------------------------------
// Customize columns dialog.

let draftColumns = [];

function openColumnsDialog() {
  // The draft lists every column: the chosen ones first, in order, then the rest.
  draftColumns = [
    ...state.columns.map((key) => ({ key, on: true })),
    ...COLUMNS.filter((c) => !state.columns.includes(c.key)).map((c) => ({ key: c.key, on: false })),
  ];
  renderColumnsList();
  $('columns-error').hidden = true;
  $('columns-dialog').showModal();
}

function renderColumnsList(focusKey, focusDirection) {
  const list = $('columns-list');
  list.replaceChildren(...draftColumns.map((item, index) => {
    const label = COLUMN_BY_KEY.get(item.key).label;
    return el('li', { 'data-column': item.key, class: item.on ? 'on' : '' },
      el('label', {},
        el('input', {
          type: 'checkbox',
          checked: item.on,
          onchange: (e) => { item.on = e.target.checked; e.target.closest('li').classList.toggle('on', item.on); $('columns-error').hidden = true; },
        }),
        el('span', {}, label)),
      el('span', { class: 'move' },
        el('button', { type: 'button', class: 'icon-button', 'data-move': 'up', 'aria-label': `Move ${label} up`, disabled: index === 0, onclick: () => moveColumn(index, -1) }, '↑'),
        el('button', { type: 'button', class: 'icon-button', 'data-move': 'down', 'aria-label': `Move ${label} down`, disabled: index === draftColumns.length - 1, onclick: () => moveColumn(index, 1) }, '↓')));
  }));
  if (focusKey) {
    const button = list.querySelector(`li[data-column="${focusKey}"] button[data-move="${focusDirection}"]`);
    const fallback = list.querySelector(`li[data-column="${focusKey}"] button:not([disabled])`);
    (button && !button.disabled ? button : fallback)?.focus();
  }
}

function moveColumn(index, delta) {
  const target = index + delta;
  if (target < 0 || target >= draftColumns.length) return;
  const [item] = draftColumns.splice(index, 1);
  draftColumns.splice(target, 0, item);
  renderColumnsList(item.key, delta < 0 ? 'up' : 'down');
}

function applyColumns() {
  const chosen = draftColumns.filter((c) => c.on).map((c) => c.key);
  if (!chosen.length) {
    $('columns-error').hidden = false;
    return;
  }
  state.columns = chosen;
  saveColumns(chosen);
  history.replaceState(null, '', pageQuery(state.filters, state.selectedId) || location.pathname);
  $('columns-dialog').close();
  renderHead();
  renderRows();
  toast('Columns updated');
}

// ---------------------------------------------------------------------------------------
// Download dialog.

function exportHref(format) {
  const params = new URLSearchParams(state.query);
  params.set('format', format);
  params.set('columns', state.columns.join(','));
  return `export?${params}`;
}

function selectedFormat() {
  const checked = document.querySelector('input[name="format"]:checked');
  return checked ? checked.value : 'csv';
}

function updateDownloadLink() {
  const format = selectedFormat();
  const link = $('download-link');
  link.setAttribute('href', exportHref(format));
  link.textContent = `Download ${format.toUpperCase()}`;
}

function openDownloadDialog() {
  const items = describeFilters(state.filters, state.query);
  $('download-filters').replaceChildren(...(items.length
    ? items.map((item) => el('li', {}, item.text))
    : [el('li', {}, 'No filter: the whole activity log you can see')]));
  $('download-columns').textContent = state.columns.map((key) => COLUMN_BY_KEY.get(key).label).join(', ');
  updateDownloadLink();
  $('download-dialog').showModal();
}

// ---------------------------------------------------------------------------------------
// Keyboard on the table: arrows move between rows, Enter or Space opens one.

function onTableKey(event) {
  const row = event.target.closest('tr[data-id]');
  if (!row) return;
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    const found = state.events.find((e) => e.id === row.dataset.id);
    if (found) openDetail(found, { fromRow: row });
  } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    // By position in the loaded events, not in the DOM: with windowed rendering the next
    // event's row may not be rendered yet.
    const index = state.events.findIndex((e) => e.id === row.dataset.id);
    const target = index + (event.key === 'ArrowDown' ? 1 : -1);
    if (target >= 0 && target < state.events.length) focusEventAt(target);
    else if (event.key === 'ArrowDown' && state.nextCursor) $('load-more').focus();
  } else if (event.key === 'Home' || event.key === 'End') {
    event.preventDefault();
    if (state.events.length) focusEventAt(event.key === 'Home' ? 0 : state.events.length - 1);
  }
}

function onTableClick(event) {
  const row = event.target.closest('tr[data-id]');
  if (!row) return;
  // Let people select text in a cell without opening the panel.
  if (String(window.getSelection())) return;
  const found = state.events.find((e) => e.id === row.dataset.id);
  if (found) openDetail(found, { fromRow: row });
}

// ---------------------------------------------------------------------------------------
// Wiring.

function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function init() {
  const viewer = meta('audit-viewer');
  const tenants = meta('audit-tenants');
  $('who').textContent = [viewer ? `Signed in as ${viewer}` : '', tenants ? `Tenant: ${tenants}` : ''].filter(Boolean).join(' · ');
  const canExport = meta('audit-can-export') !== 'false';
  const download = $('download-button');
  if (!canExport) {
    // aria-disabled, not disabled: the button stays focusable, so keyboard and screen-reader
    // users reach it and hear why it does nothing.
    const reason = 'You can view the activity log but do not hold the audit export permission.';
    download.setAttribute('aria-disabled', 'true');
    download.title = reason;
    download.after(el('span', { class: 'visually-hidden', id: 'download-disabled-note' }, reason));
    download.setAttribute('aria-describedby', 'download-disabled-note');
  }

  renderHead();
  if (applyUrl()) loadFacets();

  // Text inputs apply after a pause in typing, and at once on Enter.
  const textFilter = (input, key) => {
    const apply = () => {
      const value = input.value.trim();
      if (value !== state.filters[key]) updateFilter(key, value);
    };
    const later = debounce(apply, 350);
    input.addEventListener('input', later);
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); apply(); } });
    input.addEventListener('search', apply);
  };
  textFilter($('f-resource-name'), 'resource_name');
  textFilter($('f-request-id'), 'request_id');

  $('f-range').addEventListener('change', (e) => {
    const range = e.target.value;
    if (range === 'custom') {
      // Waits for a date before querying; the inputs are shown now.
      state.filters = { ...state.filters, range: 'custom' };
      for (const node of document.querySelectorAll('.custom-dates')) node.hidden = false;
      $('f-from').focus();
      return;
    }
    applyFilters({ ...state.filters, range, from: '', to: '' });
  });
  for (const [id, key] of [['f-from', 'from'], ['f-to', 'to']]) {
    $(id).addEventListener('change', () => {
      // Only the edited bound changes; a time of day the other bound came with is kept.
      const next = { ...state.filters, range: 'custom', [key]: $(id).value };
      if (next[key] && !isDay(next[key])) return;
      if (next.from && next.to && fromInstant(next.from) >= toInstant(next.to)) {
        toast('The start is after the end.');
        return;
      }
      applyFilters(next);
    });
  }
  $('clear-filters').addEventListener('click', clearFilters);
  $('filters-toggle').addEventListener('click', () => {
    const open = $('filters').classList.toggle('open');
    $('filters-toggle').setAttribute('aria-expanded', String(open));
  });

  $('log-body').addEventListener('keydown', onTableKey);
  $('log-body').addEventListener('click', onTableClick);
  $('load-more').addEventListener('click', () => {
    if ($('load-more').getAttribute('aria-disabled') !== 'true') loadEvents({ append: true });
  });
  $('table-wrap').addEventListener('scroll', onTableScroll, { passive: true });
  $('log-body').addEventListener('focusin', (e) => {
    const row = e.target.closest('tr[data-id]');
    if (row && row.tabIndex !== 0) setRovingRow(row, false);
  });

  $('detail-close').addEventListener('click', () => closeDetail());
  $('same-request').addEventListener('click', () => {
    const event = currentEvent();
    if (event) applyFilters({ ...emptyFilters(), request_id: event.request_id });
  });
  $('same-user').addEventListener('click', () => {
    const event = currentEvent();
    const user = event && (event.actor_email || event.actor_id);
    if (user) applyFilters({ ...emptyFilters(), user: [user] });
  });
  $('same-resource').addEventListener('click', () => {
    const event = currentEvent();
    if (!event) return;
    const next = { ...emptyFilters(), category: [event.category] };
    if (event.resource_id) next.resource_id = event.resource_id;
    else next.resource_name = event.resource_name || '';
    applyFilters(next);
  });

  $('columns-button').addEventListener('click', openColumnsDialog);
  $('columns-apply').addEventListener('click', applyColumns);
  $('columns-cancel').addEventListener('click', () => $('columns-dialog').close());
  $('columns-reset').addEventListener('click', () => {
    draftColumns = [
      ...DEFAULT_COLUMNS.map((key) => ({ key, on: true })),
      ...COLUMNS.filter((c) => !DEFAULT_COLUMNS.includes(c.key)).map((c) => ({ key: c.key, on: false })),
    ];
    renderColumnsList();
  });

  download.addEventListener('click', () => {
    if (download.getAttribute('aria-disabled') === 'true') toast(download.title);
    else openDownloadDialog();
  });
  for (const radio of document.querySelectorAll('input[name="format"]')) radio.addEventListener('change', updateDownloadLink);
  $('download-cancel').addEventListener('click', () => $('download-dialog').close());
  $('download-link').addEventListener('click', () => {
    // Let the browser start the download from the link, then close the dialog.
    setTimeout(() => {
      $('download-dialog').close();
      toast('Download started');
    }, 0);
  });

  // Clicking a modal dialog's backdrop closes it, like Escape.
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
  }

  document.addEventListener('click', (e) => {
    if (openMulti && !e.target.closest('.multi')) closeMulti(false);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      if (document.querySelector('dialog[open]')) return; // the dialog closes itself
      if (openMulti) { e.preventDefault(); closeMulti(true); return; }
      if (!$('detail').hidden) { e.preventDefault(); closeDetail(); }
    } else if (e.key === '/' && !e.target.closest('input, textarea, select, dialog')) {
      e.preventDefault();
      $('f-resource-name').focus();
    }
  });

  window.addEventListener('popstate', () => {
    if (state.blocked) return;
    closeDetail(false);
    applyUrl();
  });
}

init();
