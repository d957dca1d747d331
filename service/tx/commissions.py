"""Commission side of an order's life: CM-1..CM-6, RF-2 snapshot, DS-1 admission, LV-2 evaluation.

These functions run inside the caller's unit of work (an order's payment, refund or completion,
a group forming or failing); they never open a transaction of their own.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine import commission as cm
from engine import levels as lv
from engine import preview as pv
from engine.distribution import DistributionSettings, DistributorStatus, admits_automatically
from engine.events import EventType
from engine.ledger import bonus_postings
from engine.referral import current_referrer
from service.tx import fraud
from service.tx.ids import new_id, new_invite_code
from service.tx.ledger import LedgerBatch, flush_pending, line_from_row
from service.usecases.shops import load_settings
from store import mapping
from store.models import (
    Binding,
    Distributor,
    DistributorAudit,
    User,
)


# ---------------------------------------------------------------- distributors (DS-1)
async def ensure_distributor(
    session: AsyncSession,
    shop_id: str,
    user_id: str,
    *,
    status: DistributorStatus,
    now,
    actor: str = "system",
    reason: str = "",
) -> Distributor:
    """Create the distributor row (with a stable invite code, DS-2) or return the existing one."""
    row = await session.get(Distributor, (shop_id, user_id))
    if row is not None:
        return row
    for _ in range(5):
        code = new_invite_code()
        res = await session.execute(
            insert(Distributor)
            .values(
                shop_id=shop_id,
                user_id=user_id,
                status=status.value,
                invite_code=code,
                grade=0,
                bonuses_credited=[],
                applied_at=now,
                approved_at=now if status == DistributorStatus.ACTIVE else None,
                approved_by=actor if status == DistributorStatus.ACTIVE else None,
            )
            .on_conflict_do_nothing()
            .returning(Distributor.user_id)
        )
        if res.first() is not None:
            session.add(
                DistributorAudit(
                    shop_id=shop_id,
                    audit_id=new_id("aud_"),
                    user_id=user_id,
                    action="STATUS",
                    from_value=None,
                    to_value=status.value,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            )
            break
        existing = await session.get(Distributor, (shop_id, user_id), populate_existing=True)
        if existing is not None:
            return existing
    return await session.get(Distributor, (shop_id, user_id), populate_existing=True)


async def admit_if_due(session: AsyncSession, shop_id: str, user_id: str, settings: DistributionSettings, now) -> None:
    """DS-1: EVERYONE admits at first bind or order; SPEND_THRESHOLD once net paid spend reaches it."""
    user = await session.get(User, (shop_id, user_id))
    spend = user.net_spend if user else 0
    if not admits_automatically(settings, net_paid_spend=spend):
        return
    row = await session.get(Distributor, (shop_id, user_id))
    if row is None:
        await ensure_distributor(session, shop_id, user_id, status=DistributorStatus.ACTIVE, now=now)
    elif row.status in (DistributorStatus.NONE.value, DistributorStatus.APPLIED.value):
        row.status = DistributorStatus.ACTIVE.value
        row.approved_at, row.approved_by = now, "system"


# ---------------------------------------------------------------- referral view (RF-1/RF-2)
class DbReferralView:
    """A read-only view of the referral graph for the engine, loaded lazily and cached."""

    def __init__(self, session: AsyncSession, shop_id: str, now) -> None:
        self.session, self.shop_id, self.now = session, shop_id, now
        self._cache: dict[str, str | None] = {}

    async def load_chain(self, user_id: str, depth: int = 10_000) -> None:
        """Walk up from user_id with one recursive query so referrer_of() answers from memory."""
        rows = await self.session.execute(
            CHAIN_SQL, {"shop_id": self.shop_id, "user_id": user_id, "now": self.now, "depth": depth}
        )
        for uid, ref in rows.all():
            self._cache[uid] = ref
        self._cache.setdefault(user_id, None)

    def referrer_of(self, user_id: str) -> str | None:
        return self._cache.get(user_id)


CHAIN_SQL = text(
    """
    WITH RECURSIVE chain(user_id, referrer_id, depth, path) AS (
        SELECT b.user_id, b.referrer_id, 1, ARRAY[b.user_id]::text[]
        FROM bindings b
        WHERE b.shop_id = :shop_id AND b.user_id = :user_id AND (b.expires_at IS NULL OR b.expires_at > :now)
      UNION ALL
        SELECT b.user_id, b.referrer_id, c.depth + 1, c.path || b.user_id::text
        FROM bindings b JOIN chain c ON b.user_id = c.referrer_id
        WHERE b.shop_id = :shop_id AND (b.expires_at IS NULL OR b.expires_at > :now)
          AND c.depth < :depth AND NOT (b.user_id = ANY(c.path))
    )
    SELECT user_id, referrer_id FROM chain
    """
)


async def referrer_of(session: AsyncSession, shop_id: str, user_id: str, now) -> str | None:
    b = await session.get(Binding, (shop_id, user_id))
    if b is None:
        return None
    return current_referrer(mapping.binding_from_row(b), now)


# ---------------------------------------------------------------- payment (CM-1..CM-4, RF-2)
# RF-2/CM-1..CM-4 in one round trip: the buyer's binding and its referrer's binding, the distributor status
# and grade of buyer and both referrers, the shop's settings and levels, and the order's line bases with
# their product terms (OR-3). Which binding is current and who earns what is the engine's decision.
PAID_CONTEXT = text(
    """
    WITH oa AS (SELECT referrer_id FROM order_attributions WHERE shop_id = :s AND order_id = :oid),
    b1 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
                WHERE shop_id = :s AND user_id = :buyer),
    b2 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
           WHERE shop_id = :s AND user_id = COALESCE((SELECT referrer_id FROM oa), (SELECT referrer_id FROM b1)))
    SELECT (SELECT row_to_json(b1) FROM b1) AS b1, (SELECT row_to_json(b2) FROM b2) AS b2,
      (SELECT referrer_id FROM oa) AS code_referrer,
      (SELECT json_object_agg(user_id, json_build_array(status, grade)) FROM distributors
        WHERE shop_id = :s AND user_id IN (:buyer, (SELECT referrer_id FROM b1), (SELECT referrer_id FROM b2),
                                           (SELECT referrer_id FROM oa)))
        AS dists,
      (SELECT row_to_json(x) FROM distribution_settings x WHERE shop_id = :s) AS settings,
      (SELECT json_agg(l ORDER BY l.grade) FROM levels l WHERE shop_id = :s) AS levels,
      (SELECT row_to_json(f) FROM fraud_rules f WHERE shop_id = :s) AS fraud,
      (SELECT json_agg(json_build_array(ol.product_ref, ol.quantity, ol.unit_price * ol.quantity - ol.discount,
                                        p.earns_commission, p.level1_amount, p.level2_amount) ORDER BY ol.line_no)
         FROM order_lines ol LEFT JOIN products p ON p.shop_id = ol.shop_id AND p.product_ref = ol.product_ref
        WHERE ol.shop_id = :s AND ol.order_id = :oid) AS lines
    """
)


def _obj(d: dict | None, *times: str):
    from types import SimpleNamespace

    if d is None:
        return None
    d = dict(d)
    for t in times:
        d[t] = datetime.fromisoformat(d[t]) if d.get(t) else None
    return SimpleNamespace(**d)


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


async def on_order_paid(
    session: AsyncSession,
    ledger: LedgerBatch,
    *,
    order,
    now,
    enabled: bool,
    releasable: bool,
    admitted: bool,
) -> list[cm.CommissionLine]:
    """An order's payment took: snapshot referrers (RF-2), post its commission lines PENDING (CM-6).
    One statement loads everything the engine needs (PAID_CONTEXT); the lines go to `ledger`. `enabled`: the
    campaign's commission switch (CM-3); `releasable`: False for a group seat until the group forms (CM-6);
    `admitted`: DS-1 admitted the buyer in this transaction (ACTIVE, whatever PAID_CONTEXT read). No defaults:
    each caller says all three (a default only hid a wrong call, seed 72)."""
    got = (
        await session.execute(PAID_CONTEXT, {"s": order.shop_id, "buyer": order.buyer_id, "oid": order.order_id})
    ).one()
    settings = mapping.settings_from_row(_obj(_j(got.settings)))
    b1 = _obj(_j(got.b1), "bound_at", "expires_at")
    b2 = _obj(_j(got.b2), "bound_at", "expires_at")
    level1_ref = current_referrer(mapping.binding_from_row(b1), now) if b1 else None
    if got.code_referrer is not None:  # RF-3 (b): this order's code overrides the live referrer
        level1_ref = got.code_referrer
    level2_ref = (current_referrer(mapping.binding_from_row(b2), now) if b2 else None) if level1_ref else None
    # CM-7 shares this computation with the preview (engine.preview.payment_commission)
    parties = {u: pv.Party(DistributorStatus(st), grade) for u, (st, grade) in (_j(got.dists) or {}).items()}
    if admitted:
        parties[order.buyer_id] = pv.Party(
            DistributorStatus.ACTIVE, parties[order.buyer_id].grade if order.buyer_id in parties else 0
        )
    levels = tuple(mapping.level_from_row(_obj(d)) for d in (_j(got.levels) or []))
    lines = [
        cm.LineBase(
            product_ref=ref,
            quantity=q,
            base=base,
            terms=cm.ProductTerms()
            if earns is None
            else cm.ProductTerms(earns_commission=earns, level1_amount=a1, level2_amount=a2),
        )
        for ref, q, base, earns, a1, a2 in (_j(got.lines) or [])
    ]
    paid = pv.payment_commission(
        settings, levels, pv.PaymentFacts(order.buyer_id, level1_ref, level2_ref, parties), lines, enabled=enabled
    )
    order.level1_id, order.level2_id = paid.level1_id, paid.level2_id
    if order.source == "NONE" and level1_ref:
        order.source = "REFERRAL"
    posted = [
        post_commission_line(
            session,
            ledger,
            order=order,
            beneficiary_id=a.user_id,
            level=a.level,
            amount=a.amount,
            now=now,
            releasable=releasable,
        )
        for a in paid.amounts
    ]
    # FR-1..FR-3: keep the payment's fingerprints, run the shop's fraud rules, hold what they flag (service.tx.fraud)
    return await fraud.screen_paid_order(session, ledger, order=order, lines=posted, rules_json=_j(got.fraud), now=now)


def post_commission_line(
    session,
    ledger: LedgerBatch,
    *,
    order,
    beneficiary_id: str,
    level: int,
    amount: int,
    now,
    releasable: bool,
    base: int | None = None,
    group_id: str | None = None,
    rule: str = "CM-4",
) -> cm.CommissionLine:
    """CM-6: the engine's new PENDING line (`cm.post_line`) and its posting, handed to the applier."""
    line, postings = cm.post_line(
        id=new_id("cl_"),
        order_id=order.order_id,
        beneficiary_id=beneficiary_id,
        level=level,
        amount=amount,
        releasable=releasable,
        paid_base=order.goods_amount if base is None else base,
    )
    ledger.new_line(session, (line, postings), group_id=group_id)
    ledger.event(
        type=EventType.COMMISSION_POSTED,
        aggregate_type="order",
        aggregate_id=order.order_id,
        rule=rule,
        payload={
            "order_id": order.order_id,
            "line_id": line.id,
            "beneficiary_id": beneficiary_id,
            "level": level,
            "amount": amount,
        },
    )
    return line


# ---------------------------------------------------------------- refunds (CM-5)
LINE_COLUMNS = (
    "line_id, order_id, beneficiary_id, level, group_id, base, base_refunded, original, standing, "
    "state, releasable, available_at, held"
)


async def _lines(session: AsyncSession, where: str, **params) -> list[cm.CommissionLine]:
    """Commission lines under FOR UPDATE, in line_id order (the one lock order of every writer of lines),
    as engine values. Lines a batch of this transaction has not written yet are written first."""
    await flush_pending(session)
    rows = (
        await session.execute(
            text(
                f"SELECT {LINE_COLUMNS} FROM commission_lines WHERE shop_id = :shop_id AND ({where}) "
                "ORDER BY line_id FOR UPDATE"
            ),
            params,
        )
    ).all()
    return [line_from_row(r) for r in rows]


REFUNDED_LINES = (
    "(order_id = :order_id AND level <> 0) OR (group_id = :group_id AND level = 0 AND order_id <> :order_id)"
)


async def on_order_refunded(
    session: AsyncSession,
    ledger: LedgerBatch,
    *,
    order,
    amount: int,
    now,
    rule: str,
    lines: list[cm.CommissionLine] | None = None,
) -> None:
    """CM-5: a refund of `amount` of the goods of `order` reduces every line computed on it — the order's own
    level 1/2 lines, and the leader reward of a formed group whose member this buyer is. The reward
    sits on the leader's order but its base is the *other* members' net, so a refund of the leader's
    own order leaves it standing (R33). `lines`: those lines already loaded under lock (REFUNDED_LINES)."""
    if lines is None:
        lines = await _lines(
            session, REFUNDED_LINES, shop_id=order.shop_id, order_id=order.order_id, group_id=order.group_id
        )
    for line in lines:
        apply_line_refund(session, ledger, line, amount, cause=rule)


def apply_line_refund(session, ledger: LedgerBatch, line: cm.CommissionLine, amount: int, *, cause: str) -> None:
    """CM-5: the engine's `refund_line` — the line stands at C − floor(C × R / B), the difference posted."""
    new, postings = cm.refund_line(line, amount)
    if new == line:
        return
    ledger.line(session, (new, postings))
    if postings:
        ledger.event(
            type=EventType.COMMISSION_REVERSED,
            aggregate_type="order",
            aggregate_id=line.order_id,
            rule="CM-5",
            payload={
                "order_id": line.order_id,
                "line_id": line.id,
                "beneficiary_id": line.beneficiary_id,
                "amount": line.standing - new.standing,
                "standing": new.standing,
                "cause": cause,
            },
        )


# ---------------------------------------------------------------- life cycle (CM-6)
FREEZABLE_LINES = "order_id = :order_id AND state = 'PENDING' AND releasable"


async def freeze_order_lines(
    session: AsyncSession,
    ledger: LedgerBatch,
    *,
    order,
    now,
    freeze_days: int | None = None,
    lines: list[cm.CommissionLine] | None = None,
) -> None:
    """CM-6/OR-4: a completed order's releasable PENDING lines become FROZEN until completed_at + freeze_days
    (the engine's `freeze_line`). `freeze_days`/`lines` may come already loaded (FREEZABLE_LINES, locked)."""
    if order.completed_at is None:
        return
    if freeze_days is None:
        freeze_days = (await load_settings(session, order.shop_id)).freeze_days
    if lines is None:
        lines = await _lines(session, FREEZABLE_LINES, shop_id=order.shop_id, order_id=order.order_id)
    for line in lines:
        new, postings = cm.freeze_line(line, order.completed_at, freeze_days)
        if new != line:
            ledger.line(session, (new, postings))


async def release_line(session: AsyncSession, ledger: LedgerBatch, line, now) -> None:
    """CM-6: FROZEN -> AVAILABLE at available_at (the engine's `make_available`); `line` is a locked row."""
    old = line_from_row(line)
    new, postings = cm.make_available(old, now)
    if new == old:
        return
    ledger.line(session, (new, postings))
    ledger.event(
        type=EventType.COMMISSION_AVAILABLE,
        aggregate_type="distributor",
        aggregate_id=old.beneficiary_id,
        rule="CM-6",
        payload={"line_id": old.id, "order_id": old.order_id, "amount": new.standing},
    )


async def void_order_lines(
    session: AsyncSession, ledger: LedgerBatch, *, order_ids: list[str], shop_id: str, now, rule: str
) -> None:
    """CM-6: a failed group's lines are voided (the engine's `void_line`); whatever still stands leaves
    PENDING. Each voided line is an event, so a backend mirroring commissions learns the line is gone (not
    only its reversals)."""
    if not order_ids:
        return
    for line in await _lines(
        session, "order_id = ANY(CAST(:ids AS text[])) AND state = 'PENDING'", shop_id=shop_id, ids=list(order_ids)
    ):
        new, postings = cm.void_line(line)
        ledger.line(session, (new, postings))
        ledger.event(
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
                "cause": rule,
            },
        )


# ---------------------------------------------------------------- buyer stats + levels (LV-2..LV-4)
async def record_paid(session: AsyncSession, order, now) -> None:
    await session.execute(
        update(User)
        .where(User.shop_id == order.shop_id, User.user_id == order.buyer_id)
        .values(
            paid_orders=User.paid_orders + 1,
            net_spend=User.net_spend + order.goods_amount,
            first_paid_at=func.coalesce(User.first_paid_at, now),
            last_paid_at=now,
        )
    )


_LIVE = "(expires_at IS NULL OR expires_at > :now)"
# LV-1's six metrics of the distributor `d.user_id` (a LATERAL sub-select: one definition for evaluation
# and for the distributor's own view, service/reads/queries.py).
_METRICS = f"""
           SELECT
             (SELECT count(*) FROM bindings WHERE shop_id = :s AND referrer_id = d.user_id AND {_LIVE})
               AS direct_referrals,
             (SELECT count(*) FROM bindings WHERE shop_id = :s AND referrer_id = d.user_id AND {_LIVE})
             + (SELECT count(*) FROM bindings b2 JOIN bindings b1 ON b1.shop_id = b2.shop_id AND b2.referrer_id = b1.user_id
                 WHERE b1.shop_id = :s AND b1.referrer_id = d.user_id
                   AND (b1.expires_at IS NULL OR b1.expires_at > :now)
                   AND (b2.expires_at IS NULL OR b2.expires_at > :now)) AS team_size,
             COALESCE((SELECT net_spend FROM users WHERE shop_id = :s AND user_id = d.user_id), 0) AS own_spend,
             COALESCE((SELECT paid_orders FROM users WHERE shop_id = :s AND user_id = d.user_id), 0) AS own_orders,
             COALESCE((SELECT sum(u.net_spend) FROM users u JOIN bindings b ON b.shop_id = u.shop_id
                        AND b.user_id = u.user_id
                        WHERE u.shop_id = :s AND b.referrer_id = d.user_id
                          AND (b.expires_at IS NULL OR b.expires_at > :now)), 0) AS direct_sales,
             COALESCE((SELECT sum(GREATEST(goods_amount - refunded_amount, 0)) FROM orders
                        WHERE shop_id = :s AND paid_at IS NOT NULL
                          AND (level1_id = d.user_id OR level2_id = d.user_id)), 0) AS team_sales
"""
# LV-1/LV-2 in one round trip: the shop's levels and, for each distributor to re-evaluate (ACTIVE or
# SUSPENDED), its grade, bonuses credited and the six metrics of LV-1.
LEVEL_CONTEXT = text(
    f"""
    SELECT (SELECT json_agg(l ORDER BY l.grade) FROM levels l WHERE l.shop_id = :s) AS levels,
      (SELECT json_agg(json_build_object('user_id', d.user_id, 'grade', d.grade, 'bonuses', d.bonuses_credited,
                                         'metrics', row_to_json(m)) ORDER BY d.user_id)
         FROM distributors d CROSS JOIN LATERAL ({_METRICS}
         ) m
        WHERE d.shop_id = :s AND d.user_id = ANY(CAST(:users AS text[])) AND d.status IN ('ACTIVE', 'SUSPENDED')
          AND EXISTS (SELECT 1 FROM levels WHERE shop_id = :s)) AS distributors
    """
)


METRICS_SQL = text(f"SELECT m.* FROM (SELECT CAST(:d AS text) AS user_id) d CROSS JOIN LATERAL ({_METRICS}) m")


async def evaluate_levels(session: AsyncSession, ledger: LedgerBatch, *, shop_id: str, user_ids, now) -> None:
    """LV-2: re-evaluate buyer, level 1 and level 2 after an event that can move a metric. One statement
    loads the levels and every distributor's grade, bonuses and metrics; the engine decides
    (`levels.evaluate_level`); a distributor whose level or bonuses change is written through `ledger`
    (LV-3/LV-4: grade, bonuses, audit, event and bonus postings in the batch's one statement) — no ORM row
    is loaded or flushed."""
    users = sorted({u for u in user_ids if u})
    if not users:
        return
    got = (await session.execute(LEVEL_CONTEXT, {"s": shop_id, "users": users, "now": now})).one()
    levels = tuple(mapping.level_from_row(_obj(d)) for d in (_j(got.levels) or []))
    if not levels:
        return
    for d in _j(got.distributors) or []:
        metrics = lv.Metrics(**{k: int(v) for k, v in d["metrics"].items()})
        credited = d["bonuses"] or []
        decision = lv.evaluate_level(
            levels, current_grade=d["grade"], metrics=metrics, bonuses_credited=frozenset(credited)
        )
        if decision.grade == d["grade"] and not decision.bonuses:
            continue
        write_level_decision(
            ledger,
            user_id=d["user_id"],
            grade=d["grade"],
            bonuses_credited=credited,
            decision=decision,
            actor="system",
            reason="LV-2 evaluation",
        )


def write_level_decision(
    ledger: LedgerBatch, *, user_id: str, grade: int, bonuses_credited, decision, actor: str, reason: str
) -> None:
    """LV-2..LV-4: carry out the engine's level decision for a distributor at `grade` with
    `bonuses_credited` — the new grade and bonuses (one UPDATE with the balances), the audit row and
    the level-changed event when the grade moves, one bonus posting per level passed. Decides nothing."""
    if decision.grade != grade:
        ledger.row(
            "INSERT INTO distributor_audit (shop_id, audit_id, user_id, action, from_value, to_value, actor, "
            "reason, at) VALUES (:shop_id, :aid, :uid, 'LEVEL', :frm, :to, :actor, :reason, :now)",
            aid=new_id("aud_"),
            uid=user_id,
            frm=str(grade),
            to=str(decision.grade),
            actor=actor,
            reason=reason,
            now=ledger.now,
        )
        ledger.event(
            type=EventType.DISTRIBUTOR_LEVEL_CHANGED,
            aggregate_type="distributor",
            aggregate_id=user_id,
            rule="LV-3" if actor != "system" else "LV-2",
            payload={"user_id": user_id, "from": grade, "to": decision.grade, "by": actor, "reason": reason},
        )
    credited = set(bonuses_credited or [])
    for g, amount in decision.bonuses:  # LV-4: the engine's bonus postings, one reference per level
        credited.add(g)
        ledger.add(user_id, bonus_postings([(g, amount)]), ref_type="level", ref_id=f"{user_id}:{g}")
    ledger.level(user_id, grade=decision.grade, bonuses_credited=sorted(credited))


async def apply_level_decision(
    session, ledger: LedgerBatch, *, row: Distributor, decision, now, actor: str, reason: str
) -> None:
    """LV-3 (an admin's level change, on a row the caller loaded under lock): `write_level_decision`; the
    batch's flush gives `row` its new grade, bonuses and balances."""
    write_level_decision(
        ledger,
        user_id=row.user_id,
        grade=row.grade,
        bonuses_credited=row.bonuses_credited,
        decision=decision,
        actor=actor,
        reason=reason,
    )
