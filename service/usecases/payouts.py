"""Payouts (LG-2), on the lean path: one statement loads what the engine needs under the row lock, the
engine decides (`engine.ledger.quote_payout`, `approve_payout`, `reject_payout`), and the applier
(`service.tx.ledger.LedgerBatch`) writes the payout, its entries, the balances and the event in one more.

The distributor row is locked (FOR UPDATE) in the loading statement, before the engine decides, so two
concurrent requests can never together take more than the available balance. The fee is quoted at
request and stored with the payout; approval charges that fee, never one recomputed from the rate as it
stands at approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ledger as lg
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service.context import Services
from service.tx.idempotency import once_or_replay
from service.tx.ids import new_id
from service.tx.ledger import BALANCES, LedgerBatch
from service.uow import unit_of_work
from store import mapping


@dataclass(frozen=True)
class PayoutView:
    """A payout as written; the API renders it without reading it again."""

    payout_id: str
    distributor_id: str
    amount: int
    fee: int
    state: str
    requested_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    external_ref: str | None = None
    reason: str | None = None
    payee_kind: str | None = None  # LG-4: the method chosen at request, its reference masked
    payee_reference: str | None = None
    failed_at: datetime | None = None
    failed_by: str | None = None
    failure_ref: str | None = None
    failure_reason: str | None = None


PAYOUT_COLUMNS = (
    "payout_id, distributor_id, amount, fee, state, requested_at, decided_at, decided_by, external_ref, "
    "reason, payee_kind, payee_reference, failed_at, failed_by, failure_ref, failure_reason"
)

# LG-2: the shop's settings and the distributor's status and balances, the distributor row locked.
LOAD_FOR_REQUEST = text(
    f"SELECT s.*, d.status AS d_status, {', '.join('d.' + c + ' AS d_' + c for c in BALANCES)} "
    "FROM distribution_settings s JOIN distributors d ON d.shop_id = s.shop_id AND d.user_id = :user_id "
    "WHERE s.shop_id = :shop_id FOR UPDATE OF d"
)
# LG-2: the payout and its distributor, both rows locked (payout first, as every decision takes them).
LOAD_FOR_DECISION = text(
    f"SELECT {', '.join('p.' + c for c in PAYOUT_COLUMNS.split(', '))}, d.status AS d_status "
    "FROM payouts p JOIN distributors d ON d.shop_id = p.shop_id AND d.user_id = p.distributor_id "
    "WHERE p.shop_id = :shop_id AND p.payout_id = :payout_id FOR UPDATE"
)
READ_PAYOUT = text(f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE shop_id = :shop_id AND payout_id = :payout_id")


def balances_of(row, prefix: str = "") -> lg.Balances:
    return lg.Balances(**{c: getattr(row, prefix + c) for c in BALANCES})


def _view(row) -> PayoutView:
    return PayoutView(**{c: getattr(row, c) for c in PAYOUT_COLUMNS.split(", ")})


async def _read(s: AsyncSession, shop_id: str, payout_id: str) -> PayoutView:
    return _view((await s.execute(READ_PAYOUT, {"shop_id": shop_id, "payout_id": payout_id})).one())


async def request_payout(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    amount: int,
    idempotency_key: str | None = None,
    payee: lg.PayeeMethod | None = None,
) -> PayoutView:
    """LG-2: A moves available → in payout; the fee quoted now is recorded with the payout, and so is the
    payee method the distributor chose (LG-4: kind and masked reference — `lg.payee_method` masked it)."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            row = (await s.execute(LOAD_FOR_REQUEST, {"shop_id": shop_id, "user_id": user_id})).first()
            if row is None:
                raise refuse(ErrorCode.NOT_A_DISTRIBUTOR, "no balance to pay out", field="userId", rule="LG-2")
            quote = lg.quote_payout(
                mapping.settings_from_row(row),
                balances=balances_of(row, "d_"),
                amount=amount,
                status=DistributorStatus(row.d_status),
            )
            view = PayoutView(
                payout_id=new_id("po_"),
                distributor_id=user_id,
                amount=quote.amount,
                fee=quote.fee,
                state="REQUESTED",
                requested_at=now,
                payee_kind=payee.kind.value if payee else None,
                payee_reference=payee.masked_reference if payee else None,
            )
            ledger = LedgerBatch(shop_id, now)
            ledger.row(
                "INSERT INTO payouts (shop_id, payout_id, distributor_id, amount, fee, state, requested_at, "
                "payee_kind, payee_reference) VALUES (:shop_id, :payout_id, :distributor_id, :amount, :fee, "
                ":state, :requested_at, :payee_kind, :payee_reference)",
                payout_id=view.payout_id,
                distributor_id=user_id,
                amount=view.amount,
                fee=view.fee,
                state=view.state,
                requested_at=now,
                payee_kind=view.payee_kind,
                payee_reference=view.payee_reference,
            )
            ledger.add(user_id, quote.postings, ref_type="payout", ref_id=view.payout_id)
            ledger.event(
                type=EventType.PAYOUT_REQUESTED,
                aggregate_type="distributor",
                aggregate_id=user_id,
                rule="LG-2",
                payload={"payout_id": view.payout_id, "user_id": user_id, "amount": amount, "fee": view.fee},
            )
            await ledger.flush(s)
            made.append(view)
            return {"payout_id": view.payout_id}

        made: list[PayoutView] = []
        request: dict = {"amount": amount}
        if payee is not None:  # a replay with another method is another request (GB-10); none keeps old keys valid
            request["payee"] = [payee.kind.value, payee.masked_reference]
        r, replayed = await once_or_replay(
            s, shop_id=shop_id, scope=f"payout:{user_id}", key=idempotency_key, request=request, now=now, run=run
        )
        return await _read(s, shop_id, r["payout_id"]) if replayed else made[0]


async def decide_payout(
    svc: Services,
    *,
    shop_id: str,
    payout_id: str,
    approve: bool,
    actor: str,
    external_ref: str | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> PayoutView:
    """LG-2: approve (with the external transfer reference) -> paid out, the fee recorded at request its own
    entry; reject -> all of A back to available, no fee. Deciding the same way twice is a no-op; with
    `idempotency_key` (GB-10) a retry replays the first decision and another request under the key is refused."""
    if approve and not external_ref:
        raise refuse(
            ErrorCode.INVALID_INPUT, "approval needs the external transfer reference", field="externalRef", rule="LG-2"
        )
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            row = (await s.execute(LOAD_FOR_DECISION, {"shop_id": shop_id, "payout_id": payout_id})).first()
            if row is None:
                raise refuse(ErrorCode.NOT_FOUND, "payout not found", field="payoutId")
            payout = _view(row)
            target = "APPROVED" if approve else "REJECTED"
            if payout.state != "REQUESTED":
                if payout.state == target and (not approve or payout.external_ref == external_ref):
                    made.append(payout)
                    return {"payout_id": payout_id}
                raise refuse(
                    ErrorCode.INVALID_STATE, f"payout is already {payout.state}", field="payoutId", rule="LG-2"
                )
            postings = lg.approve_payout(payout.amount, fee=payout.fee) if approve else lg.reject_payout(payout.amount)
            fee = payout.fee if approve else 0  # LG-2: the fee quoted at request; a rejection charges none
            decided = PayoutView(
                **{
                    **payout.__dict__,
                    "state": target,
                    "fee": fee,
                    "decided_at": now,
                    "decided_by": actor,
                    "external_ref": external_ref,
                    "reason": reason,
                }
            )
            ledger = LedgerBatch(shop_id, now)
            ledger.row(
                "UPDATE payouts SET state = :state, fee = :fee, decided_at = :decided_at, "
                "decided_by = :decided_by, external_ref = :external_ref, reason = :reason "
                "WHERE shop_id = :shop_id AND payout_id = :payout_id",
                state=target,
                fee=fee,
                decided_at=now,
                decided_by=actor,
                external_ref=external_ref,
                reason=reason,
                payout_id=payout_id,
            )
            ledger.add(payout.distributor_id, postings, ref_type="payout", ref_id=payout_id)
            ledger.event(
                type=EventType.PAYOUT_APPROVED if approve else EventType.PAYOUT_REJECTED,
                aggregate_type="distributor",
                aggregate_id=payout.distributor_id,
                rule="LG-2",
                payload={
                    "payout_id": payout_id,
                    "user_id": payout.distributor_id,
                    "amount": payout.amount,
                    "fee": fee,
                    "net": payout.amount - fee,
                    "external_ref": external_ref,
                    "reason": reason,
                },
            )
            await ledger.flush(s)
            made.append(decided)
            return {"payout_id": payout_id}

        made: list[PayoutView] = []
        _, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="approve_payout" if approve else "reject_payout",
            key=idempotency_key,
            now=now,
            run=run,
            request={"payout_id": payout_id, "external_ref": external_ref, "reason": reason},
        )
        return await _read(s, shop_id, payout_id) if replayed else made[0]


async def fail_payout(
    svc: Services,
    *,
    shop_id: str,
    payout_id: str,
    actor: str,
    transfer_ref: str,
    reason: str,
    idempotency_key: str | None = None,
) -> PayoutView:
    """LG-4: an APPROVED payout whose transfer failed becomes FAILED, with the transfer reference and the
    reason; its amount returns to available and its fee is reversed by new entries (`lg.fail_payout`), and
    the payout stays in history. Idempotent: marking a FAILED payout failed again with the same transfer
    reference answers it unchanged; another reference, or a payout that is not APPROVED, is INVALID_STATE."""
    if not transfer_ref or not transfer_ref.strip() or len(transfer_ref) > 128:
        raise refuse(
            ErrorCode.INVALID_INPUT,
            "the failed transfer's reference is required (1..128 characters)",
            field="transferRef",
            rule="LG-4",
        )
    if not reason or not reason.strip() or len(reason) > 500:
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required (1..500 characters)", field="reason", rule="LG-4")
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            row = (await s.execute(LOAD_FOR_DECISION, {"shop_id": shop_id, "payout_id": payout_id})).first()
            if row is None:
                raise refuse(ErrorCode.NOT_FOUND, "payout not found", field="payoutId")
            payout = _view(row)
            if payout.state == "FAILED" and payout.failure_ref == transfer_ref:
                made.append(payout)
                return {"payout_id": payout_id}
            if payout.state != "APPROVED":
                raise refuse(
                    ErrorCode.INVALID_STATE,
                    f"payout is {payout.state}: only an approved payout's transfer can fail",
                    field="payoutId",
                    rule="LG-4",
                )
            postings = lg.fail_payout(payout.amount, fee=payout.fee)
            failed = PayoutView(
                **{
                    **payout.__dict__,
                    "state": "FAILED",
                    "failed_at": now,
                    "failed_by": actor,
                    "failure_ref": transfer_ref,
                    "failure_reason": reason,
                }
            )
            ledger = LedgerBatch(shop_id, now)
            ledger.row(
                "UPDATE payouts SET state = 'FAILED', failed_at = :failed_at, failed_by = :failed_by, "
                "failure_ref = :failure_ref, failure_reason = :failure_reason "
                "WHERE shop_id = :shop_id AND payout_id = :payout_id AND state = 'APPROVED'",
                failed_at=now,
                failed_by=actor,
                failure_ref=transfer_ref,
                failure_reason=reason,
                payout_id=payout_id,
            )
            ledger.add(payout.distributor_id, postings, ref_type="payout", ref_id=payout_id)
            ledger.event(
                type=EventType.PAYOUT_FAILED,
                aggregate_type="distributor",
                aggregate_id=payout.distributor_id,
                rule="LG-4",
                payload={
                    "payout_id": payout_id,
                    "user_id": payout.distributor_id,
                    "amount": payout.amount,
                    "fee_reversed": payout.fee,
                    "external_ref": payout.external_ref,
                    "transfer_ref": transfer_ref,
                    "reason": reason,
                    "by": actor,
                },
            )
            await ledger.flush(s)
            made.append(failed)
            return {"payout_id": payout_id}

        made: list[PayoutView] = []
        _, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="fail_payout",
            key=idempotency_key,
            now=now,
            run=run,
            request={"payout_id": payout_id, "transfer_ref": transfer_ref, "reason": reason},
        )
        return await _read(s, shop_id, payout_id) if replayed else made[0]
