// Shared by the console and the storefront demo: a GraphQL client over the public API (HTTP POST, and
// graphql-transport-ws through the vendored graphql-ws), money and date formatting in the shop's
// currency and time zone, and a tiny DOM builder. No framework, no build step, no CDN.

export class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => `${e.extensions?.code || 'ERROR'}: ${e.message}`).join('; '));
    this.errors = errors;
    this.codes = errors.map((e) => e.extensions?.code || 'ERROR');
  }
}

/** Credentials are a bearer token, or (storefront before sign-in) the shop's public key. */
export class Api {
  constructor({ token = null, shopKey = null } = {}) {
    this.token = token;
    this.shopKey = shopKey;
  }

  headers() {
    const h = { 'Content-Type': 'application/json' };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    if (this.shopKey) h['X-Shop-Key'] = this.shopKey;
    return h;
  }

  /** The `data` of a query or mutation; top-level errors (UNAUTHENTICATED, FORBIDDEN, ...) throw ApiError. */
  async gql(query, variables = {}) {
    let res;
    try {
      res = await fetch('/graphql', { method: 'POST', headers: this.headers(), body: JSON.stringify({ query, variables }) });
    } catch (e) {
      throw new ApiError([{ message: `the API cannot be reached (${e.message})`, extensions: { code: 'NETWORK' } }]);
    }
    let body;
    try {
      body = await res.json();
    } catch (e) {
      throw new ApiError([{ message: `HTTP ${res.status}`, extensions: { code: 'HTTP_' + res.status } }]);
    }
    if (body.errors && body.errors.length) throw new ApiError(body.errors);
    return body.data;
  }

  /** A mutation `name(input: $input) { <fields> errors { code field message rule } }`: its payload. */
  async mutate(name, inputType, input, fields = '') {
    const q = `mutation($input: ${inputType}!) { ${name}(input: $input) { ${fields} errors { code field message rule } } }`;
    return (await this.gql(q, { input }))[name];
  }

  /** GET a path with the token (settlement exports): a Blob. */
  async download(path) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!res.ok) {
      let err = { code: 'HTTP_' + res.status, message: res.statusText };
      try { err = (await res.json()).error || err; } catch (e) { /* not JSON */ }
      throw new ApiError([{ message: err.message, extensions: { code: err.code } }]);
    }
    return res.blob();
  }

  /** graphql-transport-ws: the same credentials go in connection_init's payload (browsers cannot set
   * websocket headers). Returns a function that ends the subscription. */
  subscribe(query, variables, { next, error = () => {}, complete = () => {} }) {
    if (!this.ws) {
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
      const params = this.token ? { Authorization: `Bearer ${this.token}` } : { shopKey: this.shopKey };
      this.ws = globalThis.graphqlWs.createClient({ url, connectionParams: params, lazy: true, retryAttempts: 5 });
    }
    return this.ws.subscribe({ query, variables }, {
      next: (msg) => (msg.errors ? error(new ApiError(msg.errors)) : next(msg.data)),
      error: (e) => error(e instanceof Error ? e : new ApiError([{ message: String(e.reason || e.type || e), extensions: { code: 'SOCKET' } }])),
      complete,
    });
  }

  close() {
    if (this.ws) this.ws.dispose();
    this.ws = null;
  }
}

// ------------------------------------------------------------------ money and dates of the shop
/** Formats for one shop: money is integer minor units of an ISO 4217 currency; dates are shown in the
 * shop's IANA time zone, so "today" in a Shanghai shop starts at 16:00 UTC for everyone. */
export function shopFormat(shop) {
  const money = new Intl.NumberFormat(undefined, { style: 'currency', currency: shop.currency });
  const digits = money.resolvedOptions().maximumFractionDigits;
  const dateTime = new Intl.DateTimeFormat(undefined, { timeZone: shop.timezone, dateStyle: 'medium', timeStyle: 'short' });
  const dateOnly = new Intl.DateTimeFormat(undefined, { timeZone: shop.timezone, dateStyle: 'medium' });
  return {
    currency: shop.currency,
    timezone: shop.timezone,
    digits,
    money: (minor) => (minor === null || minor === undefined ? '—' : money.format(minor / 10 ** digits)),
    /** "79.5" → 7950 for a 2-digit currency, exactly (no float arithmetic); null when empty. */
    parseMoney(text) {
      const t = String(text ?? '').trim();
      if (!t) return null;
      const m = /^(-?)(\d*)(?:[.,](\d*))?$/.exec(t);
      if (!m || (m[2] === '' && !m[3])) throw new Error(`not an amount: ${t}`);
      const frac = (m[3] || '');
      if (frac.length > digits) throw new Error(`${shop.currency} has ${digits} decimal places: ${t}`);
      const minor = Number((m[2] || '0') + frac.padEnd(digits, '0'));
      return m[1] ? -minor : minor;
    },
    /** 7950 → "79.50": for prefilling inputs. */
    moneyInput: (minor) => (minor === null || minor === undefined ? '' : digits
      ? `${minor < 0 ? '-' : ''}${Math.floor(Math.abs(minor) / 10 ** digits)}.${String(Math.abs(minor) % 10 ** digits).padStart(digits, '0')}`
      : String(minor)),
    dateTime: (iso) => (iso ? dateTime.format(new Date(iso)) : '—'),
    date: (ymd) => (ymd ? dateOnly.format(new Date(`${ymd}T12:00:00Z`)) : '—'),
    /** The shop's local calendar day of an instant, YYYY-MM-DD. */
    localDay(instant = new Date()) {
      const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: shop.timezone, year: 'numeric', month: '2-digit', day: '2-digit' })
        .formatToParts(instant).map((x) => [x.type, x.value]));
      return `${p.year}-${p.month}-${p.day}`;
    },
    /** A wall-clock time of the shop ("2026-12-01T09:30") as an ISO instant with offset. */
    zonedToInstant(local) {
      const [d, t = '00:00'] = local.split('T');
      const [y, mo, da] = d.split('-').map(Number);
      const [hh, mm] = t.split(':').map(Number);
      const wall = Date.UTC(y, mo - 1, da, hh, mm);
      let guess = wall;
      for (let i = 0; i < 3; i++) guess = wall - tzOffsetMs(guess, shop.timezone);
      return new Date(guess).toISOString();
    },
    /** An instant as the shop's wall-clock "YYYY-MM-DDTHH:MM" (for datetime-local inputs). */
    instantToZoned(instant) {
      const ms = new Date(instant).getTime();
      return new Date(ms + tzOffsetMs(ms, shop.timezone)).toISOString().slice(0, 16);
    },
  };
}

function tzOffsetMs(utcMs, timeZone) {
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(utcMs)).map((x) => [x.type, x.value]));
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second);
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

export function addDays(ymd, n) {
  const d = new Date(`${ymd}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// ------------------------------------------------------------------ DOM
/** h('button', {class: 'x', onclick}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'rect', 'line', 'text', 'circle', 'g', 'path', 'title', 'polyline'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' && !svg) el.value = v;
    else if (k === 'checked' && !svg) el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Payload errors of a mutation, by code (ER-1): "CODE on field: message (rule)". */
export function errorList(errors) {
  return h('ul', { class: 'errors', role: 'alert' }, errors.map((e) => h('li', { 'data-code': e.code || e.extensions?.code },
    h('code', {}, e.code || e.extensions?.code || 'ERROR'), e.field ? ` on ${e.field}` : '', `: ${e.message}`, e.rule ? ` (${e.rule})` : '')));
}
