"""Admin, backend and finance listings, paged in SQL: distributors by status, products, levels and
settlement batches. Same contract as `service.reads.queries` (scoped by `shop_id`, SH-1; a page is one
count and one select, whatever its size); kept apart so the listings of staff screens grow here."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import select

from service.context import Services
from service.reads.queries import Page, _page
from store import mapping
from store.models import Distributor, LevelRow, Product, Settlement


async def page_distributors(
    svc: Services, *, shop_id: str, statuses: Iterable[str] | None, limit: int, offset: int
) -> Page:
    """DS-1: the shop's distributors and applicants, filtered by status (APPLIED = applicants), by user id."""
    q = select(Distributor).where(Distributor.shop_id == shop_id)
    statuses = list(statuses or ())
    if statuses:
        q = q.where(Distributor.status.in_(statuses))
    return await _page(svc, q, (Distributor.user_id,), limit=limit, offset=offset)


async def page_products(svc: Services, *, shop_id: str, limit: int, offset: int) -> Page:
    """OR-3: products with their category and commission terms, by reference."""
    q = select(Product).where(Product.shop_id == shop_id)
    return await _page(svc, q, (Product.product_ref,), limit=limit, offset=offset)


async def page_levels(svc: Services, *, shop_id: str, limit: int, offset: int) -> Page:
    """LV-1: the level table by grade."""
    rows, total = await _page(
        svc, select(LevelRow).where(LevelRow.shop_id == shop_id), (LevelRow.grade,), limit=limit, offset=offset
    )
    return [mapping.level_from_row(r) for r in rows], total


async def page_settlements(svc: Services, *, shop_id: str, limit: int, offset: int) -> Page:
    """LG-3: settlement batches, oldest period first."""
    q = select(Settlement).where(Settlement.shop_id == shop_id)
    return await _page(svc, q, (Settlement.period_from, Settlement.settlement_id), limit=limit, offset=offset)
