// Live message tail: messages passing through a vhost, an exchange or a queue, streamed by
// GET /api/tail/{vhost}?exchange=|queue= as one JSON object per line (heartbeats in between).
// Watching consumes nothing; pausing closes the stream, so the broker copies nothing for us.

import { path, stream } from './api.js';
import { h, replace, show } from './ui.js';

const KEEP = 200; // messages shown; older ones drop off the bottom
const PREVIEW = 300; // characters of a body shown

function entry(m) {
  if (m.kind === 'dropped') return h('li', { class: 'tail-dropped' }, `${m.count} messages skipped: the page fell behind`);
  const time = new Date(m.timestamp).toLocaleTimeString();
  const where = m.kind === 'deliver'
    ? `→ queue ${m.queue}${m.redelivered ? ' (redelivered)' : ''}`
    : `→ exchange ${m.exchange || '(default)'}${m.routed_queues ? `, routed to ${show(m.routed_queues)}` : ''}`;
  const body = m.payload_encoding === 'base64' ? `(base64) ${m.payload}` : m.payload;
  return h('li', { class: `tail-${m.kind}` },
    h('div', { class: 'tail-head' }, h('b', {}, `${time} ${m.kind} `), where,
      ` · routing keys ${show(m.routing_keys)} · ${m.payload_bytes} bytes`),
    Object.keys(m.properties || {}).length ? h('div', { class: 'tail-props' }, show(m.properties)) : null,
    h('pre', { class: 'payload' }, body.length > PREVIEW ? `${body.slice(0, PREVIEW)}…` : body));
}

export function tail(root, session) {
  const vhost = h('select', { 'aria-label': 'vhost' }, session.vhosts.map((v) => h('option', { value: v }, v)));
  const scope = h('select', { 'aria-label': 'scope' }, ['whole vhost', 'exchange', 'queue'].map((s) => h('option', { value: s }, s)));
  const name = h('input', { placeholder: 'exchange or queue name', 'aria-label': 'name' });
  const toggle = h('button', { type: 'button' }, 'Start');
  const clear = h('button', { type: 'button' }, 'Clear');
  const status = h('span', { class: 'pager-status' }, 'stopped');
  const list = h('ol', { class: 'tail' });
  root.append(h('h1', {}, 'Live message tail'),
    h('div', { class: 'pager' }, vhost, scope, name, toggle, clear, status), list);

  let running = null; // the AbortController of the open stream
  function stop(text = 'paused') {
    if (running) running.abort();
    running = null;
    toggle.textContent = 'Start';
    replace(status, text);
  }
  function start() {
    running = new AbortController();
    const controller = running;
    const query = scope.value === 'whole vhost' ? '' : `?${new URLSearchParams({ [scope.value]: name.value })}`;
    toggle.textContent = 'Pause';
    replace(status, 'watching');
    stream(path`/api/tail/${vhost.value}` + query, (m) => {
      if (m.kind === 'heartbeat') return;
      list.prepend(entry(m));
      while (list.childElementCount > KEEP) list.lastElementChild.remove();
    }, controller.signal).then(
      () => controller === running && stop('stream ended'),
      (error) => controller === running && stop(error.name === 'AbortError' ? 'paused' : `stopped: ${error.message}`),
    );
  }
  toggle.addEventListener('click', () => (running ? stop() : start()));
  clear.addEventListener('click', () => list.replaceChildren());
  session.signal.addEventListener('abort', () => stop()); // leaving the page closes the stream
  return async () => {};
}
