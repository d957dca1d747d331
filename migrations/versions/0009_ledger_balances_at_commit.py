"""LG-1 at every commit: a stored balance always equals the sum of its ledger entries (issue 11, point 7)

Until now only the service kept LG-1 (a balance moves by the sum of the entries written in the same transaction):
an `UPDATE distributors SET available = available + 1000` with no entry committed. Deferred constraint triggers now
check, at the commit of every transaction that changed a stored balance, inserted a non-zero entry or removed a
distributor, that distributor's six balances against the sums of its entries per bucket; a difference refuses the
commit (check_violation) and nothing of the transaction is kept. Deferred, because the service writes the entries
and the balance change in one flush in no guaranteed order.

The check reads one distributor's entries through an index on (shop_id, distributor_id, bucket) INCLUDE (amount),
once per changed row at commit.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BALANCES = ("pending", "frozen", "available", "in_payout", "paid", "fees")


def upgrade() -> None:
    op.execute("CREATE INDEX ix_ledger_entries_balance ON ledger_entries (shop_id, distributor_id, bucket) "
               "INCLUDE (amount)")
    op.execute(
        """
        CREATE FUNCTION sharecart_check_balances() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            sid text;
            uid text;
            d record;
            s record;
        BEGIN
            IF TG_TABLE_NAME = 'ledger_entries' THEN
                sid := NEW.shop_id; uid := NEW.distributor_id;
            ELSIF TG_OP = 'DELETE' THEN
                sid := OLD.shop_id; uid := OLD.user_id;
            ELSE
                sid := NEW.shop_id; uid := NEW.user_id;
            END IF;
            SELECT COALESCE(sum(amount) FILTER (WHERE bucket = 'PENDING'), 0) AS pending,
                   COALESCE(sum(amount) FILTER (WHERE bucket = 'FROZEN'), 0) AS frozen,
                   COALESCE(sum(amount) FILTER (WHERE bucket = 'AVAILABLE'), 0) AS available,
                   COALESCE(sum(amount) FILTER (WHERE bucket = 'IN_PAYOUT'), 0) AS in_payout,
                   COALESCE(sum(amount) FILTER (WHERE bucket = 'PAID'), 0) AS paid,
                   COALESCE(sum(amount) FILTER (WHERE bucket = 'FEES'), 0) AS fees
              INTO s FROM ledger_entries WHERE shop_id = sid AND distributor_id = uid;
            SELECT pending, frozen, available, in_payout, paid, fees INTO d
              FROM distributors WHERE shop_id = sid AND user_id = uid;
            IF NOT FOUND THEN
                SELECT 0::bigint AS pending, 0::bigint AS frozen, 0::bigint AS available, 0::bigint AS in_payout,
                       0::bigint AS paid, 0::bigint AS fees INTO d;
            END IF;
            IF (d.pending, d.frozen, d.available, d.in_payout, d.paid, d.fees)
               IS DISTINCT FROM (s.pending, s.frozen, s.available, s.in_payout, s.paid, s.fees) THEN
                RAISE EXCEPTION 'LG-1: stored balances of distributor % in shop % are % but its ledger entries sum '
                                'to % (pending, frozen, available, in_payout, paid, fees)',
                                uid, sid, d, s
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;
        """
    )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in BALANCES)
    nonzero = " OR ".join(f"NEW.{c} <> 0" for c in BALANCES)
    for name, when in (("distributors_lg1_update", f"AFTER UPDATE ON distributors DEFERRABLE INITIALLY DEFERRED "
                                                   f"FOR EACH ROW WHEN ({changed})"),
                       ("distributors_lg1_insert", f"AFTER INSERT ON distributors DEFERRABLE INITIALLY DEFERRED "
                                                   f"FOR EACH ROW WHEN ({nonzero})"),
                       ("distributors_lg1_delete", "AFTER DELETE ON distributors DEFERRABLE INITIALLY DEFERRED "
                                                   "FOR EACH ROW"),
                       ("ledger_entries_lg1", "AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED "
                                              "FOR EACH ROW WHEN (NEW.amount <> 0)")):
        op.execute(f"CREATE CONSTRAINT TRIGGER {name} {when} EXECUTE FUNCTION sharecart_check_balances()")


def downgrade() -> None:
    for name, table in (("ledger_entries_lg1", "ledger_entries"), ("distributors_lg1_delete", "distributors"),
                        ("distributors_lg1_insert", "distributors"), ("distributors_lg1_update", "distributors")):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS sharecart_check_balances()")
    op.execute("DROP INDEX IF EXISTS ix_ledger_entries_balance")
