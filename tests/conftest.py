"""Test database: every run gets a database of its own, migrated to head.

With DATABASE_URL (CI: the server on 127.0.0.1:5432) a fresh database is created on that server
and dropped afterwards; without it an embedded PostgreSQL is started in a temporary folder.

With SHARECART_TEST_CITUS (set by `python3 tasks.py test --citus URL`: a Citus coordinator's database,
workers added) the run's database is made on every node of that cluster and migrated there, so every
table is distributed by shop_id (store.citus, docs/sharding.md); tests marked `citus_only` run only then.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from store.database import create_engine, embedded_url, stop_embedded, to_asyncpg

# Secrets are stored encrypted (store.secrets) in every test, as in production: a key for this run, which
# the `sharecart serve` processes that tests start inherit.
if not os.environ.get("SHARECART_SECRET_KEY"):
    from cryptography.fernet import Fernet

    os.environ["SHARECART_SECRET_KEY"] = Fernet.generate_key().decode()

CITUS_URL = os.environ.get("SHARECART_TEST_CITUS")
citus_only = pytest.mark.skipif(
    not CITUS_URL,
    reason="needs a Citus cluster: python3 tasks.py test --citus postgresql://…coordinator… "
    "(docs/sharding.md says how to start one)",
)
# Hypothesis's 200 ms deadline per example measures the machine, not the rule: on two cores shared with other
# suites an example of the stats properties took longer and failed a run that was right. Speed lives in bench/.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("sharecart", deadline=None)
hypothesis_settings.load_profile("sharecart")

# The suite's webhook receivers listen on 127.0.0.1: allow loopback targets (issue 11.3); the SSRF tests turn it off.
os.environ.setdefault("SHARECART_WEBHOOK_ALLOW_LOOPBACK", "1")


@pytest.fixture(scope="session")
def server_url() -> str:
    if CITUS_URL:
        yield to_asyncpg(CITUS_URL)
        return
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
    from store.migrate import migrated_database

    async with migrated_database(server_url, f"sharecart_t_{os.getpid()}_{secrets.token_hex(3)}") as url:
        yield url


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
    from service.usecases.shops import create_shop

    return await create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Test shop", currency="CNY")
