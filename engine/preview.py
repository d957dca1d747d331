"""CM-7 earnings preview, and the one computation of an order's commission at payment that it shares
with the real payment (CM-1..CM-4, RF-2).

`payment_commission` is what `service.tx.commissions.on_order_paid` calls when an order is paid;
`preview_cart` and `preview_campaign` call it on the cart (or the campaign's seat) a prospective buyer
would pay now. A preview writes nothing and names no other user: the shell shows each share by its
level and whether it is the caller's own, never by a beneficiary's id.

For a group-buy campaign the order is paid at the first tier's price for its role (GB-3) and reduced by
the GB-5 refund to the tier the group reaches, which reverses its commission by CM-5 (`standing_amount`);
the least and the most are taken over every tier list the campaign can assign (its A/B variants, else its
own tiers), every role (leader, member) and every tier a group of it can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from engine import commission as cm
from engine.distribution import DistributionMode, DistributionSettings, DistributorStatus, admits_automatically
from engine.groupbuy import Campaign, PriceRole, Tier, role_price
from engine.levels import Level, rates_for


@dataclass(frozen=True)
class Party:
    """A distributor record as it stands at payment time (DS-1 status, LV-1 grade)."""

    status: DistributorStatus
    grade: int = 0


@dataclass(frozen=True)
class PaymentFacts:
    """What RF-2 and CM-2 read at payment: the buyer, the snapshot's level-1 and level-2 referrers
    (EXPIRING lapses and an RF-3 order-code override already applied) and the distributor records of
    the people involved (a user without a record is no distributor)."""

    buyer_id: str
    level1_referrer: str | None
    level2_referrer: str | None
    parties: Mapping[str, Party]


@dataclass(frozen=True)
class PaymentCommission:
    """The CM-2 beneficiaries stored on the order (`level1_id`, `level2_id`) and the CM-4 amounts posted."""

    level1_id: str | None
    level2_id: str | None
    amounts: tuple[cm.CommissionAmount, ...]


def admitted_status(
    settings: DistributionSettings, current: DistributorStatus | None, *, net_paid_spend: int
) -> DistributorStatus | None:
    """DS-1 at a payment (or a binding): a user whom `mode` admits automatically — EVERYONE, or
    SPEND_THRESHOLD once net paid spend (this order included) reaches the threshold — and who is not yet a
    distributor (no record, NONE or APPLIED) becomes ACTIVE; anyone else keeps `current` (a SUSPENDED
    distributor stays suspended). The service applies it before the payment's commission is computed, so
    a buyer admitted by this very order earns on it with `self_purchase` on."""
    if current in (None, DistributorStatus.NONE, DistributorStatus.APPLIED) and admits_automatically(
        settings, net_paid_spend=net_paid_spend
    ):
        return DistributorStatus.ACTIVE
    return current


def admitted_by_binding(settings: DistributionSettings, current: DistributorStatus | None) -> DistributorStatus | None:
    """DS-1 "EVERYONE: from their first bind": a referrer without a record is admitted (ACTIVE) when someone
    binds to them (as `service.usecases.distribution` does), so a preview "bound to D" counts D as a distributor."""
    if current is None and settings.mode == DistributionMode.EVERYONE:
        return DistributorStatus.ACTIVE
    return current


def payment_commission(
    settings: DistributionSettings,
    levels: Sequence[Level],
    facts: PaymentFacts,
    lines: Sequence[cm.LineBase],
    *,
    enabled: bool = True,
) -> PaymentCommission:
    """CM-2..CM-4 of one order at payment: the beneficiaries (`cm.beneficiaries` on the RF-2 snapshot), each
    one's rate from their level at payment time (`rates_for`, CM-3), and the amounts (`cm.compute_commissions`,
    cap included). A beneficiary without a distributor record earns nothing (and frees no cap room)."""
    buyer = facts.parties.get(facts.buyer_id)
    l1, l2 = cm.beneficiaries(
        settings,
        buyer_id=facts.buyer_id,
        buyer_status=buyer.status if buyer else DistributorStatus.NONE,
        level1_referrer=facts.level1_referrer,
        level2_referrer=facts.level2_referrer,
    )

    def beneficiary(user_id: str | None, level: int) -> cm.Beneficiary | None:
        party = facts.parties.get(user_id) if user_id is not None else None
        if user_id is None or party is None:
            return None
        return cm.Beneficiary(
            user_id=user_id,
            level=level,
            status=party.status,
            rate_bp=rates_for(levels, party.grade, settings)[level - 1],
        )

    amounts = cm.compute_commissions(
        settings, lines=lines, level1=beneficiary(l1, 1), level2=beneficiary(l2, 2), enabled=enabled
    )
    return PaymentCommission(level1_id=l1, level2_id=l2, amounts=amounts)


# ---------------------------------------------------------------- CM-7
@dataclass(frozen=True)
class PreviewShare:
    """What the level-`level` beneficiary would earn: `least` and `most` (equal for a cart). `beneficiary_id`
    is for the shell to tell whether the share is the caller's own; it is never shown to the caller."""

    level: int
    beneficiary_id: str
    least: int
    most: int


@dataclass(frozen=True)
class Preview:
    """CM-7: the commission base (CM-1: what the lines that earn are paid, net of the GB-5 refund for a
    campaign) at its least and most, and the shares, level 1 first (a share that is 0 in every case is
    omitted)."""

    base_least: int
    base_most: int
    shares: tuple[PreviewShare, ...]


def _merge(into: dict[tuple[int, str], tuple[int, int]], level: int, user_id: str, amount: int) -> None:
    lo, hi = into.get((level, user_id), (amount, amount))
    into[(level, user_id)] = (min(lo, amount), max(hi, amount))


def _shares(found: dict[tuple[int, str], tuple[int, int]]) -> tuple[PreviewShare, ...]:
    return tuple(
        PreviewShare(level=lvl, beneficiary_id=u, least=lo, most=hi)
        for (lvl, u), (lo, hi) in sorted(found.items())
        if hi > 0
    )


def preview_cart(
    settings: DistributionSettings,
    levels: Sequence[Level],
    facts: PaymentFacts,
    lines: Sequence[cm.LineBase],
    *,
    enabled: bool = True,
) -> Preview:
    """CM-7 for a product or a cart: exactly what `payment_commission` would post if it were paid now."""
    got = payment_commission(settings, levels, facts, lines, enabled=enabled)
    base = cm.order_commission_base(lines) if enabled else 0
    return Preview(
        base_least=base,
        base_most=base,
        shares=tuple(
            PreviewShare(level=a.level, beneficiary_id=a.user_id, least=a.amount, most=a.amount) for a in got.amounts
        ),
    )


def campaign_tier_lists(campaign: Campaign) -> tuple[tuple[Tier, ...], ...]:
    """The tier lists a group of the campaign can run on: each A/B variant's (a leader is always assigned
    one when the campaign has variants, section 2), else the campaign's own."""
    return tuple(v.tiers for v in campaign.variants) or (campaign.tiers,)


def seat_outcomes(campaign: Campaign, quantity: int) -> tuple[tuple[PriceRole, int, int], ...]:
    """Every `(role, paid, refunded)` a seat of `quantity` units can end at: paid at its tier list's first
    price for its role (GB-3), owed `(paid unit − final unit) × quantity` back when the group forms at any
    tier of that list (GB-5; a fill-at-expiry group forms at the first tier, which is one of them)."""
    out = []
    for tiers in campaign_tier_lists(campaign):
        for role in (PriceRole.LEADER, PriceRole.MEMBER):
            paid_unit = role_price(tiers[0].unit_price, role, campaign.leader_discount)
            for t in tiers:
                final_unit = role_price(t.unit_price, role, campaign.leader_discount)
                out.append((role, paid_unit * quantity, (paid_unit - final_unit) * quantity))
    return tuple(out)


def preview_campaign(
    settings: DistributionSettings,
    levels: Sequence[Level],
    facts: PaymentFacts,
    *,
    campaign: Campaign,
    product_ref: str,
    terms: cm.ProductTerms,
    quantity: int,
) -> Preview:
    """CM-7 for a group-buy campaign: for every seat outcome (`seat_outcomes`) the commission its payment
    posts (`payment_commission` on the seat's one line) and what stands of it after the GB-5 refund
    (`cm.standing_amount`, CM-5); per beneficiary the least and the most of those. A campaign with
    commission switched off (CM-3) previews nothing."""
    found: dict[tuple[int, str], tuple[int, int]] = {}
    bases: list[int] = []
    keys: set[tuple[int, str]] = set()
    outcomes = seat_outcomes(campaign, quantity)
    results = []
    for _role, paid, refunded in outcomes:
        line = cm.LineBase(product_ref=product_ref, quantity=quantity, base=paid, terms=terms)
        got = payment_commission(settings, levels, facts, [line], enabled=campaign.commission_enabled)
        results.append((paid, refunded, got))
        keys |= {(a.level, a.user_id) for a in got.amounts}
        bases.append(paid - refunded if terms.earns_commission and campaign.commission_enabled else 0)
    for paid, refunded, got in results:
        earned = {(a.level, a.user_id): cm.standing_amount(a.amount, refunded, paid) for a in got.amounts}
        for level, user_id in keys:  # a beneficiary who earns nothing in one outcome has 0 as its least
            _merge(found, level, user_id, earned.get((level, user_id), 0))
    return Preview(base_least=min(bases, default=0), base_most=max(bases, default=0), shares=_shares(found))
