"""Reporting RP-1..RP-4 on real data."""

from __future__ import annotations

import secrets
from datetime import timedelta

from engine.distribution import DistributorStatus
from service.usecases import distribution, groups, orders, shops
from service.reads import reports
from service.jobs import worker
from tests.conftest import T0
from tests.integration.helpers import make_campaign, pay


async def test_campaign_stats_per_variant_RP2(svc, shop):
    # the control is the first variant as defined ("ctl"), not the first alphabetically ("alt")
    c = await make_campaign(
        svc,
        shop.shop_id,
        tiers=[(2, 8000)],
        variants=[("ctl", [(2, 8000)], 1), ("alt", [(3, 7000)], 1), ("big", [(4, 6000)], 1)],
    )
    for i in range(9):
        g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"L{i}")
        await pay(svc, shop.shop_id, g)
        if i % 2 == 0:
            m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id=f"M{i}")
            await pay(svc, shop.shop_id, m)
    svc.clock.advance(timedelta(days=2))
    await worker.run_due(svc)
    st = await reports.campaign_stats(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id)
    assert st.total.opened == 9 and st.total.formed + st.total.failed == 9
    assert [v.variant for v in st.variants] == ["ctl", "alt", "big"]
    assert sum(v.opened for v in st.variants) == 9
    assert st.total.formation_rate_bp == st.total.formed * 10_000 // 9
    assert st.total.units == sum(v.units for v in st.variants)
    assert [(x.variant, x.control) for x in st.comparisons] == [("alt", "ctl"), ("big", "ctl")]
    ctl = st.variants[0]
    for x, v in zip(st.comparisons, st.variants[1:]):
        if v.formed + v.failed and ctl.formed + ctl.failed:
            assert x.difference.difference_bp == v.formation_rate_bp - ctl.formation_rate_bp
            assert x.difference.low_bp <= x.difference.difference_bp <= x.difference.high_bp
            assert not x.difference.has_winner  # a handful of groups is below the minimum sample
        else:
            assert x.difference is None


async def test_segments_and_counts_RP3(svc, shop):
    async def buy(user, ext, amount=1000):
        o = await orders.report_order(
            svc, shop_id=shop.shop_id, external_id=ext, buyer_id=user, lines=[orders.LineInput("p", 1, amount)]
        )
        await pay(svc, shop.shop_id, o.order_id, amount=amount)
        return o

    for i in range(4):
        await buy("loyal", f"l{i}")
    await buy("first", "f1")
    r = await buy("refunded", "r1")
    await orders.refund_order(svc, shop_id=shop.shop_id, order_id=r.order_id, amount=1000, provider_ref="rr")
    assert await reports.segment(svc, shop_id=shop.shop_id, user_id="loyal") == "LOYAL"
    assert await reports.segment(svc, shop_id=shop.shop_id, user_id="refunded") == "NEW"
    counts = await reports.segment_counts(svc, shop_id=shop.shop_id)
    assert (counts["LOYAL"], counts["FIRST_ORDER"], counts["NEW"]) == (1, 1, 1)
    svc.clock.advance(timedelta(days=91))
    assert (await reports.segment_counts(svc, shop_id=shop.shop_id))["DORMANT"] == 2


async def test_retention_by_acquisition_source_RP4(svc, shop):
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="d", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="r1", referrer_id="d")
    await shops.upsert_product(svc, shop_id=shop.shop_id, product_ref="tea", category="tea")
    await shops.upsert_product(svc, shop_id=shop.shop_id, product_ref="cup", category="ware")
    for i, (user, ref) in enumerate([("r1", "tea"), ("r1", "cup"), ("n1", "tea")]):
        o = await orders.report_order(
            svc, shop_id=shop.shop_id, external_id=f"o{i}", buyer_id=user, lines=[orders.LineInput(ref, 1, 1000)]
        )
        await pay(svc, shop.shop_id, o.order_id, amount=1000)
    rows = {
        r.source: r
        for r in await reports.retention(svc, shop_id=shop.shop_id, period_from=T0, period_to=T0 + timedelta(days=1))
    }
    assert rows["REFERRAL"].buyers == 1 and rows["REFERRAL"].repurchase_rate_bp == 10_000
    assert rows["REFERRAL"].multi_category_rate_bp == 10_000 and rows["REFERRAL"].net_sales_per_buyer == 2000
    assert rows["NONE"].repurchase_rate_bp == 0
    dl = await reports.downline(svc, shop_id=shop.shop_id, user_id="d")
    assert dl["level1"] == {"count": 1, "sales": 2000} and dl["level2"]["count"] == 0
    earned = await reports.earnings(
        svc, shop_id=shop.shop_id, user_id="d", period_from=T0, period_to=T0 + timedelta(days=1)
    )
    assert earned["PENDING"] == 200


async def test_earnings_per_local_day_and_month_RP1(svc):
    """A Shanghai shop (UTC+8): what happens at 23:30 on Jan 31 local is January's, at 00:30 on Feb 1
    local February's, although both are Jan 31 in UTC. Hand-checked series below."""
    from datetime import date, datetime, timezone

    import pytest

    from engine.errors import ErrorCode, RuleViolation
    from service.reads.reports import Granularity

    def utc(*a):
        return datetime(*a, tzinfo=timezone.utc)

    shop_id = f"er-{secrets.token_hex(4)}"
    svc.clock.set(utc(2026, 1, 20))
    await shops.create_shop(svc, shop_id=shop_id, name="E", currency="CNY", timezone="Asia/Shanghai")
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b", referrer_id="d")
    svc.clock.set(utc(2026, 1, 31, 15, 30))  # Jan 31 23:30 local: commission 1000 pending
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="o", buyer_id="b", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop_id, o.order_id, amount=10_000)
    svc.clock.set(utc(2026, 1, 31, 16, 30))  # Feb 1 00:30 local: completed, pending -> frozen
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    svc.clock.set(utc(2026, 2, 8, 17))  # Feb 9 01:00 local: released (7 freeze days)
    await worker.release_due_lines(svc, shop_id=shop_id)
    svc.clock.set(utc(2026, 2, 10, 2))  # Feb 10: refund 2500 of 10000 after availability: -250
    await orders.refund_order(svc, shop_id=shop_id, order_id=o.order_id, amount=2_500, provider_ref="rf")

    def view(series):
        return [
            (p.day_from.isoformat(), p.earned, p.moved["PENDING"], p.moved["FROZEN"], p.moved["AVAILABLE"])
            for p in series
        ]

    months = await reports.earnings_series(
        svc,
        shop_id=shop_id,
        user_id="d",
        granularity=Granularity.MONTH,
        day_from=date(2025, 12, 1),
        day_to=date(2026, 3, 1),
    )
    assert view(months) == [
        ("2025-12-01", 0, 0, 0, 0),
        ("2026-01-01", 1000, 1000, 0, 0),
        ("2026-02-01", -250, -1000, 0, 750),
    ]
    assert (months[1].starts_at, months[1].ends_at) == (utc(2025, 12, 31, 16), utc(2026, 1, 31, 16))
    days = await reports.earnings_series(
        svc,
        shop_id=shop_id,
        user_id="d",
        granularity=Granularity.DAY,
        day_from=date(2026, 1, 31),
        day_to=date(2026, 2, 2),
    )
    assert view(days) == [("2026-01-31", 1000, 1000, 0, 0), ("2026-02-01", 0, -1000, 1000, 0)]
    for gran, f, t in (
        (Granularity.MONTH, date(2026, 1, 15), date(2026, 3, 1)),  # months start on the 1st
        (Granularity.DAY, date(2025, 1, 1), date(2026, 3, 1)),  # over 366 days
        (Granularity.DAY, date(2026, 3, 1), date(2026, 3, 1)),
    ):  # empty
        with pytest.raises(RuleViolation) as e:
            await reports.earnings_series(svc, shop_id=shop_id, user_id="d", granularity=gran, day_from=f, day_to=t)
        assert e.value.code == ErrorCode.INVALID_INPUT and e.value.rule == "RP-1"
