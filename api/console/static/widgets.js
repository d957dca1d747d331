// Building blocks of the console screens: cursor-paged tables, mutation forms that show payload errors
// by code, and two SVG charts.
import { ApiError, errorList, h } from './lib.js';

/** A table over one connection of the API, paged forward with `first`/`after` (the API's cursors) and
 * back through the cursors already seen. `load(after)` returns the connection; `columns` are
 * [header, node => cell]; `actions(node, reload)` gives per-row buttons. */
export function pagedTable({ load, columns, actions = null, empty = 'Nothing here.', id = null }) {
  const box = h('div', { class: 'paged', id });
  const stack = [null]; // the `after` of every page seen; the last is the current one
  async function render() {
    box.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    let conn;
    try {
      conn = await load(stack[stack.length - 1]);
    } catch (e) {
      box.replaceChildren(errorList(e.errors || [{ message: e.message }]));
      return;
    }
    const rows = conn.edges.map(({ node }) => h('tr', { 'data-id': node.id },
      columns.map(([, cell]) => h('td', {}, cell(node))),
      actions ? h('td', { class: 'actions' }, actions(node, render)) : null));
    const page = stack.length;
    box.replaceChildren(
      rows.length ? h('table', {}, h('thead', {}, h('tr', {}, columns.map(([t]) => h('th', {}, t)), actions ? h('th', {}, '') : null)),
        h('tbody', {}, rows)) : h('p', { class: 'muted' }, empty),
      h('div', { class: 'pager' },
        h('span', { class: 'muted' }, `${conn.totalCount} in all · page ${page}`),
        h('button', { disabled: page === 1, onclick: () => { stack.pop(); render(); } }, '← Previous'),
        h('button', { disabled: !conn.pageInfo.hasNextPage, class: 'next-page',
          onclick: () => { stack.push(conn.pageInfo.endCursor); render(); } }, 'Next →'),
        h('button', { onclick: render, title: 'Reload this page' }, '↻')));
  }
  box.reload = render;
  render();
  return box;
}

/** A form whose submit runs `submit(values)` → a mutation payload; its `errors` are shown by code,
 * else `done(payload)` runs. Fields: {name, label, type: text|number|money|bp|date|datetime|checkbox|
 * select|textarea, value, required, options, hint}. */
export function mutationForm({ title = null, fields, submitLabel, submit, done = () => {}, fmt, id = null, compact = false }) {
  const out = h('div', { class: 'form-result' });
  const inputs = {};
  const rows = fields.map((f) => {
    let input;
    const common = { name: f.name, id: id ? `${id}-${f.name}` : null, required: f.required };
    if (f.type === 'checkbox') input = h('input', { ...common, type: 'checkbox', checked: f.value });
    else if (f.type === 'select') input = h('select', common, f.options.map((o) => h('option', { value: o[0], selected: o[0] === f.value }, o[1])));
    else if (f.type === 'textarea') input = h('textarea', { ...common, rows: f.rows || 3, placeholder: f.placeholder }, f.value || '');
    else {
      const type = { number: 'number', bp: 'number', date: 'date', datetime: 'datetime-local' }[f.type] || 'text';
      input = h('input', { ...common, type, value: f.value ?? '', placeholder: f.placeholder || (f.type === 'money' ? `0${fmt && fmt.digits ? '.' + '0'.repeat(fmt.digits) : ''}` : null),
        step: f.type === 'number' || f.type === 'bp' ? '1' : null, inputmode: f.type === 'money' ? 'decimal' : null });
    }
    inputs[f.name] = [f, input];
    return h('label', { class: f.type === 'checkbox' ? 'check' : null }, h('span', {}, f.label, f.type === 'money' && fmt ? ` (${fmt.currency})` : '', f.type === 'bp' ? ' (bp)' : ''),
      input, f.hint ? h('small', { class: 'muted' }, f.hint) : null);
  });
  const form = h('form', { class: compact ? 'compact' : null, id, onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const values = {};
    try {
      for (const [name, [f, input]] of Object.entries(inputs)) {
        const raw = f.type === 'checkbox' ? input.checked : input.value;
        if (f.type === 'checkbox') values[name] = raw;
        else if (raw === '' || raw === null) values[name] = null;
        else if (f.type === 'number' || f.type === 'bp') values[name] = Number(raw);
        else if (f.type === 'money') values[name] = fmt.parseMoney(raw);
        else if (f.type === 'datetime') values[name] = fmt.zonedToInstant(raw);
        else values[name] = raw;
      }
    } catch (e) {
      out.replaceChildren(errorList([{ code: 'INVALID_INPUT', message: e.message }]));
      return;
    }
    button.disabled = true;
    try {
      const payload = await submit(values);
      if (payload.errors && payload.errors.length) out.replaceChildren(errorList(payload.errors));
      else {
        out.replaceChildren(h('p', { class: 'ok', role: 'status' }, 'Done.'));
        done(payload);
      }
    } catch (e) {
      out.replaceChildren(errorList(e instanceof ApiError ? e.errors : [{ code: 'INVALID_INPUT', message: e.message }]));
    } finally {
      button.disabled = false;
    }
  } }, rows);
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  form.append(h('div', { class: 'form-actions' }, button), out);
  return title ? h('section', { class: 'card' }, h('h3', {}, title), form) : form;
}

// ------------------------------------------------------------------ charts (SVG)
/** RP-2: formation rate per variant (bars, 0–100 %), and each comparison's difference with its 95 %
 * interval against zero (a forest plot): where the interval excludes zero, the variant differs. */
export function statsChart(stats) {
  const W = 640, barH = 26, pad = 140;
  const vs = stats.variants.length ? stats.variants : [stats.total];
  const x = (bp) => pad + (bp / 10000) * (W - pad - 60);
  const bars = h('svg', { viewBox: `0 0 ${W} ${vs.length * (barH + 8) + 30}`, class: 'chart', role: 'img', 'aria-label': 'Formation rate per variant' },
    h('text', { x: 0, y: 14, class: 'axis' }, 'Formation rate'),
    [0, 2500, 5000, 7500, 10000].map((t) => h('g', {}, h('line', { x1: x(t), x2: x(t), y1: 20, y2: vs.length * (barH + 8) + 20, class: 'grid' }),
      h('text', { x: x(t), y: vs.length * (barH + 8) + 30, class: 'tick', 'text-anchor': 'middle' }, `${t / 100}%`))),
    vs.map((v, i) => {
      const y = 22 + i * (barH + 8);
      const rate = v.formationRateBp;
      return h('g', {}, h('text', { x: 0, y: y + barH * 0.7, class: 'label' }, v.variant || 'all'),
        h('rect', { x: pad, y, width: Math.max(0, x(rate || 0) - pad), height: barH, class: i === 0 ? 'bar control' : 'bar' },
          h('title', {}, `${v.variant || 'all'}: ${rate === null ? 'no decided group' : rate / 100 + '%'} (${v.formed} formed / ${v.failed} failed)`)),
        h('text', { x: x(rate || 0) + 6, y: y + barH * 0.7, class: 'value' }, rate === null ? 'no decided group' : `${(rate / 100).toFixed(1)}% · ${v.formed}/${v.formed + v.failed}`));
    }));
  if (!stats.comparisons.length) return h('div', {}, bars);
  const cs = stats.comparisons;
  const lo = Math.min(-1000, ...cs.map((c) => c.differenceLowBp ?? 0)), hi = Math.max(1000, ...cs.map((c) => c.differenceHighBp ?? 0));
  const span = Math.max(Math.abs(lo), Math.abs(hi));
  const dx = (bp) => pad + ((bp + span) / (2 * span)) * (W - pad - 60);
  const forest = h('svg', { viewBox: `0 0 ${W} ${cs.length * 34 + 44}`, class: 'chart forest', role: 'img', 'aria-label': 'Difference with the control, 95% interval' },
    h('text', { x: 0, y: 14, class: 'axis' }, `Difference with the control (${cs[0].control}), 95 % interval`),
    h('line', { x1: dx(0), x2: dx(0), y1: 20, y2: cs.length * 34 + 26, class: 'zero' }),
    [-span, -span / 2, 0, span / 2, span].map((t) => h('text', { x: dx(t), y: cs.length * 34 + 40, class: 'tick', 'text-anchor': 'middle' }, `${t > 0 ? '+' : ''}${(t / 100).toFixed(0)} pt`)),
    cs.map((c, i) => {
      const y = 36 + i * 34;
      const has = c.differenceBp !== null;
      return h('g', { class: c.hasWinner ? 'winner' : null }, h('text', { x: 0, y: y + 4, class: 'label' }, c.variant),
        has ? [h('line', { x1: dx(c.differenceLowBp), x2: dx(c.differenceHighBp), y1: y, y2: y, class: 'interval' }),
          h('line', { x1: dx(c.differenceLowBp), x2: dx(c.differenceLowBp), y1: y - 6, y2: y + 6, class: 'interval' }),
          h('line', { x1: dx(c.differenceHighBp), x2: dx(c.differenceHighBp), y1: y - 6, y2: y + 6, class: 'interval' }),
          h('circle', { cx: dx(c.differenceBp), cy: y, r: 5, class: 'point' },
            h('title', {}, `${(c.differenceBp / 100).toFixed(2)} pt [${(c.differenceLowBp / 100).toFixed(2)}, ${(c.differenceHighBp / 100).toFixed(2)}]`))]
          : h('text', { x: dx(0) + 8, y: y + 4, class: 'muted' }, 'no decided groups yet'),
        h('text', { x: W - 56, y: y + 4, class: 'verdict' }, c.hasWinner ? 'winner' : c.enoughData ? 'no difference' : 'too few'));
    }));
  return h('div', {}, bars, forest);
}

/** Earnings over time: a bar per period (earned), with paid-out as a line. */
export function earningsChart(series, fmt) {
  const W = 720, H = 240, L = 70, B = 30;
  const max = Math.max(1, ...series.map((p) => Math.max(p.earned, p.paid)));
  const bw = (W - L - 10) / Math.max(1, series.length);
  const y = (v) => H - B - (Math.max(0, v) / max) * (H - B - 16);
  const ticks = [0, max / 2, max];
  const every = Math.ceil(series.length / 10);
  return h('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart earnings', role: 'img', 'aria-label': 'Earnings over time' },
    ticks.map((t) => h('g', {}, h('line', { x1: L, x2: W, y1: y(t), y2: y(t), class: 'grid' }),
      h('text', { x: L - 6, y: y(t) + 4, class: 'tick', 'text-anchor': 'end' }, fmt.money(Math.round(t))))),
    series.map((p, i) => h('g', {},
      h('rect', { x: L + i * bw + 1, y: y(p.earned), width: Math.max(1, bw - 2), height: H - B - y(p.earned), class: 'bar' },
        h('title', {}, `${fmt.date(p.periodFrom)}: earned ${fmt.money(p.earned)}, paid ${fmt.money(p.paid)}`)),
      i % every === 0 ? h('text', { x: L + i * bw + bw / 2, y: H - 10, class: 'tick', 'text-anchor': 'middle' }, p.periodFrom.slice(5)) : null)),
    h('polyline', { points: series.map((p, i) => `${L + i * bw + bw / 2},${y(p.paid)}`).join(' '), class: 'paid-line' }),
    h('g', {}, h('rect', { x: L + 8, y: 4, width: 10, height: 10, class: 'bar' }), h('text', { x: L + 22, y: 13, class: 'tick' }, 'earned'),
      h('line', { x1: L + 80, x2: L + 96, y1: 9, y2: 9, class: 'paid-line' }), h('text', { x: L + 100, y: 13, class: 'tick' }, 'paid out')));
}

/** Seats of a group as a bar: paid, reserved (held − paid), free. */
export function seatsBar(g) {
  const paid = g.seatsPaid, held = g.seatsHeld, cap = g.capacity;
  const pct = (n) => `${(100 * n) / Math.max(1, cap)}%`;
  const bar = h('span', { class: 'seats', title: `${paid} paid, ${held - paid} reserved, ${g.seatsLeft} free of ${cap}` },
    h('span', { class: 'paid' }), h('span', { class: 'held' }));
  bar.children[0].style.width = pct(paid);
  bar.children[1].style.width = pct(held - paid);
  return h('span', { class: 'seats-cell' }, bar, h('span', { class: 'seat-count' }, `${held}/${cap}`));
}
