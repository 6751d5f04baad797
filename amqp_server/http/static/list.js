// A sortable, filterable, paged table over one of the API's listings. The server does the work
// (page, page_size, name, sort, sort_reverse), so a broker with 100,000 queues sends one page.

import { listing } from './api.js';
import { flash, h, replace, table } from './ui.js';

const PAGE_SIZES = [20, 50, 100, 500];
const STATE_PREFIX = 'amqp-server.list.';

function loadState(key, defaults) {
  try {
    return { ...defaults, ...JSON.parse(sessionStorage.getItem(STATE_PREFIX + key)) };
  } catch {
    return defaults;
  }
}

// Builds the controls and an empty table into root; returns refresh() that fetches and draws the page.
export function pagedList(root, { key, base, columns, sort = 'name', empty, filterable = true }) {
  // filter, sort and page size are kept for the next visit; the page is not: the list may have shrunk
  // since, and a page past the end is an error (400) rather than an empty page
  const state = { ...loadState(key, { page_size: 50, name: '', use_regex: false, sort, sort_reverse: false }), page: 1 };
  const save = () => sessionStorage.setItem(STATE_PREFIX + key, JSON.stringify(state));
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', class: 'filter', 'aria-label': 'filter' });
  filter.value = state.name;
  const regex = h('input', { type: 'checkbox', 'aria-label': 'regular expression' });
  regex.checked = state.use_regex;
  const regexLabel = h('label', {}, regex, ' regex');
  filter.hidden = regexLabel.hidden = !filterable; // consumers have no name to filter on
  const size = h('select', { 'aria-label': 'page size' }, PAGE_SIZES.map((n) => h('option', { value: n }, `${n} per page`)));
  size.value = String(state.page_size);
  const previous = h('button', { type: 'button' }, '‹ Previous');
  const next = h('button', { type: 'button' }, 'Next ›');
  const status = h('span', { class: 'pager-status' });
  const body = h('div', { class: 'list-body' });
  root.append(h('div', { class: 'pager' }, filter, regexLabel, size, previous, status, next), body);

  async function refresh() {
    let page;
    try {
      page = await listing(base, state);
    } catch (error) {
      if (error.status !== 400 || state.page === 1) throw error;
      state.page = 1; // the list shrank under the page we were on (a purge, a delete): start again
      save();
      page = await listing(base, state);
    }
    const sorted = { key: state.sort, reverse: state.sort_reverse };
    replace(body, table(columns, page.items, { onSort, sorted, empty }));
    replace(status, `page ${page.page} of ${Math.max(page.page_count, 1)} · ${page.filtered_count} of ${page.total_count}`);
    previous.disabled = page.page <= 1;
    next.disabled = page.page >= page.page_count;
  }

  function change(update) {
    update();
    save();
    refresh().catch((error) => flash(error.message, 'error'));
  }
  function onSort(column) {
    change(() => {
      state.sort_reverse = state.sort === column ? !state.sort_reverse : false;
      state.sort = column;
      state.page = 1; // a new order: its first page, not the same page number of another order
    });
  }
  let typing;
  filter.addEventListener('input', () => {
    clearTimeout(typing); // one request when the user stops typing, not one per key
    typing = setTimeout(() => change(() => { state.name = filter.value; state.page = 1; }), 250);
  });
  regex.addEventListener('change', () => change(() => { state.use_regex = regex.checked; state.page = 1; }));
  size.addEventListener('change', () => change(() => { state.page_size = Number(size.value); state.page = 1; }));
  previous.addEventListener('click', () => change(() => { state.page -= 1; }));
  next.addEventListener('click', () => change(() => { state.page += 1; }));
  return refresh;
}
