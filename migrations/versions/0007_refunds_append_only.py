"""refunds append-only: the refund queue's promises kept by the database (GB-10, OR-2)

- An owed refund never disappears until it is confirmed: DELETE and TRUNCATE on refunds are refused, and
  the only UPDATE allowed is the confirmation itself (OWED -> CONFIRMED, setting provider_ref and
  confirmed_at, nothing else changed). Un-confirming, editing an amount or re-confirming is refused.
- The refunds of an order never add up to more than it was paid: a deferred constraint trigger checks, at
  commit of every transaction that wrote a refund, that the order's refunds sum to its refunded_amount
  and stay within its paid_amount. Deferred, because the order row and the refund row are written by the
  same flush in no guaranteed order.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION sharecart_guard_refund() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF OLD.state = 'OWED' AND NEW.state = 'CONFIRMED'
                   AND OLD.provider_ref IS NULL AND NEW.provider_ref IS NOT NULL
                   AND OLD.confirmed_at IS NULL AND NEW.confirmed_at IS NOT NULL
                   AND (NEW.shop_id, NEW.refund_id, NEW.order_id, NEW.amount, NEW.rule, NEW.full, NEW.created_at)
                       IS NOT DISTINCT FROM
                       (OLD.shop_id, OLD.refund_id, OLD.order_id, OLD.amount, OLD.rule, OLD.full, OLD.created_at)
                THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'refunds are append-only (GB-10): % refused; only OWED -> CONFIRMED with its provider '
                            'reference may change a refund', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER refunds_append_only BEFORE UPDATE OR DELETE ON refunds "
        "FOR EACH ROW EXECUTE FUNCTION sharecart_guard_refund()"
    )
    op.execute(
        "CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON refunds "
        "FOR EACH STATEMENT EXECUTE FUNCTION sharecart_guard_refund()"
    )
    op.execute(
        """
        CREATE FUNCTION sharecart_refunds_within_paid() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            total bigint;
            paid bigint;
            refunded bigint;
        BEGIN
            SELECT sum(amount) INTO total FROM refunds WHERE shop_id = NEW.shop_id AND order_id = NEW.order_id;
            SELECT paid_amount, refunded_amount INTO paid, refunded FROM orders
             WHERE shop_id = NEW.shop_id AND order_id = NEW.order_id;
            IF paid IS NULL OR total > paid OR total <> refunded THEN
                RAISE EXCEPTION 'refunds of order % sum to %, its refunded_amount is % and it was paid % (OR-2)',
                                NEW.order_id, total, refunded, paid
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;
        """
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER refunds_within_paid AFTER INSERT ON refunds "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sharecart_refunds_within_paid()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS refunds_within_paid ON refunds")
    op.execute("DROP FUNCTION IF EXISTS sharecart_refunds_within_paid()")
    op.execute("DROP TRIGGER IF EXISTS refunds_no_truncate ON refunds")
    op.execute("DROP TRIGGER IF EXISTS refunds_append_only ON refunds")
    op.execute("DROP FUNCTION IF EXISTS sharecart_guard_refund()")
