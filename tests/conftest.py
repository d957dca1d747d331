"""Test database: every run gets a database of its own, migrated to head.

With DATABASE_URL (CI: the server on 127.0.0.1:5432) a fresh database is created on that server
and dropped afterwards; without it an embedded PostgreSQL is started in a temporary folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.database import create_engine, embedded_url, stop_embedded, to_asyncpg

# Secrets are stored encrypted (store.secrets) in every test, as in production: a key for this run, which
# the `sharecart serve` processes that tests start inherit.
if not os.environ.get("SHARECART_SECRET_KEY"):
    from cryptography.fernet import Fernet

    os.environ["SHARECART_SECRET_KEY"] = Fernet.generate_key().decode()

# The suite's webhook receivers listen on 127.0.0.1: allow loopback targets (issue 11.3); the SSRF tests turn it off.
os.environ.setdefault("SHARECART_WEBHOOK_ALLOW_LOOPBACK", "1")


@pytest.fixture(scope="session")
def server_url() -> str:
    if os.environ.get("DATABASE_URL"):
        yield to_asyncpg(os.environ["DATABASE_URL"])
        return
    folder = Path(tempfile.mkdtemp(prefix="sharecart-test-pg-"))
    try:
        yield embedded_url(folder)
    finally:
        stop_embedded()
        shutil.rmtree(folder, ignore_errors=True)  # ~55 MB of cluster files per run otherwise


@pytest.fixture(scope="session")
async def database_url(server_url):
    """A fresh database for this run, migrated to head; dropped at the end."""
    name = f"sharecart_t_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1)
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    from store.migrate import upgrade

    eng = create_engine(url, pool_size=1)
    await upgrade(eng)
    await eng.dispose()
    yield url
    async with admin.connect() as c:
        await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


# ---------------------------------------------------------------- service-level fixtures
from datetime import datetime, timezone  # noqa: E402


T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


RUNTIME_LOGIN = "sharecart_test_runtime"


@pytest.fixture(scope="session")
async def runtime_url(database_url) -> str:
    """The run's database as the service's runtime role (issue 11.6, store/roles.py): a member of sharecart_app,
    which may only INSERT/SELECT the books and owns nothing. The app runs as it in the suite; migrations ran
    as the owner (`database_url`)."""
    from store.roles import prepare_runtime

    return await prepare_runtime(database_url, login=RUNTIME_LOGIN)


@pytest.fixture(scope="session")
async def db_engine(runtime_url):
    eng = create_engine(runtime_url, pool_size=20, max_overflow=40)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def owner_engine(database_url):
    """The schema owner: for tests of what the database refuses even to its owner (triggers, constraints)."""
    eng = create_engine(database_url, pool_size=4, max_overflow=4)
    yield eng
    await eng.dispose()


@pytest.fixture
def svc(db_engine):
    """Services on the run's database with the clock frozen at T0 (OR-5)."""
    from service.context import Services

    s = Services(engine=db_engine)
    s.clock.set(T0)
    return s


@pytest.fixture
async def shop(svc):
    """A fresh shop per test: tests never see each other's data (SH-1)."""
    from service.shops import create_shop

    return await create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Test shop", currency="CNY")
