// The overview, the queue list and one queue's page (plots, details, consumers, bindings, get, publish).

import { api, path } from './api.js';
import { pagedList } from './list.js';
import { plot, rate, record, value } from './plot.js';
import { attempt, bytes, dangerButton, fields, form, h, link, number, parseJson, replace, section, table, tiles } from './ui.js';

// The rates RabbitMQ's overview plots, by message_stats key ("deliver" counts gets too, as deliver_get).
const RATES = { publish: 'publish', deliver: 'deliver_get', ack: 'ack', confirm: 'confirm', redeliver: 'redeliver' };

function rates(stats) {
  return Object.fromEntries(Object.entries(RATES).map(([name, key]) => [name, rate(stats, key)]));
}

function queued(counts) {
  return { ready: value(counts, 'messages_ready'), unacked: value(counts, 'messages_unacknowledged') };
}

export function queueHref(vhost, name) {
  return `#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;
}

export function exchangeHref(vhost, name) {
  return `#/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name || 'amq.default')}`;
}

const LISTENER_COLUMNS = [
  { key: 'protocol', label: 'Protocol' },
  { key: 'ip_address', label: 'Bound to' },
  { label: 'Port', value: (l) => String(l.port) },
];
const NODE_COLUMNS = [
  { key: 'name', label: 'Node' },
  { label: 'Memory', value: (n) => `${bytes(n.mem_used)} of ${bytes(n.mem_limit)}` },
  { label: 'File descriptors', value: (n) => `${number(n.fd_used)} of ${number(n.fd_total)}` },
  { label: 'Disk free', value: (n) => `${bytes(n.disk_free)} (limit ${bytes(n.disk_free_limit)})` },
  { label: 'Uptime', value: (n) => `${Math.round(value(n, 'uptime') / 1000)} s` },
];

export function overview(root, session) {
  const plots = h('div', { class: 'plots' });
  const totals = h('div');
  const listeners = h('div');
  const nodes = h('div');
  root.append(h('h1', {}, 'Overview'), plots, section('Totals', totals));
  if (session.can('monitoring')) root.append(section('Node', nodes), section('Listeners', listeners));
  return async () => {
    const data = await api('/api/overview');
    const rateHistory = record('overview.rates', rates(data.message_stats));
    const queuedHistory = record('overview.queued', queued(data.queue_totals));
    replace(plots,
      plot('Message rates', rateHistory, Object.keys(RATES), session.window(), '/s'),
      plot('Queued messages', queuedHistory, ['ready', 'unacked'], session.window()));
    replace(totals, tiles({ ...data.object_totals, ...queued(data.queue_totals) }));
    if (!session.can('monitoring')) return;
    replace(listeners, table(LISTENER_COLUMNS, data.listeners || []));
    replace(nodes, table(NODE_COLUMNS, await api('/api/nodes')));
  };
}

const QUEUE_COLUMNS = [
  { key: 'vhost', label: 'Vhost', sort: 'vhost' },
  { label: 'Name', sort: 'name', value: (q) => link(queueHref(q.vhost, q.name), q.name) },
  { key: 'type', label: 'Type', sort: 'type' },
  { key: 'state', label: 'State', sort: 'state' },
  { key: 'consumers', label: 'Consumers', sort: 'consumers' },
  { key: 'messages_ready', label: 'Ready', sort: 'messages_ready' },
  { key: 'messages_unacknowledged', label: 'Unacked', sort: 'messages_unacknowledged' },
  { key: 'messages', label: 'Total', sort: 'messages' },
  { label: 'Publish /s', value: (q) => rate(q.message_stats, 'publish') },
  { label: 'Deliver /s', value: (q) => rate(q.message_stats, 'deliver_get') },
];

export function queues(root, session) {
  root.append(h('h1', {}, 'Queues'));
  const refresh = pagedList(root, { key: 'queues', base: '/api/queues', columns: QUEUE_COLUMNS, empty: 'No queues.' });
  root.append(declareQueueForm(session));
  return refresh;
}

function declareQueueForm(session) {
  const inputs = [
    { name: 'vhost', label: 'Vhost', options: session.vhosts, value: '/' },
    { name: 'name', label: 'Name' },
    { name: 'type', label: 'Type', options: ['classic', 'quorum'] },
    { name: 'durable', label: 'Durable', type: 'checkbox', value: true },
    { name: 'arguments', label: 'Arguments (JSON)', placeholder: '{"x-max-length": 1000}' },
  ];
  return form('Add a queue', inputs, 'Add queue', (v) => attempt(async () => {
    const body = { durable: v.durable, auto_delete: false, arguments: { ...parseJson(v.arguments, 'Arguments'), 'x-queue-type': v.type } };
    await api(path`/api/queues/${v.vhost}/${v.name}`, { method: 'PUT', body });
    location.hash = queueHref(v.vhost, v.name);
  }, 'Queue declared'));
}

const CONSUMER_COLUMNS = [
  { key: 'consumer_tag', label: 'Tag' },
  { label: 'Channel', value: (c) => c.channel_details && c.channel_details.name },
  { key: 'ack_required', label: 'Ack required' },
  { key: 'prefetch_count', label: 'Prefetch' },
  { key: 'active', label: 'Active' },
];
export const BINDING_COLUMNS = [
  { label: 'From', value: (b) => link(exchangeHref(b.vhost, b.source), b.source || '(default)') },
  { label: 'To', value: (b) => (b.destination_type === 'queue' ? link(queueHref(b.vhost, b.destination), b.destination) : b.destination) },
  { key: 'routing_key', label: 'Routing key' },
  { key: 'arguments', label: 'Arguments' },
];

export function queue(root, session, [vhost, name]) {
  const plots = h('div', { class: 'plots' });
  const details = h('div');
  const consumers = h('div');
  const bindings = h('div');
  const messages = h('div', { class: 'messages' });
  const key = `queue.${vhost}.${name}`;
  const url = path`/api/queues/${vhost}/${name}`;
  root.append(
    h('h1', {}, 'Queue ', h('q', {}, name), h('small', {}, ` in vhost ${vhost}`)),
    plots,
    section('Details', details),
    section('Consumers', consumers),
    section('Bindings', bindings, bindForm(vhost, name)),
    section('Get messages', getForm(url, messages), messages),
    section('Publish a message', publishForm(vhost, '', name)),
    section('Purge or delete',
      dangerButton('Purge', () => attempt(() => api(`${url}/contents`, { method: 'DELETE' }), 'Queue purged')),
      dangerButton('Delete', () => attempt(async () => {
        await api(url, { method: 'DELETE' });
        location.hash = '#/queues';
      }, 'Queue deleted'))),
  );
  return async () => {
    const [info, bound] = await Promise.all([api(url), api(`${url}/bindings`)]);
    replace(plots,
      plot('Messages', record(`${key}.queued`, queued(info)), ['ready', 'unacked'], session.window()),
      plot('Message rates', record(`${key}.rates`, rates(info.message_stats)), Object.keys(RATES), session.window(), '/s'));
    replace(details,
      fields(info, ['type', 'state', 'durable', 'auto_delete', 'exclusive', 'consumers', 'messages', 'message_bytes', 'policy', 'operator_policy']),
      h('h3', {}, 'Arguments'), fields(info.arguments),
      h('h3', {}, 'Effective policy definition'), fields(info.effective_policy_definition));
    replace(consumers, table(CONSUMER_COLUMNS, info.consumer_details || [], { empty: 'No consumers.' }));
    replace(bindings, table(BINDING_COLUMNS, bound));
  };
}

function bindForm(vhost, queueName) {
  const inputs = [{ name: 'source', label: 'From exchange' }, { name: 'routing_key', label: 'Routing key' }];
  return form(null, inputs, 'Bind', (v) => attempt(() => api(path`/api/bindings/${vhost}/e/${v.source}/q/${queueName}`,
    { method: 'POST', body: { routing_key: v.routing_key, arguments: {} } }), 'Bound'));
}

const ACKMODES = ['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false'];

function getForm(url, output) {
  const inputs = [
    { name: 'ackmode', label: 'Ack mode', options: ACKMODES },
    { name: 'encoding', label: 'Encoding', options: ['auto', 'base64'] },
    { name: 'count', label: 'Messages', type: 'number', value: 1 },
    { name: 'truncate', label: 'Truncate to bytes', type: 'number', value: 50000 },
  ];
  return form(null, inputs, 'Get messages', (v) => attempt(async () => {
    const body = { ackmode: v.ackmode, encoding: v.encoding, count: Number(v.count), truncate: Number(v.truncate) };
    const got = await api(`${url}/get`, { method: 'POST', body });
    replace(output, got.length ? got.map(message) : h('p', { class: 'empty' }, 'Queue is empty.'));
  }));
}

function message(m) {
  return h('article', { class: 'message card' },
    fields(m, ['exchange', 'routing_key', 'redelivered', 'message_count', 'payload_bytes', 'payload_encoding']),
    h('h4', {}, 'Properties'), fields(m.properties),
    h('h4', {}, 'Payload'), h('pre', { class: 'payload' }, m.payload));
}

// Publishes through the exchange's /publish endpoint; a fixed routing key (a queue's name, through the
// default exchange) is prefilled.
export function publishForm(vhost, exchange, routingKey = '') {
  const inputs = [
    { name: 'routing_key', label: 'Routing key', value: routingKey },
    { name: 'delivery_mode', label: 'Delivery mode', options: ['1 (transient)', '2 (persistent)'] },
    { name: 'headers', label: 'Headers (JSON)', placeholder: '{"x-trace": "1"}' },
    { name: 'properties', label: 'Other properties (JSON)', placeholder: '{"content_type": "text/plain"}' },
    { name: 'payload_encoding', label: 'Payload encoding', options: ['string', 'base64'] },
    { name: 'payload', label: 'Payload', type: 'textarea' },
  ];
  const name = exchange || 'amq.default';
  return form(null, inputs, 'Publish', (v) => attempt(async () => {
    const properties = { ...parseJson(v.properties, 'Properties'), delivery_mode: Number(v.delivery_mode[0]) };
    const headers = parseJson(v.headers, 'Headers');
    if (Object.keys(headers).length) properties.headers = headers;
    const body = { routing_key: v.routing_key, properties, payload: v.payload, payload_encoding: v.payload_encoding };
    return api(path`/api/exchanges/${vhost}/${name}/publish`, { method: 'POST', body });
  }, (result) => (result.routed ? 'Message published' : 'Message published but not routed')));
}
