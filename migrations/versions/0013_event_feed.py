"""event feed: a commit-ordered position per shop, replacing the transaction-id horizon

- event_feed (shop_id, position, event_id): append-only; the sequencer (service/jobs/feed.py) gives each
  committed event the shop's next position. A cursor is a position: whatever commits late gets a later
  one, so no cursor skips it, and no transaction of another shop or database holds a shop's feed back.
- event_feed_heads: the per-shop row the sequencer locks, holding the last position given.
- event_feed_queue: the events not yet positioned, written by the events INSERT (trigger events_to_feed).
- events.txid and its index go: the horizon compared ids of one node with snapshots of another on Citus.
  The existing events are positioned in the order the old pull served them (txid, seq).

Revision ID: 0012
Revises: 0011 (re-chained after main's 0008-0011)
"""

from alembic import op
import sqlalchemy as sa

from store import citus

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_feed",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "position", name=op.f("pk_event_feed")),
        sa.UniqueConstraint("shop_id", "event_id", name=op.f("uq_event_feed_shop_id_event_id")),
    )
    op.create_table(
        "event_feed_heads",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_event_feed_heads")),
    )
    op.create_table(
        "event_feed_queue",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "event_id", name=op.f("pk_event_feed_queue")),
    )
    op.create_index(op.f("ix_event_feed_queue_shop_id_seq"), "event_feed_queue", ["shop_id", "seq"], unique=False)
    citus.distribute_now(op.get_bind())  # before the rows below: on Citus they go straight to the shards
    # a position read once never changes or disappears
    op.execute(
        """
        CREATE FUNCTION sharecart_refuse_feed_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'event_feed is append-only: % refused (a cursor would skip or repeat events)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER event_feed_append_only BEFORE UPDATE OR DELETE ON event_feed "
        "FOR EACH ROW EXECUTE FUNCTION sharecart_refuse_feed_change()"
    )
    op.execute(
        """
        CREATE FUNCTION sharecart_queue_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO event_feed_queue (shop_id, event_id, seq) VALUES (NEW.shop_id, NEW.event_id, NEW.seq);
            RETURN NULL;
        END $$;
        """
    )
    # the trigger first: events written from now on are queued, those before it are positioned below
    op.execute(
        "CREATE TRIGGER events_to_feed AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION sharecart_queue_event()"
    )
    op.execute(
        """
        INSERT INTO event_feed (shop_id, position, event_id)
        SELECT shop_id, row_number() OVER (PARTITION BY shop_id ORDER BY txid, seq), event_id FROM events
        """
    )
    op.execute(
        "INSERT INTO event_feed_heads (shop_id, position) "
        "SELECT shop_id, max(position) FROM event_feed GROUP BY shop_id"
    )
    op.drop_index(op.f("ix_events_shop_id_txid_seq"), table_name="events")
    op.drop_column("events", "txid")


def downgrade() -> None:
    # every event gets the downgrading transaction's id, as 0005 did: all of them are committed
    op.execute("ALTER TABLE events ADD COLUMN txid xid8 DEFAULT pg_current_xact_id() NOT NULL")
    op.create_index(op.f("ix_events_shop_id_txid_seq"), "events", ["shop_id", "txid", "seq"], unique=False)
    op.execute("DROP TRIGGER IF EXISTS events_to_feed ON events")
    op.execute("DROP FUNCTION IF EXISTS sharecart_queue_event()")
    op.execute("DROP TRIGGER IF EXISTS event_feed_append_only ON event_feed")
    op.execute("DROP FUNCTION IF EXISTS sharecart_refuse_feed_change()")
    op.drop_index(op.f("ix_event_feed_queue_shop_id_seq"), table_name="event_feed_queue")
    op.drop_table("event_feed_queue")
    op.drop_table("event_feed_heads")
    op.drop_table("event_feed")
