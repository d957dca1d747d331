"""Campaigns (section 2): created by admins, validated by the engine."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from engine.errors import ErrorCode, refuse
from engine.groupbuy import Campaign, Tier, Variant, validate_campaign
from service.context import Services
from service.tx.idempotency import once_row
from service.tx.ids import new_id
from service.uow import unit_of_work
from store import mapping
from store.models import CampaignRow, Product


async def create_campaign(
    svc: Services,
    *,
    shop_id: str,
    product_ref: str,
    title: str,
    list_price: int,
    tiers: list[tuple[int, int]],
    duration: timedelta,
    payment_window: timedelta,
    starts_at: datetime,
    ends_at: datetime,
    leader_discount: int = 0,
    leader_commission_bp: int | None = None,
    stock: int | None = None,
    per_user_limit: int | None = None,
    max_quantity_per_order: int = 1,
    new_members_only: bool = False,
    fill_at_expiry: int | None = None,
    lottery_winners: int = 0,
    variants: list[tuple[str, list[tuple[int, int]], int]] = (),
    commission_enabled: bool = True,
    category: str = "",
    idempotency_key: str | None = None,
    almost_full_at: int = 1,
    expiring_soon_before: timedelta = timedelta(hours=1),
) -> CampaignRow:
    """Validate and store a campaign. GB-10: a retry with the same idempotency key and the same
    input returns the first campaign (no second one); with other input it is IDEMPOTENCY_CONFLICT."""
    campaign_id = new_id("cmp_")
    campaign = Campaign(
        id=campaign_id,
        list_price=list_price,
        tiers=tuple(Tier(members=m, unit_price=p) for m, p in tiers),
        duration=duration,
        payment_window=payment_window,
        starts_at=starts_at,
        ends_at=ends_at,
        leader_discount=leader_discount,
        leader_commission_bp=leader_commission_bp,
        stock=stock,
        per_user_limit=per_user_limit,
        max_quantity_per_order=max_quantity_per_order,
        new_members_only=new_members_only,
        fill_at_expiry=fill_at_expiry,
        lottery_winners=lottery_winners,
        lottery_seed=secrets.token_hex(16),
        variants=tuple(
            Variant(name=n, tiers=tuple(Tier(members=m, unit_price=p) for m, p in vt), weight=w)
            for n, vt, w in variants
        ),
        commission_enabled=commission_enabled,
        almost_full_at=almost_full_at,
        expiring_soon_before=expiring_soon_before,
    )
    validate_campaign(campaign)
    if not product_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "product reference is required", field="productRef")
    request = {
        "product_ref": product_ref,
        "title": title,
        "list_price": list_price,
        "tiers": [list(t) for t in tiers],
        "duration_s": duration.total_seconds(),
        "payment_window_s": payment_window.total_seconds(),
        "starts_at": starts_at.astimezone(timezone.utc).isoformat(),
        "ends_at": ends_at.astimezone(timezone.utc).isoformat(),
        "leader_discount": leader_discount,
        "leader_commission_bp": leader_commission_bp,
        "stock": stock,
        "per_user_limit": per_user_limit,
        "max_quantity_per_order": max_quantity_per_order,
        "new_members_only": new_members_only,
        "fill_at_expiry": fill_at_expiry,
        "lottery_winners": lottery_winners,
        "variants": [[n, [list(t) for t in vt], w] for n, vt, w in variants],
        "commission_enabled": commission_enabled,
        "category": category,
    }
    if (almost_full_at, expiring_soon_before) != (1, timedelta(hours=1)):  # GB-15 (keys made before v2 replay)
        request |= {"almost_full_at": almost_full_at, "expiring_soon_before_s": expiring_soon_before.total_seconds()}
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            product = await s.get(Product, (shop_id, product_ref))
            row = CampaignRow(
                shop_id=shop_id,
                campaign_id=campaign_id,
                product_ref=product_ref,
                title=title,
                category=category or (product.category if product else ""),
                list_price=list_price,
                tiers=mapping.tiers_to_json(campaign.tiers),
                variants=mapping.variants_to_json(campaign.variants),
                leader_discount=leader_discount,
                leader_commission_bp=leader_commission_bp,
                duration_s=int(duration.total_seconds()),
                payment_window_s=int(payment_window.total_seconds()),
                starts_at=starts_at,
                ends_at=ends_at,
                stock=stock,
                stock_left=stock,
                per_user_limit=per_user_limit,
                max_quantity_per_order=max_quantity_per_order,
                new_members_only=new_members_only,
                fill_at_expiry=fill_at_expiry,
                lottery_winners=lottery_winners,
                lottery_seed=campaign.lottery_seed,
                commission_enabled=commission_enabled,
                created_at=now,
                almost_full_at=almost_full_at,
                expiring_soon_before_s=int(expiring_soon_before.total_seconds()),
            )
            s.add(row)
            return row

        row = await once_row(
            s,
            CampaignRow,
            shop_id=shop_id,
            scope="create_campaign",
            key=idempotency_key,
            request=request,
            now=now,
            run=run,
        )
    return row


async def get_campaign(svc: Services, *, shop_id: str, campaign_id: str) -> CampaignRow | None:
    async with svc.sessionmaker() as s:
        return await s.get(CampaignRow, (shop_id, campaign_id))


async def list_campaigns(svc: Services, *, shop_id: str) -> list[CampaignRow]:
    async with svc.sessionmaker() as s:
        q = (
            select(CampaignRow)
            .where(CampaignRow.shop_id == shop_id)
            .order_by(CampaignRow.created_at, CampaignRow.campaign_id)
        )
        return list((await s.execute(q)).scalars())


async def end_campaign(
    svc: Services, *, shop_id: str, campaign_id: str, idempotency_key: str | None = None
) -> CampaignRow:
    """Stop a campaign now: `ends_at` becomes now (never before `starts_at`), so no group can be opened any
    more (section 2). Groups already open keep the expiry they were given (GB-1) and form or fail then;
    a leader who pays after this gets an expiry capped at the new `ends_at`. Ending an ended campaign
    changes nothing (GB-10); the row is locked, so two admins ending it at once end it once."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> CampaignRow:
            row = await s.get(CampaignRow, (shop_id, campaign_id), with_for_update=True)
            if row is None:
                raise refuse(ErrorCode.NOT_FOUND, "no such campaign", field="campaignId")
            if row.ends_at > now:
                row.ends_at = max(now, row.starts_at)
            assert row.ends_at <= max(now, row.starts_at), "an ended campaign opens no group after now"
            return row

        return await once_row(
            s,
            CampaignRow,
            shop_id=shop_id,
            scope="end_campaign",
            key=idempotency_key,
            now=now,
            run=run,
            request={"campaign_id": campaign_id},
        )
