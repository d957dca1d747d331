"""The `sharecart` command: serve, migrate, create and list shops, mint tokens, seed the demo.

Every refusal is one line on stderr, `error CODE: message`, with exit status 2 — a bad option, a bad
date, a folder that is not there, a time zone or currency that does not exist, a rule refusal (ER-1).
An operational failure (database unreachable: UNAVAILABLE) or a bug (INTERNAL) is one such line with
exit status 1; SHARECART_DEBUG=1 adds the traceback. Never a bare traceback (tests/test_cli.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import date

import typer

app = typer.Typer(help="Sharecart: group-buy and distribution engine (GraphQL API).", no_args_is_help=True)

ROLES = ("customer", "distributor", "admin", "finance", "backend")


DEMO_TOKEN_TTL_S = 8 * 3600  # the demo tokens `serve` prints: a working day, not a week


class CliRefusal(Exception):
    """`error CODE: message`, exit 2 (raised by `fail`, printed by `main`)."""

    def __init__(self, code: str, message: str, exit_code: int = 2):
        super().__init__(message)
        self.code, self.message, self.exit_code = code, message, exit_code


def fail(code: str, message: str) -> CliRefusal:
    return CliRefusal(code, message)


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail("INVALID_INPUT", f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sharecart {version('sharecart')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Sharecart: group-buy and distribution engine (GraphQL API)."""


def _services():
    from service.context import Services
    from store.database import create_engine

    from service.settings import settings

    if not settings().database_url and not settings().secret_key:
        # the embedded database keeps its secrets' key in a file beside it, never inside it (store.secrets)
        from store.database import data_dir
        from store.secrets import KEY_ENV, embedded_key

        os.environ[KEY_ENV] = embedded_key(data_dir())
    return Services(engine=create_engine())


async def _migrate(svc) -> None:
    """As the owner: SHARECART_MIGRATION_URL when set (the service's own DATABASE_URL is then a runtime role that
    cannot change the schema, docs/security.md), else the service's database URL."""
    from service.settings import settings
    from store.migrate import upgrade

    migration_url = settings().migration_url
    if migration_url:
        from store.database import create_engine

        owner = create_engine(migration_url, pool_size=1)
        try:
            await upgrade(owner)
        finally:
            await owner.dispose()
        return
    await upgrade(svc.engine)


@app.command()
def migrate() -> None:
    """Apply database migrations (DATABASE_URL, or the embedded PostgreSQL)."""

    async def run():
        svc = _services()
        await _migrate(svc)
        await svc.engine.dispose()

    asyncio.run(run())
    typer.echo("migrated to head")


@app.command("create-shop")
def create_shop(shop_id: str, name: str = typer.Option(...), currency: str = "CNY", timezone: str = "UTC") -> None:
    """Create a shop; prints its public key (storefronts use it for invite codes, DS-2). The currency is an
    ISO 4217 code, the time zone an IANA name (Asia/Shanghai); anything else is refused before any write."""
    from service.currencies import check_currency, check_timezone

    check_currency(currency)
    check_timezone(timezone)

    async def run():
        from service.usecases.shops import create_shop as create

        svc = _services()
        await _migrate(svc)
        shop = await create(svc, shop_id=shop_id, name=name, currency=currency, timezone=timezone)
        await svc.engine.dispose()
        return shop

    shop = _run_refusable(run)
    typer.echo(f"shop {shop.shop_id} created; public key {shop.public_key}")


@app.command("mint-token")
def mint_token(
    shop_id: str,
    user: str = typer.Option(..., help="the acting user id"),
    role: list[str] = typer.Option(..., help=f"one or more of {', '.join(ROLES)}"),
    ttl: int = typer.Option(3600, help="seconds the token stays valid (at most 604800, 7 days)"),
) -> None:
    """Mint a bearer token for a user of a shop."""
    from api.auth import MAX_TTL_S

    bad = [r for r in role if r not in ROLES]
    if bad:
        raise fail("INVALID_INPUT", f"unknown role(s) {', '.join(bad)}; choose from {', '.join(ROLES)}")
    if not 0 < ttl <= MAX_TTL_S:
        raise fail("INVALID_INPUT", f"--ttl is 1 to {MAX_TTL_S} seconds (7 days)")

    async def run():
        from service.usecases.shops import get_shop

        svc = _services()
        shop = await get_shop(svc, shop_id)
        await svc.engine.dispose()
        if shop is None:
            raise fail("NOT_FOUND", f"no shop {shop_id}")
        return _token(shop, user, role, ttl)

    typer.echo(asyncio.run(run()))


@app.command()
def seed() -> None:
    """Create the demo shop (idempotent)."""

    async def run():
        from service.usecases.demo import seed_demo

        svc = _services()
        await _migrate(svc)
        r = await seed_demo(svc)
        await svc.engine.dispose()
        return r

    r = asyncio.run(run())
    typer.echo(f"demo shop {'created' if r['created'] else 'already there'}: {r['shop'].shop_id}")
    _print_demo(r, "127.0.0.1", 8000)


@app.command("close-period")
def close_period(
    shop_id: str,
    day_from: str = typer.Option(..., "--from", help="first local day, YYYY-MM-DD"),
    day_to: str = typer.Option(..., "--to", help="day after the last, YYYY-MM-DD (half-open)"),
    actor: str = typer.Option("cli"),
) -> None:
    """LG-3: close [from, to) in the shop's time zone into a settlement batch; prints its id."""
    first, after = _day(day_from, "--from"), _day(day_to, "--to")

    async def run():
        from service.usecases.settlements import close_period as close
        from service.usecases.shops import get_shop

        svc = _services()
        if await get_shop(svc, shop_id) is None:
            raise fail("NOT_FOUND", f"no shop {shop_id}")
        b = await close(svc, shop_id=shop_id, day_from=first, day_to=after, actor=actor)
        await svc.engine.dispose()
        return b

    b = _run_refusable(run)
    typer.echo(f"{b.settlement_id} closing={b.closing} ({b.distributors} distributors)")


@app.command()
def export(
    shop_id: str,
    settlement_id: str,
    fmt: str = typer.Option("csv", "--format", help="csv or xlsx"),
    out: str = typer.Option(..., "--out", help="file to write"),
) -> None:
    """LG-3: export a settlement batch (same batch, same bytes), with a progress bar on stderr (drawn when
    stderr is a terminal; stdout keeps only the result line, for scripts)."""
    import shutil
    import sys

    if fmt not in ("csv", "xlsx"):
        raise fail("INVALID_INPUT", "--format is csv or xlsx")
    _check_out(out)

    async def run():
        from service.reads import exports
        from service.usecases.settlements import get_settlement

        svc = _services()
        batch = await get_settlement(svc, shop_id=shop_id, settlement_id=settlement_id)
        if batch is None:
            raise fail("NOT_FOUND", f"no settlement {settlement_id} in shop {shop_id}")
        with typer.progressbar(length=batch.distributors, label=f"exporting {fmt}", file=sys.stderr) as bar:
            if fmt == "csv":
                with open(out, "wb") as f:
                    async for chunk in exports.csv_chunks(
                        svc, shop_id=shop_id, settlement_id=settlement_id, progress=bar.update
                    ):
                        f.write(chunk)
            else:
                path = await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=settlement_id, progress=bar.update)
                shutil.move(path, out)
        await svc.engine.dispose()

    try:
        asyncio.run(run())
    except OSError as e:  # the folder went away or filled up while writing
        raise fail("INVALID_INPUT", f"--out {out}: {e.strerror or e}") from None
    typer.echo(f"wrote {out}")


def _check_out(out: str) -> None:
    """Refuse an --out that cannot be written before anything is read from the database."""
    from pathlib import Path

    path = Path(out)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise fail("INVALID_INPUT", f"--out {out} is a folder; name a file")
    if not folder.is_dir():
        raise fail("INVALID_INPUT", f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise fail("INVALID_INPUT", f"--out {out}: not writable")


@app.command("list-shops")
def list_shops(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, for scripts"),
    limit: int = typer.Option(1000, help="at most this many, in shop id order"),
) -> None:
    """List the shops: id, currency, time zone, created, name (an operator's view of every shop)."""
    import json

    if limit <= 0:
        raise fail("INVALID_INPUT", "--limit is a positive number")

    async def run():
        from service.usecases.shops import list_shops as shops

        svc = _services()
        try:
            return await shops(svc, limit=limit)
        finally:
            await svc.engine.dispose()

    rows = asyncio.run(run())
    if as_json:
        for shop in rows:
            typer.echo(
                json.dumps(
                    {
                        "shopId": shop.shop_id,
                        "name": shop.name,
                        "currency": shop.currency,
                        "timezone": shop.timezone,
                        "createdAt": shop.created_at.isoformat(),
                    },
                    ensure_ascii=False,
                )
            )
        return
    typer.echo(f"{'SHOP':24s} {'CURRENCY':8s} {'TIMEZONE':20s} {'CREATED':20s} NAME")
    for shop in rows:
        typer.echo(
            f"{shop.shop_id:24s} {shop.currency:8s} {shop.timezone:20s} "
            f"{shop.created_at.strftime('%Y-%m-%d %H:%M'):20s} {shop.name}"
        )
    if not rows:
        typer.echo("(no shops: sharecart create-shop, or sharecart seed for the demo)", err=True)


@app.command("export-schema")
def export_schema(out: str = typer.Option("schema.graphql", help="where to write the SDL")) -> None:
    """Write the GraphQL SDL of the code (tests/api/test_schema_file.py compares the committed file): the full
    schema, with the dev/test-only `advanceClock` (served only with SHARECART_TEST_CLOCK=1), so every field a
    client can meet validates against it."""
    from api.schema import full_schema

    with open(out, "w", encoding="utf-8") as f:
        f.write(str(full_schema()) + "\n")
    typer.echo(f"wrote {out}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    demo: bool = typer.Option(True, help="seed the demo shop on first start and print its tokens"),
    worker: bool = typer.Option(
        True,
        help="start `sharecart worker` (expiry GB-11, release CM-6, webhook "
        "delivery) in a process of its own beside the API",
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="API processes on the one port (default: the machine's cores)"
    ),
    test_clock: bool = typer.Option(
        False,
        "--test-clock",
        help="add the admin mutation advanceClock, which moves "
        "this process's service clock forward (OR-5); for demos and tests, never "
        "in production (same as SHARECART_TEST_CLOCK=1). Runs the API and the "
        "worker in one process, so both see that clock",
    ),
    dev: bool = typer.Option(
        None,
        "--dev/--no-dev",
        help="development mode: introspection for every caller "
        "and /graphiql (SHARECART_DEV=1); on by default with --demo, off without "
        "(docs/security.md)",
    ),
) -> None:
    """Start the API (N processes) and the worker; migrations applied first (api/process.py)."""
    from api.shops import TEST_CLOCK_ENV, test_clock_enabled
    from api.process import serve as run

    if test_clock:
        os.environ[TEST_CLOCK_ENV] = "1"
    if dev if dev is not None else demo:
        from api.limits import DEV_ENV

        os.environ[DEV_ENV] = "1"  # inherited by the API processes
    run(host, port, demo, worker, workers, test_clock_enabled())


@app.command("worker")
def worker_command(interval: float = typer.Option(1.0, help="seconds between passes when nothing is due")) -> None:
    """Due work (GB-11 expiry, CM-6 release) and webhook delivery, in this process (any number: SKIP LOCKED)."""
    from api.process import work

    work(interval)


async def _as_runtime_role(svc):
    """The service runs as the runtime role (issue 11.6, store/roles.py): set up by itself on the embedded
    database; on a server, the role DATABASE_URL names."""
    from service.context import Services
    from store.roles import service_engine

    engine = await service_engine(svc.engine)
    if engine is svc.engine:
        return svc
    await svc.engine.dispose()
    return Services(engine=engine, clock=svc.clock)


def _token(shop, user: str, roles, ttl: int) -> str:
    from api.auth import mint_token as mint

    return mint(shop, user, list(roles), ttl)


def _print_demo(r: dict, host: str, port: int) -> None:
    """What docs/walkthrough.md needs, under the names it uses (tests/api/test_walkthrough.py reads this)."""
    from api.shops import test_clock_enabled
    from api.relay import global_id
    from service.usecases.demo import DEMO_CALLERS

    shop = r["shop"]
    base = f"http://{host}:{port}"
    gid = lambda kind, raw: global_id(kind, raw) if raw else "(none open: open one with openGroup)"  # noqa: E731
    echo = typer.echo
    echo("")
    echo(f"GraphiQL:   {base}/graphiql      (API: {base}/graphql)")
    echo(f"Console:    {base}/console       (paste the admin or finance token below; docs/console.md)")
    echo(f"Storefront: {base}/demo/storefront?key={shop.public_key}   (live groups; paste a customer token)")
    echo("Walkthrough from here to a formed group and a paid-out commission: docs/walkthrough.md")
    echo(
        f"Demo shop:  {shop.shop_id} ({shop.currency})   advanceClock: "
        f"{'on' if test_clock_enabled() else 'off (serve --test-clock)'}"
    )
    echo("Ids (Relay global ids, as the API returns them):")
    echo(f"  PAIR_CAMPAIGN_ID    {gid('Campaign', r.get('pair_campaign_id'))}   2-person group, cups")
    echo(f"  PAIR_GROUP_ID       {gid('Group', r.get('pair_group_id'))}   carol's open group: one paid join forms it")
    echo(f"  LADDER_CAMPAIGN_ID  {gid('Campaign', r.get('campaign_id'))}   2/3/5-person ladder, tea")
    echo("Headers to paste into GraphiQL's Headers pane:")
    echo(f'  public      {{"X-Shop-Key": "{shop.public_key}"}}')
    echo(f"Tokens of the demo shop, valid {DEMO_TOKEN_TTL_S // 3600} hours (header  Authorization: Bearer <token>):")
    for name, (user, roles) in DEMO_CALLERS.items():
        echo(f"  {name:10s}  {','.join(roles):22s}  {_token(shop, user, roles, DEMO_TOKEN_TTL_S)}")
    echo(f"More: sharecart mint-token {shop.shop_id} --user NAME --role customer")
    echo("")


def _run_refusable(fn):
    return asyncio.run(fn())  # a RuleViolation is printed by main as `error CODE: message`


def _usage_errors() -> tuple[type, ...]:
    """click's UsageError (typer ≥ 0.2x vendors click as typer._click; older typer uses click itself)."""
    errors = [c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"]
    try:
        import click

        errors.append(click.UsageError)
    except ImportError:  # typer without click
        pass
    return tuple(errors)


from api.cli_listen import register as _listen_and_trigger  # noqa: E402

_listen_and_trigger(app)  # `listen`, `trigger` (issue 13.2)


def _error_line(e: BaseException) -> tuple[str, str, int] | None:
    """(code, message, exit status) of an error the CLI reports in one line; None: not one of ours."""
    from engine.errors import RuleViolation
    from service.availability import is_database_unavailable
    from service.settings import ConfigError

    if isinstance(e, CliRefusal):
        return e.code, e.message, e.exit_code
    if isinstance(e, RuleViolation):
        field = f" ({e.field})" if e.field else ""
        return e.code.value, e.message + field, 2
    if isinstance(e, _usage_errors()):
        return "INVALID_INPUT", " ".join(e.format_message().split()), 2
    if isinstance(e, ConfigError):
        return "INVALID_CONFIG", str(e), 2
    if is_database_unavailable(e):
        return "UNAVAILABLE", f"the database is unreachable ({type(e).__name__}: {e})", 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Console entry point: settings checked first, every failure one `error CODE: message` line."""
    import sys

    from service.settings import check_settings, settings

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    command = typer.main.get_command(app)
    try:
        check_settings()
        from api.logs import configure_logging

        configure_logging()
        rc = command.main(argv if argv is not None else sys.argv[1:], prog_name="sharecart", standalone_mode=False)
        code = rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except Exception as e:  # noqa: BLE001 - the one place every CLI error is turned into a line
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `sharecart`: the help, as click shows it
            typer.echo(e.format_message(), err=True)
            return _exit(2, argv)
        line = _error_line(e)
        if line is None:
            line = ("INTERNAL", f"{type(e).__name__}: {e} (SHARECART_DEBUG=1 prints the traceback)", 1)
        typer.echo(f"error {line[0]}: {line[1]}", err=True)
        code = line[2]
        if line[0] == "INTERNAL" and _debug(settings):
            import traceback

            traceback.print_exception(e)
    return _exit(code, argv)


def _exit(code: int, argv) -> int:
    if argv is None:
        raise SystemExit(code)
    return code


def _debug(settings) -> bool:
    try:
        return settings().debug
    except Exception:  # noqa: BLE001 - a bad SHARECART_DEBUG was already reported as INVALID_CONFIG
        return False


if __name__ == "__main__":
    main()
