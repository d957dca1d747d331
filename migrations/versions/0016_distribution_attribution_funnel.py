"""distribution v2 (issue 16, dista): RF-3 attribution, RP-5 downline indexes, RP-6 visits

- `distribution_settings.order_code_overrides` (RF-3 b);
- `bindings.reason`/`bound_by` and `binding_history.reason`/`bound_by`/`previous_referrer_id`/`campaign_id`
  (RF-3: every source visible on the binding, an admin's with who and why; RP-6 bindings per campaign);
- `order_attributions` (RF-3 b: a reported order's code overriding the live referrer for its snapshot);
- `visits` (RP-6), and indexes starting with shop_id for RP-5/RP-6 reads.
New tables are distributed by shop_id by the migration environment (store.citus.distribute_new_tables).

Revision ID: 0016
Revises: 0014
"""

from alembic import op
import sqlalchemy as sa

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "distribution_settings",
        sa.Column("order_code_overrides", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("bindings", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("bindings", sa.Column("bound_by", sa.String(length=64), nullable=True))
    for name, type_ in (
        ("reason", sa.Text()),
        ("bound_by", sa.String(length=64)),
        ("previous_referrer_id", sa.String(length=64)),
        ("campaign_id", sa.String(length=64)),
    ):
        op.add_column("binding_history", sa.Column(name, type_, nullable=True))
    op.create_index(
        op.f("ix_binding_history_shop_id_referrer_id_bound_at"),
        "binding_history",
        ["shop_id", "referrer_id", "bound_at"],
        unique=False,
    )
    op.create_table(
        "order_attributions",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("referrer_id", sa.String(length=64), nullable=False),
        sa.Column("invite_code", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id", "order_id"],
            ["orders.shop_id", "orders.order_id"],
            name=op.f("fk_order_attributions_shop_id_order_id_orders"),
        ),
        sa.PrimaryKeyConstraint("shop_id", "order_id", name=op.f("pk_order_attributions")),
    )
    op.create_table(
        "visits",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("visit_id", sa.String(length=64), nullable=False),
        sa.Column("distributor_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("product_ref", sa.String(length=128), nullable=True),
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "visit_id", name=op.f("pk_visits")),
    )
    op.create_index(
        op.f("ix_visits_shop_id_distributor_id_at"), "visits", ["shop_id", "distributor_id", "at"], unique=False
    )
    op.create_index(op.f("ix_visits_shop_id_campaign_id_at"), "visits", ["shop_id", "campaign_id", "at"], unique=False)
    op.create_index(
        op.f("ix_orders_shop_id_level1_id_paid_at"), "orders", ["shop_id", "level1_id", "paid_at"], unique=False
    )
    op.create_index(
        op.f("ix_orders_shop_id_level2_id_paid_at"), "orders", ["shop_id", "level2_id", "paid_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_orders_shop_id_level2_id_paid_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_shop_id_level1_id_paid_at"), table_name="orders")
    op.drop_index(op.f("ix_visits_shop_id_campaign_id_at"), table_name="visits")
    op.drop_index(op.f("ix_visits_shop_id_distributor_id_at"), table_name="visits")
    op.drop_table("visits")
    op.drop_table("order_attributions")
    op.drop_index(op.f("ix_binding_history_shop_id_referrer_id_bound_at"), table_name="binding_history")
    for name in ("campaign_id", "previous_referrer_id", "bound_by", "reason"):
        op.drop_column("binding_history", name)
    op.drop_column("bindings", "bound_by")
    op.drop_column("bindings", "reason")
    op.drop_column("distribution_settings", "order_code_overrides")
