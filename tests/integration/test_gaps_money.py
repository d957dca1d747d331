"""Survivors of the mutation runs over the money modules (payouts, refunds, the ledger applier, settlements,
campaigns, reach, exports, visits; docs/testing.md, "Session 2026-12-02 c"), each killed by a test through the service on a
real PostgreSQL that asserts a whole outcome a caller can see: the stored rows, the entries, the events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import ledger as lg
from engine.errors import ErrorCode, RuleViolation
from service.jobs import worker
from service.usecases import campaigns, groups, orders, payouts, refunds, shops, webhooks
from store.models import LedgerEntry, Order, Payout, Refund, User
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay, raw_row
from tests.integration.test_rules_wired import balances, chain, paid_order

PAYOUT_FIELDS = payouts.PAYOUT_COLUMNS.split(", ")


async def _earned(svc, sid: str, *, fee_bp: int) -> None:
    """ "ref" earns 1,000 available (10 % of a 10,000 order, released at completion)."""
    await shops.update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=fee_bp, freeze_days=0)
    await chain(svc, sid, "ref", "buyer")
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    assert (await _balances(svc, sid, "ref"))["available"] == 1000  # the read applies the due release


async def _stored(svc, sid: str, payout_id: str) -> dict:
    async with svc.sessionmaker() as s:
        row = await s.get(Payout, (sid, payout_id))
    return {c: getattr(row, c) for c in PAYOUT_FIELDS}


async def _entries(svc, sid: str, payout_id: str) -> list[tuple]:
    async with svc.sessionmaker() as s:
        rows = (
            await s.execute(
                select(LedgerEntry)
                .where(LedgerEntry.shop_id == sid, LedgerEntry.ref_id == payout_id)
                .order_by(LedgerEntry.seq)
            )
        ).scalars()
        return [(r.distributor_id, r.bucket, r.amount, r.kind, r.ref_type, r.created_at) for r in rows]


async def _payout_events(svc, sid: str) -> list[tuple]:
    evs = await webhooks.events_since_caught_up(svc, shop_id=sid)
    return [(e.type, e.rule, e.aggregate_type, e.aggregate_id, e.payload) for e in evs if e.type.startswith("payout.")]


async def _balances(svc, sid: str, user: str) -> dict:
    from service.usecases import distribution

    d = await distribution.get_distributor(svc, shop_id=sid, user_id=user)
    return {c: getattr(d, c) for c in ("available", "in_payout", "paid", "fees")}


async def test_lg2_lg4_a_payout_requested_approved_and_failed_through_service(svc, shop):
    """LG-2/LG-4 (service/usecases/payouts.py): a payout of 500 at a 1 % fee, with a payee method, requested,
    approved and its transfer failed: the view each step answers equals the stored row, the balances move as
    the entries say, each step emits its event with its whole payload, and a retry under a key replays."""
    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=100)
    now = svc.now()
    payee = lg.payee_method("BANK_ACCOUNT", "6222 0210 0112 3456")
    p = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=500, idempotency_key="k-req", payee=payee)
    pid = p.payout_id
    requested = dict(
        payout_id=pid,
        distributor_id="ref",
        amount=500,
        fee=5,
        state="REQUESTED",
        requested_at=now,
        decided_at=None,
        decided_by=None,
        external_ref=None,
        reason=None,
        payee_kind="BANK_ACCOUNT",
        payee_reference="****3456",
        failed_at=None,
        failed_by=None,
        failure_ref=None,
        failure_reason=None,
    )
    assert p.__dict__ == requested == await _stored(svc, sid, pid)
    assert await _balances(svc, sid, "ref") == {"available": 500, "in_payout": 500, "paid": 0, "fees": 0}
    # GB-10: the same request under its key replays the first payout (read back), nothing new is written
    again = await payouts.request_payout(
        svc, shop_id=sid, user_id="ref", amount=500, idempotency_key="k-req", payee=payee
    )
    assert again.__dict__ == requested
    with pytest.raises(RuleViolation) as e:  # the key with another payee is another request
        await payouts.request_payout(
            svc,
            shop_id=sid,
            user_id="ref",
            amount=500,
            idempotency_key="k-req",
            payee=lg.payee_method("ALIPAY", "alice@example.com"),
        )
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT

    def approve():  # the same keyed request, sent twice
        return payouts.decide_payout(
            svc,
            shop_id=sid,
            payout_id=pid,
            approve=True,
            actor="fin",
            external_ref="b-1",
            reason="ok",
            idempotency_key="k-app",
        )

    a = await approve()
    approved = {
        **requested,
        "state": "APPROVED",
        "decided_at": now,
        "decided_by": "fin",
        "external_ref": "b-1",
        "reason": "ok",
    }
    assert a.__dict__ == approved == await _stored(svc, sid, pid)
    assert await _balances(svc, sid, "ref") == {"available": 500, "in_payout": 0, "paid": 495, "fees": 5}
    replay = await approve()
    assert replay.__dict__ == approved
    with pytest.raises(RuleViolation) as e:  # the key with another reference is another request
        await payouts.decide_payout(
            svc,
            shop_id=sid,
            payout_id=pid,
            approve=True,
            actor="fin",
            external_ref="b-2",
            reason="ok",
            idempotency_key="k-app",
        )
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT

    f = await payouts.fail_payout(
        svc, shop_id=sid, payout_id=pid, actor="ops", transfer_ref="t-1", reason="bounced", idempotency_key="k-fail"
    )
    failed = {
        **approved,
        "state": "FAILED",
        "failed_at": now,
        "failed_by": "ops",
        "failure_ref": "t-1",
        "failure_reason": "bounced",
    }
    assert f.__dict__ == failed == await _stored(svc, sid, pid)
    assert await _balances(svc, sid, "ref") == {"available": 1000, "in_payout": 0, "paid": 0, "fees": 0}
    for key in ("k-fail", None):  # a replay under the key, and the same failure again without one: unchanged
        same = await payouts.fail_payout(
            svc, shop_id=sid, payout_id=pid, actor="ops", transfer_ref="t-1", reason="bounced", idempotency_key=key
        )
        assert same.__dict__ == failed
    with pytest.raises(RuleViolation) as e:  # the key with another reason is another request
        await payouts.fail_payout(
            svc, shop_id=sid, payout_id=pid, actor="ops", transfer_ref="t-1", reason="other", idempotency_key="k-fail"
        )
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    with pytest.raises(RuleViolation) as e:  # failed again with another transfer reference
        await payouts.fail_payout(svc, shop_id=sid, payout_id=pid, actor="ops", transfer_ref="t-2", reason="again")
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_STATE, "payoutId", "LG-4")

    assert await _entries(svc, sid, pid) == [
        ("ref", "AVAILABLE", -500, "PAYOUT_REQUESTED", "payout", now),
        ("ref", "IN_PAYOUT", 500, "PAYOUT_REQUESTED", "payout", now),
        ("ref", "IN_PAYOUT", -500, "PAYOUT_APPROVED", "payout", now),
        ("ref", "PAID", 495, "PAYOUT_APPROVED", "payout", now),
        ("ref", "FEES", 5, "PAYOUT_FEE", "payout", now),
        ("ref", "PAID", -495, "PAYOUT_FAILED", "payout", now),
        ("ref", "AVAILABLE", 495, "PAYOUT_FAILED", "payout", now),
        ("ref", "FEES", -5, "PAYOUT_FEE_REVERSED", "payout", now),
        ("ref", "AVAILABLE", 5, "PAYOUT_FEE_REVERSED", "payout", now),
    ]
    common = {"payout_id": pid, "user_id": "ref", "amount": 500, "currency": "CNY"}
    assert await _payout_events(svc, sid) == [
        ("payout.requested", "LG-2", "distributor", "ref", {**common, "fee": 5, "rule": "LG-2"}),
        (
            "payout.approved",
            "LG-2",
            "distributor",
            "ref",
            {**common, "fee": 5, "net": 495, "rule": "LG-2", "reason": "ok", "external_ref": "b-1"},
        ),
        (
            "payout.failed",
            "LG-4",
            "distributor",
            "ref",
            {
                **common,
                "by": "ops",
                "rule": "LG-4",
                "reason": "bounced",
                "external_ref": "b-1",
                "fee_reversed": 5,
                "transfer_ref": "t-1",
            },
        ),
    ]
    await assert_ledger_consistent(svc, sid)


async def test_lg2_a_rejected_payout_charges_no_fee_and_replays_through_service(svc, shop):
    """LG-2 (service/usecases/payouts.py `decide_payout`): a rejection returns all of A to available with no fee:
    the stored row has fee 0 and the reason, the event's net is the whole amount; a retry under the key replays
    it; a rejected payout's transfer cannot fail (LG-4: only an approved one)."""
    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=100)
    now = svc.now()
    p = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=400)

    def reject():  # the same keyed request, sent twice
        return payouts.decide_payout(
            svc,
            shop_id=sid,
            payout_id=p.payout_id,
            approve=False,
            actor="fin",
            reason="wrong account",
            idempotency_key="k-rej",
        )

    r = await reject()
    rejected = {
        **p.__dict__,
        "state": "REJECTED",
        "fee": 0,
        "decided_at": now,
        "decided_by": "fin",
        "reason": "wrong account",
    }
    assert r.__dict__ == rejected == await _stored(svc, sid, p.payout_id)
    replay = await reject()
    assert replay.__dict__ == rejected
    assert await _balances(svc, sid, "ref") == {"available": 1000, "in_payout": 0, "paid": 0, "fees": 0}
    assert await _entries(svc, sid, p.payout_id) == [
        ("ref", "AVAILABLE", -400, "PAYOUT_REQUESTED", "payout", now),
        ("ref", "IN_PAYOUT", 400, "PAYOUT_REQUESTED", "payout", now),
        ("ref", "IN_PAYOUT", -400, "PAYOUT_REJECTED", "payout", now),
        ("ref", "AVAILABLE", 400, "PAYOUT_REJECTED", "payout", now),
    ]
    evs = await _payout_events(svc, sid)
    assert evs[-1] == (
        "payout.rejected",
        "LG-2",
        "distributor",
        "ref",
        {
            "payout_id": p.payout_id,
            "user_id": "ref",
            "amount": 400,
            "fee": 0,
            "net": 400,
            "external_ref": None,
            "reason": "wrong account",
            "rule": "LG-2",
            "currency": "CNY",
        },
    )
    with pytest.raises(RuleViolation) as e:
        await payouts.fail_payout(
            svc, shop_id=sid, payout_id=p.payout_id, actor="ops", transfer_ref="t-1", reason="bounced"
        )
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_STATE, "payoutId", "LG-4")


async def test_lg2_an_approval_without_the_transfer_reference_is_invalid_input_through_service(svc, shop):
    """LG-2 (service/usecases/payouts.py `decide_payout`): approving needs the external transfer reference: none
    (or an empty one) is INVALID_INPUT on `externalRef`, and the payout stays REQUESTED with its money in payout."""
    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=0)
    p = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=400)
    for ref in (None, ""):
        with pytest.raises(RuleViolation) as e:
            await payouts.decide_payout(
                svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin", external_ref=ref
            )
        assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "externalRef", "LG-2")
    assert await _stored(svc, sid, p.payout_id) == p.__dict__
    assert await _balances(svc, sid, "ref") == {"available": 600, "in_payout": 400, "paid": 0, "fees": 0}


async def test_lg2_only_a_distributor_with_a_balance_requests_a_payout_through_service(svc, shop):
    """LG-2 (service/usecases/payouts.py `request_payout`): a user who is no distributor has no balance to pay
    out: NOT_A_DISTRIBUTOR on `userId`, and no payout row is written."""
    sid = shop.shop_id
    with pytest.raises(RuleViolation) as e:
        await payouts.request_payout(svc, shop_id=sid, user_id="nobody", amount=500)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.NOT_A_DISTRIBUTOR, "userId", "LG-2")
    async with svc.sessionmaker() as s:
        assert (await s.execute(select(Payout).where(Payout.shop_id == sid))).first() is None


async def _refund_rows(svc, sid: str) -> list[tuple]:
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(Refund).where(Refund.shop_id == sid).order_by(Refund.created_at))).scalars()
        return [_refund_tuple(r) for r in rows]


def _refund_tuple(r) -> tuple:
    return (r.refund_id, r.order_id, r.amount, r.rule, r.full, r.state, r.provider_ref, r.created_at, r.confirmed_at)


async def _refund_events(svc, sid: str) -> list[tuple]:
    evs = await webhooks.events_since_caught_up(svc, shop_id=sid)
    return [(e.type, e.rule, e.aggregate_type, e.aggregate_id, e.payload) for e in evs if e.type.startswith("refund.")]


async def test_or2_rp3_cm5_a_refund_in_two_parts_through_service(svc, shop):
    """OR-2/RP-3/CM-5 (service/usecases/refunds.py `apply_refund`, from `orders.refund_order`): 4,000 then 6,000
    of a 10,000 order: each refund is stored as answered (CONFIRMED with the provider's reference), the order's
    refunded amount and the buyer's net spend follow, the last part takes the paid order off the buyer's count
    (full), the referrer's pending commission is clawed back in step, and each emits `refund.recorded`."""
    sid = shop.shop_id
    await chain(svc, sid, "ref", "buyer")
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    now = svc.now()
    assert await balances(svc, sid, "ref") == (1000, 0, 0)
    r1 = (await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=4_000, provider_ref="rf-1"))["refund"]
    first = (r1.refund_id, o.order_id, 4_000, "OR-2", False, "CONFIRMED", "rf-1", now, now)
    assert _refund_tuple(r1) == first
    assert await _refund_rows(svc, sid) == [first]
    u, od = await raw_row(svc, User, sid, "buyer"), await raw_row(svc, Order, sid, o.order_id)
    assert (u.paid_orders, u.net_spend, od.paid_amount, od.refunded_amount) == (1, 6_000, 10_000, 4_000)
    assert await balances(svc, sid, "ref") == (600, 0, 0)
    svc.clock.advance(timedelta(minutes=5))
    later = svc.now()
    r2 = (await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=6_000, provider_ref="rf-2"))["refund"]
    second = (r2.refund_id, o.order_id, 6_000, "OR-2", True, "CONFIRMED", "rf-2", later, later)
    assert _refund_tuple(r2) == second
    assert await _refund_rows(svc, sid) == [first, second]
    u, od = await raw_row(svc, User, sid, "buyer"), await raw_row(svc, Order, sid, o.order_id)
    assert (u.paid_orders, u.net_spend, od.paid_amount, od.refunded_amount) == (0, 0, 10_000, 10_000)
    assert await balances(svc, sid, "ref") == (0, 0, 0)
    base = {"order_id": o.order_id, "rule": "OR-2", "reason": "OR-2", "currency": "CNY"}
    assert await _refund_events(svc, sid) == [
        (
            "refund.recorded",
            "OR-2",
            "order",
            o.order_id,
            {**base, "refund_id": r1.refund_id, "amount": 4_000, "full": False},
        ),
        (
            "refund.recorded",
            "OR-2",
            "order",
            o.order_id,
            {**base, "refund_id": r2.refund_id, "amount": 6_000, "full": True},
        ),
    ]
    await assert_ledger_consistent(svc, sid)


async def test_gb6_gb10_an_owed_group_refund_confirmed_once_through_service(svc, shop):
    """GB-6/GB-10 (service/usecases/refunds.py `apply_refund`, `confirm_refund`, `list_refunds`): a failed group
    owes its leader 8,000 (OWED, `refund.owed` on the group); the backend confirms it with its reference: the
    answer is the stored row, `refund.confirmed` is emitted once; a retry (under the key, or by the same
    reference) answers it unchanged; another reference, or one that already confirms another refund, is
    IDEMPOTENCY_CONFLICT; an unknown refund NOT_FOUND; no reference INVALID_INPUT."""
    sid = shop.shop_id
    plain = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 5_000))
    await orders.refund_order(svc, shop_id=sid, order_id=plain.order_id, amount=1_000, provider_ref="rf-taken")
    c = await make_campaign(svc, sid, duration=timedelta(hours=1))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    svc.clock.advance(timedelta(hours=1))
    owed_at = svc.now()
    await worker.run_due(svc, shop_id=sid)
    [ow] = await refunds.list_refunds(svc, shop_id=sid)
    rid = ow.refund_id
    owed = (rid, lead.order_id, 8_000, "GB-6", True, "OWED", None, owed_at, None)
    assert _refund_tuple(ow) == owed
    with pytest.raises(RuleViolation) as e:  # a reference that confirms another refund: nothing written
        await refunds.confirm_refund(svc, shop_id=sid, refund_id=rid, provider_ref="rf-taken")
    why = "provider reference already confirms another refund"
    assert (e.value.code, str(e.value), e.value.field) == (ErrorCode.IDEMPOTENCY_CONFLICT, why, "providerRef")
    assert [_refund_tuple(r) for r in await refunds.list_refunds(svc, shop_id=sid)] == [owed]
    svc.clock.advance(timedelta(minutes=30))
    at = svc.now()
    confirmed = (rid, lead.order_id, 8_000, "GB-6", True, "CONFIRMED", "rf-3", owed_at, at)
    cf = await refunds.confirm_refund(svc, shop_id=sid, refund_id=rid, provider_ref="rf-3", idempotency_key="k")
    assert _refund_tuple(cf) == confirmed
    for key in ("k", None):
        again = await refunds.confirm_refund(svc, shop_id=sid, refund_id=rid, provider_ref="rf-3", idempotency_key=key)
        assert _refund_tuple(again) == confirmed
    for ref, key, why in (
        ("rf-4", None, "refund already confirmed with another reference"),  # said before any write is tried
        ("rf-4", "k", None),
        ("rf-taken", None, None),
    ):
        with pytest.raises(RuleViolation) as e:
            await refunds.confirm_refund(svc, shop_id=sid, refund_id=rid, provider_ref=ref, idempotency_key=key)
        assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT, (ref, key)
        assert why is None or (str(e.value), e.value.field, e.value.rule) == (why, "providerRef", "GB-10")
    with pytest.raises(RuleViolation) as e:
        await refunds.confirm_refund(svc, shop_id=sid, refund_id="rf_nope", provider_ref="rf-5")
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "refundId")
    with pytest.raises(RuleViolation) as e:
        await refunds.confirm_refund(svc, shop_id=sid, refund_id=rid, provider_ref="")
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "providerRef")
    rows = await _refund_rows(svc, sid)
    assert rows[1:] == [confirmed] and await refunds.list_refunds(svc, shop_id=sid) == []
    events = [e for e in await _refund_events(svc, sid) if e[1] != "OR-2"]
    assert events == [
        (
            "refund.owed",
            "GB-6",
            "group",
            lead.group_id,
            {
                "refund_id": rid,
                "order_id": lead.order_id,
                "amount": 8_000,
                "full": True,
                "reason": "GB-6",
                "rule": "GB-6",
                "currency": "CNY",
            },
        ),
        (
            "refund.confirmed",
            "GB-10",
            "order",
            lead.order_id,
            {
                "refund_id": rid,
                "order_id": lead.order_id,
                "amount": 8_000,
                "provider_ref": "rf-3",
                "rule": "GB-10",
                "currency": "CNY",
            },
        ),
    ]


async def test_gb10_list_refunds_filters_by_state_rule_order_and_pages_through_service(svc, shop):
    """GB-10 (service/usecases/refunds.py `list_refunds`): OWED by default; no state lists all; `rule` and
    `order_id` narrow; the list is in (created_at, refund_id) order and `after`/`limit` page through it."""
    sid = shop.shop_id
    a = await paid_order(svc, sid, "a", orders.LineInput("x", 1, 5_000))
    b = await paid_order(svc, sid, "b", orders.LineInput("x", 1, 5_000))
    await orders.refund_order(svc, shop_id=sid, order_id=a.order_id, amount=1_000, provider_ref="rf-a")
    svc.clock.advance(timedelta(minutes=1))
    await orders.refund_order(svc, shop_id=sid, order_id=b.order_id, amount=2_000, provider_ref="rf-b")
    svc.clock.advance(timedelta(minutes=1))
    await orders.refund_order(svc, shop_id=sid, order_id=a.order_id, amount=500, provider_ref="rf-a2")
    c = await make_campaign(svc, sid, duration=timedelta(hours=1))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    svc.clock.advance(timedelta(hours=1))
    await worker.run_due(svc, shop_id=sid)

    async def listed(**kw):
        return [(r.order_id, r.amount) for r in await refunds.list_refunds(svc, shop_id=sid, **kw)]

    assert await listed() == [(lead.order_id, 8_000)]
    every = [(a.order_id, 1_000), (b.order_id, 2_000), (a.order_id, 500), (lead.order_id, 8_000)]
    assert await listed(state=None) == every
    assert await listed(state="CONFIRMED") == every[:3]
    assert await listed(state=None, rule="GB-6") == every[3:]
    assert await listed(state=None, rule="OR-2", order_id=a.order_id) == [every[0], every[2]]
    rows = await refunds.list_refunds(svc, shop_id=sid, state=None, limit=2)
    assert [(r.order_id, r.amount) for r in rows] == every[:2]
    after = (rows[-1].created_at, rows[-1].refund_id)
    assert await listed(state=None, after=after) == every[2:]


def _campaign_args(svc, **kw) -> dict:
    now = svc.now()
    args = dict(
        product_ref="sku-9",
        title="Oolong",
        list_price=12_000,
        tiers=[(2, 10_000), (4, 9_000)],
        duration=timedelta(hours=6),
        payment_window=timedelta(minutes=20),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        leader_discount=500,
        leader_commission_bp=700,
        stock=40,
        per_user_limit=3,
        max_quantity_per_order=2,
        new_members_only=True,
        fill_at_expiry=1,
        lottery_winners=1,
        variants=[("large", [(2, 11_000)], 3)],
        commission_enabled=False,
        category="tea",
        almost_full_at=2,
        expiring_soon_before=timedelta(minutes=45),
    )
    return {**args, **kw}


CAMPAIGN_COLUMNS = (
    "shop_id campaign_id product_ref title category list_price tiers variants leader_discount leader_commission_bp "
    "duration_s payment_window_s starts_at ends_at stock stock_left per_user_limit max_quantity_per_order "
    "new_members_only fill_at_expiry lottery_winners lottery_seed commission_enabled created_at almost_full_at "
    "expiring_soon_before_s"
).split()


def _campaign_dict(row) -> dict:
    return {c: getattr(row, c) for c in CAMPAIGN_COLUMNS}


async def test_section2_gb10_gb15_a_campaign_is_stored_with_every_field_and_replays_through_service(svc, shop):
    """Section 2/GB-10/GB-15 (service/usecases/campaigns.py `create_campaign`): every field given is the stored
    row's (none left at its default), the answer is that row; a retry under the key answers the same campaign,
    another input under it (GB-15's fields included) is IDEMPOTENCY_CONFLICT; `list_campaigns` lists it."""
    sid = shop.shop_id
    args = _campaign_args(svc)
    c = await campaigns.create_campaign(svc, shop_id=sid, idempotency_key="k-c", **args)
    now = svc.now()
    stored = await campaigns.get_campaign(svc, shop_id=sid, campaign_id=c.campaign_id)
    expected = {
        "shop_id": sid,
        "campaign_id": c.campaign_id,
        "product_ref": "sku-9",
        "title": "Oolong",
        "category": "tea",
        "list_price": 12_000,
        "tiers": [[2, 10_000], [4, 9_000]],
        "variants": [{"name": "large", "tiers": [[2, 11_000]], "weight": 3}],
        "leader_discount": 500,
        "leader_commission_bp": 700,
        "duration_s": 6 * 3600,
        "payment_window_s": 20 * 60,
        "starts_at": args["starts_at"],
        "ends_at": args["ends_at"],
        "stock": 40,
        "stock_left": 40,
        "per_user_limit": 3,
        "max_quantity_per_order": 2,
        "new_members_only": True,
        "fill_at_expiry": 1,
        "lottery_winners": 1,
        "lottery_seed": stored.lottery_seed,
        "commission_enabled": False,
        "created_at": now,
        "almost_full_at": 2,
        "expiring_soon_before_s": 45 * 60,
    }
    assert _campaign_dict(stored) == expected == _campaign_dict(c)
    assert len(stored.lottery_seed) == 32
    again = await campaigns.create_campaign(svc, shop_id=sid, idempotency_key="k-c", **args)
    assert _campaign_dict(again) == expected
    for other in ({"almost_full_at": 3}, {"expiring_soon_before": timedelta(minutes=30)}, {"stock": 41}):
        with pytest.raises(RuleViolation) as e:
            await campaigns.create_campaign(svc, shop_id=sid, idempotency_key="k-c", **{**args, **other})
        assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT, other
    assert [x.campaign_id for x in await campaigns.list_campaigns(svc, shop_id=sid)] == [c.campaign_id]


async def test_section2_a_campaign_without_a_category_takes_its_products_through_service(svc, shop):
    """Section 2/OR-3 (service/usecases/campaigns.py `create_campaign`): no category given: the product's, if
    the product is known, else none; the defaults are stored as such (GB-15: 1 seat, 1 hour)."""
    sid = shop.shop_id
    await shops.upsert_product(svc, shop_id=sid, product_ref="sku-9", title="Oolong", category="tea")
    known = await make_campaign(svc, sid, product_ref="sku-9")
    svc.clock.advance(timedelta(seconds=1))  # listed in created_at order
    unknown = await make_campaign(svc, sid, product_ref="sku-x")
    assert (known.category, unknown.category) == ("tea", "")
    row = await campaigns.get_campaign(svc, shop_id=sid, campaign_id=unknown.campaign_id)
    assert (row.almost_full_at, row.expiring_soon_before_s, row.new_members_only, row.commission_enabled) == (
        1,
        3600,
        False,
        True,
    )
    assert [x.campaign_id for x in await campaigns.list_campaigns(svc, shop_id=sid)] == [
        known.campaign_id,
        unknown.campaign_id,
    ]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"leader_discount": -1}, "leader_discount"),
        ({"leader_commission_bp": 10_001}, "leader_commission_bp"),
        ({"duration": timedelta(0)}, "duration"),
        ({"payment_window": timedelta(0)}, "payment_window"),
        ({"ends_at": None}, "ends_at"),
        ({"stock": -1}, "stock"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"max_quantity_per_order": 0}, "max_quantity_per_order"),
        ({"fill_at_expiry": 2}, "fill_at_expiry"),
        ({"lottery_winners": 2}, "lottery_winners"),
        ({"almost_full_at": -1}, "almost_full_at"),
        ({"expiring_soon_before": timedelta(seconds=-1)}, "expiring_soon_before"),
        ({"variants": [("", [(2, 11_000)], 1)]}, "variants[0].name"),
        ({"list_price": -1}, "list_price"),
        ({"tiers": []}, "tiers"),
        ({"product_ref": ""}, "productRef"),
    ],
)
async def test_section2_each_campaign_field_is_validated_through_service(svc, shop, bad, field):
    """Section 2 (service/usecases/campaigns.py `create_campaign`): each field reaches the engine's validation:
    a value out of bounds is INVALID_INPUT naming it, and no campaign is stored."""
    if bad.get("ends_at", 0) is None:
        bad = {"ends_at": svc.now() - timedelta(hours=2)}  # before starts_at
    with pytest.raises(RuleViolation) as e:
        await campaigns.create_campaign(svc, shop_id=shop.shop_id, **_campaign_args(svc, **bad))
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, field)
    assert await campaigns.list_campaigns(svc, shop_id=shop.shop_id) == []


async def test_section2_gb10_end_campaign_ends_it_now_once_through_service(svc, shop):
    """Section 2/GB-10 (service/usecases/campaigns.py `end_campaign`): a running campaign ends now; one that has
    not started ends at its start; ending it again (or a retry under the key) changes nothing; an unknown one
    is NOT_FOUND."""
    sid = shop.shop_id
    now = svc.now()
    running = await make_campaign(svc, sid)
    later = await make_campaign(svc, sid, starts_at=now + timedelta(hours=2), ends_at=now + timedelta(days=1))
    ended = await campaigns.end_campaign(svc, shop_id=sid, campaign_id=running.campaign_id, idempotency_key="k-e")
    assert ended.ends_at == now
    assert (await campaigns.get_campaign(svc, shop_id=sid, campaign_id=running.campaign_id)).ends_at == now
    svc.clock.advance(timedelta(minutes=10))
    again = await campaigns.end_campaign(svc, shop_id=sid, campaign_id=running.campaign_id, idempotency_key="k-e")
    assert again.ends_at == now
    again = await campaigns.end_campaign(svc, shop_id=sid, campaign_id=running.campaign_id)
    assert again.ends_at == now
    early = await campaigns.end_campaign(svc, shop_id=sid, campaign_id=later.campaign_id)
    assert early.ends_at == now + timedelta(hours=2)
    with pytest.raises(RuleViolation) as e:
        await campaigns.end_campaign(svc, shop_id=sid, campaign_id="cmp_nope")
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "campaignId")
    with pytest.raises(RuleViolation) as e:  # the key with another campaign is another request
        await campaigns.end_campaign(svc, shop_id=sid, campaign_id=later.campaign_id, idempotency_key="k-e")
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT


async def _visits(svc, sid: str) -> list[tuple]:
    from store.models import Visit

    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(Visit).where(Visit.shop_id == sid).order_by(Visit.at, Visit.visit_id))).scalars()
        return [(r.visit_id, r.distributor_id, r.campaign_id, r.product_ref, r.visitor_id, r.at) for r in rows]


async def test_rp6_gb10_a_visit_is_stored_as_given_and_replays_under_its_key_through_service(svc, shop):
    """RP-6/GB-10 (service/usecases/visits.py `record_visit`): a visit of a distributor's code (any case, padded)
    is stored with its campaign, product and visitor; under a key its id is derived from the key, a retry is
    the same visit (`replayed`, recorded at the first time), another visit under the key IDEMPOTENCY_CONFLICT;
    without a key each call is one more visit."""
    from service.usecases import distribution, visits

    sid = shop.shop_id
    await chain(svc, sid, "ref", "buyer")
    code = (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).invite_code
    c = await make_campaign(svc, sid)
    lim = visits.VisitLimiter()
    first_at = svc.now()
    v = await visits.record_visit(
        svc,
        shop_id=sid,
        invite_code=f" {code.lower()} ",
        visitor_id="visitor-1",
        campaign_id=c.campaign_id,
        product_ref="sku-1",
        idempotency_key="k-v",
        limiter=lim,
    )
    assert v.visit_id.startswith("vis_") and len(v.visit_id) == 44 and (v.recorded_at, v.replayed) == (first_at, False)
    svc.clock.advance(timedelta(minutes=1))
    again = await visits.record_visit(
        svc,
        shop_id=sid,
        invite_code=code,
        visitor_id="visitor-1",
        campaign_id=c.campaign_id,
        product_ref="sku-1",
        idempotency_key="k-v",
        limiter=lim,
    )
    assert again == visits.VisitResult(visit_id=v.visit_id, recorded_at=first_at, replayed=True)
    for other in ({"product_ref": "sku-2"}, {"campaign_id": None}, {"visitor_id": "visitor-2"}):
        args = dict(campaign_id=c.campaign_id, product_ref="sku-1", visitor_id="visitor-1") | other
        with pytest.raises(RuleViolation) as e:
            await visits.record_visit(svc, shop_id=sid, invite_code=code, idempotency_key="k-v", limiter=lim, **args)
        assert (e.value.code, e.value.field) == (ErrorCode.IDEMPOTENCY_CONFLICT, "idempotencyKey"), other
    plain = await visits.record_visit(svc, shop_id=sid, invite_code=code, visitor_id="visitor-1", limiter=lim)
    assert plain.visit_id != v.visit_id and (plain.recorded_at, plain.replayed) == (svc.now(), False)
    assert await _visits(svc, sid) == [
        (v.visit_id, "ref", c.campaign_id, "sku-1", "visitor-1", first_at),
        (plain.visit_id, "ref", None, None, "visitor-1", svc.now()),
    ]


@pytest.mark.parametrize(
    "kw, code, field",
    [
        ({"visitor_id": "short"}, ErrorCode.INVALID_INPUT, "visitorId"),
        ({"visitor_id": "v" * 65}, ErrorCode.INVALID_INPUT, "visitorId"),
        ({"visitor_id": "visitor 1"}, ErrorCode.INVALID_INPUT, "visitorId"),
        ({"invite_code": "   "}, ErrorCode.INVALID_INVITE_CODE, "inviteCode"),
        ({"invite_code": "c" * 33}, ErrorCode.INVALID_INVITE_CODE, "inviteCode"),
        ({"invite_code": "NOPE1234"}, ErrorCode.INVALID_INVITE_CODE, "inviteCode"),
        ({"idempotency_key": ""}, ErrorCode.INVALID_INPUT, "idempotencyKey"),
        ({"idempotency_key": "k" * 201}, ErrorCode.INVALID_INPUT, "idempotencyKey"),
    ],
)
async def test_rp6_a_visit_out_of_bounds_records_nothing_through_service(svc, shop, kw, code, field):
    """RP-6 (service/usecases/visits.py `record_visit`): a visitor id of 8..64 of [A-Za-z0-9_.:-], an invite code
    of 1..32 that a distributor has, a key of 1..200: otherwise refused on that field, and no visit is stored;
    the bounds themselves pass (64, 32 and 200 characters)."""
    from service.usecases import distribution, visits

    sid = shop.shop_id
    await chain(svc, sid, "ref", "buyer")
    real = (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).invite_code
    args = {"invite_code": real, "visitor_id": "visitor-1", **kw}
    with pytest.raises(RuleViolation) as e:
        await visits.record_visit(svc, shop_id=sid, limiter=visits.VisitLimiter(), **args)
    assert (e.value.code, e.value.field) == (code, field)
    assert await _visits(svc, sid) == []
    ok = await visits.record_visit(
        svc,
        shop_id=sid,
        invite_code=real,
        visitor_id="v" * 64,
        idempotency_key="k" * 200,
        limiter=visits.VisitLimiter(),
    )
    assert not ok.replayed and len(await _visits(svc, sid)) == 1


async def test_rp6_visits_over_the_visitor_and_shop_bounds_are_rate_limited_through_service(svc, shop):
    """RP-6 (service/usecases/visits.py `VisitLimiter`, `record_visit`): a visitor has a burst of 10 visits, then
    RATE_LIMITED on `visitorId` (nothing stored); another visitor is unaffected; after a minute's refill of 30
    the visitor may visit again. The shop's own bucket (burst 600) bounds all its visitors together."""
    from service.usecases import distribution, visits

    sid = shop.shop_id
    await chain(svc, sid, "ref", "buyer")
    code = (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).invite_code
    lim = visits.VisitLimiter()
    for _ in range(10):
        await visits.record_visit(svc, shop_id=sid, invite_code=code, visitor_id="visitor-1", limiter=lim)
    with pytest.raises(RuleViolation) as e:
        await visits.record_visit(svc, shop_id=sid, invite_code=code, visitor_id="visitor-1", limiter=lim)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.RATE_LIMITED, "visitorId", "RP-6")
    await visits.record_visit(svc, shop_id=sid, invite_code=code, visitor_id="visitor-2", limiter=lim)
    assert len(await _visits(svc, sid)) == 11
    svc.clock.advance(timedelta(minutes=1))
    await visits.record_visit(svc, shop_id=sid, invite_code=code, visitor_id="visitor-1", limiter=lim)
    now = svc.now()
    # a minute refilled the shop's bucket to its burst of 600, and visitor-1 took one
    assert all(lim.allow(sid, f"other-{i:04d}", now) for i in range(599))
    assert not lim.allow(sid, "other-last", now)
    assert lim.allow("another-shop", "other-last", now)


async def test_rp5_rp6_downline_leaderboard_and_funnel_of_one_history_through_service(svc, shop):
    """RP-5/RP-6 (service/reads/reach.py): ref ← a ← b and ref ← c (bound a minute later); a pays 10,000 and
    3,000, b 5,000 and 2,000 refunded in full; x has two direct referrals and no sales; three visits of ref's
    code. The downline pages (newest binding first, paged, the period bounding the orders), the leaderboard by
    each figure (competition ranks, ties broken by the other figures, `limit`), and the funnels, whole."""
    from engine import funnel as fn
    from engine import leaderboard as lb
    from service.reads import reach
    from service.usecases import distribution, visits

    sid = shop.shop_id
    t0 = svc.now()
    f, t = t0 - timedelta(days=1), t0 + timedelta(days=1)
    await chain(svc, sid, "ref", "a", "b")
    await chain(svc, sid, "x", "x1")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="x2", referrer_id="x")
    svc.clock.advance(timedelta(minutes=1))
    t1 = svc.now()
    await distribution.bind_referrer(svc, shop_id=sid, user_id="c", referrer_id="ref")
    await paid_order(svc, sid, "a", orders.LineInput("x", 1, 10_000))
    await paid_order(svc, sid, "a", orders.LineInput("x", 1, 3_000))
    await paid_order(svc, sid, "b", orders.LineInput("x", 1, 5_000))
    o = await paid_order(svc, sid, "b", orders.LineInput("x", 1, 2_000))
    await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=2_000, provider_ref="rf-b")
    code = {u: (await distribution.get_distributor(svc, shop_id=sid, user_id=u)).invite_code for u in ("ref", "a", "x")}
    lim = visits.VisitLimiter()
    for v in ("visitor-1", "visitor-1", "visitor-2"):
        await visits.record_visit(svc, shop_id=sid, invite_code=code["ref"], visitor_id=v, limiter=lim)

    def page(**kw):
        args = dict(shop_id=sid, user_id="ref", level=1, period_from=f, period_to=t, limit=10, offset=0) | kw
        return reach.downline_page(svc, **args)

    member = reach.DownlineMember
    a = member("a", 1, t0, 2, 13_000)
    assert await page() == ([member("c", 1, t1, 0, 0), a], 2)
    assert await page(limit=1, offset=1) == ([a], 2)
    assert await page(level=2) == ([member("b", 2, t0, 1, 5_000)], 1)
    assert await page(period_from=t1 + timedelta(seconds=1)) == (
        [member("c", 1, t1, 0, 0), member("a", 1, t0, 0, 0)],
        2,
    )
    for bad, field in (({"level": 3}, "level"), ({"period_to": f}, "periodTo")):
        with pytest.raises(RuleViolation) as e:
            await page(**bad)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, field)

    ref, a_, x = lb.Standing("ref", 1_550, 18_000, 2), lb.Standing("a", 500, 5_000, 1), lb.Standing("x", 0, 0, 2)

    async def board(by, limit=10, **kw):
        rows = await reach.leaderboard(svc, shop_id=sid, period_from=f, period_to=t, by=by, limit=limit, **kw)
        return [(r.rank, r.invite_code, r.standing) for r in rows]

    assert await board(lb.RankBy.COMMISSION_EARNED) == [(1, code["ref"], ref), (2, code["a"], a_), (3, code["x"], x)]
    assert await board(lb.RankBy.TEAM_SALES, limit=2) == [(1, code["ref"], ref), (2, code["a"], a_)]
    assert await board(lb.RankBy.NEW_DIRECT_REFERRALS) == [(1, code["ref"], ref), (1, code["x"], x), (3, code["a"], a_)]
    for limit in (0, 101):
        with pytest.raises(RuleViolation) as e:
            await board(lb.RankBy.TEAM_SALES, limit=limit)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "first")
    assert len(await board(lb.RankBy.TEAM_SALES, limit=100)) == 3

    async def funnel(subject, subject_id, **kw):
        args = dict(shop_id=sid, subject=subject, subject_id=subject_id, period_from=f, period_to=t) | kw
        return await reach.funnel(svc, **args)

    assert await funnel("distributor", "ref") == fn.Funnel(
        visits=3, visitors=2, bindings=2, first_orders=1, repeat_buyers=1
    )
    assert await funnel("distributor", "a") == fn.Funnel(
        visits=0, visitors=0, bindings=1, first_orders=1, repeat_buyers=0
    )
    assert await funnel("distributor", "ref", period_from=t1 + timedelta(seconds=1)) == fn.Funnel(0, 0, 0, 0, 0)
    with pytest.raises(RuleViolation) as e:
        await funnel("distributor", "ref", period_to=f)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "periodTo", "RP-6")


async def test_lg3_gb10_close_period_refusals_replays_and_its_event_through_service(svc, shop):
    """LG-3/GB-10 (service/usecases/settlements.py `close_period`): a period that does not end after it starts
    is INVALID_INPUT on `to`; an unknown shop NOT_FOUND; a batch closes under the id given, its header as
    computed, and emits `settlement.closed` with its closing; a retry under the key answers it, another period
    under the key is IDEMPOTENCY_CONFLICT; the same start with another end is PERIOD_OVERLAP on `to`; the
    batches are listed in period order and their lines stream in distributor order, in chunks."""
    from datetime import date, datetime, timezone

    from service.usecases import settlements

    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=0)
    await chain(svc, sid, "abe", "buyer2")
    o = await paid_order(svc, sid, "buyer2", orders.LineInput("x", 1, 20_000))
    await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    assert (await _balances(svc, sid, "abe"))["available"] == 2000
    svc.clock.set(datetime(2026, 2, 1, 0, 5, tzinfo=timezone.utc))
    jan, feb = (date(2026, 1, 1), date(2026, 2, 1)), (date(2026, 2, 1), date(2026, 3, 1))
    for day_from, day_to in ((jan[1], jan[0]), (jan[0], jan[0])):
        with pytest.raises(RuleViolation) as e:
            await settlements.close_period(svc, shop_id=sid, day_from=day_from, day_to=day_to, actor="fin")
        assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "to", "LG-3")
    with pytest.raises(RuleViolation) as e:
        await settlements.close_period(svc, shop_id="no-such-shop", day_from=jan[0], day_to=jan[1], actor="fin")
    assert e.value.code == ErrorCode.NOT_FOUND
    b = await settlements.close_period(
        svc, shop_id=sid, day_from=jan[0], day_to=jan[1], actor="fin", settlement_id="st_jan", idempotency_key="k-s"
    )
    assert (b.settlement_id, b.closed_by, b.closed_at, b.local_from, b.local_to, b.currency) == (
        "st_jan",
        "fin",
        svc.now(),
        "2026-01-01",
        "2026-02-01",
        "CNY",
    )
    assert (b.distributors, b.released, b.closing) == (2, 3000, 3000)
    again = await settlements.close_period(
        svc, shop_id=sid, day_from=jan[0], day_to=jan[1], actor="fin", idempotency_key="k-s"
    )
    assert again.settlement_id == "st_jan"
    svc.clock.set(datetime(2026, 3, 1, 0, 5, tzinfo=timezone.utc))
    with pytest.raises(RuleViolation) as e:
        await settlements.close_period(
            svc, shop_id=sid, day_from=feb[0], day_to=feb[1], actor="fin", idempotency_key="k-s"
        )
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    with pytest.raises(RuleViolation) as e:
        await settlements.close_period(svc, shop_id=sid, day_from=jan[0], day_to=date(2026, 2, 2), actor="fin")
    assert (e.value.code, e.value.field) == (ErrorCode.PERIOD_OVERLAP, "to")
    nxt = await settlements.close_period(svc, shop_id=sid, day_from=feb[0], day_to=feb[1], actor="fin")
    assert [x.settlement_id for x in await settlements.list_settlements(svc, shop_id=sid)] == [
        "st_jan",
        nxt.settlement_id,
    ]
    assert (await settlements.get_settlement(svc, shop_id=sid, settlement_id="st_jan")).closing == 3000
    parts = [
        [(ln.distributor_id, ln.closing) for ln in part]
        async for part in settlements.stream_lines(svc, shop_id=sid, settlement_id="st_jan", chunk=1)
    ]
    assert parts == [[("abe", 2000)], [("ref", 1000)]]
    closed = [e for e in await webhooks.events_since_caught_up(svc, shop_id=sid) if e.type == "settlement.closed"]
    assert [(e.rule, e.aggregate_type, e.aggregate_id, e.payload) for e in closed][0] == (
        "LG-3",
        "settlement",
        "st_jan",
        {
            "settlement_id": "st_jan",
            "from": "2026-01-01",
            "to": "2026-02-01",
            "closing": 3000,
            "currency": "CNY",
            "rule": "LG-3",
        },
    )


async def test_lg3_exports_report_progress_per_line_and_refuse_an_unknown_batch_through_service(svc, shop):
    """LG-3 (service/reads/exports.py `csv_chunks`, `xlsx_file`): both exports call `progress` with the lines
    of each chunk they wrote (here one chunk of 1: ref), and an unknown batch is a LookupError before anything is
    written (no temporary file left behind)."""
    import glob
    import tempfile
    from datetime import date, datetime, timezone
    from pathlib import Path

    from service.reads import exports
    from service.usecases import settlements

    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=0)
    svc.clock.set(datetime(2026, 2, 1, 0, 5, tzinfo=timezone.utc))
    b = await settlements.close_period(svc, shop_id=sid, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="f")
    seen: list[int] = []
    body = b"".join(
        [c async for c in exports.csv_chunks(svc, shop_id=sid, settlement_id=b.settlement_id, progress=seen.append)]
    )
    assert seen == [1] and body.decode().splitlines()[-2:] == [
        "ref,0.00,0,10.00,1000,0.00,0,0.00,0,0.00,0,0.00,0,0.00,0,10.00,1000,0.00,0",
        "TOTAL,0.00,0,10.00,1000,0.00,0,0.00,0,0.00,0,0.00,0,0.00,0,10.00,1000,0.00,0",
    ]
    seen.clear()
    path = Path(await exports.xlsx_file(svc, shop_id=sid, settlement_id=b.settlement_id, progress=seen.append))
    try:
        assert seen == [1] and path.read_bytes()[:2] == b"PK"
    finally:
        path.unlink()
    before = set(glob.glob(f"{tempfile.gettempdir()}/{exports.XLSX_PREFIX}*"))
    with pytest.raises(LookupError):
        [c async for c in exports.csv_chunks(svc, shop_id=sid, settlement_id="st_nope")]
    with pytest.raises(LookupError):
        await exports.xlsx_file(svc, shop_id=sid, settlement_id="st_nope")
    assert set(glob.glob(f"{tempfile.gettempdir()}/{exports.XLSX_PREFIX}*")) == before
