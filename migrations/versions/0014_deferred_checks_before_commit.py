"""deferred checks run before COMMIT: OR-2's refusal reaches the client as its coded error on Citus

The refunds-within-paid check (0007) is a deferred constraint trigger: it runs at COMMIT. On Citus the
shard's COMMIT is sent after the coordinator's own, so its error reaches the client as XX000 "could not
commit transaction for shard …" (the real one only as a WARNING). `sharecart_check_deferred(shop_id)`
runs the shop's deferred checks now, as a statement, so a refusal is that statement's error with its own
SQLSTATE (23514) and message; the service calls it before committing a transaction that wrote refunds
(service/uow.py). On Citus it is a distributed function delegated to the shop's node (force_delegation),
so it runs there, inside the transaction that wrote the rows; the trigger's queries then have to name the
shop with the function's argument type (varchar), hence the local variable in the trigger function.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from store import citus

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

WITHIN_PAID = """
CREATE OR REPLACE FUNCTION sharecart_refunds_within_paid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    paid bigint;
    refunded bigint;
{decl}BEGIN
    SELECT sum(amount) INTO total FROM refunds WHERE shop_id = {shop} AND order_id = NEW.order_id;
    SELECT paid_amount, refunded_amount INTO paid, refunded FROM orders
     WHERE shop_id = {shop} AND order_id = NEW.order_id;
    IF paid IS NULL OR total > paid OR total <> refunded THEN
        RAISE EXCEPTION 'refunds of order % sum to %, its refunded_amount is % and it was paid % (OR-2)',
                        NEW.order_id, total, refunded, paid
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute(WITHIN_PAID.format(decl="    shop varchar := NEW.shop_id;\n", shop="shop"))
    op.execute(
        """
        CREATE FUNCTION sharecart_check_deferred(shop varchar) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            SET CONSTRAINTS ALL IMMEDIATE;  -- the pending deferred checks run now, in this statement
        END $$;
        """
    )
    bind = op.get_bind()
    if citus.is_citus(bind):
        op.execute(
            "SELECT create_distributed_function('sharecart_check_deferred(varchar)', 'shop', "
            "colocate_with => 'refunds', force_delegation => true)"
        )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS sharecart_check_deferred(varchar)")
    op.execute(WITHIN_PAID.format(decl="", shop="NEW.shop_id"))  # as 0007 wrote it
