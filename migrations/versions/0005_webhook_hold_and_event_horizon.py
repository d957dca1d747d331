"""webhooks held while disabled, endpoint failure window, event commit horizon

- events.txid (xid8): the writing transaction, so readers can page in an order nothing can later
  appear before (see store.models.Event).
- webhook_endpoints.failing_since: an endpoint is disabled only after failing for a real time window.
- The fan-out trigger queues deliveries for disabled endpoints too (held, sent once re-enabled):
  skipping them lost every event of the disabled period.
- Indexes for the keyset pages (owed refunds, an endpoint's deliveries and attempts, events).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FAN_OUT = """
CREATE OR REPLACE FUNCTION sharecart_fan_out_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (shop_id, endpoint_id, event_id, seq, aggregate_id, state, attempts,
                                    next_attempt_at, created_at)
    SELECT NEW.shop_id, e.endpoint_id, NEW.event_id, NEW.seq, NEW.aggregate_id, 'PENDING', 0,
           NEW.occurred_at, NEW.occurred_at
    FROM webhook_endpoints e
    WHERE e.shop_id = NEW.shop_id {enabled}
      AND (jsonb_array_length(e.event_types) = 0 OR e.event_types ? NEW.type);
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    # Existing rows get the migrating transaction's id: they are committed before anyone reads them.
    op.execute("ALTER TABLE events ADD COLUMN txid xid8 DEFAULT pg_current_xact_id() NOT NULL")
    op.create_index(op.f("ix_events_shop_id_txid_seq"), "events", ["shop_id", "txid", "seq"], unique=False)
    op.add_column("webhook_endpoints", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_webhook_deliveries_shop_id_endpoint_id_seq"),
        "webhook_deliveries",
        ["shop_id", "endpoint_id", "seq"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_attempts_shop_id_endpoint_id_at"),
        "webhook_attempts",
        ["shop_id", "endpoint_id", "at"],
        unique=False,
    )
    op.drop_index("ix_refunds_owed", table_name="refunds", postgresql_where=sa.text("state = 'OWED'"))
    op.create_index(
        "ix_refunds_owed",
        "refunds",
        ["shop_id", "created_at", "refund_id"],
        unique=False,
        postgresql_where=sa.text("state = 'OWED'"),
    )
    op.execute(FAN_OUT.format(enabled=""))


def downgrade() -> None:
    op.execute(FAN_OUT.format(enabled="AND e.enabled"))
    op.drop_index("ix_refunds_owed", table_name="refunds", postgresql_where=sa.text("state = 'OWED'"))
    op.create_index(
        "ix_refunds_owed",
        "refunds",
        ["shop_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'OWED'"),
    )
    op.drop_index(op.f("ix_webhook_attempts_shop_id_endpoint_id_at"), table_name="webhook_attempts")
    op.drop_index(op.f("ix_webhook_deliveries_shop_id_endpoint_id_seq"), table_name="webhook_deliveries")
    op.drop_column("webhook_endpoints", "failing_since")
    op.drop_index(op.f("ix_events_shop_id_txid_seq"), table_name="events")
    op.drop_column("events", "txid")
