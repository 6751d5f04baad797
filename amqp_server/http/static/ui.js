// DOM helpers. Everything the broker echoes (names, bodies, headers, client properties) reaches the page
// as text nodes or attribute values set through the DOM, never parsed as markup (tests/test_http_dashboard.py
// checks that no script uses an HTML-parsing API).

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// h('a', {href: '#/x'}, 'text', child, ...): an HTML element; strings become text nodes.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(element, ...children) {
  element.replaceChildren();
  return build(element, {}, children);
}

export function number(value) {
  return typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: 2 }) : '';
}

export function bytes(value) {
  if (typeof value !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (value >= 1024 && i < units.length - 1) [value, i] = [value / 1024, i + 1];
  return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A value for a key/value list: objects and arrays as compact JSON text, numbers as they are (a port,
// a timestamp: no thousands separators).
export function show(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

let flashTimer;
export function flash(message, kind = 'ok') {
  const box = document.getElementById('flash');
  replace(box, h('span', { class: kind }, message));
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => box.replaceChildren(), 6000);
}

// Runs an action, reporting its failure (an ApiError's reason) instead of throwing.
export async function attempt(action, done) {
  const page = location.hash;
  try {
    const result = await action();
    if (done) flash(typeof done === 'function' ? done(result) : done);
    // the shell redraws the page's data at once, unless the action left the page (a delete)
    if (location.hash === page) window.dispatchEvent(new Event('dashboard:changed'));
    return result;
  } catch (error) {
    flash(error.message, 'error');
    return undefined;
  }
}

// A button that asks for a second click within a few seconds instead of a modal confirm() dialog.
export function dangerButton(label, action) {
  let armed = null;
  const button = h('button', { type: 'button', class: 'danger' }, label);
  button.addEventListener('click', async () => {
    if (!armed) {
      button.textContent = `Confirm: ${label}`;
      armed = setTimeout(() => { armed = null; button.textContent = label; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.textContent = label;
    await action();
  });
  return button;
}

// columns: [{key, label, value?(row) -> text or Node, sort?: API sort key}]. onSort(key) when a
// sortable header is clicked; sorted = {key, reverse} marks the current one.
export function table(columns, rows, { onSort, sorted, empty = 'Nothing here.' } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = columns.map((column) => {
    if (!column.sort || !onSort) return h('th', {}, column.label);
    const mark = sorted && sorted.key === column.sort ? (sorted.reverse ? ' ▼' : ' ▲') : '';
    return h('th', { class: 'sortable', onclick: () => onSort(column.sort) }, column.label + mark);
  });
  const body = rows.map((row) =>
    h('tr', {}, columns.map((column) => {
      const value = column.value ? column.value(row) : row[column.key];
      if (typeof value === 'number') return h('td', { class: 'num' }, number(value)); // counts, in tables
      return h('td', {}, value instanceof Node ? value : show(value));
    })),
  );
  return h('table', {}, h('thead', {}, h('tr', {}, head)), h('tbody', {}, body));
}

// A key/value list of an object's fields (nested objects shown as JSON).
export function fields(object, keys = Object.keys(object || {})) {
  if (!keys.length) return h('p', { class: 'empty' }, 'None.');
  return h('dl', { class: 'fields' }, keys.map((key) => [h('dt', {}, key), h('dd', {}, show(object[key]))]));
}

// Big numbers in a row (the overview's totals).
export function tiles(object) {
  return h('div', { class: 'tiles' }, Object.entries(object).map(([key, value]) =>
    h('div', { class: 'tile' }, h('b', {}, number(value)), h('span', {}, key.replaceAll('_', ' ')))));
}

// A small form: fields = [{name, label, type?, options?, value?, placeholder?}]; onSubmit(values).
export function form(title, inputs, submitLabel, onSubmit) {
  const controls = inputs.map((input) => {
    let control;
    if (input.options) {
      control = h('select', { name: input.name }, input.options.map((o) => h('option', { value: o }, o)));
      if (input.value !== undefined) control.value = input.value;
    } else if (input.type === 'textarea') {
      control = h('textarea', { name: input.name, rows: 4, placeholder: input.placeholder });
      control.value = input.value || '';
    } else {
      // a password typed here is some other user's: the browser must not offer the logged-in one
      const autocomplete = input.type === 'password' ? 'new-password' : 'off';
      control = h('input', { name: input.name, type: input.type || 'text', placeholder: input.placeholder, autocomplete });
      if (input.type === 'checkbox') control.checked = Boolean(input.value);
      else control.value = input.value ?? '';
    }
    return h('label', {}, input.label, control);
  });
  const element = h('form', { class: 'card' }, title && h('h3', {}, title), controls, h('button', { type: 'submit' }, submitLabel));
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    for (const control of element.elements) {
      if (control.name) values[control.name] = control.type === 'checkbox' ? control.checked : control.value;
    }
    await onSubmit(values, element);
  });
  return element;
}

// Parses a JSON text typed into a form ('' is {}); throws a readable error.
export function parseJson(text, what) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}

export function link(href, text) {
  return h('a', { href }, text);
}

export function section(title, ...children) {
  return h('section', {}, h('h2', {}, title), ...children);
}
