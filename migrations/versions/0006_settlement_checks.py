"""settlement checks: LG-3's identity enforced by the database

Revision ID: 0006
Revises: 0004 (re-chained after 0005 at merge)
"""

from alembic import op


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# closing = opening + released + reversals + bonuses − payouts − fees, on every batch and every line:
# a close whose aggregation does not reconcile fails in the same statement, and nothing is written.
IDENTITY = "closing = opening + released + reversals + bonuses - payouts - fees"


def upgrade() -> None:
    op.create_check_constraint(op.f("ck_settlements_identity"), "settlements", IDENTITY)
    op.create_check_constraint(op.f("ck_settlement_lines_identity"), "settlement_lines", IDENTITY)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_settlement_lines_identity"), "settlement_lines", type_="check")
    op.drop_constraint(op.f("ck_settlements_identity"), "settlements", type_="check")
