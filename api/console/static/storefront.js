// Storefront demo: the reference an integrator copies. A campaign page with the shop's public key only
// (X-Shop-Key, DS-2); a customer token to open or join a group; seats fill live through the
// `groupProgress` subscription over graphql-transport-ws (graphql-ws, vendored from npm).
import { Api, ApiError, errorList, h, shopFormat } from './lib.js';
import { seatsBar } from './widgets.js';

const params = new URLSearchParams(location.search);
const KEY = 'sharecart.storefront.key', TOKEN = 'sharecart.storefront.token';
const app = document.getElementById('app');
const GROUP = 'id state capacity minSize seatsHeld seatsPaid seatsLeft secondsLeft expiresAt formedAt tierReached { members unitPrice } nextTier { members unitPrice }';
let pub, customer = null, fmt, shop, me = null, campaign = null;
const cards = new Map(); // group id → {el, group, stop, receivedAt}
let generation = 0; // bumped by every render: a slower, older render or list refresh gives way

async function start() {
  const key = params.get('key') || sessionStorage.getItem(KEY);
  if (!key) return keyPage();
  sessionStorage.setItem(KEY, key);
  pub = new Api({ shopKey: key });
  try {
    shop = (await pub.gql('{ viewer { shop { name currency timezone } } }')).viewer.shop;
  } catch (e) {
    sessionStorage.removeItem(KEY);
    return keyPage(e);
  }
  fmt = shopFormat(shop);
  const token = sessionStorage.getItem(TOKEN);
  if (token) await signIn(token, false);
  render();
  setInterval(refreshList, 10000); // groups opened by others appear; open ones update live
  setInterval(tick, 1000);
}

function keyPage(error = null) {
  const input = h('input', { id: 'shop-key', placeholder: 'pk_demo_…', required: true });
  app.replaceChildren(h('div', { class: 'store' }, h('section', { class: 'card' }, h('h1', {}, 'Storefront demo'),
    h('p', {}, 'A storefront needs only the shop\'s public key (', h('code', {}, 'X-Shop-Key'), '); ', h('code', {}, 'sharecart serve'), ' prints it.'),
    error ? errorList(error.errors || [{ message: error.message }]) : null,
    h('form', { onsubmit: (ev) => { ev.preventDefault(); params.set('key', input.value.trim()); history.replaceState(null, '', `?${params}`); start(); } },
      h('label', {}, h('span', {}, 'Public key'), input), h('div', { class: 'form-actions' }, h('button', { class: 'primary' }, 'Open the storefront'))))));
}

async function signIn(token, rerender = true) {
  const api = new Api({ token, shopKey: sessionStorage.getItem(KEY) });
  try {
    const v = (await api.gql('{ viewer { userId roles } }')).viewer;
    customer = { api, ...v };
    sessionStorage.setItem(TOKEN, token);
    me = v.roles.includes('distributor') ? (await api.gql('{ me { inviteCode status } }')).me : null;
  } catch (e) {
    sessionStorage.removeItem(TOKEN);
    customer = null;
    flash(errorList(e.errors || [{ message: e.message }]));
  }
  if (rerender) render();
}

function flash(node) {
  const box = document.getElementById('messages');
  if (box) box.replaceChildren(node);
}

async function render() {
  const mine = ++generation;
  for (const c of cards.values()) c.stop?.();
  cards.clear();
  const list = (await pub.gql('{ campaigns(first: 50) { edges { node { id title } } } }')).campaigns.edges.map((e) => e.node);
  const id = params.get('campaign') || list[0]?.id;
  campaign = id ? (await pub.gql(`query($id: ID!) { campaign(id: $id) { id title currency listPrice active endsAt
    tiers { members unitPrice } leaderDiscount paymentWindowSeconds durationSeconds } }`, { id })).campaign : null;
  const invite = params.get('invite');
  const inviteInfo = invite ? (await pub.gql('query($c: String!) { resolveInvite(code: $c) { valid code } }', { c: invite })).resolveInvite : null;
  if (mine !== generation) return;
  const tokenInput = h('input', { id: 'customer-token', placeholder: 'paste a customer token (sharecart serve prints erin, frank, gina…)' });
  const best = campaign ? Math.min(...campaign.tiers.map((t) => t.unitPrice)) : 0;
  app.replaceChildren(h('div', { class: 'store' },
    h('header', {}, h('h1', {}, shop.name), h('select', { id: 'campaign-pick', onchange: (ev) => { params.set('campaign', ev.target.value); history.replaceState(null, '', `?${params}`); render(); } },
      list.map((c) => h('option', { value: c.id, selected: c.id === id }, c.title)))),
    h('section', { class: 'card', id: 'who' }, customer
      ? h('p', {}, 'Signed in as ', h('strong', { id: 'customer-name' }, customer.userId), me ? [' · your invite code ', h('code', {}, me.inviteCode)] : '',
        ' ', h('button', { class: 'link', onclick: () => { sessionStorage.removeItem(TOKEN); customer = null; me = null; render(); } }, 'sign out'))
      : h('form', { class: 'creds', id: 'sign-in', onsubmit: (ev) => { ev.preventDefault(); signIn(tokenInput.value.trim().replace(/^Bearer\s+/i, '')); } },
        tokenInput, h('button', { class: 'primary' }, 'Sign in')),
    inviteInfo ? h('p', { class: inviteInfo.valid ? 'ok' : 'muted', id: 'invite' }, inviteInfo.valid ? `Invited with code ${inviteInfo.code}: joining binds you to your inviter (RF-1).` : `Invite code ${inviteInfo.code} is not valid.`) : null),
    h('div', { id: 'messages' }),
    campaign ? h('section', { class: 'card', id: 'campaign' },
      h('h2', {}, campaign.title),
      h('div', {}, h('span', { class: 'price' }, `from ${fmt.money(best)}`), h('span', { class: 'list-price' }, fmt.money(campaign.listPrice))),
      h('div', { class: 'tiers' }, campaign.tiers.map((t) => h('div', { class: 'tier' }, `${t.members} people · `, h('strong', {}, fmt.money(t.unitPrice))))),
      h('p', { class: 'muted' }, `A group runs ${campaign.durationSeconds / 3600} h; pay within ${campaign.paymentWindowSeconds / 60} min of taking a seat.${campaign.leaderDiscount ? ` The leader saves ${fmt.money(campaign.leaderDiscount)} more.` : ''}`),
      h('button', { class: 'primary', id: 'open-group', disabled: !campaign.active, onclick: openGroup }, 'Open a group')) : h('p', {}, 'No campaign is open.'),
    h('h3', {}, h('span', { class: 'live-dot', id: 'live' }), 'Open groups'),
    h('div', { id: 'groups' })));
  if (campaign) refreshList();
}

async function refreshList() {
  if (!campaign) return;
  const mine = generation;
  const conn = (await pub.gql(`query($id: ID!) { campaign(id: $id) { openGroups(first: 20) { totalCount edges { node { ${GROUP} } } } } }`, { id: campaign.id })).campaign.openGroups;
  const wanted = params.get('group');
  const nodes = conn.edges.map((e) => e.node);
  if (wanted && !nodes.some((g) => g.id === wanted) && !cards.has(wanted)) {
    const g = (await pub.gql(`query($id: ID!) { group(id: $id) { ${GROUP} } }`, { id: wanted })).group;
    if (g) nodes.unshift(g);
  }
  const box = document.getElementById('groups');
  if (mine !== generation || !box) return;
  for (const g of nodes) if (!cards.has(g.id)) addCard(box, g);
  if (!cards.size) box.replaceChildren(h('p', { class: 'muted', id: 'no-groups' }, 'No open group yet: open one and share the link.'));
  else document.getElementById('no-groups')?.remove();
}

function addCard(box, g) {
  const el = h('section', { class: 'card group-card', 'data-group': g.id });
  const entry = { el, group: g, receivedAt: performance.now() };
  cards.set(g.id, entry);
  box.append(el);
  draw(entry);
  entry.stop = pub.subscribe(`subscription($id: ID!) { groupProgress(groupId: $id) { ${GROUP} } }`, { id: g.id }, {
    next: (data) => {
      entry.group = data.groupProgress;
      entry.receivedAt = performance.now();
      document.getElementById('live')?.classList.add('on');
      draw(entry);
      el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash');
    },
    error: (e) => flash(errorList(e.errors || [{ message: e.message }])),
  });
}

function left(entry) {
  const g = entry.group;
  if (g.secondsLeft === null || g.secondsLeft === undefined) return null;
  return Math.max(0, g.secondsLeft - Math.floor((performance.now() - entry.receivedAt) / 1000));
}

function countdown(s) {
  if (s === null) return '';
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return `${hh}:${String(mm).padStart(2, '0')}:${String(ss).padStart(2, '0')}`;
}

function shareLink(g) {
  const u = new URL('/demo/storefront', location.origin);
  u.searchParams.set('key', sessionStorage.getItem(KEY));
  u.searchParams.set('campaign', campaign.id);
  u.searchParams.set('group', g.id);
  if (me && me.inviteCode) u.searchParams.set('invite', me.inviteCode);
  return u.toString();
}

function draw(entry) {
  const g = entry.group;
  const s = left(entry);
  const open = g.state === 'OPEN' || g.state === 'PENDING';
  entry.el.replaceChildren(
    h('div', {}, h('div', {}, seatsBar(g), ' ', h('span', { class: 'seats-text', 'data-held': g.seatsHeld }, `${g.seatsHeld} of ${g.capacity} seats taken`), ' ',
      h('span', { class: `badge ${g.state.toLowerCase()}` }, g.state)),
    h('small', { class: 'muted' }, g.tierReached ? `Paid seats reach ${g.tierReached.members} people: ${fmt.money(g.tierReached.unitPrice)} each.` : `Forms at ${g.minSize} paid seats.`,
      g.nextTier ? ` Next: ${g.nextTier.members} paid → ${fmt.money(g.nextTier.unitPrice)} each.` : ''),
    open && s !== null ? h('small', {}, 'Ends in ', h('span', { class: 'countdown' }, countdown(s)), ` (${fmt.dateTime(g.expiresAt)})`) : null,
    g.formedAt ? h('small', { class: 'ok' }, `Formed ${fmt.dateTime(g.formedAt)}`) : null),
    h('div', {}, open ? h('button', { class: 'primary join', onclick: () => join(g) }, 'Join') : null,
      h('label', { class: 'share' }, h('small', { class: 'muted' }, 'Share link'), h('input', { readonly: true, value: shareLink(g), onfocus: (ev) => ev.target.select() }))));
}

function tick() {
  for (const entry of cards.values()) {
    const el = entry.el.querySelector('.countdown');
    if (el) el.textContent = countdown(left(entry));
  }
}

async function seatResult(name, type, input) {
  if (!customer) return flash(errorList([{ code: 'UNAUTHENTICATED', message: 'sign in with a customer token first' }]));
  try {
    const invite = params.get('invite');
    if (invite && name === 'joinGroup') {
      const b = await customer.api.mutate('bindReferrer', 'BindReferrerInput', { inviteCode: invite, idempotencyKey: `bind-${invite}` }, 'changed');
      if (b.errors.length && !['ALREADY_BOUND', 'SELF_REFERRAL'].includes(b.errors[0].code)) flash(errorList(b.errors));
    }
    const p = await customer.api.mutate(name, type, { ...input, idempotencyKey: crypto.randomUUID() }, `group { ${GROUP} } order { id } amountToPay currency`);
    if (p.errors.length) return flash(errorList(p.errors));
    flash(h('p', { class: 'ok', role: 'status', id: 'seat' }, `Seat reserved: pay ${fmt.money(p.amountToPay)} within ${campaign.paymentWindowSeconds / 60} min. `,
      h('span', { class: 'muted' }, '(Your payment backend confirms it with confirmPayment; order ', h('code', {}, p.order.id), ')')));
    if (!cards.has(p.group.id)) addCard(document.getElementById('groups'), p.group);
    document.getElementById('no-groups')?.remove();
  } catch (e) {
    flash(errorList(e instanceof ApiError ? e.errors : [{ message: e.message }]));
  }
}

const openGroup = () => seatResult('openGroup', 'OpenGroupInput', { campaignId: campaign.id });
const join = (g) => seatResult('joinGroup', 'JoinGroupInput', { groupId: g.id });

start();
