"""Tables. Every table carries `shop_id`; every primary, unique and foreign key starts with it,
so the schema distributes on Citus by `shop_id` unchanged (SH-1).

Money columns are BIGINT minor units; rates are INTEGER basis points.
Row -> engine value mapping lives in `store/mapping.py`, nowhere else.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, query_expression

from store.secrets import SecretText

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TS = DateTime(timezone=True)
Money = BigInteger
ID = String(64)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Shop(Base):
    __tablename__ = "shops"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    jwt_secret: Mapped[str] = mapped_column(SecretText)  # signs this shop's bearer tokens (SH-0); encrypted at rest
    public_key: Mapped[str] = mapped_column(Text)  # storefront-public: resolves invite codes (DS-2)
    created_at: Mapped[datetime] = mapped_column(TS)
    previous_jwt_secret: Mapped[str | None] = mapped_column(SecretText)  # verifies too until ..._until (rotation)
    previous_jwt_secret_until: Mapped[datetime | None] = mapped_column(TS)
    tokens_not_before: Mapped[datetime | None] = mapped_column(TS)  # tokens issued before it are revoked
    overflow_reseat: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # GB-14, off by default
    __table_args__ = (UniqueConstraint("shop_id", "public_key"),)


class DistributionSettingsRow(Base):
    """SH-2: one distribution settings record per shop (section 3)."""

    __tablename__ = "distribution_settings"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))
    binding: Mapped[str] = mapped_column(String(20))
    binding_days: Mapped[int | None] = mapped_column(Integer)
    bind_new_users_only: Mapped[bool] = mapped_column(Boolean)
    level1_bp: Mapped[int] = mapped_column(Integer)
    level2_bp: Mapped[int] = mapped_column(Integer)
    self_purchase: Mapped[bool] = mapped_column(Boolean)
    freeze_days: Mapped[int] = mapped_column(Integer)
    max_total_bp: Mapped[int] = mapped_column(Integer)
    min_payout: Mapped[int] = mapped_column(Money)
    payout_fee_bp: Mapped[int] = mapped_column(Integer)
    spend_threshold: Mapped[int] = mapped_column(Money)
    order_code_overrides: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # RF-3 (b)
    __table_args__ = (ForeignKeyConstraint(["shop_id"], ["shops.shop_id"]),)


class LevelRow(Base):
    """LV-1: a shop's ordered distributor levels."""

    __tablename__ = "levels"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    grade: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    level1_bp: Mapped[int] = mapped_column(Integer)
    level2_bp: Mapped[int] = mapped_column(Integer)
    upgrade_bonus: Mapped[int] = mapped_column(Money, server_default="0")
    min_direct_referrals: Mapped[int] = mapped_column(Integer, server_default="0")
    min_team_size: Mapped[int] = mapped_column(Integer, server_default="0")
    min_own_spend: Mapped[int] = mapped_column(Money, server_default="0")
    min_own_orders: Mapped[int] = mapped_column(Integer, server_default="0")
    min_direct_sales: Mapped[int] = mapped_column(Money, server_default="0")
    min_team_sales: Mapped[int] = mapped_column(Money, server_default="0")
    __table_args__ = (ForeignKeyConstraint(["shop_id"], ["shops.shop_id"]),)


class User(Base):
    __tablename__ = "users"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(TS)
    # maintained in the same transaction as the orders that change them (LV-1 metrics, RP-3)
    paid_orders: Mapped[int] = mapped_column(Integer, server_default="0")
    net_spend: Mapped[int] = mapped_column(Money, server_default="0")
    first_paid_at: Mapped[datetime | None] = mapped_column(TS)
    last_paid_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (ForeignKeyConstraint(["shop_id"], ["shops.shop_id"]),)


class Balances:
    """The six LG-1 buckets in minor units: a distributor's stored balances, and the ledger's own totals of them."""

    pending: Mapped[int] = mapped_column(Money, server_default="0")
    frozen: Mapped[int] = mapped_column(Money, server_default="0")
    available: Mapped[int] = mapped_column(Money, server_default="0")
    in_payout: Mapped[int] = mapped_column(Money, server_default="0")
    paid: Mapped[int] = mapped_column(Money, server_default="0")
    fees: Mapped[int] = mapped_column(Money, server_default="0")


class Distributor(Balances, Base):
    """DS-1 status, LV level, and the stored balances of LG-1 (moved only with ledger entries)."""

    __tablename__ = "distributors"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    invite_code: Mapped[str] = mapped_column(String(32))
    grade: Mapped[int] = mapped_column(Integer, server_default="0")
    bonuses_credited: Mapped[list] = mapped_column(JSONB, server_default="[]")
    applied_at: Mapped[datetime | None] = mapped_column(TS)
    approved_at: Mapped[datetime | None] = mapped_column(TS)
    approved_by: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        UniqueConstraint("shop_id", "invite_code"),
        ForeignKeyConstraint(["shop_id", "user_id"], ["users.shop_id", "users.user_id"]),
    )


class DistributorAudit(Base):
    """Who changed a distributor's status or level, when and why (DS-1, LV-3)."""

    __tablename__ = "distributor_audit"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    audit_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    action: Mapped[str] = mapped_column(String(32))
    from_value: Mapped[str | None] = mapped_column(Text)
    to_value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (Index(None, "shop_id", "user_id", "at"),)


class Binding(Base):
    """RF-1: the current referrer of a user (history in binding_history)."""

    __tablename__ = "bindings"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    referrer_id: Mapped[str] = mapped_column(ID)
    bound_at: Mapped[datetime] = mapped_column(TS)
    source: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    reason: Mapped[str | None] = mapped_column(Text)  # RF-3 (c): an admin's binding says why
    bound_by: Mapped[str | None] = mapped_column(ID)  # RF-3 (c): the admin
    __table_args__ = (
        Index(None, "shop_id", "referrer_id"),
        ForeignKeyConstraint(["shop_id", "user_id"], ["users.shop_id", "users.user_id"]),
    )


class BindingHistory(Base):
    __tablename__ = "binding_history"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    entry_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    referrer_id: Mapped[str] = mapped_column(ID)
    source: Mapped[str] = mapped_column(String(20))
    bound_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    reason: Mapped[str | None] = mapped_column(Text)  # RF-3 (c)
    bound_by: Mapped[str | None] = mapped_column(ID)
    previous_referrer_id: Mapped[str | None] = mapped_column(ID)  # the live referrer this binding replaced
    campaign_id: Mapped[str | None] = mapped_column(ID)  # RF-3 (a) / RP-6: the campaign of a group link
    __table_args__ = (Index(None, "shop_id", "referrer_id", "bound_at"),)  # RP-5 new referrals, RP-6 bindings


class OrderAttribution(Base):
    """RF-3 (b): a reported order whose code names another distributor than the buyer's live referrer, in a
    shop with `order_code_overrides`: the order's RF-2 snapshot takes `referrer_id` as level 1."""

    __tablename__ = "order_attributions"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    referrer_id: Mapped[str] = mapped_column(ID)
    invite_code: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (ForeignKeyConstraint(["shop_id", "order_id"], ["orders.shop_id", "orders.order_id"]),)


class Visit(Base):
    """RP-6: a visit of a shared link, recorded by a storefront with the shop's public key. `visitor_id` is
    the storefront's anonymous id of the browser (no personal data)."""

    __tablename__ = "visits"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    visit_id: Mapped[str] = mapped_column(ID, primary_key=True)
    distributor_id: Mapped[str] = mapped_column(ID)
    campaign_id: Mapped[str | None] = mapped_column(ID)
    product_ref: Mapped[str | None] = mapped_column(String(128))
    visitor_id: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (
        Index(None, "shop_id", "distributor_id", "at"),
        Index(None, "shop_id", "campaign_id", "at"),
    )


class Product(Base):
    """OR-3: known by external reference; commission terms of CM-3."""

    __tablename__ = "products"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    product_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(Text, server_default="")
    category: Mapped[str] = mapped_column(Text, server_default="")
    earns_commission: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    level1_amount: Mapped[int | None] = mapped_column(Money)
    level2_amount: Mapped[int | None] = mapped_column(Money)


class CampaignRow(Base):
    __tablename__ = "campaigns"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID, primary_key=True)
    product_ref: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text, server_default="")
    list_price: Mapped[int] = mapped_column(Money)
    tiers: Mapped[list] = mapped_column(JSONB)
    variants: Mapped[list] = mapped_column(JSONB, server_default="[]")
    leader_discount: Mapped[int] = mapped_column(Money, server_default="0")
    leader_commission_bp: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[int] = mapped_column(Integer)
    payment_window_s: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(TS)
    ends_at: Mapped[datetime] = mapped_column(TS)
    stock: Mapped[int | None] = mapped_column(BigInteger)
    stock_left: Mapped[int | None] = mapped_column(BigInteger)  # guarded UPDATE ... WHERE stock_left >= q
    per_user_limit: Mapped[int | None] = mapped_column(Integer)
    max_quantity_per_order: Mapped[int] = mapped_column(Integer, server_default="1")
    new_members_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    fill_at_expiry: Mapped[int | None] = mapped_column(Integer)
    lottery_winners: Mapped[int] = mapped_column(Integer, server_default="0")
    lottery_seed: Mapped[str] = mapped_column(Text)
    commission_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(TS)
    almost_full_at: Mapped[int] = mapped_column(Integer, server_default="1")  # GB-15: seats missing
    expiring_soon_before_s: Mapped[int] = mapped_column(Integer, server_default="3600")  # GB-15


class CampaignUserUnits(Base):
    """Units a user holds in a campaign (reserved + paid): the per-user limit is a guarded upsert."""

    __tablename__ = "campaign_user_units"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    units: Mapped[int] = mapped_column(Integer)
    __table_args__ = (ForeignKeyConstraint(["shop_id", "campaign_id"], ["campaigns.shop_id", "campaigns.campaign_id"]),)


class GroupRow(Base):
    __tablename__ = "groups"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(ID, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID)
    variant: Mapped[str | None] = mapped_column(Text)
    tiers: Mapped[list] = mapped_column(JSONB)
    leader_user_id: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    formed_at: Mapped[datetime | None] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    tier_members: Mapped[int | None] = mapped_column(Integer)
    winners: Mapped[list] = mapped_column(JSONB, server_default="[]")
    held_seats: Mapped[int] = mapped_column(Integer, server_default="0")
    paid_seats: Mapped[int] = mapped_column(Integer, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(TS)  # GB-11: next instant the worker must look
    lottery_seed: Mapped[str | None] = mapped_column(SecretText)  # GB-7 v2: secret until the group draws
    lottery_commitment: Mapped[str | None] = mapped_column(Text)  # GB-7 v2: SHA-256(seed), public from opening
    nudged_almost_full_at: Mapped[datetime | None] = mapped_column(TS)  # GB-15: emitted once
    nudged_expiring_soon_at: Mapped[datetime | None] = mapped_column(TS)  # GB-15: emitted once
    __table_args__ = (
        ForeignKeyConstraint(["shop_id", "campaign_id"], ["campaigns.shop_id", "campaigns.campaign_id"]),
        Index(None, "shop_id", "campaign_id", "state"),
        Index("ix_groups_due", "due_at", postgresql_where=text("due_at IS NOT NULL")),
    )


class SeatRow(Base):
    __tablename__ = "seats"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str] = mapped_column(ID)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Money)
    role: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(10))
    reserved_at: Mapped[datetime] = mapped_column(TS)
    pay_by: Mapped[datetime] = mapped_column(TS)
    paid_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        ForeignKeyConstraint(["shop_id", "group_id"], ["groups.shop_id", "groups.group_id"]),
        Index(None, "shop_id", "group_id"),
        # GB-2: a user holds at most one seat in a group, enforced by the database too
        Index(
            "uq_seats_active_user",
            "shop_id",
            "group_id",
            "user_id",
            unique=True,
            postgresql_where=text("state IN ('RESERVED', 'PAID')"),
        ),
    )


class Order(Base):
    """OR-1/OR-2. Group orders are created by GB-1/GB-2; others are reported by the backend."""

    __tablename__ = "orders"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    buyer_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(8))  # GROUP | PLAIN
    campaign_id: Mapped[str | None] = mapped_column(ID)
    group_id: Mapped[str | None] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(12))  # CREATED PAID COMPLETED CANCELLED
    goods_amount: Mapped[int] = mapped_column(Money)  # CM-1 base before refunds
    shipping_amount: Mapped[int] = mapped_column(Money, server_default="0")
    tax_amount: Mapped[int] = mapped_column(Money, server_default="0")
    paid_amount: Mapped[int] = mapped_column(Money, server_default="0")
    refunded_amount: Mapped[int] = mapped_column(Money, server_default="0")  # decided refunds (owed or done)
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), server_default="NONE")  # RP-4 acquisition source
    level1_id: Mapped[str | None] = mapped_column(ID)  # RF-2 snapshot at payment
    level2_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(TS)
    paid_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    cancelled_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        UniqueConstraint("shop_id", "external_id"),
        Index(None, "shop_id", "buyer_id", "paid_at"),
        Index(None, "shop_id", "group_id"),
        Index(None, "shop_id", "level1_id", "paid_at"),  # RP-5 downline and leaderboard
        Index(None, "shop_id", "level2_id", "paid_at"),
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_ref: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(Text, server_default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Money)
    discount: Mapped[int] = mapped_column(Money, server_default="0")
    __table_args__ = (ForeignKeyConstraint(["shop_id", "order_id"], ["orders.shop_id", "orders.order_id"]),)


class Payment(Base):
    """GB-10: a payment confirmation is idempotent by the provider's reference."""

    __tablename__ = "payments"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    provider_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(Money)
    accepted: Mapped[bool] = mapped_column(Boolean)  # False: late payment answered by GB-9 refund
    received_at: Mapped[datetime] = mapped_column(TS)


class Refund(Base):
    """A refund decided by the rules (OWED, e.g. GB-5/6/7/8/9) or reported by the backend, and its
    confirmation by the payment provider's reference (GB-10).

    Append-only (triggers in migration 0007): the database refuses DELETE and TRUNCATE and every UPDATE
    but the confirmation (OWED -> CONFIRMED setting provider_ref and confirmed_at), and at commit checks
    that an order's refunds sum to its refunded_amount, never above its paid_amount (OR-2)."""

    __tablename__ = "refunds"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    refund_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(Money)
    rule: Mapped[str] = mapped_column(String(8))
    full: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(10))  # OWED | CONFIRMED
    provider_ref: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS)
    confirmed_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        UniqueConstraint("shop_id", "provider_ref"),
        Index(None, "shop_id", "order_id"),
        Index("ix_refunds_owed", "shop_id", "created_at", "refund_id", postgresql_where=text("state = 'OWED'")),
    )


class CommissionLineRow(Base):
    __tablename__ = "commission_lines"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    line_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID)
    beneficiary_id: Mapped[str] = mapped_column(ID)
    level: Mapped[int] = mapped_column(Integer)  # 1, 2, or 0 for the group leader's reward
    group_id: Mapped[str | None] = mapped_column(ID)  # leader reward: the group whose members' refunds reduce it
    base: Mapped[int] = mapped_column(Money)  # B of CM-5: the paid base the line was computed on
    base_refunded: Mapped[int] = mapped_column(Money, server_default="0")  # R of CM-5 so far
    original: Mapped[int] = mapped_column(Money)
    standing: Mapped[int] = mapped_column(Money)
    state: Mapped[str] = mapped_column(String(10))
    releasable: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(TS)
    available_at: Mapped[datetime | None] = mapped_column(TS)
    held: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # FR-3: in review, not released
    __table_args__ = (
        Index(None, "shop_id", "order_id"),
        Index(None, "shop_id", "beneficiary_id", "created_at"),
        Index("ix_commission_lines_due", "available_at", postgresql_where=text("state = 'FROZEN'")),
    )


class LedgerEntry(Base):
    """LG-1: append-only. The database refuses UPDATE and DELETE (trigger in the migration)."""

    __tablename__ = "ledger_entries"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    entry_id: Mapped[str] = mapped_column(ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    distributor_id: Mapped[str] = mapped_column(ID)
    bucket: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(Money)
    kind: Mapped[str] = mapped_column(String(24))
    ref_type: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[str] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (
        Index(None, "shop_id", "distributor_id", "created_at"),
        Index(None, "shop_id", "created_at"),
    )


class LedgerTotals(Balances, Base):
    """LG-1 at commit (migration 0010): per distributor, the sum of its ledger entries in each bucket, kept by a
    trigger on ledger_entries alone (the service's role may only read it). A deferred constraint trigger refuses
    any commit after which a distributor's stored balances differ from these."""

    __tablename__ = "ledger_totals"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    distributor_id: Mapped[str] = mapped_column(ID, primary_key=True)


class Payout(Base):
    __tablename__ = "payouts"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    payout_id: Mapped[str] = mapped_column(ID, primary_key=True)
    distributor_id: Mapped[str] = mapped_column(ID)
    amount: Mapped[int] = mapped_column(Money)
    fee: Mapped[int] = mapped_column(Money, server_default="0")
    state: Mapped[str] = mapped_column(String(10))  # REQUESTED APPROVED REJECTED FAILED (LG-4)
    requested_at: Mapped[datetime] = mapped_column(TS)
    decided_at: Mapped[datetime | None] = mapped_column(TS)
    decided_by: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    # LG-4: the payee method chosen at request (kind and a masked reference, never the account itself) and,
    # for a transfer that failed after approval, who marked it, when, the transfer reference and why
    payee_kind: Mapped[str | None] = mapped_column(String(16))
    payee_reference: Mapped[str | None] = mapped_column(String(16))
    failed_at: Mapped[datetime | None] = mapped_column(TS)
    failed_by: Mapped[str | None] = mapped_column(Text)
    failure_ref: Mapped[str | None] = mapped_column(String(128))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index(None, "shop_id", "distributor_id", "requested_at"),
        Index("ix_payouts_requested", "shop_id", "requested_at", postgresql_where=text("state = 'REQUESTED'")),
    )


class IdempotencyKey(Base):
    """GB-10: a retryable mutation's key, the hash of its request and its first result."""

    __tablename__ = "idempotency_keys"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS)


class Event(Base):
    """Transactional outbox: written in the same transaction as the change it reports; never changed.

    `seq` is taken at INSERT, not at commit, so seq order is not commit order: a reader that has seen
    seq 2 may see seq 1 commit later. Readers page the shop's feed instead (`EventFeed`): every committed
    event gets the next per-shop `position` after it committed (service/jobs/feed.py), so nothing can later
    appear before a position already read. `position` is loaded only by the feed's queries."""

    __tablename__ = "events"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    type: Mapped[str] = mapped_column(String(48))
    aggregate_type: Mapped[str] = mapped_column(String(24))
    aggregate_id: Mapped[str] = mapped_column(ID)
    rule: Mapped[str | None] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    payload: Mapped[dict] = mapped_column(JSONB)
    position: Mapped[int | None] = query_expression()
    __table_args__ = (Index(None, "shop_id", "seq"),)


class EventFeed(Base):
    """A shop's events in commit order: `position` 1, 2, 3 … per shop, given by the sequencer to events that
    had committed (service/jobs/feed.py). Append-only (migration 0012): a position once read never changes."""

    __tablename__ = "event_feed"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID)
    __table_args__ = (UniqueConstraint("shop_id", "event_id"),)


class EventFeedHead(Base):
    """Per shop, the last position given: the row the sequencer locks, so a shop's positions are given one
    batch at a time and each batch commits before the next one is read."""

    __tablename__ = "event_feed_heads"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class EventFeedQueue(Base):
    """The events written but not yet given a position: one row per event, written by the events INSERT
    itself (trigger `events_to_feed`, so it commits iff the event does) and removed when the event gets
    its position. Keeps the sequencer's work proportional to what is new."""

    __tablename__ = "event_feed_queue"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index(None, "shop_id", "seq"),)


# LG-3 on every batch and line, checked by the database (migration 0006)
# LG-3 + LG-4: payouts that failed come back (what was paid and its fee) in `failed`. `held` (FR-3) is a figure
# beside the identity: commission held for review at the period end, never part of the settled balance.
SETTLEMENT_IDENTITY = "closing = opening + released + reversals + bonuses - payouts - fees + failed"


class Settlement(Base):
    """LG-3: an immutable settlement batch for a half-open period [period_from, period_to)."""

    __tablename__ = "settlements"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ID, primary_key=True)
    period_from: Mapped[datetime] = mapped_column(TS)
    period_to: Mapped[datetime] = mapped_column(TS)
    local_from: Mapped[str] = mapped_column(String(32))  # as finance asked, in the shop time zone
    local_to: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    closed_at: Mapped[datetime] = mapped_column(TS)
    closed_by: Mapped[str] = mapped_column(Text)
    distributors: Mapped[int] = mapped_column(Integer)
    opening: Mapped[int] = mapped_column(Money)
    released: Mapped[int] = mapped_column(Money)
    reversals: Mapped[int] = mapped_column(Money)
    bonuses: Mapped[int] = mapped_column(Money)
    payouts: Mapped[int] = mapped_column(Money)
    fees: Mapped[int] = mapped_column(Money)
    failed: Mapped[int] = mapped_column(Money, server_default="0")
    closing: Mapped[int] = mapped_column(Money)
    held: Mapped[int] = mapped_column(Money, server_default="0")
    __table_args__ = (
        UniqueConstraint("shop_id", "period_from"),
        UniqueConstraint("shop_id", "period_to"),
        CheckConstraint(SETTLEMENT_IDENTITY, name="identity"),
    )


class SettlementLine(Base):
    __tablename__ = "settlement_lines"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ID, primary_key=True)
    distributor_id: Mapped[str] = mapped_column(ID, primary_key=True)
    opening: Mapped[int] = mapped_column(Money)
    released: Mapped[int] = mapped_column(Money)
    reversals: Mapped[int] = mapped_column(Money)
    bonuses: Mapped[int] = mapped_column(Money)
    payouts: Mapped[int] = mapped_column(Money)
    fees: Mapped[int] = mapped_column(Money)
    failed: Mapped[int] = mapped_column(Money, server_default="0")
    closing: Mapped[int] = mapped_column(Money)
    held: Mapped[int] = mapped_column(Money, server_default="0")
    __table_args__ = (
        ForeignKeyConstraint(["shop_id", "settlement_id"], ["settlements.shop_id", "settlements.settlement_id"]),
        CheckConstraint(SETTLEMENT_IDENTITY, name="identity"),
    )


class PaymentFingerprint(Base):
    """FR-1: a payment's fingerprints, as keyed hashes (HMAC under the shop's key), never the raw values."""

    __tablename__ = "payment_fingerprints"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # PAYER DEVICE IP ADDRESS
    hash: Mapped[str] = mapped_column(String(64))
    buyer_id: Mapped[str] = mapped_column(ID)
    paid_at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (Index(None, "shop_id", "hash", "paid_at"), Index(None, "shop_id", "buyer_id"))


class FraudRulesRow(Base):
    """FR-2: the shop's rules, each on or off with its thresholds (seconds, basis points)."""

    __tablename__ = "fraud_rules"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    self_dealing: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    velocity: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    velocity_max_orders: Mapped[int] = mapped_column(Integer, server_default="5")
    velocity_window: Mapped[int] = mapped_column(Integer, server_default="86400")
    scalper_group: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    scalper_min_seats: Mapped[int] = mapped_column(Integer, server_default="2")
    refund_rate: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    refund_rate_window: Mapped[int] = mapped_column(Integer, server_default="2592000")
    refund_rate_max_bp: Mapped[int] = mapped_column(Integer, server_default="3000")
    refund_rate_min_orders: Mapped[int] = mapped_column(Integer, server_default="5")
    updated_at: Mapped[datetime | None] = mapped_column(TS)
    updated_by: Mapped[str | None] = mapped_column(Text)


class FraudFlag(Base):
    """FR-3/FR-4: one item of the review queue — a commission line (`line_id`) or a group (`group_id`) that a
    rule flagged, with the rules and their evidence, who flagged it and when (the system, at payment), and its
    resolution: CLEARED, VOIDED or DISSOLVED by an admin, when, why."""

    __tablename__ = "fraud_flags"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    flag_id: Mapped[str] = mapped_column(ID, primary_key=True)
    subject: Mapped[str] = mapped_column(String(8))  # LINE GROUP
    line_id: Mapped[str | None] = mapped_column(ID)
    group_id: Mapped[str | None] = mapped_column(ID)
    order_id: Mapped[str | None] = mapped_column(ID)
    beneficiary_id: Mapped[str | None] = mapped_column(ID)
    rules: Mapped[list] = mapped_column(JSONB)
    evidence: Mapped[dict] = mapped_column(JSONB)
    amount: Mapped[int] = mapped_column(Money, server_default="0")  # held when flagged (a line's standing)
    state: Mapped[str] = mapped_column(String(10))  # OPEN CLEARED VOIDED DISSOLVED
    flagged_at: Mapped[datetime] = mapped_column(TS)
    flagged_by: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    resolved_by: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index(None, "shop_id", "state", "flagged_at"),
        Index(None, "shop_id", "line_id"),
        Index(None, "shop_id", "group_id"),
    )


class WebhookEndpoint(Base):
    """A shop's webhook receiver. During a secret rotation the previous secret also signs, until
    `previous_secret_until`, so receivers can switch without losing deliveries."""

    __tablename__ = "webhook_endpoints"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ID, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list] = mapped_column(JSONB, server_default="[]")  # [] = every type
    secret: Mapped[str] = mapped_column(SecretText)  # encrypted at rest (store.secrets)
    previous_secret: Mapped[str | None] = mapped_column(SecretText)
    previous_secret_until: Mapped[datetime | None] = mapped_column(TS)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(TS)  # first failed attempt since the last success
    disabled_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)


class WebhookDelivery(Base):
    """One event owed to one endpoint; created by a trigger in the event's own transaction, also while
    the endpoint is disabled (held until it is enabled again)."""

    __tablename__ = "webhook_deliveries"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    aggregate_id: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(10), server_default="PENDING")  # PENDING DELIVERED DEAD
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)
    delivered_at: Mapped[datetime | None] = mapped_column(TS)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # the claim of a worker posting it now: no transaction is held across a POST (service/usecases/webhooks.py)
    lease_until: Mapped[datetime | None] = mapped_column(TS)
    lease_token: Mapped[str | None] = mapped_column(ID)
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'PENDING'")),
        Index(None, "shop_id", "endpoint_id", "aggregate_id", "seq"),
        Index(None, "shop_id", "endpoint_id", "seq"),
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    shop_id: Mapped[str] = mapped_column(ID, primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ID)
    event_id: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime] = mapped_column(TS)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index(None, "shop_id", "endpoint_id", "event_id"), Index(None, "shop_id", "endpoint_id", "at"))


# Tables that are no shop's data: exempt from "every key starts with shop_id" (tests/integration/
# test_migrations.py holds this list exact). On Citus they stay local tables on the coordinator, where
# every application connection goes (docs/operations.md, "Readiness"): never distributed, and not a
# reference table either, since a heartbeat every few seconds needs no copy on every worker node.
NOT_SHOP_DATA = {"worker_heartbeats"}


class WorkerHeartbeat(Base):
    """One row per running worker process (`worker_id` = host:pid:random), its last beat by the database
    clock. /ready wants one younger than SHARECART_READY_WORKER_MAX_AGE; a worker that stops cleanly
    deletes its row, one that dies leaves a row that only ages (pruned after a day)."""

    __tablename__ = "worker_heartbeats"
    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(TS)
    beat_at: Mapped[datetime] = mapped_column(TS)
