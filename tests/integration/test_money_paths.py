"""The money use cases as the engine decides them (issue 10 point 3): payout fees (LG-2), the one
applier of instructions, and the lean paths of reportOrder, refunds, completeOrder and payouts."""

from __future__ import annotations

from engine.distribution import DistributorStatus
from engine.ledger import Bucket, EntryKind, Posting
from service.usecases import distribution, payouts
from service.tx.ledger import LedgerBatch
from service.usecases.shops import update_settings
from service.uow import unit_of_work
from tests.integration.helpers import assert_ledger_consistent


async def seed_available(svc, shop_id: str, user_id: str, amount: int) -> None:
    """A distributor with `amount` available (an upgrade-bonus entry, LV-4), balances = ledger (LG-1)."""
    await distribution.set_status(
        svc, shop_id=shop_id, user_id=user_id, status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
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
    done = await payouts.decide_payout(
        svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
    )
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
    done = await payouts.decide_payout(
        svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-2"
    )
    assert done.fee == 100
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="d2")
    assert (d.paid, d.fees) == (1_900, 100)


# ---------------------------------------------------------------- the lean paths (issue 10 point 2)
async def _paid_order(svc, sid: str, ext: str, buyer: str = "eve", amount: int = 10_000):
    from service.usecases import orders
    from tests.integration.helpers import pay

    o = await orders.report_order(
        svc, shop_id=sid, external_id=ext, buyer_id=buyer, lines=[orders.LineInput("tea", 1, amount)]
    )
    await pay(svc, sid, o.order_id, amount=amount)
    return o


async def test_money_use_cases_load_once_and_write_once_with_no_orm(svc, shop):
    """Each money use case is one statement that loads what the engine needs (under the row lock) and one
    that writes the decision — entries, balances, lines, rows and events together (reportOrder: one in
    all). No ORM flush: every statement is one of those. With commission lines to move, still two."""
    from service.usecases import orders, refunds
    from tests.integration.helpers import recorded_statements

    sid = shop.shop_id
    await update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=60)
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="eve", referrer_id="ref")
    with recorded_statements(svc) as seen:
        o = await orders.report_order(
            svc, shop_id=sid, external_id="lean-1", buyer_id="eve", lines=[orders.LineInput("tea", 1, 10_000)]
        )
    assert len(seen) == 1, seen
    from tests.integration.helpers import pay

    await pay(svc, sid, o.order_id, amount=10_000)
    with recorded_statements(svc) as seen:
        r = await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=2_500, provider_ref="rf-1")
    assert len(seen) == 2, seen
    assert r["refund"].amount == 2_500 and r["refund"].state == "CONFIRMED"  # typed, not re-read
    with recorded_statements(svc) as seen:
        done = await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    assert len(seen) == 2, seen
    assert done.state == "COMPLETED" and done.refunded_amount == 2_500
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="ref")
    assert (d.pending, d.frozen) == (0, 750)  # 10 % of 10,000 = 1,000, a quarter refunded (CM-5), frozen (CM-6)

    await seed_available(svc, sid, "pat", 5_000)
    with recorded_statements(svc) as seen:
        p = await payouts.request_payout(svc, shop_id=sid, user_id="pat", amount=1_000)
    assert len(seen) == 2, seen
    with recorded_statements(svc) as seen:
        p = await payouts.decide_payout(
            svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
        )
    assert len(seen) == 2, seen
    assert (p.state, p.fee, p.decided_by) == ("APPROVED", 6, "fin")

    owed_order = await _paid_order(svc, sid, "lean-2", buyer="bob", amount=3_000)
    async with unit_of_work(svc) as s:  # an owed refund (as a rule decides one, GB-5..GB-9)
        from tests.integration.helpers import find_order
        from service.usecases.refunds import apply_refund

        lb = LedgerBatch(sid, svc.now())
        owed = await apply_refund(
            s,
            lb,
            order=await find_order(s, sid, order_id=owed_order.order_id, lock=True),
            amount=3_000,
            rule="GB-6",
            full=True,
            now=svc.now(),
        )
        await lb.flush(s)
    with recorded_statements(svc) as seen:
        c = await refunds.confirm_refund(svc, shop_id=sid, refund_id=owed.refund_id, provider_ref="prov-1")
    assert len(seen) == 2, seen
    assert (c.state, c.provider_ref) == ("CONFIRMED", "prov-1")
    assert not any(st.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")) for st in seen)
    await assert_ledger_consistent(svc, sid)
