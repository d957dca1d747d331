// The Sharecart console: admin and finance screens over the public GraphQL API, with the user's own
// token. Screens are chosen from `viewer.roles`; the API decides what each role may see and do.
import { Api, ApiError, addDays, errorList, h, shopFormat } from './lib.js';
import { earningsChart, mutationForm, pagedTable, seatsBar, statsChart } from './widgets.js';

const TOKEN_KEY = 'sharecart.console.token';
const PAGE = 10;
const app = document.getElementById('app');
let api, viewer, fmt;

const SCREENS = [
  // [hash, title, role, render]
  ['campaigns', 'Campaigns', 'admin', campaignsScreen],
  ['settings', 'Distribution settings', 'admin', settingsScreen],
  ['levels', 'Levels', 'admin', levelsScreen],
  ['distributors', 'Distributors', 'admin', distributorsScreen],
  ['products', 'Products', 'admin', productsScreen],
  ['webhooks', 'Webhooks', 'admin', webhooksScreen],
  ['events', 'Event log', 'admin', eventsScreen],
  ['payouts', 'Payout queue', 'finance', payoutsScreen],
  ['refunds', 'Owed refunds', 'finance', refundsScreen],
  ['settlements', 'Settlements', 'finance', settlementsScreen],
  ['earnings', 'Earnings', 'finance', earningsScreen],
];
const DETAIL = { campaign: campaignScreen, webhook: webhookScreen };

// ------------------------------------------------------------------ sign-in
async function start() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return loginPage();
  api = new Api({ token });
  try {
    viewer = (await api.gql('{ viewer { userId roles shop { shopId name currency timezone } } }')).viewer;
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    return loginPage(e);
  }
  fmt = shopFormat(viewer.shop);
  window.addEventListener('hashchange', route);
  route();
}

function loginPage(error = null) {
  const input = h('textarea', { id: 'token', rows: 4, placeholder: 'eyJhbGciOiJIUzI1NiIs…', required: true });
  app.replaceChildren(h('main', { class: 'login' }, h('section', { class: 'card' },
    h('h1', {}, 'Sharecart console'),
    h('p', {}, 'Paste a bearer token of your shop (admin and/or finance role). ', h('code', {}, 'sharecart serve'),
      ' prints demo tokens; ', h('code', {}, 'sharecart mint-token SHOP --user NAME --role admin'), ' makes one.'),
    error ? errorList(error.errors || [{ message: error.message }]) : null,
    h('form', { id: 'login', onsubmit: (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim().replace(/^Bearer\s+/i, ''));
      start();
    } }, h('label', {}, h('span', {}, 'Token'), input), h('div', { class: 'form-actions' }, h('button', { class: 'primary', type: 'submit' }, 'Sign in'))),
    h('p', { class: 'muted' }, 'The token stays in this tab (sessionStorage) and is sent only to this server\'s /graphql.'))));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '';
  location.reload();
}

// ------------------------------------------------------------------ layout and routing
function mine() {
  return SCREENS.filter(([, , role]) => viewer.roles.includes(role));
}

function route() {
  const [name, arg] = decodeURIComponent(location.hash.replace(/^#\/?/, '')).split('/');
  const screens = mine();
  const found = screens.find(([hash]) => hash === name);
  const render = found ? found[3] : DETAIL[name];
  if (!render) {
    if (screens.length) location.hash = `#/${screens[0][0]}`;
    else app.replaceChildren(layout('Nothing to show', h('p', {}, `This token has the roles ${viewer.roles.join(', ') || '(none)'}; the console has screens for admin and finance.`)));
    return;
  }
  const main = h('div', { class: 'screen', 'data-screen': name });
  app.replaceChildren(layout(found ? found[1] : '', main, name));
  render(main, arg);
}

function layout(title, content, active = '') {
  const byRole = {};
  for (const s of mine()) (byRole[s[2]] ||= []).push(s);
  return h('div', { class: 'shell' },
    h('nav', {}, h('div', { class: 'brand' }, 'Sharecart'),
      h('div', { class: 'shop' }, viewer.shop.name, h('small', {}, `${viewer.shop.currency} · ${viewer.shop.timezone}`)),
      Object.entries(byRole).map(([role, list]) => h('div', { class: 'group' }, h('h4', {}, role),
        list.map(([hash, t]) => h('a', { href: `#/${hash}`, class: hash === active || (active === 'campaign' && hash === 'campaigns') || (active === 'webhook' && hash === 'webhooks') ? 'active' : null }, t)))),
      h('div', { class: 'who' }, `${viewer.userId} (${viewer.roles.join(', ')})`, h('button', { class: 'link', id: 'sign-out', onclick: signOut }, 'Sign out'))),
    h('main', {}, title ? h('h1', {}, title) : null, content));
}

const link = (hash, text) => h('a', { href: `#/${hash}` }, text);
const badge = (text, kind = text) => h('span', { class: `badge ${String(kind).toLowerCase()}` }, text);
const gq = (q, v) => api.gql(q, v);
const PAGE_INFO = 'totalCount pageInfo { hasNextPage endCursor }';

// ------------------------------------------------------------------ admin: campaigns
const CAMPAIGN_FIELDS = `id title productRef currency listPrice tiers { members unitPrice } leaderDiscount leaderCommissionBp
  durationSeconds paymentWindowSeconds startsAt endsAt active stock stockLeft perUserLimit maxQuantityPerOrder newMembersOnly
  fillAtExpiry lotteryWinners commissionEnabled variants { name weight tiers { members unitPrice } }`;

const tiersText = (tiers) => tiers.map((t) => `${t.members} for ${fmt.money(t.unitPrice)}`).join(' · ');

function campaignsScreen(main) {
  const list = pagedTable({
    id: 'campaign-list',
    load: async (after) => (await gq(`query($after: String) { campaigns(activeOnly: false, first: ${PAGE}, after: $after) {
      ${PAGE_INFO} edges { node { ${CAMPAIGN_FIELDS} openGroups(first: 1) { totalCount } } } } }`, { after })).campaigns,
    columns: [
      ['Campaign', (c) => h('div', {}, link(`campaign/${c.id}`, c.title), h('small', { class: 'muted' }, c.productRef))],
      ['Tiers', (c) => tiersText(c.tiers)],
      ['List price', (c) => fmt.money(c.listPrice)],
      ['Window', (c) => h('div', {}, fmt.dateTime(c.startsAt), h('small', { class: 'muted' }, `to ${fmt.dateTime(c.endsAt)}`))],
      ['Open groups', (c) => c.openGroups.totalCount],
      ['', (c) => (c.active ? badge('active') : badge('ended'))],
    ],
    empty: 'No campaigns yet: create one below.',
  });
  main.append(h('section', { class: 'card' }, list), createCampaignForm(() => list.reload()));
}

function parseTiers(text) {
  // "2 79.00, 3 69.00" or one "members price" pair per line
  return text.split(/[\n,;]+/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(\d+)\s*(?:[x×:@]|for)?\s*(\S+)$/i.exec(s);
    if (!m) throw new Error(`a tier is "members price", e.g. "2 79.00": ${s}`);
    return { members: Number(m[1]), unitPrice: fmt.parseMoney(m[2]) };
  });
}

function parseVariants(text) {
  // one per line: "name weight tiers…", e.g. "B 50 2 75.00, 3 65.00"
  return text.split('\n').map((s) => s.trim()).filter(Boolean).map((line) => {
    const m = /^(\S+)\s+(\d+)\s+(.+)$/.exec(line);
    if (!m) throw new Error(`a variant is "name weight tiers", e.g. "B 50 2 75.00, 3 65.00": ${line}`);
    return { name: m[1], weight: Number(m[2]), tiers: parseTiers(m[3]) };
  });
}

function createCampaignForm(done) {
  const now = new Date();
  return mutationForm({
    title: 'New campaign', id: 'create-campaign', fmt, submitLabel: 'Create campaign',
    fields: [
      { name: 'title', label: 'Title', required: true },
      { name: 'productRef', label: 'Product reference', required: true },
      { name: 'category', label: 'Category' },
      { name: 'listPrice', label: 'List price', type: 'money', required: true },
      { name: 'tiers', label: 'Tiers', required: true, placeholder: '2 79.00, 3 69.00', hint: 'members and unit price per tier (GB-5 ladder)' },
      { name: 'durationHours', label: 'Group duration, hours', type: 'number', value: 24 },
      { name: 'paymentWindowMinutes', label: 'Payment window, minutes', type: 'number', value: 15 },
      { name: 'startsAt', label: 'Starts', type: 'datetime', value: fmt.instantToZoned(now), hint: `in ${fmt.timezone}` },
      { name: 'endsAt', label: 'Ends', type: 'datetime', value: fmt.instantToZoned(new Date(now.getTime() + 30 * 86400e3)) },
      { name: 'leaderDiscount', label: 'Leader discount', type: 'money' },
      { name: 'leaderCommissionBp', label: 'Leader commission', type: 'bp' },
      { name: 'stock', label: 'Stock', type: 'number' },
      { name: 'perUserLimit', label: 'Per-user limit', type: 'number' },
      { name: 'maxQuantityPerOrder', label: 'Max quantity per order', type: 'number', value: 1 },
      { name: 'fillAtExpiry', label: 'Fill at expiry (members)', type: 'number', hint: 'GB-6: form at expiry when at least this many paid' },
      { name: 'lotteryWinners', label: 'Lottery winners', type: 'number', value: 0, hint: 'GB-7: 0 = no lottery' },
      { name: 'newMembersOnly', label: 'New members only', type: 'checkbox' },
      { name: 'commissionEnabled', label: 'Distributors earn commission', type: 'checkbox', value: true },
      { name: 'variants', label: 'A/B variants', type: 'textarea', rows: 2, placeholder: 'A 50 2 79.00, 3 69.00\nB 50 2 75.00, 3 65.00', hint: 'optional; the first is the control (RP-2)' },
    ],
    submit: (v) => {
      const input = {
        title: v.title, productRef: v.productRef, category: v.category || '', listPrice: v.listPrice, tiers: parseTiers(v.tiers),
        durationSeconds: Math.round((v.durationHours ?? 24) * 3600), paymentWindowSeconds: Math.round((v.paymentWindowMinutes ?? 15) * 60),
        startsAt: v.startsAt, endsAt: v.endsAt, leaderDiscount: v.leaderDiscount ?? 0, leaderCommissionBp: v.leaderCommissionBp,
        stock: v.stock, perUserLimit: v.perUserLimit, maxQuantityPerOrder: v.maxQuantityPerOrder ?? 1, fillAtExpiry: v.fillAtExpiry,
        lotteryWinners: v.lotteryWinners ?? 0, newMembersOnly: v.newMembersOnly, commissionEnabled: v.commissionEnabled,
        variants: v.variants ? parseVariants(v.variants) : null, idempotencyKey: crypto.randomUUID(),
      };
      return api.mutate('createCampaign', 'CreateCampaignInput', input, 'campaign { id title }');
    },
    done: (p) => { done(); location.hash = `#/campaign/${p.campaign.id}`; },
  });
}

const GROUP_FIELDS = 'id state variant capacity minSize seatsHeld seatsPaid seatsLeft tierReached { members unitPrice } openedAt expiresAt formedAt leaderUserId';

function groupColumns() {
  return [
    ['Group', (g) => h('code', { title: g.id }, g.id.slice(-10))],
    ['State', (g) => badge(g.state)],
    ['Variant', (g) => g.variant || '—'],
    ['Seats', (g) => seatsBar(g)],
    ['Tier reached', (g) => (g.tierReached ? `${g.tierReached.members} · ${fmt.money(g.tierReached.unitPrice)}` : '—')],
    ['Leader', (g) => g.leaderUserId || '—'],
    ['Opened', (g) => fmt.dateTime(g.openedAt)],
    ['Expires / formed', (g) => fmt.dateTime(g.formedAt || g.expiresAt)],
  ];
}

async function campaignScreen(main, id) {
  let c;
  try {
    c = (await gq(`query($id: ID!) { campaign(id: $id) { ${CAMPAIGN_FIELDS} } }`, { id })).campaign;
  } catch (e) {
    main.append(errorList(e.errors));
    return;
  }
  if (!c) return main.append(h('p', {}, 'No such campaign.'));
  main.parentElement.querySelector('h1')?.remove();
  const facts = [
    ['Product', c.productRef], ['List price', fmt.money(c.listPrice)], ['Tiers', tiersText(c.tiers)],
    ['Leader', `${fmt.money(c.leaderDiscount)} off${c.leaderCommissionBp !== null ? `, ${c.leaderCommissionBp / 100}% commission` : ''}`],
    ['Group lasts', `${c.durationSeconds / 3600} h, pay within ${c.paymentWindowSeconds / 60} min`],
    ['Window', `${fmt.dateTime(c.startsAt)} → ${fmt.dateTime(c.endsAt)}`],
    ['Stock', c.stock === null ? 'unlimited' : `${c.stockLeft} of ${c.stock} left`],
    ['Limits', `${c.perUserLimit ?? '∞'} per user, ${c.maxQuantityPerOrder} per order${c.newMembersOnly ? ', new members only' : ''}`],
    ['Fill / lottery', `${c.fillAtExpiry ? `fills at expiry from ${c.fillAtExpiry}` : 'no fill'} · ${c.lotteryWinners ? `${c.lotteryWinners} lottery winners` : 'no lottery'}`],
    ['Commission', c.commissionEnabled ? 'distributors earn' : 'off'],
    ['Variants', c.variants.length ? c.variants.map((v) => `${v.name} (${v.weight}): ${tiersText(v.tiers)}`).join(' | ') : '—'],
  ];
  const endBox = h('div', {});
  const endButton = h('button', { class: 'danger', id: 'end-campaign', disabled: !c.active, onclick: async () => {
    endBox.replaceChildren();
    try {
      const p = await api.mutate('endCampaign', 'EndCampaignInput', { campaignId: c.id, idempotencyKey: crypto.randomUUID() }, 'campaign { endsAt active }');
      if (p.errors.length) endBox.replaceChildren(errorList(p.errors));
      else route();
    } catch (e) { endBox.replaceChildren(errorList(e.errors)); }
  } }, c.active ? 'End campaign now' : 'Ended');
  const statsBox = h('div', { id: 'campaign-stats' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(
    h('div', { class: 'title-row' }, h('h1', {}, c.title, ' ', c.active ? badge('active') : badge('ended')), endButton), endBox,
    h('section', { class: 'card' }, h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    h('section', { class: 'card' }, h('h3', {}, 'Results per variant (RP-2)'), statsBox),
    h('section', { class: 'card' }, h('h3', {}, 'Open groups'), pagedTable({
      id: 'open-groups',
      load: async (after) => (await gq(`query($id: ID!, $after: String) { campaign(id: $id) { openGroups(first: ${PAGE}, after: $after) {
        ${PAGE_INFO} edges { node { ${GROUP_FIELDS} } } } } }`, { id, after })).campaign.openGroups,
      columns: groupColumns(), empty: 'No open group.' })),
    h('section', { class: 'card' }, h('h3', {}, 'Recent groups'), pagedTable({
      id: 'recent-groups',
      load: async (after) => (await gq(`query($id: ID!, $after: String) { campaign(id: $id) { groups(first: ${PAGE}, after: $after) {
        ${PAGE_INFO} edges { node { ${GROUP_FIELDS} } } } } }`, { id, after })).campaign.groups,
      columns: groupColumns(), empty: 'No group yet.' })));
  try {
    const s = (await gq(`query($id: ID!) { campaignStats(campaignId: $id) { minDecidedPerVariant hasWinner
      total { variant opened formed failed formationRateBp meanSecondsToForm units netSales }
      variants { variant opened formed failed formationRateBp meanSecondsToForm units netSales }
      comparisons { variant control differenceBp differenceLowBp differenceHighBp enoughData hasWinner } } }`, { id })).campaignStats;
    const rows = [...s.variants, { ...s.total, variant: 'total' }];
    statsBox.replaceChildren(statsChart(s), h('table', {}, h('thead', {}, h('tr', {}, ['Variant', 'Opened', 'Formed', 'Failed', 'Formation rate', 'Mean time to form', 'Units', 'Net sales'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((v) => h('tr', {}, [v.variant || '—', v.opened, v.formed, v.failed, v.formationRateBp === null ? '—' : `${(v.formationRateBp / 100).toFixed(2)} %`,
        v.formed ? `${Math.floor(v.meanSecondsToForm / 60)} min` : '—', v.units, fmt.money(v.netSales)].map((x) => h('td', {}, x)))))),
    h('p', { class: 'muted' }, `A comparison calls a winner only when its 95 % interval excludes zero and both variants have at least ${s.minDecidedPerVariant} decided groups.`));
  } catch (e) { statsBox.replaceChildren(errorList(e.errors)); }
}

// ------------------------------------------------------------------ admin: distribution settings, levels
async function settingsScreen(main) {
  const box = h('div', {});
  main.append(box);
  let s;
  try {
    s = (await gq('{ distributionSettings { mode binding bindingDays bindNewUsersOnly level1Bp level2Bp selfPurchase freezeDays maxTotalBp minPayout payoutFeeBp spendThreshold } }')).distributionSettings;
  } catch (e) { return box.append(errorList(e.errors)); }
  box.append(mutationForm({
    title: 'Distribution settings (section 3)', id: 'settings', fmt, submitLabel: 'Save settings',
    fields: [
      { name: 'mode', label: 'Who may distribute', type: 'select', value: s.mode, options: [['EVERYONE', 'Everyone'], ['APPROVAL', 'After approval'], ['SPEND_THRESHOLD', 'After spending a threshold']] },
      { name: 'spendThreshold', label: 'Spend threshold', type: 'money', value: fmt.moneyInput(s.spendThreshold) },
      { name: 'binding', label: 'Referral binding', type: 'select', value: s.binding, options: [['PERMANENT', 'Permanent'], ['EXPIRING', 'Expiring'], ['LAST_TOUCH', 'Last touch']] },
      { name: 'bindingDays', label: 'Binding days', type: 'number', value: s.bindingDays },
      { name: 'bindNewUsersOnly', label: 'Bind new users only', type: 'checkbox', value: s.bindNewUsersOnly },
      { name: 'level1Bp', label: 'Level-1 rate', type: 'bp', value: s.level1Bp },
      { name: 'level2Bp', label: 'Level-2 rate', type: 'bp', value: s.level2Bp },
      { name: 'maxTotalBp', label: 'Cap on total rate', type: 'bp', value: s.maxTotalBp },
      { name: 'selfPurchase', label: 'Commission on own purchases', type: 'checkbox', value: s.selfPurchase },
      { name: 'freezeDays', label: 'Freeze days after delivery', type: 'number', value: s.freezeDays },
      { name: 'minPayout', label: 'Minimum payout', type: 'money', value: fmt.moneyInput(s.minPayout) },
      { name: 'payoutFeeBp', label: 'Payout fee', type: 'bp', value: s.payoutFeeBp },
    ],
    submit: (v) => {
      const input = { idempotencyKey: crypto.randomUUID() };
      for (const [k, val] of Object.entries(v)) if (val !== null) input[k] = val;
      return api.mutate('updateDistributionSettings', 'UpdateDistributionSettingsInput', input, 'settings { mode }');
    },
  }));
}

const LEVEL_KEYS = [['grade', 'Grade', 'number'], ['name', 'Name', 'text'], ['level1Bp', 'L1 bp', 'number'], ['level2Bp', 'L2 bp', 'number'],
  ['upgradeBonus', 'Upgrade bonus', 'money'], ['minDirectReferrals', 'Direct referrals', 'number'], ['minTeamSize', 'Team size', 'number'],
  ['minOwnSpend', 'Own spend', 'money'], ['minOwnOrders', 'Own orders', 'number'], ['minDirectSales', 'Direct sales', 'money'], ['minTeamSales', 'Team sales', 'money']];

async function levelsScreen(main) {
  const conn = await loadAll((after) => gq(`query($after: String) { levels(first: 100, after: $after) { ${PAGE_INFO} edges { node { id ${LEVEL_KEYS.map((k) => k[0]).join(' ')} } } } }`, { after }).then((d) => d.levels), main);
  if (!conn) return;
  const tbody = h('tbody', {});
  const addRow = (lv = {}) => tbody.append(h('tr', {}, LEVEL_KEYS.map(([k, , type]) => h('td', {}, h('input', { name: k, type: type === 'number' ? 'number' : 'text', class: 'cell',
    value: type === 'money' ? fmt.moneyInput(lv[k] ?? 0) : lv[k] ?? (type === 'number' ? (k === 'grade' ? tbody.children.length : 0) : '') }))),
  h('td', {}, h('button', { type: 'button', class: 'link', onclick: (ev) => ev.target.closest('tr').remove() }, 'remove'))));
  conn.forEach(addRow);
  const out = h('div', {});
  main.append(h('section', { class: 'card' }, h('p', { class: 'muted' }, 'The whole level table (LV-1): grades 0, 1, 2, … in order; a distributor moves up when every condition of the next level is met. Amounts in ', fmt.currency, '.'),
    h('form', { id: 'levels', onsubmit: async (ev) => {
      ev.preventDefault();
      let levels;
      try {
        levels = [...tbody.children].map((tr) => Object.fromEntries(LEVEL_KEYS.map(([k, , type]) => {
          const raw = tr.querySelector(`[name=${k}]`).value;
          return [k, type === 'money' ? fmt.parseMoney(raw) ?? 0 : type === 'number' ? Number(raw || 0) : raw];
        })));
      } catch (e) { return out.replaceChildren(errorList([{ code: 'INVALID_INPUT', message: e.message }])); }
      try {
        const p = await api.mutate('setLevels', 'SetLevelsInput', { levels, idempotencyKey: crypto.randomUUID() }, 'levels { grade }');
        out.replaceChildren(p.errors.length ? errorList(p.errors) : h('p', { class: 'ok', role: 'status' }, 'Saved.'));
      } catch (e) { out.replaceChildren(errorList(e.errors)); }
    } }, h('div', { class: 'scroll' }, h('table', { class: 'edit' }, h('thead', {}, h('tr', {}, LEVEL_KEYS.map(([, t]) => h('th', {}, t)), h('th', {}, ''))), tbody)),
    h('div', { class: 'form-actions' }, h('button', { type: 'button', onclick: () => addRow() }, 'Add level'), h('button', { type: 'submit', class: 'primary' }, 'Save levels')), out)));
}

/** Every page of a small connection (levels): follows the cursors to the end. */
async function loadAll(load, main) {
  const out = [];
  let after = null;
  try {
    for (;;) {
      const c = await load(after);
      out.push(...c.edges.map((e) => e.node));
      if (!c.pageInfo.hasNextPage) return out;
      after = c.pageInfo.endCursor;
    }
  } catch (e) { main.append(errorList(e.errors || [{ message: e.message }])); return null; }
}

// ------------------------------------------------------------------ admin: distributors
function distributorsScreen(main) {
  const filter = h('select', { id: 'status-filter', onchange: () => list.reload() },
    [['', 'All statuses'], ['APPLIED', 'Applications (APPLIED)'], ['ACTIVE', 'Active'], ['SUSPENDED', 'Suspended']].map(([v, t]) => h('option', { value: v }, t)));
  const actionBox = h('div', { id: 'distributor-action' });
  const list = pagedTable({
    id: 'distributor-list',
    load: async (after) => (await gq(`query($s: [DistributorStatus!], $after: String) { distributors(statuses: $s, first: ${PAGE}, after: $after) {
      ${PAGE_INFO} edges { node { id userId status grade inviteCode appliedAt approvedAt approvedBy statusReason } } } }`,
    { s: filter.value ? [filter.value] : null, after })).distributors,
    columns: [
      ['User', (d) => d.userId], ['Status', (d) => badge(d.status)], ['Grade', (d) => d.grade], ['Invite code', (d) => h('code', {}, d.inviteCode)],
      ['Applied', (d) => fmt.dateTime(d.appliedAt)], ['Approved', (d) => (d.approvedAt ? `${fmt.dateTime(d.approvedAt)} by ${d.approvedBy}` : '—')],
      ['Reason', (d) => d.statusReason || '—'],
    ],
    actions: (d, reload) => [
      d.status === 'APPLIED' || d.status === 'NONE' ? h('button', { onclick: () => act(d, 'approve', reload) }, 'Approve') : null,
      d.status === 'ACTIVE' ? h('button', { onclick: () => act(d, 'suspend', reload) }, 'Suspend') : null,
      d.status === 'SUSPENDED' ? h('button', { onclick: () => act(d, 'reinstate', reload) }, 'Reinstate') : null,
      h('button', { onclick: () => act(d, 'level', reload) }, 'Set level'),
    ],
  });
  function act(d, kind, reload) {
    const ops = {
      approve: ['approveDistributor', 'ApproveDistributorInput', 'Approve'],
      suspend: ['suspendDistributor', 'SuspendDistributorInput', 'Suspend'],
      reinstate: ['reinstateDistributor', 'ReinstateDistributorInput', 'Reinstate'],
      level: ['setDistributorLevel', 'SetDistributorLevelInput', 'Set level'],
    };
    const [op, type, label] = ops[kind];
    actionBox.replaceChildren(mutationForm({
      title: `${label}: ${d.userId}`, id: 'distributor-form', fmt, submitLabel: label,
      fields: [...(kind === 'level' ? [{ name: 'grade', label: 'Grade', type: 'number', value: d.grade, required: true }] : []),
        { name: 'reason', label: 'Reason', required: kind !== 'approve', hint: 'recorded with the change (DS-1, LV-3)' }],
      submit: (v) => api.mutate(op, type, { userId: d.userId, reason: v.reason || '', ...(kind === 'level' ? { grade: v.grade } : {}), idempotencyKey: crypto.randomUUID() }, 'distributor { status grade }'),
      done: () => reload(),
    }));
    actionBox.scrollIntoView({ block: 'nearest' });
  }
  main.append(h('div', { class: 'toolbar' }, filter), h('section', { class: 'card' }, list), actionBox);
}

// ------------------------------------------------------------------ admin: products
function productsScreen(main) {
  const list = pagedTable({
    id: 'product-list',
    load: async (after) => (await gq(`query($after: String) { products(first: ${PAGE}, after: $after) { ${PAGE_INFO}
      edges { node { id productRef title category earnsCommission level1Amount level2Amount } } } }`, { after })).products,
    columns: [['Reference', (p) => h('code', {}, p.productRef)], ['Title', (p) => p.title], ['Category', (p) => p.category || '—'],
      ['Commission', (p) => (p.earnsCommission ? 'yes' : badge('none', 'off'))],
      ['Level-1 override', (p) => (p.level1Amount === null ? 'rate' : `${fmt.money(p.level1Amount)} / unit`)],
      ['Level-2 override', (p) => (p.level2Amount === null ? 'rate' : `${fmt.money(p.level2Amount)} / unit`)]],
  });
  main.append(h('section', { class: 'card' }, list), mutationForm({
    title: 'Add or change a product (OR-3, CM-3 overrides)', id: 'product-form', fmt, submitLabel: 'Save product',
    fields: [{ name: 'productRef', label: 'Reference', required: true }, { name: 'title', label: 'Title' }, { name: 'category', label: 'Category' },
      { name: 'earnsCommission', label: 'Earns commission', type: 'checkbox', value: true },
      { name: 'level1Amount', label: 'Level-1 fixed amount per unit', type: 'money', hint: 'empty: the level rate applies' },
      { name: 'level2Amount', label: 'Level-2 fixed amount per unit', type: 'money' }],
    submit: (v) => api.mutate('upsertProduct', 'UpsertProductInput', { ...v, title: v.title || '', category: v.category || '', idempotencyKey: crypto.randomUUID() }, 'product { productRef }'),
    done: () => list.reload(),
  }));
}

// ------------------------------------------------------------------ admin: webhooks
const ENDPOINT_FIELDS = 'id url eventTypes enabled secret consecutiveFailures failingSince disabledAt createdAt';

function webhooksScreen(main) {
  const secretBox = h('div', { id: 'webhook-secret' });
  const list = pagedTable({
    id: 'endpoint-list',
    load: async (after) => (await gq(`query($after: String) { webhookEndpoints(first: ${PAGE}, after: $after) { ${PAGE_INFO} edges { node { ${ENDPOINT_FIELDS} } } } }`, { after })).webhookEndpoints,
    columns: [['URL', (e) => link(`webhook/${e.id}`, e.url)], ['Events', (e) => (e.eventTypes.length ? e.eventTypes.join(', ') : 'all')],
      ['State', (e) => (e.enabled ? badge('enabled') : badge('disabled'))], ['Failures', (e) => e.consecutiveFailures],
      ['Since', (e) => fmt.dateTime(e.failingSince || e.disabledAt)], ['Created', (e) => fmt.dateTime(e.createdAt)]],
    actions: (e, reload) => endpointActions(e, reload, secretBox),
    empty: 'No endpoint: register one below.',
  });
  main.append(h('section', { class: 'card' }, list), secretBox, mutationForm({
    title: 'Register an endpoint', id: 'register-webhook', fmt, submitLabel: 'Register',
    fields: [{ name: 'url', label: 'URL', required: true, placeholder: 'https://example.com/hooks/sharecart' },
      { name: 'eventTypes', label: 'Event types', placeholder: 'group.formed, order.paid', hint: 'comma-separated; empty: all' }],
    submit: (v) => api.mutate('registerWebhook', 'RegisterWebhookInput', { url: v.url, eventTypes: v.eventTypes ? v.eventTypes.split(',').map((s) => s.trim()).filter(Boolean) : null, idempotencyKey: crypto.randomUUID() }, `endpoint { ${ENDPOINT_FIELDS} }`),
    done: (p) => { list.reload(); showSecret(secretBox, p.endpoint); },
  }));
}

function showSecret(box, e) {
  box.replaceChildren(h('section', { class: 'card notice' }, h('h3', {}, 'Signing secret'), h('p', {}, 'Receivers verify signatures with it (docs/webhooks.md):'), h('code', { class: 'secret' }, e.secret)));
}

function endpointActions(e, reload, secretBox) {
  const run = async (op, type, input, after) => {
    const p = await api.mutate(op, type, { endpointId: e.id, idempotencyKey: crypto.randomUUID(), ...input }, `endpoint { ${ENDPOINT_FIELDS} }`).catch((err) => ({ errors: err.errors }));
    if (p.errors.length) secretBox.replaceChildren(errorList(p.errors));
    else { if (after) after(p); reload(); }
  };
  return [
    h('button', { onclick: () => run('rotateWebhookSecret', 'RotateWebhookSecretInput', {}, (p) => showSecret(secretBox, p.endpoint)) }, 'Rotate secret'),
    e.enabled ? h('button', { onclick: () => run('disableWebhook', 'DisableWebhookInput', {}) }, 'Disable')
      : h('button', { onclick: () => run('enableWebhook', 'EnableWebhookInput', {}) }, 'Enable'),
  ];
}

async function webhookScreen(main, id) {
  let e;
  try { e = (await gq(`query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { ${ENDPOINT_FIELDS} } } }`, { id })).node; } catch (err) { return main.append(errorList(err.errors)); }
  if (!e) return main.append(h('p', {}, 'No such endpoint.'));
  main.parentElement.querySelector('h1')?.remove();
  const stateFilter = h('select', { id: 'delivery-state', onchange: () => deliveries.reload() }, ['', 'PENDING', 'HELD', 'DELIVERED', 'DEAD'].map((s) => h('option', { value: s }, s || 'All states')));
  const deliveries = pagedTable({
    id: 'deliveries',
    load: async (after) => (await gq(`query($id: ID!, $s: WebhookDeliveryState, $after: String) { node(id: $id) { ... on WebhookEndpoint { deliveries(state: $s, first: ${PAGE}, after: $after) {
      ${PAGE_INFO} edges { node { id seq state attempts nextAttemptAt deliveredAt lastStatus lastError event { type } } } } } } }`, { id, s: stateFilter.value || null, after })).node.deliveries,
    columns: [['Seq', (d) => d.seq], ['Event', (d) => d.event?.type || '—'], ['State', (d) => badge(d.state)], ['Attempts', (d) => d.attempts],
      ['Last', (d) => (d.lastStatus ? `HTTP ${d.lastStatus}` : d.lastError || '—')], ['Next / delivered', (d) => fmt.dateTime(d.deliveredAt || d.nextAttemptAt)]],
    empty: 'Nothing owed or sent yet.',
  });
  const attempts = pagedTable({
    id: 'attempts',
    load: async (after) => (await gq(`query($id: ID!, $after: String) { node(id: $id) { ... on WebhookEndpoint { attempts(first: ${PAGE}, after: $after) {
      ${PAGE_INFO} edges { node { id at statusCode error durationMs event { seq type } } } } } } }`, { id, after })).node.attempts,
    columns: [['At', (a) => fmt.dateTime(a.at)], ['Event', (a) => (a.event ? `#${a.event.seq} ${a.event.type}` : '—')],
      ['Result', (a) => (a.statusCode ? badge(`HTTP ${a.statusCode}`, a.statusCode < 300 ? 'formed' : 'failed') : badge(a.error || 'error', 'failed'))], ['Duration', (a) => `${a.durationMs} ms`]],
    empty: 'No attempt yet.',
  });
  const secretBox = h('div', {});
  main.append(h('div', { class: 'title-row' }, h('h1', {}, e.url, ' ', e.enabled ? badge('enabled') : badge('disabled')), h('div', {}, endpointActions(e, () => route(), secretBox))), secretBox,
    h('section', { class: 'card' }, h('dl', { class: 'facts' }, [['Events', e.eventTypes.join(', ') || 'all'], ['Failures', `${e.consecutiveFailures}${e.failingSince ? ` since ${fmt.dateTime(e.failingSince)}` : ''}`],
      ['Disabled', fmt.dateTime(e.disabledAt)], ['Created', fmt.dateTime(e.createdAt)]].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    h('section', { class: 'card' }, h('div', { class: 'title-row' }, h('h3', {}, 'Deliveries'), stateFilter), deliveries),
    h('section', { class: 'card' }, h('h3', {}, 'Attempts'), attempts),
    mutationForm({ title: 'Redeliver events', id: 'redeliver', fmt, submitLabel: 'Redeliver',
      fields: [{ name: 'fromSeq', label: 'From seq', type: 'number', required: true }, { name: 'toSeq', label: 'To seq', type: 'number', required: true }],
      submit: (v) => api.mutate('redeliverEvents', 'RedeliverEventsInput', { endpointId: e.id, ...v, idempotencyKey: crypto.randomUUID() }, 'queued'),
      done: (p) => { deliveries.reload(); document.querySelector('#redeliver .ok').textContent = `${p.queued} events owed again.`; } }));
}

// ------------------------------------------------------------------ admin: event log
function eventsScreen(main) {
  const types = h('input', { id: 'event-types', placeholder: 'filter by type: group.formed, order.paid', onchange: () => list.reload() });
  const list = pagedTable({
    id: 'event-list',
    load: async (after) => (await gq(`query($t: [String!], $after: String) { events(types: $t, first: ${PAGE}, after: $after) { ${PAGE_INFO}
      edges { node { id seq type aggregateType aggregateId rule occurredAt payloadJson } } } }`, { t: types.value ? types.value.split(',').map((s) => s.trim()).filter(Boolean) : null, after })).events,
    columns: [['Seq', (e) => e.seq], ['Type', (e) => h('code', {}, e.type)], ['Aggregate', (e) => `${e.aggregateType} ${e.aggregateId}`], ['Rule', (e) => e.rule || '—'],
      ['Occurred', (e) => fmt.dateTime(e.occurredAt)], ['Payload', (e) => h('details', {}, h('summary', {}, 'show'), h('pre', {}, JSON.stringify(JSON.parse(e.payloadJson), null, 2)))]],
    empty: 'No events.',
  });
  main.append(h('div', { class: 'toolbar' }, types), h('section', { class: 'card' }, list));
}

// ------------------------------------------------------------------ finance
function payoutsScreen(main) {
  const list = pagedTable({
    id: 'payout-list',
    load: async (after) => (await gq(`query($after: String) { pendingPayouts(first: ${PAGE}, after: $after) { ${PAGE_INFO}
      edges { node { id distributorId amount fee net state requestedAt } } } }`, { after })).pendingPayouts,
    columns: [['Distributor', (p) => p.distributorId], ['Amount', (p) => fmt.money(p.amount)], ['Fee', (p) => fmt.money(p.fee)],
      ['To transfer', (p) => h('strong', {}, fmt.money(p.net))], ['Requested', (p) => fmt.dateTime(p.requestedAt)]],
    actions: (p, reload) => {
      const ref = h('input', { name: 'externalRef', placeholder: 'transfer reference', class: 'inline' });
      const reason = h('input', { name: 'reason', placeholder: 'reason', class: 'inline' });
      const out = h('div', { class: 'row-result' });
      const go = async (op, type, input) => {
        out.replaceChildren();
        try {
          const r = await api.mutate(op, type, { payoutId: p.id, idempotencyKey: crypto.randomUUID(), ...input }, 'payout { state }');
          if (r.errors.length) out.replaceChildren(errorList(r.errors)); else reload();
        } catch (e) { out.replaceChildren(errorList(e.errors)); }
      };
      return h('div', { class: 'payout-actions' },
        h('form', { class: 'inline approve', onsubmit: (ev) => { ev.preventDefault(); go('approvePayout', 'ApprovePayoutInput', { externalRef: ref.value }); } }, ref, h('button', { class: 'primary' }, 'Approve')),
        h('form', { class: 'inline reject', onsubmit: (ev) => { ev.preventDefault(); go('rejectPayout', 'RejectPayoutInput', { reason: reason.value }); } }, reason, h('button', { class: 'danger' }, 'Reject')), out);
    },
    empty: 'No payout waiting.',
  });
  main.append(h('p', { class: 'muted' }, 'Transfer the amount shown, then approve with the bank reference (LG-2); a rejection returns the whole amount to the distributor, no fee.'), h('section', { class: 'card' }, list));
}

function refundsScreen(main) {
  const rule = h('select', { id: 'refund-rule', onchange: () => list.reload() }, ['', 'GB-5', 'GB-6', 'GB-7', 'GB-8', 'GB-9'].map((r) => h('option', { value: r }, r || 'Every rule')));
  const list = pagedTable({
    id: 'refund-list',
    load: async (after) => (await gq(`query($r: String, $after: String) { owedRefunds(rule: $r, first: ${PAGE}, after: $after) { ${PAGE_INFO}
      edges { node { id amount rule full state createdAt order { externalId buyerId } } } } }`, { r: rule.value || null, after })).owedRefunds,
    columns: [['Order', (r) => r.order?.externalId || '—'], ['Buyer', (r) => r.order?.buyerId || '—'], ['Amount', (r) => fmt.money(r.amount)],
      ['Rule', (r) => r.rule], ['Full', (r) => (r.full ? 'full' : 'partial')], ['Owed since', (r) => fmt.dateTime(r.createdAt)]],
    empty: 'Nothing owed.',
  });
  main.append(h('div', { class: 'toolbar' }, rule), h('p', { class: 'muted' }, 'Refunds the rules decided (GB-5..GB-9). The payment backend pays them and confirms each with confirmRefund.'), h('section', { class: 'card' }, list));
}

function settlementsScreen(main) {
  const out = h('div', {});
  const list = pagedTable({
    id: 'settlement-list',
    load: async (after) => (await gq(`query($after: String) { settlements(first: ${PAGE}, after: $after) { ${PAGE_INFO}
      edges { node { id localFrom localTo distributors opening released reversals bonuses payouts fees closing csvPath xlsxPath } } } }`, { after })).settlements,
    columns: [['Period', (s) => `${fmt.date(s.localFrom)} – ${fmt.date(addDays(s.localTo, -1))}`], ['Distributors', (s) => s.distributors],
      ['Opening', (s) => fmt.money(s.opening)], ['Released', (s) => fmt.money(s.released)], ['Reversals', (s) => fmt.money(s.reversals)],
      ['Bonuses', (s) => fmt.money(s.bonuses)], ['Payouts', (s) => fmt.money(s.payouts)], ['Fees', (s) => fmt.money(s.fees)], ['Closing', (s) => h('strong', {}, fmt.money(s.closing))]],
    actions: (s) => [h('button', { onclick: () => save(s.csvPath, out), class: 'download-csv' }, 'CSV'), h('button', { onclick: () => save(s.xlsxPath, out), class: 'download-xlsx' }, 'XLSX')],
    empty: 'No period closed yet.',
  });
  const today = fmt.localDay();
  const firstOfMonth = `${today.slice(0, 8)}01`;
  const prev = addDays(firstOfMonth, -1);
  main.append(h('section', { class: 'card' }, list), out, mutationForm({
    title: 'Close a period (LG-3)', id: 'close-period', fmt, submitLabel: 'Close period',
    fields: [{ name: 'fromDate', label: 'First day', type: 'date', value: `${prev.slice(0, 8)}01`, required: true },
      { name: 'toDate', label: 'Day after the last', type: 'date', value: firstOfMonth, required: true, hint: `local days of ${fmt.timezone}, half-open` }],
    submit: (v) => api.mutate('closePeriod', 'ClosePeriodInput', { ...v, idempotencyKey: `close-${v.fromDate}-${v.toDate}` }, 'settlement { id closing }'),
    done: () => list.reload(),
  }));
}

async function save(path, out) {
  out.replaceChildren();
  try {
    const blob = await api.download(path);
    const a = h('a', { href: URL.createObjectURL(blob), download: path.split('/').pop() });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) { out.replaceChildren(errorList(e.errors || [{ message: e.message }])); }
}

function earningsScreen(main) {
  const gran = h('select', { id: 'granularity', onchange: draw }, [['DAY', 'Last 30 days, by day'], ['MONTH', 'Last 12 months, by month']].map(([v, t]) => h('option', { value: v }, t)));
  const box = h('div', { id: 'earnings' });
  async function draw() {
    const today = fmt.localDay();
    let from, to;
    if (gran.value === 'DAY') { to = addDays(today, 1); from = addDays(to, -30); } else {
      const [y, m] = today.split('-').map(Number);
      to = m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, '0')}-01`;
      from = `${Number(to.slice(0, 4)) - 1}${to.slice(4)}`;
    }
    box.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const s = (await gq('query($g: EarningsGranularity!, $f: Date!, $t: Date!) { shopEarningsSeries(granularity: $g, periodFrom: $f, periodTo: $t) { periodFrom periodTo earned paid fees available } }',
        { g: gran.value, f: from, t: to })).shopEarningsSeries;
      const total = (k) => s.reduce((a, p) => a + p[k], 0);
      box.replaceChildren(h('div', { class: 'kpis' }, [['Earned', total('earned')], ['Paid out', total('paid')], ['Payout fees', total('fees')]].map(([k, v]) => h('div', { class: 'kpi' }, h('small', {}, k), h('strong', {}, fmt.money(v))))),
        earningsChart(s, fmt), h('p', { class: 'muted' }, `Commission posted less reversals, plus upgrade bonuses, per local ${gran.value === 'DAY' ? 'day' : 'month'} of ${fmt.timezone} (RP-1, all distributors).`));
    } catch (e) { box.replaceChildren(errorList(e.errors)); }
  }
  main.append(h('div', { class: 'toolbar' }, gran), h('section', { class: 'card' }, box));
  draw();
}

window.addEventListener('unhandledrejection', (ev) => {
  const e = ev.reason;
  document.querySelector('main')?.append(errorList(e instanceof ApiError ? e.errors : [{ message: String(e && e.message || e) }]));
});
start();
