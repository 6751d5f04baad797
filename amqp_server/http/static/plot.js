// Line plots of values sampled at each refresh. The samples are kept per plot in sessionStorage, so
// the history survives a refresh of the page (and a visit to another page) for the chosen window.

import { h, number, svg } from './ui.js';

const HISTORY_PREFIX = 'amqp-server.history.';
const MAX_AGE_MS = 3600 * 1000; // the longest window offered; older samples are dropped
const MAX_SAMPLES = 4000; // an hour at one sample a second, with room: bounds sessionStorage use
const MIN_SPAN_MS = 10 * 1000;
const WIDTH = 560;
const HEIGHT = 160;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };
const COLOURS = ['#d35400', '#2471a3', '#1e8449', '#8e44ad', '#b7950b', '#566573'];

function load(key) {
  try {
    return JSON.parse(sessionStorage.getItem(HISTORY_PREFIX + key)) || [];
  } catch {
    return [];
  }
}

// Adds one sample {t, values: {series: number}} to the plot's history and returns the history.
export function record(key, values, now = Date.now()) {
  const samples = load(key).filter((sample) => now - sample.t <= MAX_AGE_MS);
  samples.push({ t: now, values });
  const kept = samples.slice(-MAX_SAMPLES);
  const text = JSON.stringify(kept);
  try {
    sessionStorage.setItem(HISTORY_PREFIX + key, text);
  } catch {
    // storage full (many queue pages visited): keep this plot's history, drop the others'
    for (const other of Object.keys(sessionStorage)) {
      if (other.startsWith(HISTORY_PREFIX) && other !== HISTORY_PREFIX + key) sessionStorage.removeItem(other);
    }
    try {
      sessionStorage.setItem(HISTORY_PREFIX + key, text);
    } catch {
      // still too big: this render draws from memory
    }
  }
  return kept;
}

// A number from an API object, missing keys (e.g. no message_stats yet) as 0.
export function value(object, ...keys) {
  let current = object;
  for (const key of keys) current = current && typeof current === 'object' ? current[key] : undefined;
  return typeof current === 'number' ? current : 0;
}

// The rate of one message_stats counter (its *_details.rate), 0 when absent.
export function rate(stats, key) {
  return value(stats, `${key}_details`, 'rate');
}

function niceMax(max) {
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * magnitude).find((m) => m >= max);
}

// An SVG plot of the series named in `names` over the last windowSeconds of `samples`.
export function plot(title, samples, names, windowSeconds, unit = '') {
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const shown = samples.filter((sample) => now - sample.t <= windowSeconds * 1000);
  // the x axis spans the window, or the history so far while it is shorter (at least MIN_SPAN_MS),
  // so a fresh plot is readable at once instead of a sliver at the right edge
  const span = Math.min(windowSeconds * 1000, Math.max(MIN_SPAN_MS, shown.length ? now - shown[0].t : 0));
  const max = niceMax(Math.max(0, ...shown.flatMap((s) => names.map((n) => s.values[n] || 0))));
  const x = (t) => PAD.left + ((t - (now - span)) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / max) * (HEIGHT - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1].map((f) => [
    svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(max * f), y2: y(max * f), class: 'grid' }),
    svg('text', { x: PAD.left - 4, y: y(max * f) + 4, class: 'axis', 'text-anchor': 'end' }, number(max * f)),
  ]);
  const lines = names.map((name, i) => {
    const points = shown.map((s) => `${x(s.t).toFixed(1)},${y(s.values[name] || 0).toFixed(1)}`);
    // a lone first sample is drawn as a dot-sized segment, so the plot shows something at once
    const d = points.length === 1 ? `M${points[0]}h-2` : points.length ? `M${points.join('L')}` : '';
    return svg('path', { d, stroke: COLOURS[i % COLOURS.length], class: 'series', dataset: { series: name } });
  });
  const axis = svg('text', { x: WIDTH - PAD.right, y: HEIGHT - 4, class: 'axis', 'text-anchor': 'end' }, `last ${Math.round(span / 1000)} s`);
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'plot', role: 'img', 'aria-label': title }, grid, lines, axis);
  const latest = shown.length ? shown[shown.length - 1].values : {};
  const legend = h('ul', { class: 'legend' }, names.map((name, i) =>
    h('li', {}, h('span', { class: 'swatch', dataset: { colour: i } }), `${name} `, h('b', {}, number(latest[name] || 0) + unit)),
  ));
  return h('figure', { class: 'plot-box' }, h('figcaption', {}, title), chart, legend);
}
