"""Rows <-> engine values, in one place (the domain knows nothing of the ORM)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from engine.distribution import BindingMode, DistributionMode, DistributionSettings
from engine.groupbuy import Campaign, Group, GroupState, PriceRole, Seat, SeatState, Tier, Variant
from engine.levels import Level
from store.models import CampaignRow, DistributionSettingsRow, GroupRow, LevelRow, SeatRow


def settings_from_row(r: DistributionSettingsRow) -> DistributionSettings:
    return DistributionSettings(
        mode=DistributionMode(r.mode),
        binding=BindingMode(r.binding),
        binding_days=r.binding_days,
        bind_new_users_only=r.bind_new_users_only,
        level1_bp=r.level1_bp,
        level2_bp=r.level2_bp,
        self_purchase=r.self_purchase,
        freeze_days=r.freeze_days,
        max_total_bp=r.max_total_bp,
        min_payout=r.min_payout,
        payout_fee_bp=r.payout_fee_bp,
        spend_threshold=r.spend_threshold,
        order_code_overrides=r.order_code_overrides,
    )


def settings_row(shop_id: str, s: DistributionSettings) -> DistributionSettingsRow:
    values = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(s).items()}
    return DistributionSettingsRow(shop_id=shop_id, **values)


def level_from_row(r: LevelRow) -> Level:
    return Level(
        grade=r.grade,
        name=r.name,
        level1_bp=r.level1_bp,
        level2_bp=r.level2_bp,
        upgrade_bonus=r.upgrade_bonus,
        min_direct_referrals=r.min_direct_referrals,
        min_team_size=r.min_team_size,
        min_own_spend=r.min_own_spend,
        min_own_orders=r.min_own_orders,
        min_direct_sales=r.min_direct_sales,
        min_team_sales=r.min_team_sales,
    )


def tiers_to_json(tiers) -> list[list[int]]:
    return [[t.members, t.unit_price] for t in tiers]


def tiers_from_json(data) -> tuple[Tier, ...]:
    return tuple(Tier(members=int(m), unit_price=int(p)) for m, p in data)


def variants_to_json(variants) -> list[dict]:
    return [{"name": v.name, "tiers": tiers_to_json(v.tiers), "weight": v.weight} for v in variants]


def variants_from_json(data) -> tuple[Variant, ...]:
    return tuple(Variant(name=v["name"], tiers=tiers_from_json(v["tiers"]), weight=int(v["weight"])) for v in data)


def campaign_from_row(r: CampaignRow) -> Campaign:
    return Campaign(
        id=r.campaign_id,
        list_price=r.list_price,
        tiers=tiers_from_json(r.tiers),
        duration=timedelta(seconds=r.duration_s),
        payment_window=timedelta(seconds=r.payment_window_s),
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        leader_discount=r.leader_discount,
        leader_commission_bp=r.leader_commission_bp,
        stock=r.stock,
        per_user_limit=r.per_user_limit,
        max_quantity_per_order=r.max_quantity_per_order,
        new_members_only=r.new_members_only,
        fill_at_expiry=r.fill_at_expiry,
        lottery_winners=r.lottery_winners,
        lottery_seed=r.lottery_seed,
        variants=variants_from_json(r.variants or []),
        commission_enabled=r.commission_enabled,
        almost_full_at=getattr(r, "almost_full_at", 1),  # GB-15
        expiring_soon_before=timedelta(seconds=getattr(r, "expiring_soon_before_s", 3600)),
    )


def seat_from_row(r: SeatRow) -> Seat:
    return Seat(
        order_id=r.order_id,
        user_id=r.user_id,
        quantity=r.quantity,
        unit_price=r.unit_price,
        role=PriceRole(r.role),
        state=SeatState(r.state),
        reserved_at=r.reserved_at,
        pay_by=r.pay_by,
        paid_at=r.paid_at,
    )


def group_from_rows(g: GroupRow, seats: list[SeatRow]) -> Group:
    return Group(
        id=g.group_id,
        campaign_id=g.campaign_id,
        tiers=tiers_from_json(g.tiers),
        leader_user_id=g.leader_user_id,
        state=GroupState(g.state),
        seats=tuple(seat_from_row(s) for s in sorted(seats, key=lambda s: (s.reserved_at, s.order_id))),
        opened_at=g.opened_at,
        variant=g.variant,
        expires_at=g.expires_at,
        formed_at=g.formed_at,
        closed_at=g.closed_at,
        tier_members=g.tier_members,
        winners=tuple(g.winners or ()),
        lottery_seed=g.lottery_seed,  # GB-7 v2 (SecretText: decrypted on load)
        nudged_almost_full_at=g.nudged_almost_full_at,
        nudged_expiring_soon_at=g.nudged_expiring_soon_at,
    )


def group_to_row(g: Group, row: GroupRow) -> None:
    row.leader_user_id = g.leader_user_id
    row.state = g.state.value
    row.expires_at = g.expires_at
    row.formed_at = g.formed_at
    row.closed_at = g.closed_at
    row.tier_members = g.tier_members
    row.winners = list(g.winners)
    row.held_seats = g.held_seats
    row.paid_seats = g.paid_seats
    row.nudged_almost_full_at = g.nudged_almost_full_at  # GB-15
    row.nudged_expiring_soon_at = g.nudged_expiring_soon_at


def seat_to_row(shop_id: str, group_id: str, s: Seat, row: SeatRow | None) -> SeatRow:
    row = row or SeatRow(shop_id=shop_id, order_id=s.order_id, group_id=group_id)
    row.user_id = s.user_id
    row.quantity = s.quantity
    row.unit_price = s.unit_price
    row.role = s.role.value
    row.state = s.state.value
    row.reserved_at = s.reserved_at
    row.pay_by = s.pay_by
    row.paid_at = s.paid_at
    return row


def binding_from_row(r):
    from engine.referral import Binding, BindingSource

    return Binding(
        user_id=r.user_id,
        referrer_id=r.referrer_id,
        bound_at=r.bound_at,
        source=BindingSource(r.source),
        expires_at=r.expires_at,
    )
