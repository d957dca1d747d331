"""group-buy v2 (issue 15): per-group lottery seed and commitment, nudges, quick-join/re-seat setting

- groups.lottery_seed (GB-7 v2): the group's secret seed, encrypted at rest like other secrets
  (store/secrets.py); revealed only once the group has drawn. groups.lottery_commitment: SHA-256 of
  the seed, public from the moment the group opens. Both NULL for groups opened before v2 (they draw
  with the v1 procedure and the campaign's seed, docs/lottery.md).
- groups.nudged_almost_full_at / nudged_expiring_soon_at (GB-15): when each nudge was emitted, so that
  each is emitted once per group.
- campaigns.almost_full_at (default 1 seat missing) and campaigns.expiring_soon_before_s (default
  3600 s) (GB-15).
- shops.overflow_reseat (GB-14, off by default).

Columns only: the tables are already distributed by shop_id (Citus propagates ADD COLUMN).

Revision ID: 0018 (numbered after 0016-0017, which landed first)
Revises: 0017 (re-chained after main's 0016-0017; developed on 0014)
"""

from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0017"  # re-chained after main's 0016-0017 (developed on 0014)
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("groups", sa.Column("lottery_seed", sa.Text(), nullable=True))
    op.add_column("groups", sa.Column("lottery_commitment", sa.Text(), nullable=True))
    op.add_column("groups", sa.Column("nudged_almost_full_at", TS, nullable=True))
    op.add_column("groups", sa.Column("nudged_expiring_soon_at", TS, nullable=True))
    op.add_column("campaigns", sa.Column("almost_full_at", sa.Integer(), server_default="1", nullable=False))
    op.add_column("campaigns", sa.Column("expiring_soon_before_s", sa.Integer(), server_default="3600", nullable=False))
    op.add_column("shops", sa.Column("overflow_reseat", sa.Boolean(), server_default=sa.text("false"), nullable=False))


def downgrade() -> None:
    op.drop_column("shops", "overflow_reseat")
    op.drop_column("campaigns", "expiring_soon_before_s")
    op.drop_column("campaigns", "almost_full_at")
    op.drop_column("groups", "nudged_expiring_soon_at")
    op.drop_column("groups", "nudged_almost_full_at")
    op.drop_column("groups", "lottery_commitment")
    op.drop_column("groups", "lottery_seed")
