// The dashboard's shell: login, who is logged in (their tags decide which pages show), hash routing,
// and the refresh loop that redraws the current page's data without rebuilding its forms.

import { admin, definitions } from './admin.js';
import { api, clearCredentials, hasCredentials, setCredentials } from './api.js';
import { overview, queue, queues } from './queues.js';
import { channels, connection, connections, consumers, exchange, exchanges } from './sessions.js';
import { tail } from './tail.js';
import { flash, h, replace } from './ui.js';

// '#/queues/%2F/orders' -> route 'queues/' with arguments ['/', 'orders']; `tag`: who may see it
const ROUTES = {
  overview: { page: overview },
  queues: { page: queues },
  'queues/': { page: queue },
  exchanges: { page: exchanges },
  'exchanges/': { page: exchange },
  connections: { page: connections },
  'connections/': { page: connection },
  channels: { page: channels },
  consumers: { page: consumers },
  tail: { page: tail },
  admin: { page: admin, tag: 'administrator policymaker' },
  definitions: { page: definitions, tag: 'administrator' },
};
const SETTINGS = { refresh: 'amqp-server.refresh', window: 'amqp-server.window' };

const $ = (id) => document.getElementById(id);
let session = null; // {name, tags, vhosts, can(tag), window(), signal}
let current = null; // {controller, timer, busy, refresh} of the page shown

// What a tag allows, as the API decides it: administrator implies the others.
function allows(tags, tag) {
  return tags.includes('administrator') || tag.split(' ').some((t) => tags.includes(t));
}

async function startSession() {
  const who = await api('/api/whoami');
  const tags = Array.isArray(who.tags) ? who.tags : String(who.tags).split(',').filter(Boolean);
  const vhosts = (await api('/api/vhosts')).map((v) => v.name);
  session = {
    name: who.name,
    tags,
    vhosts,
    can: (tag) => allows(tags, tag),
    window: () => Number($('window').value),
  };
  for (const a of $('nav').querySelectorAll('a[data-tag]')) a.hidden = !session.can(a.dataset.tag);
  replace($('who'), `${who.name} (${tags.join(', ') || 'no tags'})`);
  $('login').hidden = true;
  $('nav').hidden = false;
  $('session').hidden = false;
  show();
}

function endSession(message) {
  stopPage();
  clearCredentials();
  session = null;
  $('page')?.remove();
  $('nav').hidden = true;
  $('session').hidden = true;
  $('login').hidden = false;
  $('login').elements.password.value = '';
  replace($('login-error'), message || '');
}

function stopPage() {
  if (!current) return;
  current.controller.abort();
  clearTimeout(current.timer);
  current = null;
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter((part) => part !== '');
  const [name = 'overview', ...args] = parts.map(decodeURIComponent);
  return { key: args.length ? `${name}/` : name, args };
}

// Builds the page of the current hash and starts its refresh loop.
function show() {
  stopPage();
  $('page')?.remove();
  let { key, args } = parseHash();
  if (!ROUTES[key] || (ROUTES[key].tag && !session.can(ROUTES[key].tag))) [key, args] = ['overview', []];
  const route = ROUTES[key];
  for (const a of $('nav').querySelectorAll('a')) a.classList.toggle('active', a.getAttribute('href') === `#/${key.replace(/\/$/, '')}`);
  const root = h('div', { id: 'page' });
  $('main').append(root);
  const controller = new AbortController();
  const refresh = route.page(root, { ...session, signal: controller.signal }, args);
  current = { controller, timer: null, busy: false, refresh };
  tick(current);
}

// Refreshes the page, then schedules the next refresh after the chosen interval (never overlapping).
async function tick(page) {
  page.busy = true;
  try {
    await page.refresh();
  } catch (error) {
    if (page !== current) return;
    if (error.loggedOut) return endSession('Logged out: the broker refused the credentials.');
    if (error.status === 404) return gone(); // the queue or connection shown was deleted or closed
    flash(error.message, 'error');
  } finally {
    page.busy = false;
  }
  if (page !== current) return;
  const seconds = Number($('refresh').value);
  if (seconds > 0) page.timer = setTimeout(() => tick(page), seconds * 1000);
}

// Refreshes now (a setting changed, an action succeeded) unless a refresh is already under way.
function refreshNow() {
  if (!current || current.busy) return;
  clearTimeout(current.timer);
  tick(current);
}

function gone() {
  stopPage();
  replace($('page'), h('h1', {}, 'Not found'), h('p', {}, 'It no longer exists (deleted, or the connection closed).'),
    h('a', { href: '#/overview' }, 'Back to the overview'));
}

function setUp() {
  for (const [name, key] of Object.entries(SETTINGS)) {
    const select = $(name);
    select.value = sessionStorage.getItem(key) || (name === 'refresh' ? '5' : '300');
    select.addEventListener('change', () => {
      sessionStorage.setItem(key, select.value);
      refreshNow();
    });
  }
  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = new FormData($('login'));
    setCredentials(values.get('username'), values.get('password'));
    try {
      await startSession();
    } catch (error) {
      endSession(error.status === 401 ? `Login refused: ${error.message.replace(/^401: /, '')}` : error.message);
    }
  });
  $('logout').addEventListener('click', () => endSession());
  window.addEventListener('hashchange', () => session && show());
  window.addEventListener('dashboard:changed', refreshNow);
  if (hasCredentials()) startSession().catch(() => endSession());
  else endSession();
}

setUp();
