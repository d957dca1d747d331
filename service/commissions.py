"""Commission side of an order's life: CM-1..CM-6, RF-2 snapshot, DS-1 admission, LV-2 evaluation.

These functions run inside the caller's unit of work (an order's payment, refund or completion,
a group forming or failing); they never open a transaction of their own.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine import commission as cm
from engine import levels as lv
from engine.distribution import DistributionSettings, DistributorStatus, admits_automatically
from engine.events import EventType
from engine.ledger import Bucket, EntryKind, Posting
from engine.referral import current_referrer
from service import events
from service.ids import new_id, new_invite_code
from service.ledger import LedgerBatch
from service.shops import load_levels, load_settings
from store import mapping
from store.models import (
    Binding,
    CommissionLineRow,
    Distributor,
    DistributorAudit,
    Order,
    OrderLine,
    Product,
    User,
)


# ---------------------------------------------------------------- distributors (DS-1)
async def ensure_distributor(
    session: AsyncSession, shop_id: str, user_id: str, *, status: DistributorStatus, now, actor: str = "system",
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
            .values(shop_id=shop_id, user_id=user_id, status=status.value, invite_code=code, grade=0,
                    bonuses_credited=[], applied_at=now,
                    approved_at=now if status == DistributorStatus.ACTIVE else None,
                    approved_by=actor if status == DistributorStatus.ACTIVE else None)
            .on_conflict_do_nothing()
            .returning(Distributor.user_id)
        )
        if res.first() is not None:
            session.add(DistributorAudit(shop_id=shop_id, audit_id=new_id("aud_"), user_id=user_id, action="STATUS",
                                         from_value=None, to_value=status.value, actor=actor, reason=reason, at=now))
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


async def status_of(session: AsyncSession, shop_id: str, user_id: str | None) -> DistributorStatus:
    if user_id is None:
        return DistributorStatus.NONE
    row = await session.get(Distributor, (shop_id, user_id))
    return DistributorStatus(row.status) if row else DistributorStatus.NONE


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


from sqlalchemy import text  # noqa: E402

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
async def on_order_paid(
    session: AsyncSession, ledger: LedgerBatch, *, order: Order, now, enabled: bool = True, releasable: bool = True
) -> list[CommissionLineRow]:
    """An order's payment took: snapshot referrers (RF-2), post its commission lines PENDING (CM-6)."""
    shop_id = order.shop_id
    settings = await load_settings(session, shop_id)
    level1_ref = await referrer_of(session, shop_id, order.buyer_id, now)
    level2_ref = await referrer_of(session, shop_id, level1_ref, now) if level1_ref else None
    buyer_status = await status_of(session, shop_id, order.buyer_id)
    l1, l2 = cm.beneficiaries(
        settings, buyer_id=order.buyer_id, buyer_status=buyer_status,
        level1_referrer=level1_ref, level2_referrer=level2_ref,
    )
    order.level1_id, order.level2_id = l1, l2
    if order.source == "NONE" and level1_ref:
        order.source = "REFERRAL"
    levels = await load_levels(session, shop_id)

    async def beneficiary(user_id: str | None, level: int) -> cm.Beneficiary | None:
        if user_id is None:
            return None
        row = await session.get(Distributor, (shop_id, user_id))
        if row is None:
            return None
        rates = lv.rates_for(levels, row.grade, settings)
        return cm.Beneficiary(user_id=user_id, level=level, status=DistributorStatus(row.status),
                              rate_bp=rates[level - 1])

    lines = await line_bases(session, order)
    amounts = cm.compute_commissions(
        settings, lines=lines, level1=await beneficiary(l1, 1), level2=await beneficiary(l2, 2), enabled=enabled
    )
    created = []
    for a in amounts:
        created.append(post_commission_line(session, ledger, order=order, beneficiary_id=a.user_id, level=a.level,
                                            amount=a.amount, now=now, releasable=releasable))
    return created


def post_commission_line(session, ledger: LedgerBatch, *, order: Order, beneficiary_id: str, level: int, amount: int,
                         now, releasable: bool, base: int | None = None, group_id: str | None = None,
                         rule: str = "CM-4") -> CommissionLineRow:
    row = CommissionLineRow(
        shop_id=order.shop_id, line_id=new_id("cl_"), order_id=order.order_id, beneficiary_id=beneficiary_id,
        level=level, group_id=group_id, base=order.goods_amount if base is None else base, base_refunded=0,
        original=amount, standing=amount, state=cm.CommissionState.PENDING.value,
        releasable=releasable, created_at=now, available_at=None,
    )
    session.add(row)
    ledger.add(beneficiary_id, [Posting(Bucket.PENDING, amount, EntryKind.COMMISSION_POSTED)],
               ref_type="commission", ref_id=row.line_id)
    events.emit(session, shop_id=order.shop_id, type=EventType.COMMISSION_POSTED, aggregate_type="order",
                aggregate_id=order.order_id, now=now, rule=rule,
                payload={"order_id": order.order_id, "line_id": row.line_id, "beneficiary_id": beneficiary_id,
                         "level": level, "amount": amount})
    return row


async def line_bases(session: AsyncSession, order: Order) -> list[cm.LineBase]:
    """CM-1: what the buyer paid for goods, per line, with the product's commission terms (OR-3)."""
    rows = (await session.execute(
        select(OrderLine, Product)
        .outerjoin(Product, (Product.shop_id == OrderLine.shop_id) & (Product.product_ref == OrderLine.product_ref))
        .where(OrderLine.shop_id == order.shop_id, OrderLine.order_id == order.order_id)
        .order_by(OrderLine.line_no)
    )).all()
    out = []
    for line, product in rows:
        terms = cm.ProductTerms() if product is None else cm.ProductTerms(
            earns_commission=product.earns_commission, level1_amount=product.level1_amount,
            level2_amount=product.level2_amount)
        out.append(cm.LineBase(product_ref=line.product_ref, quantity=line.quantity,
                               base=line.unit_price * line.quantity - line.discount, terms=terms))
    return out


# ---------------------------------------------------------------- refunds (CM-5)
COLUMN_BUCKET = {
    cm.CommissionState.PENDING.value: Bucket.PENDING,
    cm.CommissionState.FROZEN.value: Bucket.FROZEN,
    cm.CommissionState.AVAILABLE.value: Bucket.AVAILABLE,
}


async def on_order_refunded(session: AsyncSession, ledger: LedgerBatch, *, order: Order, amount: int, now,
                            rule: str) -> None:
    """CM-5: a refund of `amount` on `order` reduces every line computed on it — the order's own
    level 1/2 lines, and the leader reward of a formed group whose member this buyer is. The reward
    sits on the leader's order but its base is the *other* members' net, so a refund of the leader's
    own order leaves it standing (R33)."""
    lines = (await session.execute(
        select(CommissionLineRow).where(
            CommissionLineRow.shop_id == order.shop_id,
            ((CommissionLineRow.order_id == order.order_id) & (CommissionLineRow.level != 0))
            | ((CommissionLineRow.group_id == order.group_id) & (CommissionLineRow.level == 0)
               & (CommissionLineRow.order_id != order.order_id) if order.group_id else False),
        ).order_by(CommissionLineRow.line_id).with_for_update()
    )).scalars().all()
    for line in lines:
        await reverse_line(session, ledger, line, amount, now=now, cause=rule)


async def reverse_line(session: AsyncSession, ledger: LedgerBatch, line: CommissionLineRow, amount: int, *, now,
                       cause: str) -> None:
    """CM-5: the line stands at C − floor(C × R / B); post only the difference from its last standing."""
    if line.state == cm.CommissionState.VOID.value or line.base <= 0:
        return
    before = line.base_refunded
    line.base_refunded = min(line.base, before + amount)
    delta = cm.reversal_for_refund(line.original, before, line.base_refunded, line.base)
    if delta <= 0:
        return
    line.standing -= delta
    ledger.add(line.beneficiary_id, [Posting(COLUMN_BUCKET[line.state], -delta, EntryKind.COMMISSION_REVERSED)],
               ref_type="commission", ref_id=line.line_id)
    events.emit(session, shop_id=line.shop_id, type=EventType.COMMISSION_REVERSED, aggregate_type="order",
                aggregate_id=line.order_id, now=now, rule="CM-5",
                payload={"order_id": line.order_id, "line_id": line.line_id, "beneficiary_id": line.beneficiary_id,
                         "amount": delta, "standing": line.standing, "cause": cause})


# ---------------------------------------------------------------- life cycle (CM-6)
async def freeze_order_lines(session: AsyncSession, ledger: LedgerBatch, *, order: Order, now) -> None:
    """CM-6/OR-4: a completed order's releasable PENDING lines become FROZEN until completed_at + freeze_days."""
    if order.completed_at is None:
        return
    settings = await load_settings(session, order.shop_id)
    available_at = order.completed_at + timedelta(days=settings.freeze_days)
    lines = (await session.execute(
        select(CommissionLineRow).where(
            CommissionLineRow.shop_id == order.shop_id, CommissionLineRow.order_id == order.order_id,
            CommissionLineRow.state == cm.CommissionState.PENDING.value, CommissionLineRow.releasable.is_(True))
        .order_by(CommissionLineRow.line_id).with_for_update()
    )).scalars().all()
    for line in lines:
        line.state, line.available_at = cm.CommissionState.FROZEN.value, available_at
        ledger.add(line.beneficiary_id, [Posting(Bucket.PENDING, -line.standing, EntryKind.COMMISSION_FROZEN),
                                         Posting(Bucket.FROZEN, line.standing, EntryKind.COMMISSION_FROZEN)],
                   ref_type="commission", ref_id=line.line_id)


async def release_line(session: AsyncSession, ledger: LedgerBatch, line: CommissionLineRow, now) -> None:
    """CM-6: FROZEN -> AVAILABLE at available_at."""
    line.state = cm.CommissionState.AVAILABLE.value
    ledger.add(line.beneficiary_id, [Posting(Bucket.FROZEN, -line.standing, EntryKind.COMMISSION_RELEASED),
                                     Posting(Bucket.AVAILABLE, line.standing, EntryKind.COMMISSION_RELEASED)],
               ref_type="commission", ref_id=line.line_id)
    events.emit(session, shop_id=line.shop_id, type=EventType.COMMISSION_AVAILABLE, aggregate_type="distributor",
                aggregate_id=line.beneficiary_id, now=now, rule="CM-6",
                payload={"line_id": line.line_id, "order_id": line.order_id, "amount": line.standing})


async def void_order_lines(session: AsyncSession, ledger: LedgerBatch, *, order_ids: list[str], shop_id: str,
                           now, rule: str) -> None:
    """CM-6: a failed group's lines are voided; whatever still stands leaves PENDING. Each voided line is
    an event, so a backend mirroring commissions learns the line is gone (not only its reversals)."""
    if not order_ids:
        return
    lines = (await session.execute(
        select(CommissionLineRow).where(CommissionLineRow.shop_id == shop_id, CommissionLineRow.order_id.in_(order_ids),
                                        CommissionLineRow.state == cm.CommissionState.PENDING.value)
        .order_by(CommissionLineRow.line_id).with_for_update()
    )).scalars().all()
    for line in lines:
        if line.standing:
            ledger.add(line.beneficiary_id, [Posting(Bucket.PENDING, -line.standing, EntryKind.COMMISSION_VOIDED)],
                       ref_type="commission", ref_id=line.line_id)
        events.emit(session, shop_id=shop_id, type=EventType.COMMISSION_VOIDED, aggregate_type="order",
                    aggregate_id=line.order_id, now=now, rule="CM-6",
                    payload={"order_id": line.order_id, "line_id": line.line_id,
                             "beneficiary_id": line.beneficiary_id, "level": line.level, "amount": line.standing,
                             "cause": rule})
        line.state, line.standing = cm.CommissionState.VOID.value, 0


async def make_releasable(session: AsyncSession, *, shop_id: str, order_ids: list[str]) -> None:
    if order_ids:
        await session.execute(
            update(CommissionLineRow)
            .where(CommissionLineRow.shop_id == shop_id, CommissionLineRow.order_id.in_(order_ids))
            .values(releasable=True)
        )


# ---------------------------------------------------------------- buyer stats + levels (LV-2..LV-4)
async def record_paid(session: AsyncSession, order: Order, now) -> None:
    await session.execute(
        update(User).where(User.shop_id == order.shop_id, User.user_id == order.buyer_id).values(
            paid_orders=User.paid_orders + 1, net_spend=User.net_spend + order.goods_amount,
            first_paid_at=func.coalesce(User.first_paid_at, now), last_paid_at=now)
    )


async def record_refund(session: AsyncSession, order: Order, amount: int, refunded_before: int) -> None:
    goods_refund = min(order.refunded_amount, order.goods_amount) - min(refunded_before, order.goods_amount)
    fully_now = order.refunded_amount >= order.paid_amount and refunded_before < order.paid_amount
    await session.execute(
        update(User).where(User.shop_id == order.shop_id, User.user_id == order.buyer_id).values(
            net_spend=User.net_spend - goods_refund, paid_orders=User.paid_orders - (1 if fully_now else 0))
    )


METRICS_SQL = text(
    """
    WITH direct AS (
        SELECT user_id FROM bindings WHERE shop_id = :s AND referrer_id = :d
           AND (expires_at IS NULL OR expires_at > :now)
    ), second AS (
        SELECT b.user_id FROM bindings b JOIN direct ON b.referrer_id = direct.user_id
        WHERE b.shop_id = :s AND (b.expires_at IS NULL OR b.expires_at > :now)
    )
    SELECT
      (SELECT count(*) FROM direct) AS direct_referrals,
      (SELECT count(*) FROM direct) + (SELECT count(*) FROM second) AS team_size,
      COALESCE((SELECT net_spend FROM users WHERE shop_id = :s AND user_id = :d), 0) AS own_spend,
      COALESCE((SELECT paid_orders FROM users WHERE shop_id = :s AND user_id = :d), 0) AS own_orders,
      COALESCE((SELECT sum(net_spend) FROM users WHERE shop_id = :s AND user_id IN (SELECT user_id FROM direct)), 0)
        AS direct_sales,
      COALESCE((SELECT sum(GREATEST(goods_amount - refunded_amount, 0)) FROM orders
                WHERE shop_id = :s AND paid_at IS NOT NULL AND (level1_id = :d OR level2_id = :d)), 0) AS team_sales
    """
)


async def evaluate_levels(session: AsyncSession, ledger: LedgerBatch, *, shop_id: str, user_ids, now) -> None:
    """LV-2: re-evaluate buyer, level 1 and level 2 after an event that can move a metric."""
    if not any(user_ids):
        return
    levels = await load_levels(session, shop_id)
    if not levels:
        return
    for user_id in sorted({u for u in user_ids if u}):
        row = await session.get(Distributor, (shop_id, user_id))
        if row is None or row.status not in (DistributorStatus.ACTIVE.value, DistributorStatus.SUSPENDED.value):
            continue
        m = (await session.execute(METRICS_SQL, {"s": shop_id, "d": user_id, "now": now})).mappings().one()
        metrics = lv.Metrics(**{k: int(v) for k, v in m.items()})
        decision = lv.evaluate_level(levels, current_grade=row.grade, metrics=metrics,
                                     bonuses_credited=frozenset(row.bonuses_credited or []))
        await apply_level_decision(session, ledger, row=row, decision=decision, now=now, actor="system",
                                   reason="LV-2 evaluation")


async def apply_level_decision(session, ledger: LedgerBatch, *, row: Distributor, decision, now, actor: str,
                               reason: str) -> None:
    if decision.grade != row.grade:
        session.add(DistributorAudit(shop_id=row.shop_id, audit_id=new_id("aud_"), user_id=row.user_id,
                                     action="LEVEL", from_value=str(row.grade), to_value=str(decision.grade),
                                     actor=actor, reason=reason, at=now))
        events.emit(session, shop_id=row.shop_id, type=EventType.DISTRIBUTOR_LEVEL_CHANGED, aggregate_type="distributor",
                    aggregate_id=row.user_id, now=now, rule="LV-3" if actor != "system" else "LV-2",
                    payload={"user_id": row.user_id, "from": row.grade, "to": decision.grade, "by": actor,
                             "reason": reason})
        row.grade = decision.grade
    if decision.bonuses:
        credited = set(row.bonuses_credited or [])
        for grade, amount in decision.bonuses:
            credited.add(grade)
            if amount:
                ledger.add(row.user_id, [Posting(Bucket.AVAILABLE, amount, EntryKind.UPGRADE_BONUS)],
                           ref_type="level", ref_id=f"{row.user_id}:{grade}")
        row.bonuses_credited = sorted(credited)
