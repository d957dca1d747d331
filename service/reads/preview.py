"""CM-7 earnings preview: what an order would earn if it were paid now, for a cart, a product or a group-buy
campaign, and a prospective buyer (the signed-in customer, or a new buyer bound to distributor D).

One read-only statement loads what the engine needs (the shape of `commissions.PAID_CONTEXT`, with the
cart's products instead of an order's lines); `engine.preview` decides with the function the payment uses.
Nothing is written: not even the caller's user or distributor record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text

from engine import commission as cm
from engine import groupbuy as gb
from engine import preview as pv
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.referral import current_referrer
from service.tx.commissions import _obj
from service.context import Services
from store import mapping

MAX_LINES = 100  # a cart larger than this is refused (hostile input is bounded)
MAX_AMOUNT = 10**13  # per line, as for reported orders (MinorUnits bounds)


@dataclass(frozen=True)
class CartLine:
    product_ref: str
    quantity: int
    unit_price: int
    discount: int = 0


# The buyer's binding, the binding of level 1 (the buyer's referrer, or D), distributor status and grade of
# buyer, level 1 and level 2, the buyer's net spend (DS-1 admission at payment), settings, levels, the
# products' terms (OR-3), the campaign — one round trip, nothing locked.
PREVIEW_CONTEXT = text(
    """
    WITH d AS (SELECT user_id FROM distributors WHERE shop_id = :s AND invite_code = :code),
    b1 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
           WHERE shop_id = :s AND user_id = :buyer),
    l1 AS (SELECT COALESCE((SELECT user_id FROM d), CAST(:dist AS varchar), (SELECT referrer_id FROM b1)) AS user_id),
    b2 AS (SELECT user_id, referrer_id, bound_at, source, expires_at FROM bindings
           WHERE shop_id = :s AND user_id = (SELECT user_id FROM l1)),
    c AS (SELECT product_ref, list_price, tiers, variants, leader_discount, max_quantity_per_order,
                 commission_enabled, starts_at, ends_at FROM campaigns WHERE shop_id = :s AND campaign_id = :cid)
    SELECT (SELECT user_id FROM d) AS code_user, (SELECT user_id FROM l1) AS l1,
      (SELECT row_to_json(b1) FROM b1) AS b1, (SELECT row_to_json(b2) FROM b2) AS b2,
      (SELECT json_object_agg(user_id, json_build_array(status, grade)) FROM distributors
        WHERE shop_id = :s AND user_id IN (:buyer, (SELECT user_id FROM l1), (SELECT referrer_id FROM b2)))
        AS dists,
      (SELECT net_spend FROM users WHERE shop_id = :s AND user_id = :buyer) AS net_spend,
      (SELECT row_to_json(x) FROM distribution_settings x WHERE shop_id = :s) AS settings,
      (SELECT json_agg(l ORDER BY l.grade) FROM levels l WHERE shop_id = :s) AS levels,
      (SELECT json_object_agg(product_ref, json_build_array(earns_commission, level1_amount, level2_amount))
         FROM products WHERE shop_id = :s
          AND product_ref = ANY(CAST(:refs AS text[]) || ARRAY[(SELECT product_ref FROM c)])) AS products,
      (SELECT row_to_json(c) FROM c) AS campaign
    """
)


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


def _check_cart(lines: list[CartLine]) -> None:
    if not lines:
        raise refuse(ErrorCode.INVALID_INPUT, "a cart has at least one line", field="lines", rule="CM-7")
    if len(lines) > MAX_LINES:
        raise refuse(ErrorCode.INVALID_INPUT, f"at most {MAX_LINES} lines", field="lines", rule="CM-7")
    for i, ln in enumerate(lines):
        if not ln.product_ref or len(ln.product_ref) > 128:
            raise refuse(
                ErrorCode.INVALID_INPUT, "product ref must be 1-128 characters", field=f"lines.{i}", rule="OR-3"
            )
        if (
            not (1 <= ln.quantity <= 10_000)
            or not (0 <= ln.unit_price <= MAX_AMOUNT)
            or ln.discount < 0
            or ln.discount > ln.unit_price * ln.quantity
        ):
            raise refuse(
                ErrorCode.INVALID_INPUT,
                "line: quantity 1-10000, prices >= 0, discount <= line amount",
                field=f"lines.{i}",
                rule="OR-2",
            )


async def commission_preview(
    svc: Services,
    *,
    shop_id: str,
    buyer_id: str | None,
    bound_to: str | None = None,
    invite_code: str | None = None,
    lines: list[CartLine] | None = None,
    campaign_id: str | None = None,
    quantity: int = 1,
) -> pv.Preview:
    """CM-7. The buyer is `buyer_id` (a signed-in customer; None: a new buyer with no record), bound to the
    distributor of `invite_code` or `bound_to` when given (as if that binding held), else to whoever the
    buyer's current binding names (RF-2, lapses applied). Give a cart (`lines`) or a `campaign_id` (with
    `quantity`). An unknown invite code is INVALID_INVITE_CODE, an unknown campaign NOT_FOUND."""
    if (lines is None) == (campaign_id is None):
        raise refuse(ErrorCode.INVALID_INPUT, "give a cart (lines) or a campaign", field="lines", rule="CM-7")
    if lines is not None:
        _check_cart(lines)
    now = svc.now()
    refs = [ln.product_ref for ln in lines or []]
    got = await svc.read_one(
        PREVIEW_CONTEXT,
        {
            "s": shop_id,
            "buyer": buyer_id or "",
            "dist": bound_to,
            "code": invite_code.strip().upper() if invite_code else None,
            "refs": refs,
            "cid": campaign_id or "",
        },
    )
    if invite_code and got.code_user is None:
        raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
    settings = mapping.settings_from_row(_obj(_j(got.settings)))
    levels = tuple(mapping.level_from_row(_obj(d)) for d in (_j(got.levels) or []))
    b1 = _obj(_j(got.b1), "bound_at", "expires_at")
    b2 = _obj(_j(got.b2), "bound_at", "expires_at")
    hypothetical = bool(invite_code or bound_to)
    level1_ref = got.l1 if hypothetical else (current_referrer(mapping.binding_from_row(b1), now) if b1 else None)
    level2_ref = (current_referrer(mapping.binding_from_row(b2), now) if b2 else None) if level1_ref else None
    parties = {u: pv.Party(DistributorStatus(st), grade) for u, (st, grade) in (_j(got.dists) or {}).items()}
    products = {
        ref: cm.ProductTerms(earns_commission=e, level1_amount=a1, level2_amount=a2)
        for ref, (e, a1, a2) in (_j(got.products) or {}).items()
    }
    campaign = _j(got.campaign)
    if campaign_id is not None and campaign is None:
        raise refuse(ErrorCode.NOT_FOUND, "campaign not found", field="campaignId")

    if campaign is not None:
        c = gb.Campaign(
            id=campaign_id or "",
            list_price=int(campaign["list_price"]),
            tiers=mapping.tiers_from_json(campaign["tiers"]),
            duration=timedelta(0),
            payment_window=timedelta(0),
            starts_at=now,
            ends_at=now,
            leader_discount=int(campaign["leader_discount"]),
            max_quantity_per_order=int(campaign["max_quantity_per_order"]),
            variants=mapping.variants_from_json(campaign["variants"] or []),
            commission_enabled=bool(campaign["commission_enabled"]),
        )
        if not 1 <= quantity <= c.max_quantity_per_order:
            raise refuse(
                ErrorCode.QUANTITY_LIMIT,
                f"1 to {c.max_quantity_per_order} units per order",
                field="quantity",
                rule="GB-2",
            )
        goods = c.tiers[0].unit_price * quantity
        terms = products.get(campaign["product_ref"], cm.ProductTerms())
    else:
        goods = sum(ln.unit_price * ln.quantity - ln.discount for ln in lines or [])
    buyer = buyer_id or ""  # "": a new buyer, no record (no user id is empty)
    # DS-1: the payment admits the buyer first (service.tx.commissions.admit_if_due), so a buyer admitted by this
    # very order is level 1 with `self_purchase` on — a new buyer too, in EVERYONE mode
    status = parties.get(buyer)
    admitted = pv.admitted_status(
        settings, status.status if status else None, net_paid_spend=int(got.net_spend or 0) + goods
    )
    if admitted is not None and (status is None or admitted != status.status):
        parties[buyer] = pv.Party(admitted, status.grade if status else 0)
    if hypothetical and level1_ref and level1_ref not in parties:  # the assumed binding admits D (DS-1)
        bound = pv.admitted_by_binding(settings, None)
        if bound is not None:
            parties[level1_ref] = pv.Party(bound)
    facts = pv.PaymentFacts(buyer_id=buyer, level1_referrer=level1_ref, level2_referrer=level2_ref, parties=parties)
    if campaign is not None:
        return pv.preview_campaign(
            settings, levels, facts, campaign=c, product_ref=campaign["product_ref"], terms=terms, quantity=quantity
        )
    return pv.preview_cart(
        settings,
        levels,
        facts,
        [
            cm.LineBase(
                product_ref=ln.product_ref,
                quantity=ln.quantity,
                base=ln.unit_price * ln.quantity - ln.discount,
                terms=products.get(ln.product_ref, cm.ProductTerms()),
            )
            for ln in lines or []
        ],
    )
