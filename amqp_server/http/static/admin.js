// Admin (users, vhosts, permissions: administrator; policies: policymaker) and definitions
// (download and upload: administrator). The API enforces the tags; the pages only hide what it would refuse.

import { api, path } from './api.js';
import { attempt, dangerButton, form, h, parseJson, replace, section, show, table } from './ui.js';

function removeButton(label, url, refresh) {
  return dangerButton(label, () => attempt(async () => {
    await api(url, { method: 'DELETE' });
    await refresh();
  }, 'Deleted'));
}

function usersSection(refreshAll) {
  const list = h('div');
  const add = form('Add or update a user', [
    { name: 'name', label: 'Name' },
    { name: 'password', label: 'Password', type: 'password' },
    { name: 'tags', label: 'Tags', placeholder: 'administrator, monitoring, policymaker, management' },
  ], 'Save user', (v) => attempt(async () => {
    await api(path`/api/users/${v.name}`, { method: 'PUT', body: { password: v.password, tags: v.tags } });
    await refreshAll();
  }, 'User saved'));
  const refresh = async () => {
    const users = await api('/api/users');
    replace(list, table([
      { key: 'name', label: 'Name' },
      { label: 'Tags', value: (u) => show(u.tags) },
      { label: '', value: (u) => removeButton('Delete', path`/api/users/${u.name}`, refreshAll) },
    ], users));
  };
  return { element: section('Users', list, add), refresh };
}

function vhostsSection(session, refreshAll) {
  const list = h('div');
  const add = form('Add a vhost', [{ name: 'name', label: 'Name' }], 'Add vhost', (v) => attempt(async () => {
    await api(path`/api/vhosts/${v.name}`, { method: 'PUT', body: {} });
    await refreshAll();
  }, 'Vhost added'));
  const refresh = async () => {
    const vhosts = await api('/api/vhosts');
    // in place: the session's list (the other pages' vhost choices) is this same array
    session.vhosts.splice(0, Infinity, ...vhosts.map((v) => v.name));
    replace(list, table([
      { key: 'name', label: 'Name' },
      { key: 'messages', label: 'Messages' },
      { label: '', value: (v) => removeButton('Delete', path`/api/vhosts/${v.name}`, refreshAll) },
    ], vhosts));
  };
  return { element: section('Virtual hosts', list, add), refresh };
}

function permissionsSection(refreshAll) {
  const list = h('div');
  const add = form('Set permissions', [
    { name: 'user', label: 'User' },
    { name: 'vhost', label: 'Vhost', value: '/' },
    { name: 'configure', label: 'Configure', value: '.*' },
    { name: 'write', label: 'Write', value: '.*' },
    { name: 'read', label: 'Read', value: '.*' },
  ], 'Set permissions', (v) => attempt(async () => {
    const body = { configure: v.configure, write: v.write, read: v.read };
    await api(path`/api/permissions/${v.vhost}/${v.user}`, { method: 'PUT', body });
    await refreshAll();
  }, 'Permissions set'));
  const refresh = async () => {
    replace(list, table([
      { key: 'user', label: 'User' },
      { key: 'vhost', label: 'Vhost' },
      { key: 'configure', label: 'Configure' },
      { key: 'write', label: 'Write' },
      { key: 'read', label: 'Read' },
      { label: '', value: (p) => removeButton('Clear', path`/api/permissions/${p.vhost}/${p.user}`, refreshAll) },
    ], await api('/api/permissions')));
  };
  return { element: section('Permissions', list, add), refresh };
}

function policiesSection(refreshAll) {
  const list = h('div');
  const add = form('Add or update a policy', [
    { name: 'vhost', label: 'Vhost', value: '/' },
    { name: 'name', label: 'Name' },
    { name: 'pattern', label: 'Pattern', value: '^' },
    { name: 'apply-to', label: 'Apply to', options: ['all', 'queues', 'exchanges', 'classic_queues', 'quorum_queues'] },
    { name: 'priority', label: 'Priority', type: 'number', value: 0 },
    { name: 'definition', label: 'Definition (JSON)', placeholder: '{"max-length": 1000}' },
  ], 'Save policy', (v) => attempt(async () => {
    const body = { pattern: v.pattern, 'apply-to': v['apply-to'], priority: Number(v.priority), definition: parseJson(v.definition, 'Definition') };
    await api(path`/api/policies/${v.vhost}/${v.name}`, { method: 'PUT', body });
    await refreshAll();
  }, 'Policy saved'));
  const refresh = async () => {
    replace(list, table([
      { key: 'vhost', label: 'Vhost' },
      { key: 'name', label: 'Name' },
      { key: 'pattern', label: 'Pattern' },
      { key: 'apply-to', label: 'Apply to' },
      { key: 'priority', label: 'Priority' },
      { label: 'Definition', value: (p) => show(p.definition) },
      { label: '', value: (p) => removeButton('Delete', path`/api/policies/${p.vhost}/${p.name}`, refreshAll) },
    ], await api('/api/policies'), { empty: 'No policies.' }));
  };
  return { element: section('Policies', list, add), refresh };
}

export function admin(root, session) {
  const parts = [];
  const refreshAll = () => Promise.all(parts.map((part) => part.refresh()));
  if (session.can('administrator')) parts.push(usersSection(refreshAll), vhostsSection(session, refreshAll), permissionsSection(refreshAll));
  if (session.can('policymaker')) parts.push(policiesSection(refreshAll));
  root.append(h('h1', {}, 'Admin'), ...parts.map((part) => part.element));
  return refreshAll;
}

export function definitions(root) {
  const download = h('button', { type: 'button' }, 'Download definitions');
  download.addEventListener('click', () => attempt(async () => {
    // fetched with the credentials header, then saved from a Blob: a plain link could not send it
    const data = await api('/api/definitions');
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
    const anchor = h('a', { href: url, download: 'definitions.json' });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }));
  const file = h('input', { type: 'file', accept: 'application/json,.json', 'aria-label': 'definitions file' });
  const upload = h('button', { type: 'button' }, 'Upload definitions');
  upload.addEventListener('click', () => attempt(async () => {
    if (!file.files.length) throw new Error('Choose a definitions file first');
    const text = await file.files[0].text();
    parseJson(text, 'The file');
    await api('/api/definitions', { method: 'POST', body: text });
  }, 'Definitions imported'));
  root.append(h('h1', {}, 'Definitions'),
    section('Export', h('p', {}, 'Users, vhosts, permissions, policies, queues, exchanges and bindings as JSON.'), download),
    section('Import', h('p', {}, 'Adds what the file defines to the broker (RabbitMQ\'s format).'), file, upload));
  return async () => {};
}
