"""fraud review (FR-1..FR-4) and payout failure (LG-4)

- payouts: the payee method chosen at request (kind, masked reference) and, for a transfer that failed after
  approval (state FAILED), when, by whom, the transfer reference and the reason (LG-4).
- commission_lines.held: a line flagged for review follows its life cycle but is not released (FR-3).
- settlements, settlement_lines: `failed` (what failed payouts gave back, LG-4) joins the identity;
  `held` (commission held for review at the period end, FR-3) is a figure beside it.
- payment_fingerprints (FR-1, keyed hashes only), fraud_rules (FR-2, per shop), fraud_flags (the review queue
  with who/when/why of every flag and resolution, FR-3/FR-4). New tables are distributed by shop_id by the
  migration environment (store/citus.py).

Revision ID: 0017
Revises: 0014 (re-chained by the lead at merge)
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

OLD_IDENTITY = "closing = opening + released + reversals + bonuses - payouts - fees"
IDENTITY = "closing = opening + released + reversals + bonuses - payouts - fees + failed"
TS = sa.DateTime(timezone=True)
ID = sa.String(length=64)


def upgrade() -> None:
    for name, type_ in (
        ("payee_kind", sa.String(length=16)),
        ("payee_reference", sa.String(length=16)),
        ("failed_at", TS),
        ("failed_by", sa.Text()),
        ("failure_ref", sa.String(length=128)),
        ("failure_reason", sa.Text()),
    ):
        op.add_column("payouts", sa.Column(name, type_, nullable=True))
    op.add_column("commission_lines", sa.Column("held", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    for table in ("settlements", "settlement_lines"):
        op.add_column(table, sa.Column("failed", sa.BigInteger(), server_default="0", nullable=False))
        op.add_column(table, sa.Column("held", sa.BigInteger(), server_default="0", nullable=False))
        op.drop_constraint(op.f(f"ck_{table}_identity"), table, type_="check")
        op.create_check_constraint(op.f(f"ck_{table}_identity"), table, IDENTITY)

    op.create_table(
        "payment_fingerprints",
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("buyer_id", ID, nullable=False),
        sa.Column("paid_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "order_id", "kind", name=op.f("pk_payment_fingerprints")),
    )
    op.create_index(
        op.f("ix_payment_fingerprints_shop_id_hash_paid_at"), "payment_fingerprints", ["shop_id", "hash", "paid_at"]
    )
    op.create_index(op.f("ix_payment_fingerprints_shop_id_buyer_id"), "payment_fingerprints", ["shop_id", "buyer_id"])

    op.create_table(
        "fraud_rules",
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("self_dealing", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("velocity", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("velocity_max_orders", sa.Integer(), server_default="5", nullable=False),
        sa.Column("velocity_window", sa.Integer(), server_default="86400", nullable=False),
        sa.Column("scalper_group", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("scalper_min_seats", sa.Integer(), server_default="2", nullable=False),
        sa.Column("refund_rate", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("refund_rate_window", sa.Integer(), server_default="2592000", nullable=False),
        sa.Column("refund_rate_max_bp", sa.Integer(), server_default="3000", nullable=False),
        sa.Column("refund_rate_min_orders", sa.Integer(), server_default="5", nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_fraud_rules")),
    )

    op.create_table(
        "fraud_flags",
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("flag_id", ID, nullable=False),
        sa.Column("subject", sa.String(length=8), nullable=False),
        sa.Column("line_id", ID, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("beneficiary_id", ID, nullable=True),
        sa.Column("rules", JSONB(), nullable=False),
        sa.Column("evidence", JSONB(), nullable=False),
        sa.Column("amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("flagged_at", TS, nullable=False),
        sa.Column("flagged_by", sa.Text(), nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("shop_id", "flag_id", name=op.f("pk_fraud_flags")),
    )
    op.create_index(op.f("ix_fraud_flags_shop_id_state_flagged_at"), "fraud_flags", ["shop_id", "state", "flagged_at"])
    op.create_index(op.f("ix_fraud_flags_shop_id_line_id"), "fraud_flags", ["shop_id", "line_id"])
    op.create_index(op.f("ix_fraud_flags_shop_id_group_id"), "fraud_flags", ["shop_id", "group_id"])


def downgrade() -> None:
    op.drop_table("fraud_flags")
    op.drop_table("fraud_rules")
    op.drop_table("payment_fingerprints")
    for table in ("settlement_lines", "settlements"):
        op.drop_constraint(op.f(f"ck_{table}_identity"), table, type_="check")
        op.create_check_constraint(op.f(f"ck_{table}_identity"), table, OLD_IDENTITY)
        op.drop_column(table, "held")
        op.drop_column(table, "failed")
    op.drop_column("commission_lines", "held")
    for name in ("failure_reason", "failure_ref", "failed_by", "failed_at", "payee_reference", "payee_kind"):
        op.drop_column("payouts", name)
