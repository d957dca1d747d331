"""The refund queue's promises, kept by the database itself (migration 0007): an owed refund never disappears
until it is confirmed (GB-10), and an order's refunds never add up to more than it was paid (OR-2)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.errors import ErrorCode, RuleViolation
from service.usecases import groups, orders, refunds
from service.uow import CHECK_DEFERRED, unit_of_work
from tests.integration.helpers import make_campaign, pay


async def _owed_and_confirmed(svc, shop_id):
    """A member leaves a paid seat (GB-8: 8000 owed, OWED) and a plain order is refunded by the backend
    (OR-2: 300 recorded with its provider reference, CONFIRMED)."""
    c = await make_campaign(svc, shop_id, tiers=[(3, 8000)])
    g = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop_id, g)
    m = await groups.join_group(svc, shop_id=shop_id, group_id=g.group_id, user_id="m")
    await pay(svc, shop_id, m)
    await groups.leave_group(svc, shop_id=shop_id, group_id=g.group_id, user_id="m")
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="plain", buyer_id="b", lines=[orders.LineInput("p", 1, 1000)]
    )
    await pay(svc, shop_id, o.order_id, amount=1000)
    await orders.refund_order(svc, shop_id=shop_id, order_id=o.order_id, amount=300, provider_ref="bank-300")
    [owed] = await refunds.list_refunds(svc, shop_id=shop_id, state="OWED")
    [confirmed] = await refunds.list_refunds(svc, shop_id=shop_id, state="CONFIRMED")
    assert (owed.rule, owed.amount, owed.order_id) == ("GB-8", 8000, m.order_id)
    assert (confirmed.rule, confirmed.amount, confirmed.provider_ref) == ("OR-2", 300, "bank-300")
    return owed, confirmed


async def _rows(svc, shop_id):
    async with svc.engine.connect() as c:
        return (
            await c.execute(
                text(
                    "SELECT refund_id, order_id, amount, rule, state, provider_ref, confirmed_at "
                    "FROM refunds WHERE shop_id = :s ORDER BY refund_id"
                ),
                {"s": shop_id},
            )
        ).all()


async def _refused(engine, sql: str, params: dict, match: str) -> None:
    with pytest.raises(DBAPIError, match=match):
        async with engine.begin() as c:
            await c.execute(text(sql), params)


async def test_the_database_refuses_to_delete_or_unconfirm_a_refund_GB10(svc, shop, owner_engine):
    """Even the schema owner, who may UPDATE, DELETE and TRUNCATE (the service's runtime role may not, 11.6)."""
    owed, confirmed = await _owed_and_confirmed(svc, shop.shop_id)
    before = await _rows(svc, shop.shop_id)
    key = {"s": shop.shop_id, "o": owed.refund_id, "c": confirmed.refund_id}
    for sql in (
        "DELETE FROM refunds WHERE shop_id = :s AND refund_id = :o",  # an owed refund silently dropped
        "DELETE FROM refunds WHERE shop_id = :s AND refund_id = :c",  # history of a paid one erased
        "UPDATE refunds SET state = 'OWED', provider_ref = NULL, confirmed_at = NULL "
        "WHERE shop_id = :s AND refund_id = :c",  # un-confirmed
        "UPDATE refunds SET provider_ref = 'another' WHERE shop_id = :s AND refund_id = :c",  # re-confirmed
        "UPDATE refunds SET amount = 1 WHERE shop_id = :s AND refund_id = :o",  # an owed amount shrunk
        "UPDATE refunds SET state = 'CONFIRMED' WHERE shop_id = :s AND refund_id = :o",  # "paid" with no reference
        "UPDATE refunds SET state = 'CONFIRMED', provider_ref = 'x', confirmed_at = now(), amount = 7999 "
        "WHERE shop_id = :s AND refund_id = :o",  # confirmed for less than owed
        "TRUNCATE refunds",
    ):
        await _refused(owner_engine, sql, key, "append-only")
    assert await _rows(svc, shop.shop_id) == before

    # the one change allowed is the confirmation, as confirmRefund makes it
    done = await refunds.confirm_refund(svc, shop_id=shop.shop_id, refund_id=owed.refund_id, provider_ref="bank-8000")
    assert done.state == "CONFIRMED"
    await _refused(
        owner_engine,
        "UPDATE refunds SET state = 'OWED', provider_ref = NULL, confirmed_at = NULL "
        "WHERE shop_id = :s AND refund_id = :o",
        key,
        "append-only",
    )
    assert [r.state for r in await _rows(svc, shop.shop_id)] == ["CONFIRMED", "CONFIRMED"]


async def test_a_refund_row_the_books_do_not_account_for_is_refused_even_at_commit_OR2(svc, shop):
    """A client that commits without running the deferred checks first is refused all the same (at COMMIT;
    on Citus that error is XX000, which is why the service runs them before)."""
    owed, confirmed = await _owed_and_confirmed(svc, shop.shop_id)
    before = await _rows(svc, shop.shop_id)
    with pytest.raises(DBAPIError):
        async with svc.engine.begin() as c:
            await c.execute(
                text(
                    'INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, "full", state, '
                    "created_at) VALUES (:s, 'rf_raw', :o, 700, 'OR-2', false, 'OWED', now())"
                ),
                {"s": shop.shop_id, "o": confirmed.order_id},
            )
    assert await _rows(svc, shop.shop_id) == before


async def test_a_service_transaction_that_writes_a_refund_gets_OR2_with_its_code(svc, shop):
    """The unit of work runs the deferred checks as its last statement whenever it wrote a refund
    (service/uow.py): a refund the books do not account for fails with 23514 and OR-2's text, not with
    Citus's XX000 "could not commit transaction"."""
    from store.models import Refund

    owed, confirmed = await _owed_and_confirmed(svc, shop.shop_id)
    before = await _rows(svc, shop.shop_id)
    with pytest.raises(DBAPIError, match="OR-2") as e:
        async with unit_of_work(svc) as s:
            s.add(
                Refund(
                    shop_id=shop.shop_id,
                    refund_id="rf_orm",
                    order_id=confirmed.order_id,
                    amount=701,
                    rule="OR-2",
                    full=False,
                    state="OWED",
                    created_at=svc.now(),
                )
            )
    assert e.value.orig.sqlstate == "23514"
    assert await _rows(svc, shop.shop_id) == before


async def test_the_database_refuses_refunds_above_what_was_paid_OR2(svc, shop):
    """Checked by a deferred constraint trigger: a refund row the order's refunded_amount does not account
    for, or one that takes the refunds above what was paid, rolls the whole transaction back. A client runs
    the deferred checks as its last statement (`sharecart_check_deferred`, as the service does: migration
    0013) and gets the refusal with its own code (23514) and text, on PostgreSQL and on Citus alike."""
    owed, confirmed = await _owed_and_confirmed(svc, shop.shop_id)
    before = await _rows(svc, shop.shop_id)
    insert = (
        'INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, "full", state, created_at) '
        "VALUES (:s, :r, :o, :a, 'OR-2', false, 'OWED', now())"
    )

    async def write(amount: int, refunded: int):
        async with svc.engine.begin() as c:
            await c.execute(
                text("UPDATE orders SET refunded_amount = refunded_amount + :a WHERE shop_id = :s AND order_id = :o"),
                {"s": shop.shop_id, "o": confirmed.order_id, "a": refunded},
            )
            await c.execute(
                text(insert), {"s": shop.shop_id, "r": f"rf_x{amount}", "o": confirmed.order_id, "a": amount}
            )
            await c.execute(CHECK_DEFERRED, {"shop_id": shop.shop_id})

    # 700 more on the 1000 order, refunded_amount left at 300: the books would disagree
    with pytest.raises(DBAPIError, match="OR-2") as e:
        await write(700, 0)
    assert e.value.orig.sqlstate == "23514"
    with pytest.raises(DBAPIError, match="OR-2") as e:
        await write(701, 701)  # 300 + 701 > 1000 paid, even with refunded_amount kept in step
    assert e.value.orig.sqlstate == "23514"
    assert await _rows(svc, shop.shop_id) == before
    await write(700, 700)  # exactly what was paid: accepted
    o = await orders.get_order_caught_up(svc, shop_id=shop.shop_id, order_id=confirmed.order_id)
    assert (o.paid_amount, o.refunded_amount) == (1000, 1000)
    # and the service itself refuses to go further (OR-2), before the database has to
    with pytest.raises(RuleViolation) as e:
        await orders.refund_order(
            svc, shop_id=shop.shop_id, order_id=confirmed.order_id, amount=1, provider_ref="bank-1"
        )
    assert (e.value.code, e.value.rule) == (ErrorCode.REFUND_EXCEEDS_PAID, "OR-2")
