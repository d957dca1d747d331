"""Orders (OR-1..OR-4): reported by the backend, paid, refunded, completed.

Payment confirmations are idempotent by the provider's reference (GB-10): the `payments` row is
inserted first under a unique key, so a concurrent duplicate waits for the first and then
replays its outcome instead of paying twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service.tx import commissions, fraud, group_batch
from service.context import Services
from service.usecases.groups import advance_due_groups, pay_group_order
from service.tx.idempotency import once_or_replay, request_hash
from service.tx.ids import new_id
from service.tx.ledger import LedgerBatch, line_from_row
from service.usecases.refunds import apply_refund
from service.uow import unit_of_work
from service.tx.lean import ORDER_COLUMNS, OrderView
from store.models import GroupRow, Order, Payment


# OrderView and the columns it is read from live in service.tx.lean (below this module: groups imports it)


def _order_where(order_id: str | None, external_id: str | None) -> tuple[str, dict]:
    if order_id:
        return "order_id = :oid", {"oid": order_id}
    if external_id:
        return "external_id = :ext", {"ext": external_id}
    raise refuse(ErrorCode.INVALID_INPUT, "give an order id or an external id", field="orderId")


async def read_order(s: AsyncSession, shop_id: str, order_id: str) -> OrderView:
    row = (
        await s.execute(
            text(
                f"SELECT row_to_json(o) AS o FROM (SELECT {ORDER_COLUMNS} FROM orders "
                "WHERE shop_id = :s AND order_id = :oid) o"
            ),
            {"s": shop_id, "oid": order_id},
        )
    ).one()
    return OrderView.from_json(shop_id, _json(row.o))


def _json(v):
    return json.loads(v) if isinstance(v, str) else v


@dataclass(frozen=True)
class LineInput:
    product_ref: str
    quantity: int
    unit_price: int
    discount: int = 0
    category: str | None = None


async def report_order(
    svc: Services,
    *,
    shop_id: str,
    external_id: str,
    buyer_id: str,
    lines: list[LineInput],
    shipping_amount: int = 0,
    tax_amount: int = 0,
    idempotency_key: str | None = None,
    invite_code: str | None = None,
    attribution_out: list | None = None,
) -> Order:
    """OR-1/OR-2: the same external id with the same content is one order; different content is refused.
    `idempotency_key` (GB-10) is additional: another request under the same key is refused.
    `invite_code` (RF-3 b, part of the content): a promo code the order carried — it binds a buyer without a
    live referrer, or (`order_code_overrides`) names this order's level 1; what it did is appended to
    `attribution_out` (a refusal under RF-1 does not refuse the order)."""
    if not external_id:
        raise refuse(ErrorCode.INVALID_INPUT, "external id is required", field="externalId", rule="OR-1")
    if not lines:
        raise refuse(ErrorCode.INVALID_INPUT, "an order has at least one line", field="lines", rule="OR-2")
    for i, ln in enumerate(lines):
        if ln.quantity < 1 or ln.unit_price < 0 or ln.discount < 0 or ln.discount > ln.unit_price * ln.quantity:
            raise refuse(
                ErrorCode.INVALID_INPUT,
                "line: quantity >= 1, prices >= 0, discount <= line amount",
                field=f"lines.{i}",
                rule="OR-2",
            )
    if shipping_amount < 0 or tax_amount < 0:
        raise refuse(ErrorCode.INVALID_INPUT, "shipping and tax are >= 0", field="shippingAmount", rule="OR-2")
    if not buyer_id or len(buyer_id) > 64:
        raise refuse(ErrorCode.INVALID_INPUT, "user id must be 1-64 characters", field="userId")
    if invite_code is not None and not 1 <= len(invite_code.strip()) <= 32:
        raise refuse(ErrorCode.INVALID_INPUT, "an invite code is 1-32 characters", field="inviteCode", rule="RF-3")
    content = request_hash(
        {
            "buyer": buyer_id,
            "lines": [ln.__dict__ for ln in lines],
            "shipping": shipping_amount,
            "tax": tax_amount,
            **({"code": invite_code.strip().upper()} if invite_code else {}),
        }
    )
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            order = OrderView(
                shop_id=shop_id,
                order_id=new_id("ord_"),
                external_id=external_id,
                buyer_id=buyer_id,
                kind="PLAIN",
                campaign_id=None,
                group_id=None,
                state="CREATED",
                goods_amount=sum(ln.unit_price * ln.quantity - ln.discount for ln in lines),
                shipping_amount=shipping_amount,
                tax_amount=tax_amount,
                paid_amount=0,
                refunded_amount=0,
                content_hash=content,
                source="NONE",
                level1_id=None,
                level2_id=None,
                created_at=now,
                paid_at=None,
                completed_at=None,
                cancelled_at=None,
            )
            got = (
                await s.execute(
                    REPORT_ORDER,
                    {
                        "s": shop_id,
                        "buyer": buyer_id,
                        "now": now,
                        "oid": order.order_id,
                        "ext": external_id,
                        "goods": order.goods_amount,
                        "ship": shipping_amount,
                        "tax": tax_amount,
                        "hash": content,
                        "refs": [ln.product_ref for ln in lines],
                        "cats": [ln.category for ln in lines],
                        "qty": [ln.quantity for ln in lines],
                        "price": [ln.unit_price for ln in lines],
                        "disc": [ln.discount for ln in lines],
                    },
                )
            ).one()
            if got.inserted is None:  # OR-1: this external id is already an order
                existing = await find_order_view(s, shop_id, external_id=external_id)
                if existing.content_hash != content:
                    raise refuse(
                        ErrorCode.ORDER_CONFLICT,
                        "an order with this external id exists with other content",
                        field="externalId",
                        rule="OR-1",
                    )
                order = existing
            elif invite_code:  # RF-3 (b): before the order's snapshot (taken at payment, RF-2)
                from engine.referral import BindingSource
                from service.usecases.distribution import attribute_in_session

                a = await attribute_in_session(
                    s,
                    shop_id=shop_id,
                    user_id=buyer_id,
                    invite_code=invite_code,
                    now=now,
                    source=BindingSource.ORDER_CODE,
                    order_id=order.order_id,
                )
                if attribution_out is not None:
                    attribution_out.append(a)
            made.append(order)
            return {"order_id": order.order_id}

        made: list[OrderView] = []
        r, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="report_order",
            key=idempotency_key,
            now=now,
            run=run,
            request={"external_id": external_id, "content": content},
        )
        return await read_order(s, shop_id, r["order_id"]) if replayed else made[0]


# OR-1/OR-2 in one round trip: the buyer (if new), the order (unless its external id exists: OR-1), and its
# lines with each category from the line or else the product (OR-3). The lines' rows are selected beside the shop's
# own row (`FROM shops sh … WHERE sh.shop_id = :s`), so on Citus the INSERT … SELECT runs on the shop's shard
# (colocated) instead of being pulled through the coordinator (docs/sharding.md).
REPORT_ORDER = text(
    """
    WITH u AS (INSERT INTO users (shop_id, user_id, display_name, created_at) VALUES (:s, :buyer, '', :now)
               ON CONFLICT DO NOTHING),
    o AS (INSERT INTO orders (shop_id, order_id, external_id, buyer_id, kind, state, goods_amount, shipping_amount,
                              tax_amount, paid_amount, refunded_amount, content_hash, source, created_at)
          VALUES (:s, :oid, :ext, :buyer, 'PLAIN', 'CREATED', :goods, :ship, :tax, 0, 0, :hash, 'NONE', :now)
          ON CONFLICT DO NOTHING RETURNING order_id),
    l AS (INSERT INTO order_lines (shop_id, order_id, line_no, product_ref, category, quantity, unit_price, discount)
          SELECT sh.shop_id, o.order_id, v.n, v.ref, COALESCE(v.cat, p.category, ''), v.qty, v.price, v.disc
          FROM shops sh CROSS JOIN o
          CROSS JOIN unnest(CAST(:refs AS text[]), CAST(:cats AS text[]), CAST(:qty AS int[]),
                            CAST(:price AS bigint[]), CAST(:disc AS bigint[])) WITH ORDINALITY AS v(ref, cat, qty, price, disc, n)
          LEFT JOIN products p ON p.shop_id = sh.shop_id AND p.product_ref = v.ref
          WHERE sh.shop_id = :s)
    SELECT (SELECT order_id FROM o) AS inserted
    """
)


async def find_order_by(
    s: AsyncSession, shop_id: str, *, order_id: str | None = None, external_id: str | None = None
) -> OrderView:
    """The order by id or external id, through Core (no lock: the use case locks what it changes)."""
    where, params = _order_where(order_id, external_id)
    row = (
        await s.execute(
            text(
                f"SELECT row_to_json(o) AS o FROM (SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = :s AND {where}) o"
            ),
            {"s": shop_id, **params},
        )
    ).first()
    if row is None:
        raise refuse(ErrorCode.NOT_FOUND, "order not found", field="orderId")
    return OrderView.from_json(shop_id, _json(row.o))


async def find_order_view(s: AsyncSession, shop_id: str, *, external_id: str) -> OrderView:
    row = (
        await s.execute(
            text(
                f"SELECT row_to_json(o) AS o FROM (SELECT {ORDER_COLUMNS} FROM orders "
                "WHERE shop_id = :s AND external_id = :ext) o"
            ),
            {"s": shop_id, "ext": external_id},
        )
    ).one()
    return OrderView.from_json(shop_id, _json(row.o))


async def confirm_payment(
    svc: Services,
    *,
    shop_id: str,
    provider_ref: str,
    amount: int,
    order_id: str | None = None,
    external_id: str | None = None,
    idempotency_key: str | None = None,
    fingerprints: dict[str, str | None] | None = None,
) -> dict:
    """The backend confirms money received. GB-10 by provider reference (and, additionally, by
    `idempotency_key`: a replay answers `replayed`); GB-9 late payments are accepted and answered with a
    full refund instruction. `fingerprints` (FR-1: PAYER, DEVICE, IP, ADDRESS, each optional) are hashed here,
    before the transaction, and only their keyed hashes go further (service.tx.fraud)."""
    fps = fraud.hash_fingerprints(shop_id, fingerprints)
    if not provider_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "provider reference is required", field="providerRef", rule="GB-10")
    if amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "amount must be positive", field="amount")
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            order = await find_order_by(s, shop_id, order_id=order_id, external_id=external_id)
            claimed = (
                await s.execute(
                    insert(Payment)
                    .values(
                        shop_id=shop_id,
                        provider_ref=provider_ref,
                        order_id=order.order_id,
                        amount=amount,
                        accepted=False,
                        received_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(Payment.provider_ref)
                )
            ).first()
            if claimed is None:
                prior = await s.get(Payment, (shop_id, provider_ref), populate_existing=True)
                if prior.order_id != order.order_id or prior.amount != amount:
                    raise refuse(
                        ErrorCode.IDEMPOTENCY_CONFLICT,
                        "this provider reference confirmed a different payment",
                        field="providerRef",
                        rule="GB-10",
                    )
                return {"order_id": order.order_id, "accepted": prior.accepted, "replayed": True}
            fraud.carry(s, order.order_id, fps)  # FR-1: for the commission screening of this payment
            if order.kind == "GROUP":
                accepted = await pay_group_order(s, order=order, amount=amount, now=now)
            else:
                accepted = await pay_plain_order(s, order=order, amount=amount, now=now)
            await s.execute(
                Payment.__table__.update()
                .where(Payment.shop_id == shop_id, Payment.provider_ref == provider_ref)
                .values(accepted=accepted)
            )
            return {"order_id": order.order_id, "accepted": accepted, "replayed": False}

        r, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="confirm_payment",
            key=idempotency_key,
            now=now,
            run=run,
            request={"order_id": order_id, "external_id": external_id, "amount": amount, "provider_ref": provider_ref},
        )
        return {**r, "replayed": r["replayed"] or replayed}


# OR-2/CM-1..CM-4/DS-1: the plain order under FOR UPDATE with its payment's commission context
# (group_batch.PAID_COLS: RF-2 bindings, distributors, settings, levels, line bases, the buyer's spend) and
# whether the shop has levels (LV-2) — one round trip.
LOAD_FOR_PAYMENT = text(
    f"WITH o AS (SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = :s AND order_id = :oid FOR UPDATE)"
    f"{group_batch.PAID_CTES} SELECT (SELECT row_to_json(o) FROM o) AS o, "
    f"EXISTS (SELECT 1 FROM levels WHERE shop_id = :s) AS has_levels{group_batch.PAID_COLS}"
)


async def pay_plain_order(s: AsyncSession, *, order, amount: int, now) -> bool:
    """OR-2: a plain order's payment. One statement loads (the order under lock, its commission context), the
    engine decides the lines (`commissions.post_paid_lines`), one statement writes (the applier's); a buyer
    DS-1 admits gets its distributor row first, and LV-2 adds its statement(s) in a shop with levels."""
    got = (
        await s.execute(LOAD_FOR_PAYMENT, {"s": order.shop_id, "oid": order.order_id, "buyer": order.buyer_id})
    ).one()
    order = OrderView.from_json(order.shop_id, _json(got.o))
    total = order.goods_amount + order.shipping_amount + order.tax_amount
    if order.state != "CREATED":
        raise refuse(ErrorCode.INVALID_STATE, f"order is {order.state}, not awaiting payment", field="orderId")
    if amount != total:
        raise refuse(ErrorCode.PAYMENT_AMOUNT_MISMATCH, f"order total is {total}", field="amount", rule="OR-2")
    order.state, order.paid_amount, order.paid_at = "PAID", amount, now
    pc = group_batch.paid_context(got)
    admitted = group_batch.admitted_by(pc, order.buyer_id, order.goods_amount)
    if admitted:
        await group_batch.ensure_distributors(s, order.shop_id, now, {order.buyer_id: "ACTIVE"})
    ledger = LedgerBatch(order.shop_id, now)
    await commissions.on_order_paid(s, ledger, order=order, now=now, enabled=True, releasable=True, admitted=admitted)
    ledger.row(
        "UPDATE orders SET state = 'PAID', paid_amount = :amount, paid_at = :now, level1_id = :l1, "
        "level2_id = :l2, source = :src WHERE shop_id = :shop_id AND order_id = :order_id",
        amount=amount,
        now=now,
        l1=order.level1_id,
        l2=order.level2_id,
        src=order.source,
        order_id=order.order_id,
    )
    ledger.row(
        "UPDATE users SET paid_orders = paid_orders + 1, net_spend = net_spend + :goods, "
        "first_paid_at = coalesce(first_paid_at, :now), last_paid_at = :now "
        "WHERE shop_id = :shop_id AND user_id = :buyer",
        goods=order.goods_amount,
        now=now,
        buyer=order.buyer_id,
    )
    ledger.event(
        type=EventType.ORDER_PAID,
        aggregate_type="order",
        aggregate_id=order.order_id,
        rule="OR-2",
        payload={"order_id": order.order_id, "amount": amount, "buyer_id": order.buyer_id},
    )
    await ledger.flush(s)
    if got.has_levels:
        await commissions.evaluate_levels(
            s, ledger, shop_id=order.shop_id, user_ids={order.buyer_id, order.level1_id, order.level2_id}, now=now
        )
        await ledger.flush(s)
    return True


# OR-2/CM-5: the order under FOR UPDATE, then the lines a refund of it reduces under FOR UPDATE (line_id
# order; commissions.REFUNDED_LINES), the refund the provider reference already recorded, the group's state
# — one round trip.
LOAD_FOR_REFUND = f"""
WITH o AS (SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = :s AND {{where}} FOR UPDATE),
l AS (SELECT {commissions.LINE_COLUMNS} FROM commission_lines
      WHERE shop_id = :s AND ((order_id = (SELECT order_id FROM o) AND level <> 0)
                              OR (group_id = (SELECT group_id FROM o) AND level = 0
                                  AND order_id <> (SELECT order_id FROM o)))
      ORDER BY line_id FOR UPDATE)
SELECT (SELECT row_to_json(o) FROM o) AS o,
       (SELECT coalesce(json_agg(l ORDER BY l.line_id), '[]'::json) FROM l) AS lines,
       (SELECT row_to_json(r) FROM (SELECT refund_id, order_id, amount FROM refunds
                                    WHERE shop_id = :s AND provider_ref = :ref) r) AS prior,
       (SELECT state FROM groups WHERE shop_id = :s AND group_id = (SELECT group_id FROM o)) AS group_state
"""


async def refund_order(
    svc: Services,
    *,
    shop_id: str,
    amount: int,
    provider_ref: str,
    order_id: str | None = None,
    external_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict:
    """OR-2: the backend refunded (part of) an order; idempotent by the provider's reference (GB-10) and,
    additionally, by `idempotency_key` (a replay answers `replayed`). One statement loads under the
    order's lock, the engine decides (`engine.refunds`, CM-5), one statement writes; the answer carries the
    refund as written (`refund`, a RefundView) when this call recorded it."""
    if not provider_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "provider reference is required", field="providerRef", rule="GB-10")
    where, params = _order_where(order_id, external_id)
    now = svc.now()
    made: list = []

    async with unit_of_work(svc) as s:

        async def run() -> dict:
            got = (
                await s.execute(
                    text(LOAD_FOR_REFUND.format(where=where)), {"s": shop_id, "ref": provider_ref, **params}
                )
            ).one()
            if got.o is None:
                raise refuse(ErrorCode.NOT_FOUND, "order not found", field="orderId")
            order = OrderView.from_json(shop_id, _json(got.o))
            prior = _json(got.prior)
            if prior is not None:
                if prior["order_id"] != order.order_id or prior["amount"] != amount:
                    raise refuse(
                        ErrorCode.IDEMPOTENCY_CONFLICT,
                        "this provider reference recorded a different refund",
                        field="providerRef",
                        rule="GB-10",
                    )
                return {"refund_id": prior["refund_id"], "order_id": order.order_id, "replayed": True}
            if order.paid_at is None or order.state not in ("PAID", "COMPLETED"):
                raise refuse(
                    ErrorCode.ORDER_NOT_PAID, "only a paid order can be refunded", field="orderId", rule="OR-2"
                )
            if order.kind == "GROUP" and got.group_state != "FORMED":
                raise refuse(
                    ErrorCode.INVALID_STATE,
                    "a group order is refunded through the group until it forms (leave the group instead, GB-8)",
                    field="orderId",
                    rule="GB-8",
                )
            ledger = LedgerBatch(shop_id, now)
            refund = await apply_refund(
                s,
                ledger,
                order=order,
                amount=amount,
                rule="OR-2",
                full=None,
                now=now,
                provider_ref=provider_ref,
                lines=[line_from_json(d) for d in _json(got.lines)],
            )
            await ledger.flush(s)
            made.append(refund)
            return {"refund_id": refund.refund_id, "order_id": order.order_id, "replayed": False}

        r, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="refund_order",
            key=idempotency_key,
            now=now,
            run=run,
            request={"order_id": order_id, "external_id": external_id, "amount": amount, "provider_ref": provider_ref},
        )
        return {**r, "replayed": r["replayed"] or replayed, "refund": made[0] if made and not replayed else None}


# OR-4/CM-6: the order under FOR UPDATE, then its PENDING lines under FOR UPDATE (line_id order), the
# shop's freeze_days and whether it has levels (LV-2) — one round trip. `releasable` is not in the WHERE: a
# payment forming the group may hold the lines while this statement waits, and a row that did not match in
# the statement's snapshot is never rechecked; `freeze_line` leaves a line that is not releasable alone.
LOAD_FOR_COMPLETION = f"""
WITH o AS (SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = :s AND {{where}} FOR UPDATE),
l AS (SELECT {commissions.LINE_COLUMNS} FROM commission_lines
      WHERE shop_id = :s AND order_id = (SELECT order_id FROM o) AND state = 'PENDING'
      ORDER BY line_id FOR UPDATE)
SELECT (SELECT row_to_json(o) FROM o) AS o,
       (SELECT coalesce(json_agg(l ORDER BY l.line_id), '[]'::json) FROM l) AS lines,
       (SELECT freeze_days FROM distribution_settings WHERE shop_id = :s) AS freeze_days,
       EXISTS (SELECT 1 FROM levels WHERE shop_id = :s) AS has_levels
"""


async def complete_order(
    svc: Services,
    *,
    shop_id: str,
    order_id: str | None = None,
    external_id: str | None = None,
    idempotency_key: str | None = None,
) -> OrderView:
    """OR-4: delivered and not disputed. Releasable commission lines freeze for freeze_days (CM-6).
    Idempotent: completing a completed order changes nothing; `idempotency_key` (GB-10) is additional.
    One statement loads (under the order's lock), one writes (the applier's); LV-2 re-evaluation adds its
    own statements only in a shop that has levels."""
    where, params = _order_where(order_id, external_id)
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            got = (await s.execute(text(LOAD_FOR_COMPLETION.format(where=where)), {"s": shop_id, **params})).one()
            if got.o is None:
                raise refuse(ErrorCode.NOT_FOUND, "order not found", field="orderId")
            order = OrderView.from_json(shop_id, _json(got.o))
            made.append(order)
            if order.state == "COMPLETED":
                return {"order_id": order.order_id}
            if order.state != "PAID":
                raise refuse(
                    ErrorCode.ORDER_NOT_PAID,
                    f"order is {order.state}; only a paid order completes",
                    field="orderId",
                    rule="OR-4",
                )
            order.state, order.completed_at = "COMPLETED", now
            ledger = LedgerBatch(shop_id, now)
            ledger.row(
                "UPDATE orders SET state = 'COMPLETED', completed_at = :now "
                "WHERE shop_id = :shop_id AND order_id = :order_id",
                now=now,
                order_id=order.order_id,
            )
            await commissions.freeze_order_lines(
                s,
                ledger,
                order=order,
                now=now,
                freeze_days=got.freeze_days,
                lines=[line_from_json(d) for d in _json(got.lines)],
            )
            ledger.event(
                type=EventType.ORDER_COMPLETED,
                aggregate_type="order",
                aggregate_id=order.order_id,
                rule="OR-4",
                payload={"order_id": order.order_id},
            )
            await ledger.flush(s)
            if got.has_levels:
                await commissions.evaluate_levels(
                    s, ledger, shop_id=shop_id, user_ids={order.buyer_id, order.level1_id, order.level2_id}, now=now
                )
                await ledger.flush(s)
            return {"order_id": order.order_id}

        made: list[OrderView] = []
        r, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="complete_order",
            key=idempotency_key,
            now=now,
            run=run,
            request={"order_id": order_id, "external_id": external_id},
        )
        return await read_order(s, shop_id, r["order_id"]) if replayed else made[0]


def line_from_json(d: dict):
    """A commission line loaded as JSON (a loading statement's json_agg) as the engine's value."""
    from types import SimpleNamespace

    d = dict(d)
    d["available_at"] = datetime.fromisoformat(d["available_at"]) if d["available_at"] else None
    return line_from_row(SimpleNamespace(**d))


async def catch_up_orders(svc: Services, *, shop_id: str, order_ids=None, buyer_id: str | None = None) -> None:
    """GB-11: a group order's state moves with its group (a reservation released past its payment
    window, a group failed at expiry). Before orders are read, the due work of their groups is
    applied. One query finds those groups, starting from the indexed due times; a transaction runs
    only for a group that is due. Plain orders have no due work."""
    now = svc.now()
    q = select(GroupRow.group_id).where(GroupRow.shop_id == shop_id, GroupRow.due_at <= now)
    if order_ids is not None:
        q = q.where(
            GroupRow.group_id.in_(
                select(Order.group_id).where(
                    Order.shop_id == shop_id, Order.order_id.in_(list(order_ids)), Order.group_id.is_not(None)
                )
            )
        )
    if buyer_id is not None:
        q = q.where(
            exists().where(
                Order.shop_id == GroupRow.shop_id, Order.group_id == GroupRow.group_id, Order.buyer_id == buyer_id
            )
        )
    async with svc.reader() as s:
        due = list((await s.execute(q)).scalars())
    if due:
        await advance_due_groups(svc, shop_id=shop_id, group_ids=due, now=now)


async def get_order_caught_up(svc: Services, *, shop_id: str, order_id: str) -> Order | None:
    await catch_up_orders(svc, shop_id=shop_id, order_ids=[order_id])
    async with svc.sessionmaker() as s:
        return await s.get(Order, (shop_id, order_id))


async def list_orders_caught_up(svc: Services, *, shop_id: str, buyer_id: str, limit: int = 1000) -> list[Order]:
    await catch_up_orders(svc, shop_id=shop_id, buyer_id=buyer_id)
    async with svc.sessionmaker() as s:
        return list(
            (
                await s.execute(
                    select(Order)
                    .where(Order.shop_id == shop_id, Order.buyer_id == buyer_id)
                    .order_by(Order.created_at.desc(), Order.order_id)
                    .limit(limit)
                )
            ).scalars()
        )
