"""trigger functions name their table the same on a Citus shard as on PostgreSQL (issue 17)

On Citus a trigger of a distributed table runs on each shard, where TG_TABLE_NAME is the shard's name
(`ledger_entries_102040`), not the table's. Two trigger functions read it:

- `sharecart_check_balances` (0010) picks the distributor's column by table: on a shard of `ledger_entries`
  it took the `distributors` branch and failed on `NEW.user_id` (every ledger entry refused);
- `sharecart_refuse_ledger_change` (0002) named the shard in its refusal.

Both now take the table's name without the shard suffix (Citus names a shard `<table>_<shard id>`; no table
of the schema ends in `_<digits>`, tests/integration/test_citus_routing.py checks it). On PostgreSQL the
name has no such suffix and nothing changes. CREATE OR REPLACE on the coordinator reaches the workers: both
functions are distributed objects there (the triggers' dependencies).

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BALANCES = ("pending", "frozen", "available", "in_payout", "paid", "fees")
TABLE = "regexp_replace(TG_TABLE_NAME, '_[0-9]+$', '')"  # a Citus shard's name is `<table>_<shard id>`


def _refuse(table: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION sharecart_refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only (LG-1, LG-3): % refused', {table}, TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;
        """


def _check_balances(table: str) -> str:
    stored = ", ".join(f"d.{c}" for c in BALANCES)
    summed = ", ".join(f"t.{c}" for c in BALANCES)
    return f"""
        CREATE OR REPLACE FUNCTION sharecart_check_balances() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            sid text;
            uid text;
            stored bigint[];
            summed bigint[];
        BEGIN
            IF {table} = 'ledger_entries' THEN
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


def upgrade() -> None:
    op.execute(_refuse(TABLE))
    op.execute(_check_balances(TABLE))


def downgrade() -> None:  # as 0002 and 0010 wrote them
    op.execute(_refuse("TG_TABLE_NAME"))
    op.execute(_check_balances("TG_TABLE_NAME"))
