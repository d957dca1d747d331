"""Issue 11 points 6 and 7: the books are kept by the database itself, whatever SQL reaches it.

- LG-1 at every commit: a stored balance that differs from the sum of its ledger entries refuses the commit.
- The runtime role: the service connects as a role that may only INSERT/SELECT the append-only tables and can
  neither truncate nor disable triggers; migrations run as the owner.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine.distribution import DistributorStatus
from engine.levels import Level
from service import distribution, shops
from service.ids import new_id
from service.ledger import balance_mismatches
from service.uow import unit_of_work
from store.models import Distributor


async def _distributor_with_bonus(svc, shop_id: str, user_id: str = "d1") -> Distributor:
    """A distributor with 1000 available, from a real posting (an LV-4 upgrade bonus)."""
    await shops.set_levels(svc, shop_id=shop_id, levels=[
        Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
        Level(grade=1, name="Silver", level1_bp=1000, level2_bp=500, upgrade_bonus=1000, min_direct_referrals=99)])
    await distribution.set_status(svc, shop_id=shop_id, user_id=user_id, status=DistributorStatus.ACTIVE,
                                  actor="t", reason="t")
    await distribution.set_level(svc, shop_id=shop_id, user_id=user_id, grade=1, actor="admin", reason="VIP")
    return await _row(svc, shop_id, user_id)


async def _row(svc, shop_id, user_id) -> Distributor:
    async with unit_of_work(svc) as s:
        return (await s.execute(select(Distributor).where(Distributor.shop_id == shop_id,
                                                          Distributor.user_id == user_id))).scalar_one()


def _entry(shop_id: str, user_id: str, amount: int, bucket: str = "AVAILABLE"):
    return text("INSERT INTO ledger_entries (shop_id, entry_id, distributor_id, bucket, amount, kind, ref_type, ref_id,"
                " created_at) VALUES (:s, :e, :d, :b, :a, 'UPGRADE_BONUS', 'test', 'x', now())"
                ).bindparams(s=shop_id, e=new_id("le_"), d=user_id, b=bucket, a=amount)


async def test_lg1_at_commit_11_7_a_balance_changed_without_an_entry_is_refused(svc, shop):
    """An UPDATE of a stored balance with no ledger entry (or an entry with no balance change) is refused at
    COMMIT, by the database, with check_violation; nothing of the transaction stays. The same change made
    with its entry commits."""
    d = await _distributor_with_bonus(svc, shop.shop_id)
    assert d.available == 1000
    for statements in ([text("UPDATE distributors SET available = available + 1000 WHERE shop_id = :s AND user_id = 'd1'"
                             ).bindparams(s=shop.shop_id)],
                       [_entry(shop.shop_id, "d1", 1000)],
                       [_entry(shop.shop_id, "d1", 500), text(  # an entry, but the balance moved by more
                           "UPDATE distributors SET available = available + 1000 WHERE shop_id = :s AND user_id = 'd1'"
                       ).bindparams(s=shop.shop_id)]):
        with pytest.raises(DBAPIError) as e:
            async with unit_of_work(svc) as s:
                for st in statements:
                    await s.execute(st)  # each statement passes: the check is at commit
        assert "LG-1" in str(e.value) and getattr(e.value.orig, "sqlstate", None) == "23514"
        assert (await _row(svc, shop.shop_id, "d1")).available == 1000
    async with unit_of_work(svc) as s:  # moved with its entry: LG-1 holds, the commit goes through
        await s.execute(_entry(shop.shop_id, "d1", -300))
        await s.execute(_entry(shop.shop_id, "d1", 300, bucket="IN_PAYOUT"))
        await s.execute(text("UPDATE distributors SET available = available - 300, in_payout = in_payout + 300 "
                             "WHERE shop_id = :s AND user_id = 'd1'").bindparams(s=shop.shop_id))
    d = await _row(svc, shop.shop_id, "d1")
    assert (d.available, d.in_payout) == (700, 300)
    async with unit_of_work(svc) as s:
        assert await balance_mismatches(s, shop.shop_id) == []
