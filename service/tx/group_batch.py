"""The lean carrying-out of group decisions that move money (issue 10): formation (GB-4/GB-5, the GB-7
lottery, the leader's reward), failure (GB-6), and the refunds owed of GB-5..GB-9 — for one group or for
a batch of groups of one shop at once (the worker's advance, GB-11).

Per batch, three statements whatever its size:

1. the groups, already loaded under their row locks (`service.lean.load_group`, or the worker's
   `claim_due_batch`: N due groups, FOR UPDATE SKIP LOCKED);
2. `load_context`: every seat's order under FOR UPDATE (order_id order), then the commission lines of
   those orders under FOR UPDATE (line_id order, the one lock order of every writer of lines), the shop's
   freeze_days, whether it has levels, which of the groups' leaders are distributors already;
3. the write: the engine's decisions (`engine.groupbuy` decided the group; `engine.refunds.decide_refund`,
   `engine.commission` the money) as array parts (`unnest`) of the applier's one statement
   (`service.ledger.LedgerBatch.flush`): seats, groups, orders, refunds, users' counters, stock and
   per-user units, commission lines, balances, ledger entries, events, NOTIFY.

Rows touched by several decisions of a batch are merged first (an order's amounts, a user's counters, a
campaign's stock, a (campaign, user)'s units, a line's final state, a distributor's balances), as the parts
of one statement must never change a row twice. A leader who earns a reward but is no distributor yet gets
the row in one statement before the write (the balance UPDATE must find it). In a shop with levels, LV-2
re-evaluation adds its own statement(s) after the write (`service.commissions.evaluate_levels`).

A payment that takes a seat (OrderPaid, at most one a transaction) loads in statement 2 what its commission
needs as well (`commissions.PAID_CONTEXT`'s columns and the buyer's spend, for DS-1 admission); the buyer
admitted by it gets its row before the write, like a rewarded leader.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from engine import commission as cm
from engine import groupbuy as gb
from engine.distribution import DistributionSettings, DistributorStatus, admits_automatically
from engine.events import EventType
from engine.refunds import OrderMoney, decide_refund
from service.tx import commissions, fraud, lean
from service.tx.ids import new_id, new_invite_code
from service.tx.ledger import LedgerBatch, line_from_row
from store import mapping

_DEFAULT_FREEZE_DAYS = DistributionSettings().freeze_days

# commissions.PAID_CONTEXT for a paying order (:oid, its buyer :buyer), and the buyer's spend (DS-1): the parts
# a loading statement adds after its own CTEs and columns
PAID_CTES = """,
    b1 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
           WHERE shop_id = :s AND user_id = :buyer),
    b2 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
           WHERE shop_id = :s AND user_id = (SELECT referrer_id FROM b1))"""
PAID_COLS = """,
           (SELECT row_to_json(b1) FROM b1) AS b1, (SELECT row_to_json(b2) FROM b2) AS b2,
           (SELECT json_object_agg(user_id, json_build_array(status, grade)) FROM distributors
             WHERE shop_id = :s AND user_id IN (:buyer, (SELECT referrer_id FROM b1), (SELECT referrer_id FROM b2)))
             AS dists,
           (SELECT row_to_json(x) FROM distribution_settings x WHERE shop_id = :s) AS settings,
           (SELECT json_agg(lv ORDER BY lv.grade) FROM levels lv WHERE shop_id = :s) AS levels,
           (SELECT json_agg(json_build_array(ol.product_ref, ol.quantity, ol.unit_price * ol.quantity - ol.discount,
                                             p.earns_commission, p.level1_amount, p.level2_amount) ORDER BY ol.line_no)
              FROM order_lines ol LEFT JOIN products p ON p.shop_id = ol.shop_id AND p.product_ref = ol.product_ref
             WHERE ol.shop_id = :s AND ol.order_id = :oid) AS paid_lines,
           (SELECT net_spend FROM users WHERE shop_id = :s AND user_id = :buyer) AS buyer_spend"""


def paid_context(got) -> SimpleNamespace:
    """A loading row's PAID_COLS as `commissions.post_paid_lines` reads them."""
    return SimpleNamespace(
        b1=got.b1,
        b2=got.b2,
        dists=got.dists,
        settings=got.settings,
        levels=got.levels,
        lines=got.paid_lines,
        buyer_spend=got.buyer_spend or 0,
    )


def admitted_by(pc, buyer_id: str, goods_amount: int) -> bool:
    """DS-1 at a payment: EVERYONE admits at the first order, SPEND_THRESHOLD once net paid spend (this order
    included) reaches it (`engine.distribution.admits_automatically`) — a buyer not yet ACTIVE or SUSPENDED."""
    settings = mapping.settings_from_row(commissions._obj(_json(pc.settings)))
    status = (_json(pc.dists) or {}).get(buyer_id, [None])[0]
    return admits_automatically(settings, net_paid_spend=pc.buyer_spend + goods_amount) and status in (
        None,
        DistributorStatus.NONE.value,
        DistributorStatus.APPLIED.value,
    )


async def ensure_distributors(session, shop_id: str, now: datetime, statuses: dict[str, str]) -> None:
    """DS-1 admission and balance records for `statuses` (user -> ACTIVE for DS-1 admission, NONE for a
    balance record): one upsert (a NONE/APPLIED distributor admitted, an unknown user created), then the
    audit rows of the distributors it created. Multi-row VALUES with the shop as a constant, so that on
    Citus both route to the shop's shard (an INSERT … SELECT from unnest is pulled through the coordinator)."""
    if not statuses:
        return
    users = sorted(statuses)
    args: dict[str, Any] = {"s": shop_id, "now": now}
    rows = []
    for n, u in enumerate(users):
        active = statuses[u] == DistributorStatus.ACTIVE.value
        args.update(
            {
                f"u{n}": u,
                f"c{n}": new_invite_code(),
                f"st{n}": statuses[u],
                f"at{n}": now if active else None,
                f"by{n}": "system" if active else None,
            }
        )
        rows.append(f"(:s, :u{n}, :st{n}, :c{n}, 0, '[]'::jsonb, :now, :at{n}, :by{n}, 0, 0, 0, 0, 0, 0)")
    created = (await session.execute(text(ENSURE_DISTRIBUTORS.format(rows=", ".join(rows))), args)).all()
    created = [r for r in created if r.created]
    if created:
        salt = new_id("")
        audit = {"s": shop_id, "now": now}
        values = []
        for n, r in enumerate(created):
            audit.update(
                {
                    f"a{n}": "aud_" + hashlib.md5((r.user_id + salt).encode()).hexdigest(),
                    f"u{n}": r.user_id,
                    f"st{n}": r.status,
                }
            )
            values.append(f"(:s, :a{n}, :u{n}, 'STATUS', NULL, :st{n}, 'system', '', :now)")
        await session.execute(
            text(
                "INSERT INTO distributor_audit (shop_id, audit_id, user_id, action, from_value, to_value, actor, "
                "reason, at) VALUES " + ", ".join(values)
            ),
            audit,
        )


def _context_sql(paid: bool) -> str:
    paying = PAID_CTES if paid else ""
    cols = PAID_COLS if paid else ""
    return f"""
    WITH o AS (SELECT {lean.ORDER_COLUMNS} FROM orders
               WHERE shop_id = :s AND order_id = ANY(CAST(:oids AS text[])) ORDER BY order_id FOR UPDATE),
    l AS (SELECT {commissions.LINE_COLUMNS} FROM commission_lines
          WHERE shop_id = :s AND order_id IN (SELECT order_id FROM o) ORDER BY line_id FOR UPDATE){paying}
    SELECT (SELECT coalesce(json_agg(o), '[]'::json) FROM o) AS orders,
           (SELECT coalesce(json_agg(l ORDER BY l.line_id), '[]'::json) FROM l) AS lines,
           (SELECT freeze_days FROM distribution_settings WHERE shop_id = :s) AS freeze_days,
           EXISTS (SELECT 1 FROM levels WHERE shop_id = :s) AS has_levels,
           (SELECT coalesce(json_agg(user_id), '[]'::json) FROM distributors
             WHERE shop_id = :s AND user_id = ANY(CAST(:leaders AS text[]))) AS distributors{cols}
    """


CONTEXT = text(_context_sql(False))
CONTEXT_PAYING = text(_context_sql(True))

# DS-1 admission and the leader's balance record, before the write (whose balance UPDATE must find the rows):
# new distributors with their audit line, and NONE/APPLIED ones admitted
ENSURE_DISTRIBUTORS = """
    INSERT INTO distributors AS d (shop_id, user_id, status, invite_code, grade, bonuses_credited, applied_at,
                                   approved_at, approved_by, pending, frozen, available, in_payout, paid, fees)
    VALUES {rows}
    ON CONFLICT (shop_id, user_id) DO UPDATE SET status = 'ACTIVE', approved_at = EXCLUDED.applied_at,
                                                 approved_by = 'system'
      WHERE EXCLUDED.status = 'ACTIVE' AND d.status IN ('NONE', 'APPLIED')
    RETURNING d.user_id, d.status, (d.xmax = 0) AS created
"""


def paying(decision: gb.Decision) -> str | None:
    """The order a decision pays (OrderPaid: a payment took its seat), if any."""
    return next((i.order_id for i in decision.instructions if isinstance(i, gb.OrderPaid)), None)


def _json(v):
    return json.loads(v) if isinstance(v, str) else v


def _line(d: dict) -> cm.CommissionLine:
    d = dict(d)
    d["available_at"] = datetime.fromisoformat(d["available_at"]) if d["available_at"] else None
    return line_from_row(SimpleNamespace(**d))


@dataclass
class Context:
    orders: dict[str, lean.OrderView]
    lines: dict[str, cm.CommissionLine]  # line_id -> its value as this batch leaves it
    freeze_days: int
    has_levels: bool
    distributors: set[str]
    paid: Any = None  # the paying order's PAID_CONTEXT columns (a payment only)


async def load_context(
    session, shop_id: str, loaded: list[lean.Loaded], *, paying: tuple[str, str] | None = None
) -> Context:
    """Statement 2 of a batch: the groups' orders and their commission lines under lock (see the module doc);
    with `paying` (order, buyer), also what a payment's commission and admission need."""
    oids = sorted({s.order_id for ld in loaded for s in ld.group.seats})
    leaders = sorted({ld.group.leader_user_id for ld in loaded})
    params = {"s": shop_id, "oids": oids, "leaders": leaders}
    if paying:
        params.update(oid=paying[0], buyer=paying[1])
    got = (await session.execute(CONTEXT_PAYING if paying else CONTEXT, params)).one()
    orders = {d["order_id"]: lean.OrderView.from_json(shop_id, d) for d in _json(got.orders)}
    lines = {ln.id: ln for ln in (_line(d) for d in _json(got.lines))}
    paid = paid_context(got) if paying else None
    return Context(
        orders=orders,
        lines=lines,
        freeze_days=_DEFAULT_FREEZE_DAYS if got.freeze_days is None else got.freeze_days,
        has_levels=bool(got.has_levels),
        distributors=set(_json(got.distributors)),
        paid=paid,
    )


@dataclass
class GroupBatch:
    """The decisions of one transaction's groups, merged into the parts of one statement."""

    shop_id: str
    now: datetime
    session: Any
    ctx: Context
    ledger: LedgerBatch = field(init=False)
    seat_rows: dict[str, tuple[str, gb.Seat]] = field(default_factory=dict)  # order -> (group, seat) changed
    new_seats: dict[str, tuple[str, gb.Seat]] = field(default_factory=dict)
    groups: dict[str, gb.Group] = field(default_factory=dict)
    group_campaigns: dict[str, Any] = field(default_factory=dict)  # gbv2: group id -> engine campaign
    paid_amounts: dict[str, int] = field(default_factory=dict)  # order -> the payment confirmed for it
    orders: set[str] = field(default_factory=set)  # changed: written as `ctx.orders` holds them
    users: dict[str, list] = field(default_factory=dict)  # user -> [spend delta, paid orders delta, paid at]
    stock: dict[str, int] = field(default_factory=dict)
    units: dict[tuple[str, str], int] = field(default_factory=dict)
    refunds: list[tuple] = field(default_factory=list)
    new_distributors: dict[str, str] = field(default_factory=dict)  # user -> status (DS-1 ACTIVE, or NONE)
    touched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ledger = LedgerBatch(self.shop_id, self.now)

    # ------------------------------------------------------------ one group's decision
    async def add(self, ld: lean.Loaded, decision: gb.Decision) -> None:
        """Carry out `decision` on the loaded group `ld`, in memory (GB-4..GB-9, CM-5, CM-6)."""
        g, c = decision.group, ld.campaign_row
        old = {s.order_id: s for s in ld.group.seats}
        for s in g.seats:
            if s.order_id not in old:
                self.new_seats[s.order_id] = (g.id, s)
            elif old[s.order_id] != s:
                self.seat_rows[s.order_id] = (g.id, s)
        self.groups[g.id] = g
        self.group_campaigns[g.id] = ld.campaign  # gbv2: next_due_at needs it (GB-12 grace, GB-15 nudges)
        by_order = {s.order_id: s for s in g.seats}
        later = []
        for ins in decision.instructions:
            if isinstance(ins, gb.OrderPaid):
                await self._paid(ld, g, ins)
            elif isinstance(ins, gb.CancelOrder):
                o = self.ctx.orders[ins.order_id]
                if o.state == "CREATED":
                    o.state, o.cancelled_at = "CANCELLED", self.now
                    self.orders.add(o.order_id)
                self.ledger.event(
                    type=EventType.SEAT_RELEASED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"order_id": ins.order_id, "user_id": by_order[ins.order_id].user_id},
                )
            elif isinstance(ins, gb.ReturnStock):
                if c.stock is not None:
                    self.stock[c.campaign_id] = self.stock.get(c.campaign_id, 0) + ins.quantity
                key = (c.campaign_id, by_order[ins.order_id].user_id)
                self.units[key] = self.units.get(key, 0) - ins.quantity
            elif isinstance(ins, gb.RefundOwed):
                self._refund(g.id, ins)
            elif isinstance(ins, gb.FinalPrice):
                continue  # the GB-5/GB-7 refunds owed carry it out
            else:
                later.append(ins)
        for ins in later:
            if isinstance(ins, gb.GroupFormed):
                await self._formed(ld, g, ins)
            elif isinstance(ins, gb.GroupFailed):
                self._failed(ld, g, ins)
            elif isinstance(ins, gb.GroupOpened):
                assert g.expires_at is not None
                self.ledger.event(
                    type=EventType.GROUP_OPENED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={
                        "group_id": g.id,
                        "campaign_id": c.campaign_id,
                        "leader_user_id": g.leader_user_id,
                        "expires_at": g.expires_at.isoformat(),
                        "lottery_commitment": g.lottery_commitment,
                    },
                )
            elif isinstance(ins, gb.GroupCancelled):
                self.ledger.event(
                    type=EventType.GROUP_CANCELLED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"group_id": g.id},
                )
            elif isinstance(ins, gb.LeaderChanged):
                self.ledger.event(
                    type=EventType.GROUP_LEADER_CHANGED,
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={"group_id": g.id, "from": ins.old_user_id, "to": ins.new_user_id},
                )
            elif isinstance(ins, gb.GroupNudged):  # gbv2: GB-15
                self.ledger.event(
                    type=(EventType.GROUP_ALMOST_FULL if ins.kind == "almost_full" else EventType.GROUP_EXPIRING_SOON),
                    aggregate_type="group",
                    aggregate_id=g.id,
                    rule=ins.rule,
                    payload={
                        "group_id": g.id,
                        "campaign_id": c.campaign_id,
                        "seats_missing": ins.seats_missing,
                        "expires_at": ins.expires_at.isoformat() if ins.expires_at else "",
                    },
                )

    def _lines_of(self, order_ids) -> list[cm.CommissionLine]:
        ids = set(order_ids)
        return [ln for _, ln in sorted(self.ctx.lines.items()) if ln.order_id in ids]

    def _transition(self, transition: cm.Transition) -> None:
        line, _ = transition
        self.ctx.lines[line.id] = line
        self.ledger.line(self.session, transition)

    def _refund(self, group_id: str, ins: gb.RefundOwed) -> None:
        """`service.refunds.apply_refund` on a loaded order: the engine's decision (OR-2 bounds, goods first,
        RP-3 counters), CM-5 on every line computed on the order. Never GB-10: a further payment of a paid seat is
        a decision of that refund alone, which the lean path writes (`lean.Writes.extra_payment_refund`)."""
        assert ins.rule != "GB-10", "GB-10 refunds are lean (lean.lean_enough)"
        o = self.ctx.orders[ins.order_id]
        d = decide_refund(
            OrderMoney(
                paid=o.paid_amount, refunded=o.refunded_amount, goods=o.goods_amount, counted=o.paid_at is not None
            ),
            ins.amount,
            rule=ins.rule,
            full=ins.full,
        )
        o.paid_amount, o.refunded_amount = d.paid_after, d.refunded_after
        self.orders.add(o.order_id)
        refund_id = new_id("rf_")
        self.refunds.append((refund_id, o.order_id, ins.amount, ins.rule, d.full))
        if d.net_spend_delta or d.paid_orders_delta:
            u = self.users.setdefault(o.buyer_id, [0, 0, None])
            u[0] += d.net_spend_delta
            u[1] += d.paid_orders_delta
        if d.goods_refund:
            # REFUNDED_LINES: the order's own level 1/2 lines and the reward of its group's leader (R33)
            for line in [
                ln
                for _, ln in sorted(self.ctx.lines.items())
                if (ln.order_id == o.order_id and ln.level != 0)
                or (
                    ln.level == 0
                    and ln.order_id != o.order_id
                    and o.group_id is not None
                    and self.ctx.orders.get(ln.order_id) is not None
                    and self.ctx.orders[ln.order_id].group_id == o.group_id
                )
            ]:
                commissions.apply_line_refund(self.session, self.ledger, line, d.goods_refund, cause=ins.rule)
                self.ctx.lines[line.id] = self.ledger.current(line)
        if ins.rule != "GB-10":
            self.touched |= {o.buyer_id, o.level1_id or "", o.level2_id or ""}
        self.ledger.event(
            type=EventType.REFUND_OWED,
            aggregate_type="group",
            aggregate_id=group_id,
            rule=ins.rule,
            payload={
                "refund_id": refund_id,
                "order_id": o.order_id,
                "amount": ins.amount,
                "full": d.full,
                "reason": ins.rule,
            },
        )

    async def _paid(self, ld: lean.Loaded, g: gb.Group, ins: gb.OrderPaid) -> None:
        """A payment took its seat (GB-1/GB-2), as the ORM reference (tests/integration/orm_reference.py) carries it out: the order PAID,
        the buyer's counters (RP-3), DS-1 admission, its commission lines PENDING and not yet releasable (CM-6,
        RF-2 snapshot, RF-3 codes, FR-1..FR-3 screening: `commissions.on_order_paid`)."""
        pc = self.ctx.paid
        assert pc is not None, "a payment's context is loaded with load_context(paying=…)"
        o = self.ctx.orders[ins.order_id]
        o.state, o.paid_amount, o.paid_at = "PAID", self.paid_amounts.get(o.order_id, o.goods_amount), self.now
        self.orders.add(o.order_id)
        u = self.users.setdefault(o.buyer_id, [0, 0, None])
        u[0], u[1], u[2] = u[0] + o.goods_amount, u[1] + 1, self.now
        admitted = admitted_by(pc, o.buyer_id, o.goods_amount)
        if admitted:
            self.new_distributors[o.buyer_id] = DistributorStatus.ACTIVE.value
            self.ctx.distributors.add(o.buyer_id)
        for line in await commissions.on_order_paid(
            self.session,
            self.ledger,
            order=o,
            now=self.now,
            enabled=ld.campaign_row.commission_enabled,
            releasable=False,
            admitted=admitted,
        ):
            self.ctx.lines[line.id] = line
        self.touched |= {o.buyer_id, o.level1_id or "", o.level2_id or ""}
        self.ledger.event(
            type=EventType.ORDER_PAID,
            aggregate_type="group",
            aggregate_id=g.id,
            rule=ins.rule,
            payload={"order_id": o.order_id, "amount": o.paid_amount, "role": ins.role.value, "buyer_id": o.buyer_id},
        )

    async def _formed(self, ld: lean.Loaded, g: gb.Group, ins: gb.GroupFormed) -> None:
        """GB-4..GB-7 outside the group: lines become releasable (CM-6), completed orders' lines freeze, the
        leader's reward (团长佣金, `cm.leader_reward`) is posted."""
        c = ld.campaign_row
        paid = [s for s in g.seats if s.state == gb.SeatState.PAID]
        order_ids = [s.order_id for s in paid]
        for line in self._lines_of(order_ids):
            new = cm.mark_releasable(line)
            if new != line:
                self._transition((new, ()))
        for oid in order_ids:
            self._freeze(self.ctx.orders[oid])
        leader_seat = next((s for s in paid if s.user_id == g.leader_user_id), None)
        if c.leader_commission_bp and c.commission_enabled and leader_seat is not None:
            leader_order = self.ctx.orders[leader_seat.order_id]
            others = [self.ctx.orders[s.order_id] for s in paid if s.order_id != leader_seat.order_id]
            amount, base = cm.leader_reward(
                c.leader_commission_bp,
                enabled=c.commission_enabled,
                leader_paid=True,
                other_members=[(o.paid_amount, o.refunded_amount) for o in others],
            )
            if amount > 0:
                if g.leader_user_id not in self.ctx.distributors:
                    self.new_distributors.setdefault(g.leader_user_id, DistributorStatus.NONE.value)
                line = commissions.post_commission_line(
                    self.session,
                    self.ledger,
                    order=leader_order,
                    beneficiary_id=g.leader_user_id,
                    level=0,
                    amount=amount,
                    now=self.now,
                    releasable=True,
                    base=base,
                    group_id=g.id,
                    rule="GB-4",
                )
                # FR-3: a flagged group's reward is held too (one read of the group's flag, only here)
                line = await fraud.hold_if_group_flagged(
                    self.session, self.ledger, line=line, shop_id=self.shop_id, group_id=g.id
                )
                self.ctx.lines[line.id] = line
                self._freeze(leader_order)
        self.ledger.event(
            type=EventType.GROUP_FORMED,
            aggregate_type="group",
            aggregate_id=g.id,
            rule=ins.rule,
            payload={
                "group_id": g.id,
                "campaign_id": c.campaign_id,
                "tier_members": ins.tier_members,
                "member_unit_price": ins.member_unit_price,
                "leader_unit_price": ins.leader_unit_price,
                "winners": list(ins.winners),
                "order_ids": order_ids,
                "leader_order_id": leader_seat.order_id if leader_seat else None,
                "draw": draw_payload(g),
            },
        )  # gbv2: GB-7 v2

    def _freeze(self, o: lean.OrderView) -> None:
        """CM-6/OR-4 (`commissions.freeze_order_lines`): a completed order's releasable PENDING lines freeze."""
        if o.state != "COMPLETED" or o.completed_at is None:
            return
        for line in self._lines_of([o.order_id]):
            if line.state == cm.CommissionState.PENDING and line.releasable:
                new, postings = cm.freeze_line(line, o.completed_at, self.ctx.freeze_days)
                if new != line:
                    self._transition((new, postings))

    def _failed(self, ld: lean.Loaded, g: gb.Group, ins: gb.GroupFailed) -> None:
        """`commissions.void_order_lines` (CM-6): what still stands of the lines of a failed group leaves PENDING."""
        for line in self._lines_of([s.order_id for s in g.seats]):
            if line.state != cm.CommissionState.PENDING:
                continue
            self._transition(cm.void_line(line))
            self.ledger.event(
                type=EventType.COMMISSION_VOIDED,
                aggregate_type="order",
                aggregate_id=line.order_id,
                rule="CM-6",
                payload={
                    "order_id": line.order_id,
                    "line_id": line.id,
                    "beneficiary_id": line.beneficiary_id,
                    "level": line.level,
                    "amount": line.standing,
                    "cause": ins.rule,
                },
            )
        self.ledger.event(
            type=EventType.GROUP_FAILED,
            aggregate_type="group",
            aggregate_id=g.id,
            rule=ins.rule,
            payload={"group_id": g.id, "campaign_id": ld.campaign_row.campaign_id},
        )

    # ------------------------------------------------------------ writing the batch
    def _parts(self) -> None:
        row = self.ledger.row
        if self.new_seats:
            ss = list(self.new_seats.items())
            row(
                "INSERT INTO seats (shop_id, order_id, group_id, user_id, quantity, unit_price, role, state, "
                "reserved_at, pay_by, paid_at) SELECT sh.shop_id, v.* FROM shops sh CROSS JOIN unnest(CAST(:o AS text[]), "
                "CAST(:g AS text[]), CAST(:u AS text[]), CAST(:q AS int[]), CAST(:up AS bigint[]), CAST(:r AS text[]), "
                "CAST(:st AS text[]), CAST(:ra AS timestamptz[]), CAST(:pb AS timestamptz[]), CAST(:pa AS timestamptz[])) "
                "AS v WHERE sh.shop_id = :shop_id",
                **_seat_arrays(ss),
            )
        if self.seat_rows:
            ss = sorted(self.seat_rows.items())
            row(
                "UPDATE seats s SET user_id = v.u, quantity = v.q, unit_price = v.up, role = v.r, state = v.st, "
                "reserved_at = v.ra, pay_by = v.pb, paid_at = v.pa FROM unnest(CAST(:o AS text[]), "
                "CAST(:g AS text[]), CAST(:u AS text[]), CAST(:q AS int[]), CAST(:up AS bigint[]), "
                "CAST(:r AS text[]), CAST(:st AS text[]), CAST(:ra AS timestamptz[]), CAST(:pb AS timestamptz[]), "
                "CAST(:pa AS timestamptz[])) AS v(o, g, u, q, up, r, st, ra, pb, pa) "
                "WHERE s.shop_id = :shop_id AND s.order_id = v.o",
                **_seat_arrays(ss),
            )
        if self.groups:
            gs = [self.groups[k] for k in sorted(self.groups)]
            row(
                "UPDATE groups g SET leader_user_id = v.l, state = v.st, expires_at = v.ex, formed_at = v.fo, "
                "closed_at = v.cl, tier_members = v.tm, winners = v.w, held_seats = v.h, paid_seats = v.pd, "
                "due_at = v.due, nudged_almost_full_at = v.naf, nudged_expiring_soon_at = v.nes "
                "FROM unnest(CAST(:g AS text[]), CAST(:l AS text[]), CAST(:st AS text[]), "
                "CAST(:ex AS timestamptz[]), CAST(:fo AS timestamptz[]), CAST(:cl AS timestamptz[]), "
                "CAST(:tm AS int[]), CAST(:w AS jsonb[]), CAST(:h AS int[]), CAST(:pd AS int[]), "
                "CAST(:due AS timestamptz[]), CAST(:naf AS timestamptz[]), CAST(:nes AS timestamptz[])) "
                "AS v(g, l, st, ex, fo, cl, tm, w, h, pd, due, naf, nes) "
                "WHERE g.shop_id = :shop_id AND g.group_id = v.g",
                g=[x.id for x in gs],
                l=[x.leader_user_id for x in gs],
                st=[x.state.value for x in gs],
                ex=[x.expires_at for x in gs],
                fo=[x.formed_at for x in gs],
                cl=[x.closed_at for x in gs],
                tm=[x.tier_members for x in gs],
                w=[json.dumps(list(x.winners)) for x in gs],
                h=[x.held_seats for x in gs],
                pd=[x.paid_seats for x in gs],
                due=[gb.next_due_at(x, self.group_campaigns.get(x.id)) for x in gs],
                naf=[x.nudged_almost_full_at for x in gs],
                nes=[x.nudged_expiring_soon_at for x in gs],
            )
            row(
                "SELECT count(pg_notify('sharecart_groups', :shop_id || ':' || v)) AS n "
                "FROM unnest(CAST(:g AS text[])) AS v",
                key="notified",
                g=[x.id for x in gs],
            )
        if self.orders:
            os_ = [self.ctx.orders[k] for k in sorted(self.orders)]
            row(
                "UPDATE orders o SET state = v.st, paid_amount = v.pa, refunded_amount = v.ra, paid_at = v.pat, "
                "cancelled_at = v.ca, level1_id = v.l1, level2_id = v.l2, source = v.src "
                "FROM unnest(CAST(:o AS text[]), CAST(:st AS text[]), CAST(:pa AS bigint[]), CAST(:ra AS bigint[]), "
                "CAST(:pat AS timestamptz[]), CAST(:ca AS timestamptz[]), CAST(:l1 AS text[]), CAST(:l2 AS text[]), "
                "CAST(:src AS text[])) AS v(o, st, pa, ra, pat, ca, l1, l2, src) "
                "WHERE o.shop_id = :shop_id AND o.order_id = v.o",
                o=[x.order_id for x in os_],
                st=[x.state for x in os_],
                pa=[x.paid_amount for x in os_],
                ra=[x.refunded_amount for x in os_],
                pat=[x.paid_at for x in os_],
                ca=[x.cancelled_at for x in os_],
                l1=[x.level1_id for x in os_],
                l2=[x.level2_id for x in os_],
                src=[x.source for x in os_],
            )
        if self.refunds:
            rs = self.refunds
            row(
                'INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, "full", state, created_at) '
                "SELECT sh.shop_id, v.r, v.o, v.a, v.rule, v.f, 'OWED', CAST(:now AS timestamptz) "
                "FROM shops sh CROSS JOIN unnest(CAST(:r AS text[]), CAST(:o AS text[]), CAST(:a AS bigint[]), "
                "CAST(:rule AS text[]), CAST(:f AS bool[])) AS v(r, o, a, rule, f) WHERE sh.shop_id = :shop_id",
                now=self.now,
                r=[x[0] for x in rs],
                o=[x[1] for x in rs],
                a=[x[2] for x in rs],
                rule=[x[3] for x in rs],
                f=[x[4] for x in rs],
            )
        if self.users:
            us = sorted(self.users.items())
            # rows of tables several batches share are locked in key order (ORDER BY … FOR UPDATE, whatever the
            # join's plan), so two workers' batches never wait on each other in a cycle
            row(
                "UPDATE users u SET net_spend = u.net_spend + v.sp, paid_orders = u.paid_orders + v.n, "
                "first_paid_at = coalesce(u.first_paid_at, v.pa), last_paid_at = coalesce(v.pa, u.last_paid_at) "
                "FROM (SELECT user_id FROM users WHERE shop_id = :shop_id AND user_id = ANY(CAST(:u AS text[])) "
                "ORDER BY user_id FOR UPDATE) k JOIN unnest(CAST(:u AS text[]), CAST(:sp AS bigint[]), "
                "CAST(:n AS int[]), CAST(:pa AS timestamptz[])) AS v(u, sp, n, pa) ON v.u = k.user_id "
                "WHERE u.shop_id = :shop_id AND u.user_id = v.u",
                u=[k for k, _ in us],
                sp=[v[0] for _, v in us],
                n=[v[1] for _, v in us],
                pa=[v[2] for _, v in us],
            )
        stock = sorted((k, v) for k, v in self.stock.items() if v)
        if stock:
            row(
                "UPDATE campaigns c SET stock_left = c.stock_left + v.d FROM (SELECT campaign_id FROM campaigns "
                "WHERE shop_id = :shop_id AND campaign_id = ANY(CAST(:c AS text[])) ORDER BY campaign_id FOR UPDATE) k "
                "JOIN unnest(CAST(:c AS text[]), CAST(:d AS int[])) AS v(c, d) ON v.c = k.campaign_id "
                "WHERE c.shop_id = :shop_id AND c.campaign_id = v.c AND c.stock_left IS NOT NULL",
                c=[k for k, _ in stock],
                d=[v for _, v in stock],
            )
        units = sorted((k, v) for k, v in self.units.items() if v)
        if units:
            row(
                "UPDATE campaign_user_units x SET units = x.units + v.d FROM (SELECT y.campaign_id, y.user_id "
                "FROM campaign_user_units y JOIN unnest(CAST(:c AS text[]), CAST(:u AS text[])) AS w(c, u) "
                "ON y.campaign_id = w.c AND y.user_id = w.u WHERE y.shop_id = :shop_id "
                "ORDER BY y.campaign_id, y.user_id FOR UPDATE OF y) k JOIN unnest(CAST(:c AS text[]), "
                "CAST(:u AS text[]), CAST(:d AS int[])) AS v(c, u, d) ON v.c = k.campaign_id AND v.u = k.user_id "
                "WHERE x.shop_id = :shop_id AND x.campaign_id = v.c AND x.user_id = v.u",
                c=[k[0] for k, _ in units],
                u=[k[1] for k, _ in units],
                d=[v for _, v in units],
            )

    async def flush(self) -> None:
        """Write the batch: (a distributor row for each rewarded leader who has none, then) one statement; in
        a shop with levels, LV-2 re-evaluation of everyone whose metrics a refund moved."""
        await ensure_distributors(self.session, self.shop_id, self.now, self.new_distributors)
        self._parts()
        await self.ledger.flush(self.session)
        if self.ctx.has_levels and self.touched - {""}:
            await commissions.evaluate_levels(
                self.session, self.ledger, shop_id=self.shop_id, user_ids=self.touched - {""}, now=self.now
            )
            await self.ledger.flush(self.session)


def _seat_arrays(ss: list[tuple[str, tuple[str, gb.Seat]]]) -> dict[str, Any]:
    seats = [s for _, (_, s) in ss]
    return dict(
        o=[k for k, _ in ss],
        g=[g for _, (g, _) in ss],
        u=[s.user_id for s in seats],
        q=[s.quantity for s in seats],
        up=[s.unit_price for s in seats],
        r=[s.role.value for s in seats],
        st=[s.state.value for s in seats],
        ra=[s.reserved_at for s in seats],
        pb=[s.pay_by for s in seats],
        pa=[s.paid_at for s in seats],
    )


async def carry_out(
    session,
    shop_id: str,
    now: datetime,
    items: list[tuple[lean.Loaded, gb.Decision]],
    *,
    paid_amounts: dict[str, int] | None = None,
) -> None:
    """Statements 2 and 3 for `items` (groups loaded under lock with the engine's decisions on them). A payment
    (one group, its decision with an OrderPaid) also loads what its commission needs, in statement 2."""
    if not items:
        return
    pays = [oid for _, d in items if (oid := paying(d))]
    assert len(pays) <= 1, "one payment a transaction"
    buyer = None
    if pays:
        buyer = next(s.user_id for ld, _ in items for s in ld.group.seats if s.order_id == pays[0])
    ctx = await load_context(
        session, shop_id, [ld for ld, _ in items], paying=(pays[0], buyer) if pays and buyer else None
    )
    batch = GroupBatch(shop_id, now, session, ctx, paid_amounts=dict(paid_amounts or {}))
    for ld, decision in items:
        await batch.add(ld, decision)
    await batch.flush()


CLAIM_DUE_BATCH = text(lean.load_sql("g.due_at <= :now", skip_locked=True, limit="ORDER BY g.due_at LIMIT :n"))


async def claim_due(session, shop_id: str, now: datetime, limit: int) -> list[lean.Loaded]:
    """GB-11, the worker's claim: up to `limit` of the shop's most overdue groups no one else holds, locked
    (FOR UPDATE SKIP LOCKED) and loaded by one statement. A group changed after the statement's snapshot
    (its xmin moved) is read again under its lock, as `lean.load_group` does."""
    rows = (await session.execute(CLAIM_DUE_BATCH, {"s": shop_id, "now": now, "u": "", "n": limit})).all()
    out, campaigns = [], {}  # type: ignore[var-annotated]
    for r in rows:
        if r._mapping["x_locked"] != r._mapping["x_seen"]:
            r = (await session.execute(lean.LOAD_GROUP, {"s": shop_id, "g": r._mapping["group_id"], "u": ""})).one()
        out.append(lean.loaded(r, campaigns))
    return out


async def advance_all(session, shop_id: str, now: datetime, claimed: list[lean.Loaded]) -> int:
    """GB-11 on every claimed group: the engine decides each (`engine.groupbuy.advance`), the batch writes them
    all (statements 2 and 3). Returns how many groups changed."""
    items = []
    for ld in claimed:
        decision = gb.advance(ld.campaign, ld.group, now=now)
        if decision.instructions or decision.group != ld.group or gb.next_due_at(ld.group, ld.campaign) != ld.due_at:
            items.append((ld, decision))
    await carry_out(session, shop_id, now, items)
    return len(items)


def draw_payload(g: gb.Group) -> dict | None:
    """GB-7 v2: the revealed draw as the event log and the API show it (None without a v2 draw)."""
    d = g.draw()
    if d is None:
        return None
    return {
        "commitment": d.commitment,
        "seed": d.seed,
        "candidates": [{"order_id": o, "score": sc} for o, sc in d.candidates],
        "winners": list(d.winners),
    }
