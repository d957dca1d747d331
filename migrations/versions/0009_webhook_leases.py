"""webhook delivery leases: no transaction is held across a POST (issue 11, point 2)

A worker claims a delivery by setting `lease_until` (the database's clock plus the attempt's deadline and a
slack) and a `lease_token` in a short transaction, commits, posts with no transaction open, and records the
outcome in a second transaction guarded by the token. A process that dies mid-POST leaves a lease that expires.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_deliveries", sa.Column("lease_token", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "lease_token")
    op.drop_column("webhook_deliveries", "lease_until")
