"""One DataLoader per relation, created per request (so a page of N items costs a bounded number of
queries, and nothing is cached across requests or shops). Every loader is bound to the caller's shop."""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable

from strawberry.dataloader import DataLoader

from service.reads import queries
from service.context import Services


def _loader(fetch: Callable[..., Awaitable[dict]], svc: Services, shop_id: str) -> DataLoader:
    async def load(keys: list[str]) -> list:
        found = await fetch(svc, shop_id=shop_id, ids=keys)
        return [found.get(k) for k in keys]

    return DataLoader(load_fn=load)


def _refs(fetch):
    async def by_ids(svc, *, shop_id: str, ids: Iterable[str]):
        return await fetch(svc, shop_id=shop_id, refs=ids)

    return by_ids


class Loaders:
    def __init__(self, svc: Services, shop_id: str) -> None:
        self.campaign = _loader(queries.campaigns_by_ids, svc, shop_id)
        self.group = _loader(queries.groups_by_ids_caught_up, svc, shop_id)
        self.order = _loader(queries.orders_by_ids_caught_up, svc, shop_id)
        self.refund = _loader(queries.refunds_by_ids, svc, shop_id)
        self.payout = _loader(queries.payouts_by_ids, svc, shop_id)
        self.commission_line = _loader(queries.lines_by_ids, svc, shop_id)
        self.product = _loader(_refs(queries.products_by_refs), svc, shop_id)
        self.distributor = _loader(queries.distributors_by_ids, svc, shop_id)
        self.settlement = _loader(queries.settlements_by_ids, svc, shop_id)
        self.event = _loader(queries.events_by_ids, svc, shop_id)
        self.webhook_endpoint = _loader(queries.endpoints_by_ids, svc, shop_id)
        self.webhook_delivery = _loader(queries.deliveries_by_ids, svc, shop_id)
        self.webhook_attempt = _loader(queries.attempts_by_ids, svc, shop_id)
