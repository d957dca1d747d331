"""The money use cases as the engine decides them (issue 10 point 3): payout fees (LG-2), the one
applier of instructions, and the lean paths of reportOrder, refunds, completeOrder and payouts."""

from __future__ import annotations

from engine.distribution import DistributorStatus
from engine.ledger import Bucket, EntryKind, Posting
from service import distribution, payouts
from service.ledger import LedgerBatch
from service.shops import update_settings
from service.uow import unit_of_work
from tests.integration.helpers import assert_ledger_consistent


async def seed_available(svc, shop_id: str, user_id: str, amount: int) -> None:
    """A distributor with `amount` available (an upgrade-bonus entry, LV-4), balances = ledger (LG-1)."""
    await distribution.set_status(svc, shop_id=shop_id, user_id=user_id, status=DistributorStatus.ACTIVE,
                                  actor="t", reason="t")
    async with unit_of_work(svc) as s:
        lb = LedgerBatch(shop_id, svc.now())
        lb.add(user_id, [Posting(Bucket.AVAILABLE, amount, EntryKind.UPGRADE_BONUS)], ref_type="test", ref_id="seed")
        await lb.flush(s)


async def test_LG2_approval_charges_the_fee_quoted_at_request_not_the_current_rate(svc, shop):
    """LG-2: the fee is `floor(A × payout_fee_bp / 10000)` at request and is what approval charges: an
    admin raising the rate between request and approval changes no payout already asked for (issue 10: a
    request quoted fee 6 was charged 1,000)."""
    sid = shop.shop_id
    await update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=60)
    await seed_available(svc, sid, "d1", 10_000)
    p = await payouts.request_payout(svc, shop_id=sid, user_id="d1", amount=1_000)
    assert p.fee == 6  # floor(1000 × 60 / 10000)
    await update_settings(svc, shop_id=sid, payout_fee_bp=10_000)  # the admin changes the rate
    done = await payouts.decide_payout(svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin",
                                       external_ref="bank-1")
    assert (done.state, done.fee) == ("APPROVED", 6)
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="d1")
    assert (d.available, d.in_payout, d.paid, d.fees) == (9_000, 0, 994, 6)
    await assert_ledger_consistent(svc, sid)


async def test_LG2_a_fee_lowered_after_request_is_not_charged_lower_either(svc, shop):
    """LG-2: the recorded fee holds both ways — lowering the rate after the request charges the quoted fee."""
    sid = shop.shop_id
    await update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=500)
    await seed_available(svc, sid, "d2", 2_000)
    p = await payouts.request_payout(svc, shop_id=sid, user_id="d2", amount=2_000)
    await update_settings(svc, shop_id=sid, payout_fee_bp=0)
    done = await payouts.decide_payout(svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin",
                                       external_ref="bank-2")
    assert done.fee == 100
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="d2")
    assert (d.paid, d.fees) == (1_900, 100)
