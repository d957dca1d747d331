"""shop tokens: JWT secret rotation with an overlap, and revocation (issue 11 point 9)

- `previous_jwt_secret` / `previous_jwt_secret_until`: after `rotateJwtSecret` the old secret still verifies
  tokens until the overlap ends;
- `tokens_not_before`: `revokeTokens` sets it to now; tokens issued (`iat`) before it are refused.

Secrets stay TEXT: store.secrets encrypts them in the application (a value written before
SHARECART_SECRET_KEY existed is read as it is and encrypted on its next write).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("shops", sa.Column("previous_jwt_secret", sa.Text(), nullable=True))
    op.add_column("shops", sa.Column("previous_jwt_secret_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("shops", sa.Column("tokens_not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("shops", "tokens_not_before")
    op.drop_column("shops", "previous_jwt_secret_until")
    op.drop_column("shops", "previous_jwt_secret")
