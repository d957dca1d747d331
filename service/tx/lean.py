"""The lean write path of the group-buy use cases (issue 10): one statement loads what the engine needs,
the engine decides, one statement writes the decision.

Load: `load_group` is one SELECT of the group row under FOR UPDATE with its campaign, its seats (as typed
arrays), the shop's currency and the acting user's facts. In READ COMMITTED a statement that waited for
the lock sees the locked row as it is now, but the rows it joined (the seats) as of the snapshot it took
before waiting. The statement therefore also returns the `xmin` of the group row in its own snapshot: if
that differs from the locked row's, someone changed the group after the snapshot, and the load runs once
more (now holding the lock, so the second read is current). Every writer of seats updates the group row in
the same transaction (`write` always does; so does the ORM reference in tests/integration/orm_reference.py),
so an unchanged `xmin` means unchanged seats.

Write: `Writes` collects the decision's rows (orders, lines, seats, the group, stock and per-user units,
events, refunds) as the parts of one data-modifying CTE, sent as one statement. Parts never touch the same
row twice (PostgreSQL would apply only one of two updates of a row in one statement): changes are merged
per order, per campaign and per user before they become parts. Guards (stock, per-user limit) are parts
with RETURNING whose row counts come back; a failed guard raises its refusal and the transaction rolls
back whole. The outbox rows carry the currency loaded with the group (no sub-select: issue 17).

Decisions with instructions that move money (OrderPaid, a GB-5..GB-9 RefundOwed, GroupFormed, GroupFailed,
FinalPrice) are carried out by `service.tx.group_batch` (one more load under lock, one write, no ORM):
`lean_enough` tells them apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from engine import groupbuy as gb
from engine.events import EventType
from engine.refunds import OrderMoney, decide_refund
from service.tx import events
from service.tx.ids import new_id
from service.tx.ledger import execute_sql
from store import mapping
from store.models import CampaignRow, GroupRow
from store.secrets import seal, unseal

GROUP_COLS = [c.name for c in GroupRow.__table__.columns]
CAMPAIGN_COLS = [c.name for c in CampaignRow.__table__.columns]
SEAT_COLS = ["order_id", "user_id", "quantity", "unit_price", "role", "state", "reserved_at", "pay_by", "paid_at"]
LEAN_INSTRUCTIONS = (
    gb.CancelOrder,
    gb.ReturnStock,
    gb.GroupCancelled,
    gb.LeaderChanged,
    gb.GroupNudged,
)


def load_sql(where: str, *, skip_locked: bool = False, limit: str = "") -> str:
    return (
        "SELECT "
        + ", ".join(f"g.{c}" for c in GROUP_COLS)
        + ", "
        + ", ".join(f"c.{c} AS c_{c}" for c in CAMPAIGN_COLS)
        + ", "
        + ", ".join(f"st.s_{c}" for c in SEAT_COLS)
        + ", "
        "CAST(g.xmin AS text) AS x_locked, "
        "(SELECT CAST(g2.xmin AS text) FROM groups g2 WHERE g2.shop_id = :s AND g2.group_id = g.group_id) "
        "AS x_seen, sh.currency AS shop_currency, "
        "(SELECT u.units FROM campaign_user_units u WHERE u.shop_id = :s AND u.campaign_id = g.campaign_id "
        "AND u.user_id = :u) AS user_units, "
        "(SELECT us.paid_orders FROM users us WHERE us.shop_id = :s AND us.user_id = :u) AS user_paid_orders "
        "FROM groups g JOIN campaigns c ON c.shop_id = :s AND c.shop_id = g.shop_id AND c.campaign_id = g.campaign_id "
        "JOIN shops sh ON sh.shop_id = :s AND sh.shop_id = g.shop_id "
        "LEFT JOIN LATERAL (SELECT "
        + ", ".join(f"array_agg(s.{c} ORDER BY s.reserved_at, s.order_id) AS s_{c}" for c in SEAT_COLS)
        + " FROM seats s WHERE s.shop_id = :s AND s.shop_id = g.shop_id AND s.group_id = g.group_id) st ON true "
        f"WHERE g.shop_id = :s AND {where} {limit} FOR UPDATE OF g" + (" SKIP LOCKED" if skip_locked else "")
    )


LOAD_GROUP = text(load_sql("g.group_id = :g"))
LOAD_GROUP_SKIP_LOCKED = text(load_sql("g.group_id = :g", skip_locked=True))
CLAIM_DUE = text(load_sql("g.due_at <= :now", skip_locked=True, limit="ORDER BY g.due_at LIMIT 1"))

LOAD_CAMPAIGN = text(
    "SELECT " + ", ".join(f"c.{c} AS c_{c}" for c in CAMPAIGN_COLS) + ", sh.currency AS shop_currency, "
    "(SELECT u.units FROM campaign_user_units u WHERE u.shop_id = :s AND u.campaign_id = c.campaign_id "
    "AND u.user_id = :u) AS user_units, "
    "b.referrer_id AS b_referrer_id, b.bound_at AS b_bound_at, b.source AS b_source, b.expires_at AS b_expires_at "
    "FROM campaigns c JOIN shops sh ON sh.shop_id = :s AND sh.shop_id = c.shop_id "
    "LEFT JOIN bindings b ON b.shop_id = :s AND b.shop_id = c.shop_id AND b.user_id = :u "
    "WHERE c.shop_id = :s AND c.campaign_id = :c"
)


@dataclass
class Loaded:
    """A group under its row lock, with what the engine needs to decide on it."""

    shop_id: str
    group: gb.Group
    campaign_row: Any  # attribute access like store.models.CampaignRow
    campaign: gb.Campaign
    currency: str
    user_units: int = 0
    user_has_paid_order: bool = False
    due_at: datetime | None = None


def _campaign_ns(r) -> SimpleNamespace:
    m = r._mapping
    return SimpleNamespace(**{c: m[f"c_{c}"] for c in CAMPAIGN_COLS})


_TIERS: dict[tuple, tuple] = {}  # a group's tiers (a copy of its campaign's), mapped once per process


def _tiers(data) -> tuple:
    """`mapping.tiers_from_json`, remembered: the groups of a campaign carry the same few tiers, and a worker's
    batch maps hundreds of groups (bounded: the memo starts over past 4,096 distinct tier lists)."""
    key = tuple(tuple(t) for t in data)
    got = _TIERS.get(key)
    if got is None:
        if len(_TIERS) >= 4096:
            _TIERS.clear()
        got = _TIERS[key] = mapping.tiers_from_json(data)
    return got


def loaded(r, campaigns: dict | None = None) -> Loaded:
    """A loading statement's row as a `Loaded`. `campaigns`: the campaigns already mapped from earlier rows of
    the same statement (a batch of groups of one campaign maps it once)."""
    m = r._mapping
    g = SimpleNamespace(**{c: m[c] for c in GROUP_COLS})
    n = len(m["s_order_id"] or ())
    seats = [
        gb.Seat(
            order_id=m["s_order_id"][i],
            user_id=m["s_user_id"][i],
            quantity=m["s_quantity"][i],
            unit_price=m["s_unit_price"][i],
            role=gb.PriceRole(m["s_role"][i]),
            state=gb.SeatState(m["s_state"][i]),
            reserved_at=m["s_reserved_at"][i],
            pay_by=m["s_pay_by"][i],
            paid_at=m["s_paid_at"][i],
        )
        for i in range(n)
    ]
    group = gb.Group(
        id=g.group_id,
        campaign_id=g.campaign_id,
        tiers=_tiers(g.tiers),
        leader_user_id=g.leader_user_id,
        state=gb.GroupState(g.state),
        seats=tuple(seats),
        opened_at=g.opened_at,
        variant=g.variant,
        expires_at=g.expires_at,
        formed_at=g.formed_at,
        closed_at=g.closed_at,
        tier_members=g.tier_members,
        winners=tuple(g.winners or ()),
        lottery_seed=unseal(g.lottery_seed),
        nudged_almost_full_at=g.nudged_almost_full_at,
        nudged_expiring_soon_at=g.nudged_expiring_soon_at,
    )  # gbv2: GB-7 v2 seed, GB-15 nudges
    if campaigns is not None and g.campaign_id in campaigns:
        c, campaign = campaigns[g.campaign_id]
    else:
        c = _campaign_ns(r)
        campaign = mapping.campaign_from_row(c)
        if campaigns is not None:
            campaigns[g.campaign_id] = (c, campaign)
    events.remember_currency(g.shop_id, m["shop_currency"])
    return Loaded(
        shop_id=g.shop_id,
        group=group,
        campaign_row=c,
        campaign=campaign,
        currency=m["shop_currency"],
        user_units=m["user_units"] or 0,
        user_has_paid_order=bool(m["user_paid_orders"]),
        due_at=g.due_at,
    )


async def load_group(
    session,
    shop_id: str,
    group_id: str | None = None,
    *,
    user_id: str = "",
    skip_locked: bool = False,
    due_before: datetime | None = None,
) -> Loaded | None:
    """The group (by id, or the shop's most overdue one with `due_before`) under FOR UPDATE, current even
    if the lock was waited for. None: no such group, or (skip_locked) another transaction holds it."""
    if due_before is not None:
        stmt, params = CLAIM_DUE, {"s": shop_id, "now": due_before, "u": user_id}
    else:
        stmt = LOAD_GROUP_SKIP_LOCKED if skip_locked else LOAD_GROUP
        params = {"s": shop_id, "g": group_id, "u": user_id}
    r = (await session.execute(stmt, params)).first()
    if r is None:
        return None
    if r._mapping["x_locked"] != r._mapping["x_seen"]:  # waited for the lock: read again, now current
        r = (await session.execute(LOAD_GROUP, {"s": shop_id, "g": r._mapping["group_id"], "u": user_id})).one()
        assert r._mapping["x_locked"] == r._mapping["x_seen"], "a locked group cannot change under its lock"
    return loaded(r)


@dataclass
class LoadedCampaign:
    campaign_row: Any
    campaign: gb.Campaign
    currency: str
    user_units: int
    binding: Any  # engine.referral.Binding or None


async def load_campaign(session, shop_id: str, campaign_id: str, *, user_id: str) -> LoadedCampaign | None:
    """What opening a group needs, in one read: the campaign, the shop's currency, the user's units held and
    referral binding."""
    r = (await session.execute(LOAD_CAMPAIGN, {"s": shop_id, "c": campaign_id, "u": user_id})).first()
    if r is None:
        return None
    m = r._mapping
    c = _campaign_ns(r)
    events.remember_currency(shop_id, m["shop_currency"])
    binding = None
    if m["b_referrer_id"] is not None:
        binding = mapping.binding_from_row(
            SimpleNamespace(
                user_id=user_id,
                referrer_id=m["b_referrer_id"],
                bound_at=m["b_bound_at"],
                source=m["b_source"],
                expires_at=m["b_expires_at"],
            )
        )
    return LoadedCampaign(
        campaign_row=c,
        campaign=mapping.campaign_from_row(c),
        currency=m["shop_currency"],
        user_units=m["user_units"] or 0,
        binding=binding,
    )


def lean_enough(decision: gb.Decision) -> bool:
    """True when every instruction of the decision is one `Writes.apply` carries out itself."""
    return all(
        isinstance(i, LEAN_INSTRUCTIONS) or (isinstance(i, gb.RefundOwed) and i.rule == "GB-10")
        for i in decision.instructions
    )


ORDER_COLUMNS = (
    "order_id, external_id, buyer_id, kind, campaign_id, group_id, state, goods_amount, shipping_amount, "
    "tax_amount, paid_amount, refunded_amount, content_hash, source, level1_id, level2_id, created_at, "
    "paid_at, completed_at, cancelled_at"
)
_TIMES = ("created_at", "paid_at", "completed_at", "cancelled_at")


@dataclass
class OrderView:
    """An order as loaded by Core or as written by this transaction (a use case may update it in memory beside
    its write), rendered by the API without reading it again after commit. The one order value of the lean
    paths: group seats (this module) and the plain-order use cases (service.usecases.orders) alike."""

    shop_id: str
    order_id: str
    external_id: str
    buyer_id: str
    kind: str
    campaign_id: str | None
    group_id: str | None
    state: str
    goods_amount: int
    shipping_amount: int = 0
    tax_amount: int = 0
    paid_amount: int = 0
    refunded_amount: int = 0
    content_hash: str = ""
    source: str = "NONE"
    level1_id: str | None = None
    level2_id: str | None = None
    created_at: datetime | None = None
    paid_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None

    @classmethod
    def from_json(cls, shop_id: str, d: dict) -> "OrderView":
        d = {k: d[k] for k in ORDER_COLUMNS.split(", ")}
        for k in _TIMES:
            d[k] = datetime.fromisoformat(d[k]) if d[k] else None
        return cls(shop_id=shop_id, **d)


@dataclass
class _OrderChange:
    cancel: bool = False
    paid_plus: int = 0
    refunded_plus: int = 0


@dataclass
class Writes:
    """The parts of one data-modifying CTE (see the module docstring)."""

    shop_id: str
    now: datetime
    currency: str
    parts: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    stock: dict[str, tuple[int, bool]] = field(default_factory=dict)  # campaign -> (delta, guarded)
    units: dict[tuple[str, str], tuple[int, int | None]] = field(default_factory=dict)  # (campaign, user) -> delta
    orders: dict[str, _OrderChange] = field(default_factory=dict)
    notify: list[str] = field(default_factory=list)
    campaign: gb.Campaign | None = None  # gbv2: the engine campaign, for next_due_at (GB-12 grace, GB-15 nudges)

    def add(self, template: str, check: str | None = None, **params) -> None:
        p = f"p{len(self.parts)}_"
        self.parts.append(f"w{len(self.parts)} AS ({template.format(p=p)})")
        self.params.update({p + k: v for k, v in params.items()})
        if check:
            self.checks.append(f"(SELECT count(*) FROM w{len(self.parts) - 1}) AS {check}_{len(self.parts) - 1}")

    # ---------------------------------------------------------------- rows
    def ensure_user(self, user_id: str) -> None:
        self.add(
            "INSERT INTO users (shop_id, user_id, display_name, created_at) "
            "VALUES (:{p}s, :{p}u, '', :{p}now) ON CONFLICT DO NOTHING",
            s=self.shop_id,
            u=user_id,
            now=self.now,
        )

    def take_stock(self, c, user_id: str, quantity: int) -> None:
        """GB-1/GB-2: the stock guard and the per-user limit guard, checked in the write statement."""
        if c.stock is not None:
            d, _ = self.stock.get(c.campaign_id, (0, False))
            self.stock[c.campaign_id] = (d - quantity, True)
        d, _ = self.units.get((c.campaign_id, user_id), (0, None))
        self.units[(c.campaign_id, user_id)] = (d + quantity, c.per_user_limit)

    def return_stock(self, campaign_id: str, user_id: str, quantity: int) -> None:
        d, guarded = self.stock.get(campaign_id, (0, False))
        self.stock[campaign_id] = (d + quantity, guarded)
        d, limit = self.units.get((campaign_id, user_id), (0, None))
        self.units[(campaign_id, user_id)] = (d - quantity, limit)

    def new_order(self, c, *, order_id: str, group_id: str, user_id: str, seat: gb.Seat, source: str) -> OrderView:
        o = OrderView(
            shop_id=self.shop_id,
            order_id=order_id,
            external_id=f"group:{order_id}",
            buyer_id=user_id,
            kind="GROUP",
            campaign_id=c.campaign_id,
            group_id=group_id,
            state="CREATED",
            goods_amount=seat.amount,
            source=source,
            created_at=self.now,
        )
        self.add(
            "INSERT INTO orders (shop_id, order_id, external_id, buyer_id, kind, campaign_id, group_id, state, "
            "goods_amount, shipping_amount, tax_amount, paid_amount, refunded_amount, content_hash, source, "
            "created_at) VALUES (:{p}s, :{p}o, :{p}x, :{p}u, 'GROUP', :{p}c, :{p}g, 'CREATED', :{p}amt, 0, 0, "
            "0, 0, '', :{p}src, :{p}now)",
            s=self.shop_id,
            o=order_id,
            x=o.external_id,
            u=user_id,
            c=c.campaign_id,
            g=group_id,
            amt=seat.amount,
            src=source,
            now=self.now,
        )
        self.add(
            "INSERT INTO order_lines (shop_id, order_id, line_no, product_ref, category, quantity, unit_price, "
            "discount) VALUES (:{p}s, :{p}o, 1, :{p}ref, :{p}cat, :{p}q, :{p}up, 0)",
            s=self.shop_id,
            o=order_id,
            ref=c.product_ref,
            cat=c.category,
            q=seat.quantity,
            up=seat.unit_price,
        )
        return o

    def insert_group(self, g: gb.Group) -> None:
        self.add(
            "INSERT INTO groups (shop_id, group_id, campaign_id, variant, tiers, leader_user_id, state, "
            "opened_at, expires_at, formed_at, closed_at, tier_members, winners, held_seats, paid_seats, due_at, "
            "nudged_almost_full_at, nudged_expiring_soon_at, lottery_seed, lottery_commitment) "
            "VALUES (:{p}s, :{p}g, :{p}c, :{p}v, CAST(:{p}t AS jsonb), :{p}l, :{p}st, :{p}op, :{p}ex, :{p}fo, "
            ":{p}cl, :{p}tm, CAST(:{p}w AS jsonb), :{p}h, :{p}pd, :{p}due, :{p}naf, :{p}nes, :{p}seed, :{p}cm)",
            **self._group_params(g),
            c=g.campaign_id,
            v=g.variant,
            t=json.dumps(mapping.tiers_to_json(g.tiers)),
            op=g.opened_at,
            seed=seal(g.lottery_seed),
            cm=g.lottery_commitment,
        )  # GB-7 v2: sealed at rest

    def update_group(self, g: gb.Group) -> None:
        """Always written, changed or not: the load's freshness check relies on every seat writer moving the
        group row's xmin."""
        self.add(
            "UPDATE groups SET leader_user_id = :{p}l, state = :{p}st, expires_at = :{p}ex, formed_at = :{p}fo, "
            "closed_at = :{p}cl, tier_members = :{p}tm, winners = CAST(:{p}w AS jsonb), held_seats = :{p}h, "
            "paid_seats = :{p}pd, due_at = :{p}due, nudged_almost_full_at = :{p}naf, "
            "nudged_expiring_soon_at = :{p}nes WHERE shop_id = :{p}s AND group_id = :{p}g",
            **self._group_params(g),
        )
        self.notify.append(g.id)

    def _group_params(self, g: gb.Group) -> dict:
        return dict(
            s=self.shop_id,
            g=g.id,
            l=g.leader_user_id,
            st=g.state.value,
            ex=g.expires_at,
            fo=g.formed_at,
            cl=g.closed_at,
            tm=g.tier_members,
            w=json.dumps(list(g.winners)),
            h=g.held_seats,
            pd=g.paid_seats,
            due=gb.next_due_at(g, self.campaign),
            naf=g.nudged_almost_full_at,
            nes=g.nudged_expiring_soon_at,
        )

    def seats(self, before: gb.Group | None, after: gb.Group) -> None:
        old = {s.order_id: s for s in (before.seats if before else ())}
        for s in after.seats:
            if s.order_id not in old:
                self.add(
                    "INSERT INTO seats (shop_id, order_id, group_id, user_id, quantity, unit_price, role, state, "
                    "reserved_at, pay_by, paid_at) VALUES (:{p}s, :{p}o, :{p}g, :{p}u, :{p}q, :{p}up, :{p}r, "
                    ":{p}st, :{p}ra, :{p}pb, :{p}pa)",
                    s=self.shop_id,
                    o=s.order_id,
                    g=after.id,
                    u=s.user_id,
                    q=s.quantity,
                    up=s.unit_price,
                    r=s.role.value,
                    st=s.state.value,
                    ra=s.reserved_at,
                    pb=s.pay_by,
                    pa=s.paid_at,
                )
            elif old[s.order_id] != s:
                self.add(
                    "UPDATE seats SET user_id = :{p}u, quantity = :{p}q, unit_price = :{p}up, role = :{p}r, "
                    "state = :{p}st, reserved_at = :{p}ra, pay_by = :{p}pb, paid_at = :{p}pa "
                    "WHERE shop_id = :{p}s AND order_id = :{p}o",
                    s=self.shop_id,
                    o=s.order_id,
                    u=s.user_id,
                    q=s.quantity,
                    up=s.unit_price,
                    r=s.role.value,
                    st=s.state.value,
                    ra=s.reserved_at,
                    pb=s.pay_by,
                    pa=s.paid_at,
                )

    def event(
        self, *, type: EventType, aggregate_type: str, aggregate_id: str, rule: str | None, payload: dict
    ) -> None:
        self.add(
            "INSERT INTO events (shop_id, event_id, type, aggregate_type, aggregate_id, rule, occurred_at, "
            "payload) VALUES (:{p}s, :{p}e, :{p}t, :{p}at, :{p}ai, :{p}r, :{p}now, CAST(:{p}pl AS jsonb))",
            s=self.shop_id,
            e=new_id("evt_"),
            t=str(getattr(type, "value", type)),
            at=aggregate_type,
            ai=aggregate_id,
            r=rule,
            now=self.now,
            pl=json.dumps(events.payload_of(self.shop_id, payload, rule, self.currency), default=str),
        )

    # ---------------------------------------------------------------- a decision
    def apply(self, loaded_group: gb.Group | None, decision: gb.Decision, campaign_id: str) -> None:
        """The decision's group, seats and lean instructions (see `lean_enough`) as parts."""
        g = decision.group
        assert lean_enough(decision), "money-moving instructions go through service.tx.group_batch"
        self.seats(loaded_group, g)
        by_order = {s.order_id: s for s in g.seats}
        for ins in decision.instructions:
            if isinstance(ins, gb.CancelOrder):
                self.orders.setdefault(ins.order_id, _OrderChange()).cancel = True
                self.event(
                    type=EventType.SEAT_RELEASED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"order_id": ins.order_id, "user_id": by_order[ins.order_id].user_id},
                )
            elif isinstance(ins, gb.ReturnStock):
                self.return_stock(campaign_id, by_order[ins.order_id].user_id, ins.quantity)
            elif isinstance(ins, gb.GroupNudged):  # GB-15
                self.event(
                    type=(EventType.GROUP_ALMOST_FULL if ins.kind == "almost_full" else EventType.GROUP_EXPIRING_SOON),
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={
                        "group_id": g.id,
                        "campaign_id": campaign_id,
                        "seats_missing": ins.seats_missing,
                        "expires_at": ins.expires_at.isoformat() if ins.expires_at else "",
                    },
                )
            elif isinstance(ins, gb.GroupCancelled):
                self.event(
                    type=EventType.GROUP_CANCELLED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"group_id": g.id},
                )
            elif isinstance(ins, gb.LeaderChanged):
                self.event(
                    type=EventType.GROUP_LEADER_CHANGED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"group_id": g.id, "from": ins.old_user_id, "to": ins.new_user_id},
                )
            elif isinstance(ins, gb.RefundOwed):  # GB-10: a further payment of a seat already paid
                self.extra_payment_refund(g.id, ins)

    def extra_payment_refund(self, group_id: str, ins: gb.RefundOwed) -> None:
        """GB-9/GB-10: money received for a seat that another payment already took is owed back in full. It
        never counted as a purchase (no commission, no spend): the order's paid and refunded amounts both
        grow by it, and the refund is OWED until the backend confirms it."""
        # the engine's refund arithmetic on this payment alone: money received that never counted as a purchase
        d = decide_refund(
            OrderMoney(paid=ins.amount, refunded=0, goods=0, counted=False), ins.amount, rule=ins.rule, full=True
        )
        assert d.goods_refund == d.net_spend_delta == d.paid_orders_delta == 0
        ch = self.orders.setdefault(ins.order_id, _OrderChange())
        ch.paid_plus += d.paid_after
        ch.refunded_plus += d.refunded_after
        refund_id = new_id("rf_")
        self.add(
            'INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, "full", state, created_at) '
            "VALUES (:{p}s, :{p}r, :{p}o, :{p}a, :{p}rule, true, 'OWED', :{p}now)",
            s=self.shop_id,
            r=refund_id,
            o=ins.order_id,
            a=ins.amount,
            rule=ins.rule,
            now=self.now,
        )
        self.event(
            type=EventType.REFUND_OWED,
            aggregate_type="group",
            aggregate_id=group_id,
            rule=ins.rule,
            payload={
                "refund_id": refund_id,
                "order_id": ins.order_id,
                "amount": ins.amount,
                "full": True,
                "reason": ins.rule,
            },
        )

    def _merged(self) -> None:
        for oid, ch in self.orders.items():
            self.add(
                "UPDATE orders SET state = CASE WHEN :{p}cancel AND state = 'CREATED' THEN 'CANCELLED' "
                "ELSE state END, cancelled_at = CASE WHEN :{p}cancel AND state = 'CREATED' THEN :{p}now "
                "ELSE cancelled_at END, paid_amount = paid_amount + :{p}pp, refunded_amount = refunded_amount "
                "+ :{p}rp WHERE shop_id = :{p}s AND order_id = :{p}o",
                cancel=ch.cancel,
                now=self.now,
                pp=ch.paid_plus,
                rp=ch.refunded_plus,
                s=self.shop_id,
                o=oid,
            )
        for cid, (delta, guarded) in self.stock.items():
            if guarded:
                self.add(
                    "UPDATE campaigns SET stock_left = stock_left + :{p}d WHERE shop_id = :{p}s AND "
                    "campaign_id = :{p}c AND stock_left + :{p}d >= 0 RETURNING 1",
                    check="ok_stock",
                    d=delta,
                    s=self.shop_id,
                    c=cid,
                )
            elif delta:
                self.add(
                    "UPDATE campaigns SET stock_left = stock_left + :{p}d WHERE shop_id = :{p}s AND "
                    "campaign_id = :{p}c AND stock_left IS NOT NULL",
                    d=delta,
                    s=self.shop_id,
                    c=cid,
                )
        for (cid, uid), (delta, limit) in self.units.items():
            if delta > 0:
                self.add(
                    "INSERT INTO campaign_user_units AS x (shop_id, campaign_id, user_id, units) VALUES "
                    "(:{p}s, :{p}c, :{p}u, :{p}d) ON CONFLICT (shop_id, campaign_id, user_id) DO UPDATE SET "
                    "units = x.units + excluded.units WHERE CAST(:{p}lim AS int) IS NULL OR x.units + "
                    "excluded.units <= CAST(:{p}lim AS int) RETURNING 1",
                    check="ok_units",
                    s=self.shop_id,
                    c=cid,
                    u=uid,
                    d=delta,
                    lim=limit,
                )
            elif delta < 0:
                self.add(
                    "UPDATE campaign_user_units SET units = units + :{p}d WHERE shop_id = :{p}s AND "
                    "campaign_id = :{p}c AND user_id = :{p}u",
                    d=delta,
                    s=self.shop_id,
                    c=cid,
                    u=uid,
                )

    async def run(self, session) -> dict[str, int]:
        """Send every part as one statement; the counts of the guard parts come back."""
        self._merged()
        select_list = list(self.checks)
        for i, gid in enumerate(dict.fromkeys(self.notify)):  # live progress across processes (delivered at commit)
            self.params[f"notify{i}"] = f"{self.shop_id}:{gid}"
            select_list.append(f"pg_notify('sharecart_groups', :notify{i}) AS n{i}")
        if not self.parts:
            return {}
        sql = "WITH " + ", ".join(self.parts) + " SELECT " + (", ".join(select_list) or "1")
        row = (await execute_sql(session, sql, self.params)).one()
        return {k: v for k, v in row._mapping.items() if k.startswith("ok_")}
