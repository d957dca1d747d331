"""the runtime role: the service may only INSERT/SELECT the books (issue 11, point 6)

Migrations run as the schema owner; the service connects as a login role that is a member of `sharecart_app`
(store/roles.py, docs/security.md "Database roles"). `sharecart_app`:

- may SELECT, INSERT, UPDATE, DELETE the working tables (shops, groups, orders, webhook deliveries, …);
- may only SELECT and INSERT the append-only tables (ledger_entries, refunds, settlements, settlement_lines,
  payments, events), except the columns the service's own one-way transitions set: a refund's confirmation
  (state, provider_ref, confirmed_at — the 0007 trigger allows only OWED -> CONFIRMED) and a payment's
  `accepted` flag (set once, in the transaction that claimed the provider reference, GB-10);
- may TRUNCATE nothing, and, owning nothing, can neither disable a trigger nor drop or alter a table
  (`session_replication_role`, which skips triggers, needs a superuser);
- may only read `alembic_version` and `ledger_totals` (written by the ledger's own trigger, 0010).

A later migration that adds a table inherits the working-table grants (ALTER DEFAULT PRIVILEGES below); one that
adds an append-only table must revoke UPDATE and DELETE itself and add it to store.roles.APPEND_ONLY (the test
tests/integration/test_books_in_the_database.py checks every table against that list).

The role is cluster-wide, so its creation tolerates a concurrent creator (parallel migrations of several
databases) and an owner without CREATEROLE (then nothing is granted and a NOTICE says so: an operator creates the
role, see the docs, and runs the migration again with `alembic downgrade 0010 && alembic upgrade head`).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROLE = "sharecart_app"
APPEND_ONLY = ("ledger_entries", "refunds", "settlements", "settlement_lines", "payments", "events")


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                BEGIN
                    CREATE ROLE {ROLE} NOLOGIN;
                EXCEPTION
                    WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile by another migration
                    WHEN insufficient_privilege THEN
                        RAISE NOTICE 'cannot create role {ROLE} (no CREATEROLE): create it, then migrate again';
                END;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                RETURN;
            END IF;
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', current_schema());
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO {ROLE}', current_schema());
            EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {ROLE}', current_schema());
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ROLE}',
                           current_schema());
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO {ROLE}',
                           current_schema());
            REVOKE UPDATE, DELETE, TRUNCATE ON {", ".join(APPEND_ONLY)} FROM {ROLE};
            GRANT UPDATE (state, provider_ref, confirmed_at) ON refunds TO {ROLE};
            GRANT UPDATE (accepted) ON payments TO {ROLE};
            REVOKE ALL ON ledger_totals FROM {ROLE};  -- kept by the ledger's trigger alone (0010)
            GRANT SELECT ON ledger_totals TO {ROLE};
            REVOKE ALL ON alembic_version FROM {ROLE};
            GRANT SELECT ON alembic_version TO {ROLE};
        END $$;
        """
    )


def downgrade() -> None:
    # The role is shared by every database of the cluster: only this database's grants go.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM {ROLE}', current_schema());
                EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM {ROLE}',
                               current_schema());
                EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {ROLE}', current_schema());
                EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM {ROLE}', current_schema());
                EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {ROLE}', current_schema());
            END IF;
        END $$;
        """
    )
