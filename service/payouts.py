"""Payouts (LG-2). The distributor row is locked (SELECT … FOR UPDATE) before the engine decides,
so two concurrent requests can never together take more than the available balance."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ledger as lg
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service import events
from service.context import Services
from service.idempotency import once, once_row
from service.ids import new_id
from service.ledger import LedgerBatch
from service.shops import load_settings
from service.uow import unit_of_work
from store.models import Distributor, Payout


def balances_of(row: Distributor) -> lg.Balances:
    return lg.Balances(pending=row.pending, frozen=row.frozen, available=row.available, in_payout=row.in_payout,
                       paid=row.paid, fees=row.fees)


async def _locked_distributor(s: AsyncSession, shop_id: str, user_id: str) -> Distributor:
    row = await s.get(Distributor, (shop_id, user_id), with_for_update=True, populate_existing=True)
    if row is None:
        raise refuse(ErrorCode.NOT_A_DISTRIBUTOR, "no balance to pay out", field="userId", rule="LG-2")
    return row


async def request_payout(svc: Services, *, shop_id: str, user_id: str, amount: int,
                         idempotency_key: str | None = None) -> Payout:
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run():
            settings = await load_settings(s, shop_id)
            row = await _locked_distributor(s, shop_id, user_id)
            postings = lg.request_payout(settings, balances=balances_of(row), amount=amount,
                                         status=DistributorStatus(row.status))
            payout = Payout(shop_id=shop_id, payout_id=new_id("po_"), distributor_id=user_id, amount=amount,
                            fee=lg.payout_fee(settings, amount), state="REQUESTED", requested_at=now)
            s.add(payout)
            ledger = LedgerBatch(shop_id, now)
            ledger.add(user_id, postings, ref_type="payout", ref_id=payout.payout_id)
            await ledger.flush(s)
            events.emit(s, shop_id=shop_id, type=EventType.PAYOUT_REQUESTED, aggregate_type="distributor",
                        aggregate_id=user_id, now=now, rule="LG-2",
                        payload={"payout_id": payout.payout_id, "user_id": user_id, "amount": amount,
                                 "fee": payout.fee})
            return {"payout_id": payout.payout_id}

        r = await once(s, shop_id=shop_id, scope=f"payout:{user_id}", key=idempotency_key,
                       request={"amount": amount}, now=now, run=run)
        return await s.get(Payout, (shop_id, r["payout_id"]))


async def decide_payout(svc: Services, *, shop_id: str, payout_id: str, approve: bool, actor: str,
                        external_ref: str | None = None, reason: str | None = None,
                        idempotency_key: str | None = None) -> Payout:
    """LG-2: approve (with the external transfer reference) -> paid out, fee its own entry;
    reject -> all of A back to available, no fee. Deciding the same way twice is a no-op; with
    `idempotency_key` (GB-10) a retry replays the first decision and another request under the key is refused."""
    if approve and not external_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "approval needs the external transfer reference",
                     field="externalRef", rule="LG-2")
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run() -> Payout:
            payout = (await s.execute(select(Payout).where(Payout.shop_id == shop_id, Payout.payout_id == payout_id)
                                      .with_for_update())).scalar_one_or_none()
            if payout is None:
                raise refuse(ErrorCode.NOT_FOUND, "payout not found", field="payoutId")
            target = "APPROVED" if approve else "REJECTED"
            if payout.state != "REQUESTED":
                if payout.state == target and (not approve or payout.external_ref == external_ref):
                    return payout
                raise refuse(ErrorCode.INVALID_STATE, f"payout is already {payout.state}", field="payoutId",
                             rule="LG-2")
            settings = await load_settings(s, shop_id)
            await _locked_distributor(s, shop_id, payout.distributor_id)
            postings = lg.approve_payout(settings, payout.amount) if approve else lg.reject_payout(payout.amount)
            payout.state, payout.decided_at, payout.decided_by = target, now, actor
            payout.external_ref, payout.reason = external_ref, reason
            payout.fee = lg.payout_fee(settings, payout.amount) if approve else 0
            ledger = LedgerBatch(shop_id, now)
            ledger.add(payout.distributor_id, postings, ref_type="payout", ref_id=payout.payout_id)
            await ledger.flush(s)
            events.emit(s, shop_id=shop_id, type=EventType.PAYOUT_APPROVED if approve else EventType.PAYOUT_REJECTED, aggregate_type="distributor",
                        aggregate_id=payout.distributor_id, now=now, rule="LG-2",
                        payload={"payout_id": payout_id, "user_id": payout.distributor_id, "amount": payout.amount,
                                 "fee": payout.fee, "net": payout.amount - payout.fee, "external_ref": external_ref,
                                 "reason": reason})
            return payout

        return await once_row(s, Payout, shop_id=shop_id, scope="approve_payout" if approve else "reject_payout",
                              key=idempotency_key, now=now, run=run,
                              request={"payout_id": payout_id, "external_ref": external_ref, "reason": reason})
