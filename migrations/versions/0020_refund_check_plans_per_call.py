"""the refunds-within-paid check (OR-2, 0007/0014) plans its sum at each call (issue 10: the worker at scale)

The deferred check sums an order's refunds at the commit of every transaction that inserted one. As a static
query in PL/pgSQL its plan was cached once per connection: a worker's connection planned it while `refunds`
was empty, kept that plan as the table grew, and each check came to scan the shop's refunds instead of the
(shop_id, order_id) index — 5-6 ms a refund at 30,000 refunds in one shop, measured with track_functions in
`bench/http.py --only-due --due-groups 100000` (the index lookup itself takes 0.16 ms), so clearing 100,000
due groups slowed down as it went (2,222 groups/s for 20,000, 560/s for 100,000). `EXECUTE … USING` plans the
sum at each call with the table's current size. The orders read is a primary-key lookup and stays static.
On Citus the function is left as 0014 wrote it: a dynamic statement inside a shard's trigger has not been run on
a cluster here (docs/sharding.md); a cluster that shows the same slowdown takes the same change.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from store import citus

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

WITHIN_PAID = """
CREATE OR REPLACE FUNCTION sharecart_refunds_within_paid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    paid bigint;
    refunded bigint;
    shop varchar := NEW.shop_id;
BEGIN
    {sum}
    SELECT paid_amount, refunded_amount INTO paid, refunded FROM orders
     WHERE shop_id = shop AND order_id = NEW.order_id;
    IF paid IS NULL OR total > paid OR total <> refunded THEN
        RAISE EXCEPTION 'refunds of order % sum to %, its refunded_amount is % and it was paid % (OR-2)',
                        NEW.order_id, total, refunded, paid
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""
PLANNED_PER_CALL = "EXECUTE 'SELECT sum(amount) FROM refunds WHERE shop_id = $1 AND order_id = $2' INTO total USING shop, NEW.order_id;"
CACHED = "SELECT sum(amount) INTO total FROM refunds WHERE shop_id = shop AND order_id = NEW.order_id;"


def upgrade() -> None:
    if not citus.is_citus(op.get_bind()):
        op.execute(WITHIN_PAID.replace("{sum}", PLANNED_PER_CALL))


def downgrade() -> None:
    if not citus.is_citus(op.get_bind()):
        op.execute(WITHIN_PAID.replace("{sum}", CACHED))  # as 0014 wrote it
