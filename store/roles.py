"""Database roles (issue 11, point 6; docs/security.md "Database roles").

- The owner (whoever runs the migrations) owns every table, function and trigger.
- `sharecart_app` (NOLOGIN, created and granted by migration 0011) holds what the service may do: read and write
  the working tables, only read and append the books (APPEND_ONLY), truncate nothing, own nothing.
- The service logs in as a member of `sharecart_app`. On a server the operator creates that login (the docs give
  the two statements) and hands its URL to the service as DATABASE_URL, and the owner's URL to the migration step
  as SHARECART_MIGRATION_URL. With the embedded database, `serve` does both itself: it migrates as the embedded
  superuser and then connects as SERVICE_LOGIN (`prepare_runtime`).
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.database import create_engine

APP_ROLE = "sharecart_app"
SERVICE_LOGIN = "sharecart_service"
APPEND_ONLY = ("ledger_entries", "refunds", "settlements", "settlement_lines", "payments", "events")
# the columns of append-only tables the service's one-way transitions set (their triggers guard the rest)
READ_ONLY = ("alembic_version", "ledger_totals")  # the service reads them; migrations and triggers write them
APPEND_ONLY_UPDATABLE = {"refunds": ("state", "provider_ref", "confirmed_at"), "payments": ("accepted",)}
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ensure_login_sql(login: str) -> str:
    """A LOGIN role that is a member of APP_ROLE (and nothing else), created unless it exists; tolerant of a
    concurrent creator (several test runs or service processes on one cluster)."""
    if not _NAME.match(login):
        raise ValueError(f"not a plain role name: {login!r}")
    return f"""
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login}') THEN
            BEGIN
                CREATE ROLE {login} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
        BEGIN
            GRANT {APP_ROLE} TO {login};
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END $$;
    """


async def prepare_runtime(owner_url: str, *, login: str = SERVICE_LOGIN) -> str:
    """With the owner's URL (already migrated): make sure `login` exists as a member of APP_ROLE and return the
    URL the service connects with (the same server and database, as `login`, without a password: for the
    embedded database and the test suite, whose servers trust local connections)."""
    eng = create_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        async with eng.begin() as c:
            await c.execute(text(ensure_login_sql(login)))
    finally:
        await eng.dispose()
    return make_url(owner_url).set(username=login, password=None).render_as_string(hide_password=False)


async def describe_connection(engine) -> dict:
    """Who the service is connected as, for the start-up line: warns an operator running the service as the owner."""
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT current_user AS role, r.rolsuper AS superuser, "
                    "EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tableowner = current_user) "
                    "AS owner FROM pg_roles r WHERE r.rolname = current_user"
                )
            )
        ).one()
    return {"role": row.role, "superuser": row.superuser, "owner": row.owner}


async def service_engine(migrated):
    """The engine `serve` runs on, given the engine it migrated with. Embedded database (no DATABASE_URL): the
    migrating engine is the embedded superuser, so make SERVICE_LOGIN and connect as it. With DATABASE_URL the
    operator chose the role: keep it, and warn (one line) when it owns the tables or is a superuser."""
    import logging

    from service.settings import settings

    log = logging.getLogger("sharecart.roles")
    if not settings().database_url:
        url = await prepare_runtime(migrated.url.render_as_string(hide_password=False))
        return create_engine(url)
    who = await describe_connection(migrated)
    if who["superuser"] or who["owner"]:
        log.warning(
            "the service connects as %s, which %s: the database cannot keep the books from the service; "
            "connect as a member of %s (docs/security.md, Database roles)",
            who["role"],
            "is a superuser" if who["superuser"] else "owns the tables",
            APP_ROLE,
        )
    return migrated
