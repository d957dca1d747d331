"""Every environment variable Sharecart reads, in one place (pydantic-settings).

The code reads configuration only through `settings()`; nothing else in engine/, store/, service/, api/
or migrations/ touches `os.environ` (tests/test_settings.py checks the tree, and compares this class
with the table in docs/configuration.md).

Adding a setting: one field here, with `validation_alias` = the variable's name and a `description`
(its meaning, one sentence), and one row in docs/configuration.md. The test says which is missing.

`settings()` reads the environment each time it is called (a few microseconds; nothing calls it on a
hot path), so a test or `serve --test-clock` that sets a variable is seen without a cache to reset.
`check_settings()` is what the `sharecart` command runs first: a bad value stops the process with
one clear line instead of a traceback later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL 15+ URL (postgresql://user:pass@host:5432/db). Unset: an embedded "
        "PostgreSQL is started from the optional `embedded` extra (development only).",
    )
    data_dir: Path | None = Field(
        None,
        validation_alias="SHARECART_DATA_DIR",
        description="Data folder of the embedded PostgreSQL (only without DATABASE_URL). Unset: the user's "
        "data directory (platformdirs), sharecart/pgdata.",
    )
    test_clock: bool = Field(
        False,
        validation_alias="SHARECART_TEST_CLOCK",
        description="1: serve the test schema with the admin mutation advanceClock (OR-5). Demos and tests "
        "only, never production (same as `serve --test-clock`).",
    )
    dev: bool = Field(
        False,
        validation_alias="SHARECART_DEV",
        description="1: development mode — introspection for every caller and the /graphiql page (docs/security.md). "
        "Off in production; `serve` turns it on with the demo.",
    )
    secret_key: str | None = Field(
        None,
        validation_alias="SHARECART_SECRET_KEY",
        description="Fernet key(s), comma-separated (the first encrypts): shop and webhook secrets are stored "
        "encrypted with it (docs/security.md). Unset: a key file beside the embedded database; "
        "against a server, stored unencrypted with a warning (development only).",
    )
    log_format: Literal["json", "text"] = Field(
        "json",
        validation_alias="SHARECART_LOG_FORMAT",
        description="json: one JSON object per log line (for collectors); text: key=value lines for a terminal.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="SHARECART_LOG_LEVEL", description="Lowest level logged."
    )
    access_log: bool = Field(
        True,
        validation_alias="SHARECART_ACCESS_LOG",
        description="One log line per HTTP request (method, path, status, duration, request id).",
    )
    ready_worker_max_age: float = Field(
        30.0,
        ge=0,
        validation_alias="SHARECART_READY_WORKER_MAX_AGE",
        description="Seconds: /ready fails when no worker heartbeat is younger than this; 0 leaves the worker "
        "out of readiness.",
    )
    heartbeat_interval: float = Field(
        5.0,
        gt=0,
        validation_alias="SHARECART_HEARTBEAT_INTERVAL",
        description="Seconds between a worker's heartbeats (keep well under SHARECART_READY_WORKER_MAX_AGE).",
    )
    gc_tune: bool = Field(
        True,
        validation_alias="SHARECART_GC_TUNE",
        description="1: API and worker processes freeze what startup built out of the cyclic GC's sight and run "
        "young collections every 7,000 allocations (api.process.tune_gc); 0 leaves Python's defaults.",
    )
    worker_backoff_max: float = Field(
        30.0,
        gt=0,
        validation_alias="SHARECART_WORKER_BACKOFF_MAX",
        description="Seconds: longest pause of a worker loop while the database is unreachable (the pause "
        "doubles from 1 s up to this).",
    )
    shutdown_grace: float = Field(
        20.0,
        ge=0,
        validation_alias="SHARECART_SHUTDOWN_GRACE",
        description="Seconds `serve` waits on SIGTERM for in-flight requests before closing them.",
    )
    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="Folder shared by the processes of one host (serve --workers N, sharecart worker) so that "
        "/metrics of any of them adds up all (prometheus-client multiprocess mode); unset: each "
        "process reports only itself.",
    )
    db_pool: int = Field(
        10,
        ge=1,
        validation_alias="SHARECART_DB_POOL",
        description="Database connections each process keeps (serve --workers N: one pool per API process, "
        "and one for sharecart worker).",
    )
    db_overflow: int = Field(
        20,
        ge=0,
        validation_alias="SHARECART_DB_OVERFLOW",
        description="Connections a process may open beyond SHARECART_DB_POOL under load. Keep N × (pool + "
        "overflow) plus the workers' under the server's max_connections.",
    )
    migration_url: str | None = Field(
        None,
        validation_alias="SHARECART_MIGRATION_URL",
        description="The schema owner's PostgreSQL URL: `serve` migrates with it and then serves with DATABASE_URL, "
        "a runtime role that may only read and append the books (docs/security.md, Database roles). "
        "Unset: migrations run with DATABASE_URL.",
    )
    webhook_allow_loopback: bool = Field(
        False,
        validation_alias="SHARECART_WEBHOOK_ALLOW_LOOPBACK",
        description="1: webhook endpoints may also be on loopback (127.0.0.0/8, ::1, localhost), for development "
        "and tests; every other internal address stays refused (docs/webhooks.md, SSRF).",
    )
    debug: bool = Field(
        False,
        validation_alias="SHARECART_DEBUG",
        description="1: the CLI prints the traceback of an unexpected error after its `error INTERNAL` line.",
    )


def settings() -> Settings:
    """The settings from the environment now (raises pydantic.ValidationError on a bad value)."""
    return Settings()  # type: ignore[call-arg]  # pydantic-settings fills every field from the environment


def env_names() -> dict[str, str]:
    """Field name -> environment variable, for the docs test and error messages."""
    return {name: f.validation_alias for name, f in Settings.model_fields.items()}


def describe_error(e: ValidationError) -> str:
    """One line naming each bad variable, its value and what is wrong."""
    names = env_names()
    parts = []
    for err in e.errors():
        loc = str(err["loc"][0]) if err["loc"] else "?"
        var = names.get(loc, loc)
        parts.append(f"{var}={err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)


class ConfigError(Exception):
    pass


def check_settings() -> Settings:
    try:
        return settings()
    except ValidationError as e:
        raise ConfigError(describe_error(e)) from None
