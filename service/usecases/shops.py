"""Shops, their settings and levels, users and products (SH-1, SH-2, LV-1, OR-3)."""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, fields, replace
from datetime import timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine.distribution import DistributionSettings, validate_settings
from engine.errors import ErrorCode, refuse
from engine.levels import Level, validate_levels
from service.context import Services
from service.currencies import check_currency, check_timezone
from service.tx.idempotency import once, once_row
from service.uow import unit_of_work
from store import mapping
from store.models import DistributionSettingsRow, LevelRow, Product, Shop, User

SHOP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


async def create_shop(
    svc: Services,
    *,
    shop_id: str,
    name: str,
    currency: str,
    timezone: str = "UTC",
    settings: DistributionSettings | None = None,
    idempotency_key: str | None = None,
) -> Shop:
    """SH-1/SH-2: a shop with its distribution settings. An id already taken is refused, except
    GB-10: a retry with the same idempotency key and the same input returns the shop it created;
    the same key with other input is IDEMPOTENCY_CONFLICT."""
    if not SHOP_ID.match(shop_id):
        raise refuse(ErrorCode.INVALID_INPUT, "shop id: 2-63 of a-z, 0-9 and -", field="shopId")
    check_currency(currency)
    check_timezone(timezone)
    settings = settings or DistributionSettings()
    validate_settings(settings)
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            created = (
                await s.execute(
                    insert(Shop)
                    .values(
                        shop_id=shop_id,
                        name=name,
                        currency=currency,
                        timezone=timezone,
                        jwt_secret=secrets.token_urlsafe(32),
                        public_key=public_key_for(shop_id),
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(Shop.shop_id)
                )
            ).first()
            if created is None:
                raise refuse(ErrorCode.INVALID_INPUT, f"shop {shop_id} exists", field="shopId")
            s.add(mapping.settings_row(shop_id, settings))
            return {"shop_id": shop_id}

        # the key row is the new shop's (shop_id, scope, key): a retry of the same creation meets it
        await once(
            s,
            shop_id=shop_id,
            scope="create_shop",
            key=idempotency_key,
            now=now,
            run=run,
            request={
                "name": name,
                "currency": currency,
                "timezone": timezone,
                "settings": {k: getattr(v, "value", v) for k, v in asdict(settings).items()},
            },
        )
        shop = await s.get(Shop, shop_id, populate_existing=True)
    return shop


async def get_shop(svc: Services, shop_id: str) -> Shop | None:
    async with svc.sessionmaker() as s:
        return await s.get(Shop, shop_id)


async def list_shops(svc: Services, *, limit: int) -> list[Shop]:
    """Every shop, in id order (the operator's `sharecart list-shops`; on Citus one read of all shards)."""
    async with svc.sessionmaker() as s:
        return list((await s.scalars(select(Shop).order_by(Shop.shop_id).limit(limit))).all())


PUBLIC_KEY = re.compile(r"^pk_([a-z0-9][a-z0-9-]{1,62})_[0-9a-f]{16}$")


def public_key_for(shop_id: str) -> str:
    """DS-2: `pk_<shop>_<random>`. The shop id in the key lets the lookup route by `shop_id`
    (one shard on Citus) instead of searching every shop; the random part is what makes it a key."""
    key = f"pk_{shop_id}_{secrets.token_hex(8)}"
    assert shop_of_public_key(key) == shop_id
    return key


def shop_of_public_key(public_key: str) -> str | None:
    m = PUBLIC_KEY.match(public_key)
    return m.group(1) if m else None


async def shop_by_public_key(svc: Services, public_key: str) -> Shop | None:
    """The shop a storefront key belongs to, looked up by (shop_id, public_key): a single-shop query.
    A key not of the `pk_<shop>_<random>` form is unknown — never a search across shops."""
    shop_id = shop_of_public_key(public_key)
    if shop_id is None:
        return None
    async with svc.sessionmaker() as s:
        return (
            await s.execute(select(Shop).where(Shop.shop_id == shop_id, Shop.public_key == public_key))
        ).scalar_one_or_none()


async def load_settings(session: AsyncSession, shop_id: str) -> DistributionSettings:
    row = await session.get(DistributionSettingsRow, shop_id)
    if row is None:
        raise refuse(ErrorCode.NOT_FOUND, f"shop {shop_id} not found")
    return mapping.settings_from_row(row)


async def get_settings(svc: Services, shop_id: str) -> DistributionSettings:
    async with svc.sessionmaker() as s:
        return await load_settings(s, shop_id)


async def update_settings(
    svc: Services, *, shop_id: str, idempotency_key: str | None = None, **changes
) -> DistributionSettings:
    known = {f.name for f in fields(DistributionSettings)}
    unknown = set(changes) - known
    if unknown:
        raise refuse(ErrorCode.INVALID_INPUT, f"unknown settings: {sorted(unknown)}", field=sorted(unknown)[0])
    changes = {k: v for k, v in changes.items() if v is not None}
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            row = await s.get(DistributionSettingsRow, shop_id, with_for_update=True)
            new = replace(mapping.settings_from_row(row), **changes)
            validate_settings(new)
            for k, v in asdict(new).items():
                setattr(row, k, v.value if hasattr(v, "value") else v)
            return {}

        await once(
            s,
            shop_id=shop_id,
            scope="update_distribution_settings",
            key=idempotency_key,
            now=now,
            run=run,
            request={k: getattr(v, "value", v) for k, v in changes.items()},
        )
        return await load_settings(s, shop_id)


async def load_levels(session: AsyncSession, shop_id: str) -> tuple[Level, ...]:
    rows = (
        await session.execute(select(LevelRow).where(LevelRow.shop_id == shop_id).order_by(LevelRow.grade))
    ).scalars()
    return tuple(mapping.level_from_row(r) for r in rows)


async def get_levels(svc: Services, shop_id: str) -> tuple[Level, ...]:
    async with svc.sessionmaker() as s:
        return await load_levels(s, shop_id)


async def set_levels(
    svc: Services, *, shop_id: str, levels: list[Level], idempotency_key: str | None = None
) -> tuple[Level, ...]:
    """LV-1: replace the shop's level table (grades are kept; distributors keep their grade)."""
    levels = tuple(sorted(levels, key=lambda lv: lv.grade))
    validate_levels(levels)
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            await s.execute(delete(LevelRow).where(LevelRow.shop_id == shop_id))
            s.add_all(LevelRow(shop_id=shop_id, **asdict(lv)) for lv in levels)
            return {}

        await once(
            s,
            shop_id=shop_id,
            scope="set_levels",
            key=idempotency_key,
            now=now,
            run=run,
            request={"levels": [asdict(lv) for lv in levels]},
        )
        return await load_levels(s, shop_id)


async def ensure_user(session: AsyncSession, shop_id: str, user_id: str, now, display_name: str = "") -> None:
    if not user_id or len(user_id) > 64:
        raise refuse(ErrorCode.INVALID_INPUT, "user id must be 1-64 characters", field="userId")
    await session.execute(
        insert(User)
        .values(shop_id=shop_id, user_id=user_id, display_name=display_name, created_at=now)
        .on_conflict_do_nothing()
    )


async def upsert_product(
    svc: Services,
    *,
    shop_id: str,
    product_ref: str,
    title: str = "",
    category: str = "",
    earns_commission: bool = True,
    level1_amount: int | None = None,
    level2_amount: int | None = None,
    idempotency_key: str | None = None,
) -> Product:
    """OR-3: a product's category and commission terms (CM-3 fixed per-unit amounts)."""
    for name, v in (("level1Amount", level1_amount), ("level2Amount", level2_amount)):
        if v is not None and v < 0:
            raise refuse(ErrorCode.INVALID_INPUT, "amounts are >= 0", field=name, rule="CM-3")
    if not product_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "product reference is required", field="productRef")
    values = dict(
        title=title,
        category=category,
        earns_commission=earns_commission,
        level1_amount=level1_amount,
        level2_amount=level2_amount,
    )
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Product:
            await s.execute(
                insert(Product)
                .values(shop_id=shop_id, product_ref=product_ref, **values)
                .on_conflict_do_update(index_elements=["shop_id", "product_ref"], set_=values)
            )
            return await s.get(Product, (shop_id, product_ref), populate_existing=True)

        return await once_row(
            s,
            Product,
            shop_id=shop_id,
            scope="upsert_product",
            key=idempotency_key,
            now=now,
            run=run,
            request={"product_ref": product_ref, **values},
        )


# ---------------------------------------------------------------- token secrets (SH-0, issue 11 point 9)
SHOPS_CHANNEL = "sharecart_shops"  # NOTIFY payload: a shop id whose secrets or revocation changed


async def _notify_shop_changed(s: AsyncSession, shop_id: str) -> None:
    """Every process drops the shop from its cache when this transaction commits (api.auth.ShopCache)."""
    await s.execute(text("SELECT pg_notify(:channel, :shop)"), {"channel": SHOPS_CHANNEL, "shop": shop_id})


async def rotate_jwt_secret(svc: Services, *, shop_id: str, overlap_s: int, idempotency_key: str | None = None) -> Shop:
    """A new signing secret now; tokens signed with the one it replaces are still accepted for `overlap_s`
    seconds (then refused), so a backend minting tokens itself can switch without an outage. A retry with
    the same key does not rotate again (that would end the overlap of the secret still in use)."""
    if not 0 <= overlap_s <= 7 * 86400:
        raise refuse(ErrorCode.INVALID_INPUT, "the overlap is 0 to 604800 seconds", field="overlapSeconds", rule="SH-0")
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Shop:
            shop = await s.get(Shop, shop_id, with_for_update=True)
            shop.previous_jwt_secret, shop.jwt_secret = shop.jwt_secret, secrets.token_urlsafe(32)
            shop.previous_jwt_secret_until = _wall_now() + timedelta(seconds=overlap_s)
            await _notify_shop_changed(s, shop_id)
            return shop

        return await once_row(
            s,
            Shop,
            shop_id=shop_id,
            scope="rotate_jwt_secret",
            key=idempotency_key,
            now=now,
            run=run,
            request={"overlap_s": overlap_s},
        )


async def revoke_tokens(svc: Services, *, shop_id: str, idempotency_key: str | None = None) -> Shop:
    """Every token of the shop issued before now (its `iat`) is refused from now on, in every process; tokens
    issued afterwards work. Revokes per shop (a token version), not per token."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Shop:
            shop = await s.get(Shop, shop_id, with_for_update=True)
            # iat is whole seconds: a token of this very second may predate the call, so it is revoked too
            shop.tokens_not_before = _wall_now().replace(microsecond=0) + timedelta(seconds=1)
            await _notify_shop_changed(s, shop_id)
            return shop

        return await once_row(
            s, Shop, shop_id=shop_id, scope="revoke_tokens", key=idempotency_key, now=now, run=run, request={}
        )


def _wall_now():
    """Tokens carry wall-clock times (`iat`, `exp`), whatever the service clock says (OR-5 moves only rules)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
