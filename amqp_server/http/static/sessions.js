// Exchanges (list, one exchange's bindings and publish), connections (details, close with a reason),
// channels and consumers.

import { api, path } from './api.js';
import { pagedList } from './list.js';
import { BINDING_COLUMNS, exchangeHref, publishForm, queueHref } from './queues.js';
import { attempt, dangerButton, fields, form, h, link, replace, section, show, table } from './ui.js';

const EXCHANGE_COLUMNS = [
  { key: 'vhost', label: 'Vhost', sort: 'vhost' },
  { label: 'Name', sort: 'name', value: (e) => link(exchangeHref(e.vhost, e.name), e.name || '(AMQP default)') },
  { key: 'type', label: 'Type', sort: 'type' },
  { key: 'durable', label: 'Durable', sort: 'durable' },
  { key: 'internal', label: 'Internal' },
  { key: 'policy', label: 'Policy' },
];

export function exchanges(root) {
  root.append(h('h1', {}, 'Exchanges'));
  return pagedList(root, { key: 'exchanges', base: '/api/exchanges', columns: EXCHANGE_COLUMNS });
}

export function exchange(root, session, [vhost, name]) {
  const details = h('div');
  const outgoing = h('div');
  const incoming = h('div');
  const url = path`/api/exchanges/${vhost}/${name}`;
  const isDefault = name === 'amq.default';
  root.append(
    h('h1', {}, 'Exchange ', h('q', {}, name), h('small', {}, ` in vhost ${vhost}`)),
    section('Details', details),
    section('Bindings from this exchange', outgoing),
    section('Bindings to this exchange', incoming),
    section('Publish a message', publishForm(vhost, name)),
  );
  if (!isDefault && !name.startsWith('amq.')) {
    root.append(section('Delete', dangerButton('Delete exchange', () => attempt(async () => {
      await api(url, { method: 'DELETE' });
      location.hash = '#/exchanges';
    }, 'Exchange deleted'))));
  }
  return async () => {
    const info = await api(url);
    replace(details, fields(info, ['type', 'durable', 'auto_delete', 'internal', 'policy', 'arguments']));
    if (isDefault) {
      // RabbitMQ lists no bindings of the default exchange here: every queue is bound to it by name
      replace(outgoing, h('p', { class: 'empty' }, 'Every queue, by its name.'));
      return;
    }
    const [source, destination] = await Promise.all([api(`${url}/bindings/source`), api(`${url}/bindings/destination`)]);
    replace(outgoing, table(BINDING_COLUMNS, source));
    replace(incoming, table(BINDING_COLUMNS, destination));
  };
}

export function connectionHref(name) {
  return `#/connections/${encodeURIComponent(name)}`;
}

const CONNECTION_COLUMNS = [
  { label: 'Name', sort: 'name', value: (c) => link(connectionHref(c.name), c.name) },
  { key: 'user', label: 'User', sort: 'user' },
  { key: 'vhost', label: 'Vhost', sort: 'vhost' },
  { key: 'state', label: 'State', sort: 'state' },
  { key: 'channels', label: 'Channels', sort: 'channels' },
  { key: 'protocol', label: 'Protocol' },
  { label: 'Client', value: (c) => [c.client_properties?.product, c.client_properties?.version].filter(Boolean).join(' ') },
  { key: 'user_provided_name', label: 'Client-given name' },
];

export function connections(root) {
  root.append(h('h1', {}, 'Connections'));
  return pagedList(root, { key: 'connections', base: '/api/connections', columns: CONNECTION_COLUMNS, empty: 'No connections.' });
}

const CHANNEL_COLUMNS = [
  { key: 'name', label: 'Channel', sort: 'name' },
  { label: 'Connection', value: (c) => link(connectionHref(c.connection_details.name), c.connection_details.name) },
  { key: 'user', label: 'User', sort: 'user' },
  { key: 'vhost', label: 'Vhost', sort: 'vhost' },
  { key: 'state', label: 'State' },
  { key: 'confirm', label: 'Confirm' },
  { key: 'transactional', label: 'Tx' },
  { key: 'prefetch_count', label: 'Prefetch' },
  { key: 'consumer_count', label: 'Consumers', sort: 'consumer_count' },
  { key: 'messages_unacknowledged', label: 'Unacked', sort: 'messages_unacknowledged' },
];

export function connection(root, session, [name]) {
  const details = h('div');
  const client = h('div');
  const channels = h('div');
  const url = path`/api/connections/${name}`;
  const close = form(null, [{ name: 'reason', label: 'Reason', value: 'Closed via the dashboard' }], 'Close connection',
    (v) => attempt(async () => {
      // X-Reason: the text the client receives in connection.close (320 CONNECTION_FORCED - reason)
      await api(url, { method: 'DELETE', headers: { 'X-Reason': v.reason } });
      location.hash = '#/connections';
    }, 'Connection closed'));
  root.append(
    h('h1', {}, 'Connection ', h('q', {}, name)),
    section('Details', details),
    section('Client properties', client),
    section('Channels', channels),
    section('Close', close),
  );
  return async () => {
    const [info, open] = await Promise.all([api(url), api(`${url}/channels`)]);
    const connectedAt = new Date(info.connected_at).toLocaleString(); // ms since the epoch
    replace(details, fields({ ...info, connected_at: connectedAt }, ['user', 'vhost', 'state', 'protocol', 'auth_mechanism', 'peer_host', 'peer_port',
      'ssl', 'channel_max', 'frame_max', 'timeout', 'connected_at', 'recv_oct', 'send_oct']));
    replace(client, fields(info.client_properties));
    replace(channels, table(CHANNEL_COLUMNS, open, { empty: 'No channels.' }));
  };
}

export function channels(root) {
  root.append(h('h1', {}, 'Channels'));
  return pagedList(root, { key: 'channels', base: '/api/channels', columns: CHANNEL_COLUMNS, empty: 'No channels.' });
}

const CONSUMER_COLUMNS = [
  { label: 'Queue', value: (c) => link(queueHref(c.queue.vhost, c.queue.name), c.queue.name) },
  { label: 'Vhost', value: (c) => c.queue.vhost },
  { key: 'consumer_tag', label: 'Tag' },
  { label: 'Connection', value: (c) => link(connectionHref(c.channel_details.connection_name), c.channel_details.connection_name) },
  { key: 'ack_required', label: 'Ack required' },
  { key: 'exclusive', label: 'Exclusive' },
  { key: 'prefetch_count', label: 'Prefetch' },
  { label: 'Arguments', value: (c) => show(c.arguments) },
];

export function consumers(root) {
  root.append(h('h1', {}, 'Consumers'));
  return pagedList(root, { key: 'consumers', base: '/api/consumers', columns: CONSUMER_COLUMNS, sort: '', empty: 'No consumers.', filterable: false });
}
