// The JSON API client: every request carries the user's credentials in an Authorization header.
// They are kept in sessionStorage (this tab only, gone when it closes) and never in a cookie, so no
// other site can make the browser send an authenticated request; credentials: 'omit' also keeps the
// browser's own Basic-auth prompt away when the broker answers 401.

const AUTH_KEY = 'amqp-server.auth';

export class ApiError extends Error {
  constructor(status, reason, error) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.error = error; // RabbitMQ's "error" field: not_authorized (login failed) vs not_authorised (a tag)
  }

  // A 401 that means the credentials no longer work (not one for a missing tag or vhost permission)
  get loggedOut() {
    return this.status === 401 && this.error !== 'not_authorised';
  }
}

function encodeBase64(text) {
  // btoa() takes Latin-1 only: encode as UTF-8 first, as the broker decodes the header
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function setCredentials(username, password) {
  sessionStorage.setItem(AUTH_KEY, encodeBase64(`${username}:${password}`));
}

export function clearCredentials() {
  sessionStorage.removeItem(AUTH_KEY);
}

export function hasCredentials() {
  return sessionStorage.getItem(AUTH_KEY) !== null;
}

// path`/api/queues/${vhost}/${name}`: every interpolated value is URL-encoded ("/" becomes %2F,
// as the API wants for the default vhost), so a name can never add a path segment or a query.
export function path(strings, ...values) {
  return strings.reduce((out, piece, i) => out + piece + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

function init(method, body, headers) {
  const init = {
    method,
    credentials: 'omit',
    cache: 'no-store',
    headers: { Authorization: `Basic ${sessionStorage.getItem(AUTH_KEY) || ''}`, ...headers },
  };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  return init;
}

async function failure(response) {
  let reason = response.statusText;
  let error;
  try {
    const body = await response.json();
    reason = body.reason || body.error || reason;
    error = body.error;
  } catch {
    // an empty body (405, a bare 401): the status text says it
  }
  return new ApiError(response.status, typeof reason === 'string' ? reason : JSON.stringify(reason), error);
}

// One request; resolves to the parsed JSON body (null when there is none), rejects with ApiError.
export async function api(url, { method = 'GET', body, headers = {}, signal } = {}) {
  const response = await fetch(url, { ...init(method, body, headers), signal });
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// A streaming answer of one JSON object per line (application/x-ndjson): onObject(obj) for each,
// until the stream ends or signal aborts. Lines may arrive split across chunks, hence the buffer.
export async function stream(url, onObject, signal) {
  const response = await fetch(url, { ...init('GET', undefined, {}), signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split('\n');
    buffer = lines.pop();
    for (const line of lines) if (line.trim()) onObject(JSON.parse(line));
  }
}

// A paged listing (page, page_size, name, sort, sort_reverse, as the API takes them).
export function listing(base, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== '' && value !== undefined) params.set(key, value);
  return api(`${base}?${params}`);
}
