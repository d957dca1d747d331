"""CM-7 earnings preview (engine/preview.py): the same computation as the payment (CM-1..CM-4), and for a
group-buy campaign the least and the most over tiers, variants and roles, checked against groups actually
run through the group-buy engine (GB-1..GB-5) and their commission through CM-5."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine import commission as cm
from engine import groupbuy as gb
from engine import preview as pv
from engine.distribution import DistributionMode, DistributionSettings, DistributorStatus
from engine.levels import Level

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
STATUSES = st.sampled_from(list(DistributorStatus))

settings_st = st.builds(
    DistributionSettings,
    level1_bp=st.integers(0, 10_000),
    level2_bp=st.integers(0, 10_000),
    self_purchase=st.booleans(),
    max_total_bp=st.integers(0, 10_000),
)


@st.composite
def levels_st(draw):
    n = draw(st.integers(0, 3))
    return tuple(
        Level(grade=g, name=f"L{g}", level1_bp=draw(st.integers(0, 10_000)), level2_bp=draw(st.integers(0, 10_000)))
        for g in range(n)
    )


@st.composite
def facts_st(draw):
    people = ["buyer", "a", "b"]
    parties = {}
    for p in people:
        if draw(st.booleans()):
            parties[p] = pv.Party(status=draw(STATUSES), grade=draw(st.integers(0, 3)))
    chain = draw(st.sampled_from([(None, None), ("a", None), ("a", "b")]))
    return pv.PaymentFacts(buyer_id="buyer", level1_referrer=chain[0], level2_referrer=chain[1], parties=parties)


terms_st = st.builds(
    cm.ProductTerms,
    earns_commission=st.booleans(),
    level1_amount=st.none() | st.integers(0, 500),
    level2_amount=st.none() | st.integers(0, 500),
)


@st.composite
def cart_st(draw):
    out = []
    for i in range(draw(st.integers(1, 4))):
        q = draw(st.integers(1, 5))
        out.append(
            cm.LineBase(product_ref=f"p{i}", quantity=q, base=draw(st.integers(0, 50_000)), terms=draw(terms_st))
        )
    return out


@given(settings_st, levels_st(), facts_st(), cart_st(), st.booleans())
@hsettings(max_examples=300)
def test_CM7_cart_preview_is_what_the_payment_posts(settings, levels, facts, lines, enabled):
    """CM-7: for any cart, settings, levels and chain, the preview's shares are exactly the amounts the
    payment posts (CM-2..CM-4, through the same function), least = most, each with its level."""
    paid = pv.payment_commission(settings, levels, facts, lines, enabled=enabled)
    got = pv.preview_cart(settings, levels, facts, lines, enabled=enabled)
    assert [(s.level, s.beneficiary_id, s.least) for s in got.shares] == [
        (a.level, a.user_id, a.amount) for a in paid.amounts
    ]
    assert all(s.least == s.most > 0 for s in got.shares)
    assert got.base_least == got.base_most == (cm.order_commission_base(lines) if enabled else 0)


def test_CM7_payment_commission_matches_the_cm_functions_by_hand():
    """CM-2/CM-3: the level's rates replace the default; a beneficiary with no distributor record is no
    beneficiary (RF-1 binds only to distributors, so this is a corrupt chain); self-purchase makes an ACTIVE buyer level 1."""
    s = DistributionSettings(level1_bp=1000, level2_bp=500, max_total_bp=1200)
    levels = (Level(0, "entry", 1000, 500), Level(1, "gold", 2000, 800))
    facts = pv.PaymentFacts(
        "buyer", "a", "b", {"a": pv.Party(DistributorStatus.ACTIVE, 1), "b": pv.Party(DistributorStatus.ACTIVE, 0)}
    )
    got = pv.payment_commission(s, levels, facts, [cm.LineBase("p", 1, 10_000)])
    assert (got.level1_id, got.level2_id) == ("a", "b")
    assert [(a.user_id, a.amount) for a in got.amounts] == [("a", 1200)]  # 2000 + 500 > cap 1200: b cut first
    no_record = pv.PaymentFacts("buyer", "a", "b", {"b": pv.Party(DistributorStatus.ACTIVE, 0)})
    assert [
        (a.user_id, a.amount)
        for a in pv.payment_commission(s, levels, no_record, [cm.LineBase("p", 1, 10_000)]).amounts
    ] == [("b", 500)]  # no record is no beneficiary at all (as on_order_paid always did): b keeps its 500
    selfp = DistributionSettings(self_purchase=True)
    me = pv.PaymentFacts(
        "buyer", "a", None, {"buyer": pv.Party(DistributorStatus.ACTIVE, 0), "a": pv.Party(DistributorStatus.ACTIVE, 0)}
    )
    got = pv.payment_commission(selfp, (), me, [cm.LineBase("p", 1, 10_000)])
    assert [(a.level, a.user_id, a.amount) for a in got.amounts] == [(1, "buyer", 1000), (2, "a", 500)]


def test_CM7_admission_at_payment_follows_ds1():
    """DS-1 as applied before the payment's commission: EVERYONE admits a buyer without a record;
    SPEND_THRESHOLD once this order brings net spend to the threshold; SUSPENDED stays."""
    every = DistributionSettings()
    assert pv.admitted_status(every, None, net_paid_spend=0) is DistributorStatus.ACTIVE
    assert pv.admitted_status(every, DistributorStatus.SUSPENDED, net_paid_spend=0) is DistributorStatus.SUSPENDED
    spend = DistributionSettings(mode=DistributionMode.SPEND_THRESHOLD, spend_threshold=5000)
    assert pv.admitted_status(spend, DistributorStatus.APPLIED, net_paid_spend=4999) is DistributorStatus.APPLIED
    assert pv.admitted_status(spend, None, net_paid_spend=5000) is DistributorStatus.ACTIVE
    approval = DistributionSettings(mode=DistributionMode.APPROVAL)
    assert pv.admitted_status(approval, DistributorStatus.APPLIED, net_paid_spend=10**9) is DistributorStatus.APPLIED
    assert pv.admitted_by_binding(every, None) is DistributorStatus.ACTIVE  # "EVERYONE: from their first bind"
    assert pv.admitted_by_binding(approval, None) is None
    assert pv.admitted_by_binding(every, DistributorStatus.SUSPENDED) is DistributorStatus.SUSPENDED


# ---------------------------------------------------------------- campaigns: against groups actually run
@st.composite
def tiers_st(draw):
    n = draw(st.integers(1, 3))
    members = sorted(draw(st.sets(st.integers(2, 6), min_size=n, max_size=n)))
    prices = sorted(draw(st.sets(st.integers(1, 20_000), min_size=n, max_size=n)), reverse=True)
    return tuple(gb.Tier(m, p) for m, p in zip(members, prices))


@st.composite
def campaign_st(draw):
    tiers = draw(tiers_st())
    variants = ()
    if draw(st.booleans()):
        variants = tuple(
            gb.Variant(f"v{i}", draw(tiers_st()), draw(st.integers(1, 5))) for i in range(draw(st.integers(1, 2)))
        )
    top = max(t.unit_price for ts in (tiers, *(v.tiers for v in variants)) for t in ts)
    return gb.Campaign(
        id="c1",
        list_price=top,
        tiers=tiers,
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=10),
        starts_at=T0,
        ends_at=T0 + timedelta(days=3),
        leader_discount=draw(st.integers(0, 3000)),
        max_quantity_per_order=3,
        variants=variants,
        commission_enabled=draw(st.booleans()) or draw(st.booleans()),
    )


def run_group(
    c: gb.Campaign,
    variant: gb.Variant | None,
    paid_seats: int,
    quantity: int,
) -> dict[str, tuple[gb.PriceRole, int, int]]:
    """Open a group, have `paid_seats` seats (leader first, each of `quantity` units) pay, let it form (at
    capacity at once, else at expiry), and return per order: its role, what it paid and its GB-5 refund."""
    now = T0 + timedelta(minutes=1)
    g = gb.open_group(
        c,
        group_id="g",
        order_id="o0",
        user_id="u0",
        quantity=quantity,
        now=now,
        stock_left=None,
        user_units_held=0,
        variant=variant,
    ).group
    instructions: list = []
    d = gb.pay_seat(c, g, order_id="o0", amount=g.seats[0].amount, now=now)
    g, instructions = d.group, instructions + list(d.instructions)
    for i in range(1, paid_seats):
        g = gb.join_group(
            c,
            g,
            order_id=f"o{i}",
            user_id=f"u{i}",
            quantity=quantity,
            now=now,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        ).group
        seat = g.seat_for_order(f"o{i}")
        d = gb.pay_seat(c, g, order_id=f"o{i}", amount=seat.amount, now=now)
        g, instructions = d.group, instructions + list(d.instructions)
    if g.state is not gb.GroupState.FORMED:
        d = gb.advance(c, g, now=g.expires_at)
        g, instructions = d.group, instructions + list(d.instructions)
    assert g.state is gb.GroupState.FORMED
    owed = {i.order_id: i.amount for i in instructions if isinstance(i, gb.RefundOwed) and i.rule == "GB-5"}
    return {s.order_id: (s.role, s.amount, owed.get(s.order_id, 0)) for s in g.seats}


@given(settings_st, levels_st(), facts_st(), campaign_st(), terms_st, st.integers(1, 3))
@hsettings(max_examples=150, deadline=None)
def test_CM7_campaign_least_and_most_bound_every_group_and_are_reached(settings, levels, facts, c, terms, qty):
    """CM-7 for a campaign: run a group of every size that forms, on every tier list the campaign can
    assign, and follow each seat's commission through payment (`payment_commission`, what the service
    posts) and its GB-5 refund (`cm.refund_line`, CM-5): every outcome lies within the preview's
    [least, most] for its beneficiary, and both bounds are reached by some group."""
    got = pv.preview_campaign(settings, levels, facts, campaign=c, product_ref="p", terms=terms, quantity=qty)
    seen: dict[tuple[int, str], list[int]] = {}
    bases = []
    variants = c.variants or (None,)
    for variant in variants:
        tiers = variant.tiers if variant else c.tiers
        for n in sorted({t.members for t in tiers}):
            for _oid, (_role, paid, owed) in run_group(c, variant, n, qty).items():
                posted = pv.payment_commission(
                    settings, levels, facts, [cm.LineBase("p", qty, paid, terms)], enabled=c.commission_enabled
                )
                bases.append(paid - owed if terms.earns_commission and c.commission_enabled else 0)
                standing = {}
                for a in posted.amounts:
                    line, _ = cm.post_line(
                        id="l", order_id="o", beneficiary_id=a.user_id, level=a.level, amount=a.amount, paid_base=paid
                    )
                    standing[(a.level, a.user_id)] = cm.refund_line(line, owed)[0].standing
                for key in {(s.level, s.beneficiary_id) for s in got.shares} | set(standing):
                    seen.setdefault(key, []).append(standing.get(key, 0))
    shares = {(s.level, s.beneficiary_id): (s.least, s.most) for s in got.shares}
    for key, values in seen.items():
        if max(values) == 0:
            assert key not in shares
            continue
        assert shares[key] == (min(values), max(values)), (key, values)
    assert (got.base_least, got.base_most) == (min(bases), max(bases))
    if not c.commission_enabled:
        assert got.shares == ()


def test_CM7_campaign_by_hand():
    """CM-7 worked by hand: tiers 2 @ 10000, 3 @ 8000, leader discount 1000, level 1 at 10 %: a member pays
    10000 (earns 1000 at payment) and ends at 8000 after a 2000 GB-5 refund (1000 − floor(1000×2000/10000) =
    800); the leader pays 9000 (900) and ends at 7000 (900 − floor(900×2000/9000) = 700). Least 700, most 1000."""
    c = gb.Campaign(
        id="c",
        list_price=10_000,
        tiers=(gb.Tier(2, 10_000), gb.Tier(3, 8000)),
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=5),
        starts_at=T0,
        ends_at=T0 + timedelta(days=1),
        leader_discount=1000,
    )
    facts = pv.PaymentFacts("buyer", "a", None, {"a": pv.Party(DistributorStatus.ACTIVE)})
    got = pv.preview_campaign(
        DistributionSettings(level1_bp=1000),
        (),
        facts,
        campaign=c,
        product_ref="p",
        terms=cm.ProductTerms(),
        quantity=1,
    )
    assert got.shares == (pv.PreviewShare(level=1, beneficiary_id="a", least=700, most=1000),)
    assert (got.base_least, got.base_most) == (7000, 10_000)


def test_CM7_a_share_of_one_minor_unit_is_shown_and_a_share_of_nothing_is_omitted():
    """CM-7 at the smallest amounts: a level-1 share of exactly 1 (10 % of 10) is in the preview; level 2 at 0 %
    earns 0 in every case and is omitted (engine/preview.py `_shares`: `most > 0`)."""
    c = gb.Campaign(
        id="c",
        list_price=10,
        tiers=(gb.Tier(2, 10),),
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=5),
        starts_at=T0,
        ends_at=T0 + timedelta(days=1),
    )
    parties = {"a": pv.Party(DistributorStatus.ACTIVE), "b": pv.Party(DistributorStatus.ACTIVE)}
    facts = pv.PaymentFacts("buyer", "a", "b", parties)
    got = pv.preview_campaign(
        DistributionSettings(level1_bp=1000, level2_bp=0),
        (),
        facts,
        campaign=c,
        product_ref="p",
        terms=cm.ProductTerms(),
        quantity=1,
    )
    assert got.shares == (pv.PreviewShare(level=1, beneficiary_id="a", least=1, most=1),)
