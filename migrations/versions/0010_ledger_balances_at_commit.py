"""LG-1 at every commit: a stored balance always equals the sum of its ledger entries (issue 11, point 7)

Until now only the service kept LG-1 (a balance moves by the sum of the entries written in the same transaction):
an `UPDATE distributors SET available = available + 1000` with no entry committed. Now the database keeps it:

- `ledger_totals` holds, per distributor, the sum of its ledger entries in each bucket. Only a trigger on
  `ledger_entries` writes it (AFTER INSERT, SECURITY DEFINER): entries are append-only (0002), so the totals are
  exactly the sums of the entries. The service's role may only read it (0011).
- Deferred constraint triggers check, at the commit of every transaction that changed a stored balance, inserted
  a non-zero entry or removed a distributor, that distributor's six balances against its totals; a difference
  refuses the commit (check_violation) and nothing of the transaction is kept. Deferred, because the service
  writes the entries and the balance change in one flush in no guaranteed order.

Cost per commit: two primary-key reads per changed distributor, whatever its history (a check that summed the
entries took ~10 ms per distributor with 5,000 entries). Lock order is unchanged: the service moves a balance
(locking the distributor row) before it inserts the entries (which lock the totals row).

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BALANCES = ("pending", "frozen", "available", "in_payout", "paid", "fees")


def upgrade() -> None:
    op.create_table(
        "ledger_totals",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("distributor_id", sa.String(length=64), nullable=False),
        *[sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in BALANCES],
        sa.PrimaryKeyConstraint("shop_id", "distributor_id", name=op.f("pk_ledger_totals")),
    )
    op.execute(
        f"""
        INSERT INTO ledger_totals (shop_id, distributor_id, {", ".join(BALANCES)})
        SELECT shop_id, distributor_id, {
            ", ".join(f"COALESCE(sum(amount) FILTER (WHERE bucket = '{c.upper()}'), 0)" for c in BALANCES)
        }
        FROM ledger_entries GROUP BY shop_id, distributor_id
        """
    )
    cases = ", ".join(
        f"{c} = ledger_totals.{c} + CASE WHEN NEW.bucket = '{c.upper()}' THEN NEW.amount ELSE 0 END" for c in BALANCES
    )
    inserted = ", ".join(f"CASE WHEN NEW.bucket = '{c.upper()}' THEN NEW.amount ELSE 0 END" for c in BALANCES)
    op.execute(
        f"""
        CREATE FUNCTION sharecart_add_to_totals() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
            IF NEW.bucket NOT IN ({", ".join(f"'{c.upper()}'" for c in BALANCES)}) THEN
                RAISE EXCEPTION 'LG-1: unknown ledger bucket %', NEW.bucket USING ERRCODE = 'check_violation';
            END IF;
            INSERT INTO ledger_totals (shop_id, distributor_id, {", ".join(BALANCES)})
            VALUES (NEW.shop_id, NEW.distributor_id, {inserted})
            ON CONFLICT (shop_id, distributor_id) DO UPDATE SET {cases};
            RETURN NULL;
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER ledger_entries_totals AFTER INSERT ON ledger_entries FOR EACH ROW "
        "EXECUTE FUNCTION sharecart_add_to_totals()"
    )
    stored = ", ".join(f"d.{c}" for c in BALANCES)
    summed = ", ".join(f"t.{c}" for c in BALANCES)
    op.execute(
        f"""
        CREATE FUNCTION sharecart_check_balances() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            sid text;
            uid text;
            stored bigint[];
            summed bigint[];
        BEGIN
            IF TG_TABLE_NAME = 'ledger_entries' THEN
                sid := NEW.shop_id; uid := NEW.distributor_id;
            ELSIF TG_OP = 'DELETE' THEN
                sid := OLD.shop_id; uid := OLD.user_id;
            ELSE
                sid := NEW.shop_id; uid := NEW.user_id;
            END IF;
            SELECT ARRAY[{stored}] INTO stored FROM distributors d WHERE d.shop_id = sid AND d.user_id = uid;
            SELECT ARRAY[{summed}] INTO summed FROM ledger_totals t WHERE t.shop_id = sid AND t.distributor_id = uid;
            stored := COALESCE(stored, ARRAY[0, 0, 0, 0, 0, 0]::bigint[]);
            summed := COALESCE(summed, ARRAY[0, 0, 0, 0, 0, 0]::bigint[]);
            IF stored IS DISTINCT FROM summed THEN
                RAISE EXCEPTION 'LG-1: stored balances of distributor % in shop % are % but its ledger entries sum '
                                'to % (pending, frozen, available, in_payout, paid, fees)', uid, sid, stored, summed
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;
        """
    )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in BALANCES)
    nonzero = " OR ".join(f"NEW.{c} <> 0" for c in BALANCES)
    for name, when in (
        (
            "distributors_lg1_update",
            f"AFTER UPDATE ON distributors DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({changed})",
        ),
        (
            "distributors_lg1_insert",
            f"AFTER INSERT ON distributors DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({nonzero})",
        ),
        ("distributors_lg1_delete", "AFTER DELETE ON distributors DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"),
        (
            "ledger_entries_lg1",
            "AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.amount <> 0)",
        ),
    ):
        op.execute(f"CREATE CONSTRAINT TRIGGER {name} {when} EXECUTE FUNCTION sharecart_check_balances()")


def downgrade() -> None:
    for name, table in (
        ("ledger_entries_lg1", "ledger_entries"),
        ("distributors_lg1_delete", "distributors"),
        ("distributors_lg1_insert", "distributors"),
        ("distributors_lg1_update", "distributors"),
        ("ledger_entries_totals", "ledger_entries"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS sharecart_check_balances()")
    op.execute("DROP FUNCTION IF EXISTS sharecart_add_to_totals()")
    op.drop_table("ledger_totals")
