"""The `sharecart` command: serve, migrate, create shops, mint tokens, seed the demo."""

from __future__ import annotations

import asyncio
import os
import signal

import typer

app = typer.Typer(help="Sharecart: group-buy and distribution engine (GraphQL API).", no_args_is_help=True)

ROLES = ("customer", "distributor", "admin", "finance", "backend")


DEMO_TOKEN_TTL_S = 8 * 3600  # the demo tokens `serve` prints: a working day, not a week


def _services():
    from service.context import Services
    from store.database import create_engine

    if not os.environ.get("DATABASE_URL") and not os.environ.get("SHARECART_SECRET_KEY"):
        # the embedded database keeps its secrets' key in a file beside it, never inside it (store.secrets)
        from store.database import data_dir
        from store.secrets import KEY_ENV, embedded_key

        os.environ[KEY_ENV] = embedded_key(data_dir())
    return Services(engine=create_engine())


async def _migrate(svc) -> None:
    from store.migrate import upgrade

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
    """Create a shop; prints its public key (storefronts use it for invite codes, DS-2)."""

    async def run():
        from service.shops import create_shop as create

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
        raise typer.BadParameter(f"unknown role(s) {bad}; choose from {ROLES}")
    if not 0 < ttl <= MAX_TTL_S:
        raise typer.BadParameter(f"--ttl is 1 to {MAX_TTL_S} seconds (7 days)")

    async def run():
        from service.shops import get_shop

        svc = _services()
        shop = await get_shop(svc, shop_id)
        await svc.engine.dispose()
        if shop is None:
            raise typer.BadParameter(f"no shop {shop_id}")
        return _token(shop, user, role, ttl)

    typer.echo(asyncio.run(run()))


@app.command()
def seed() -> None:
    """Create the demo shop (idempotent)."""

    async def run():
        from service.demo import seed_demo

        svc = _services()
        await _migrate(svc)
        r = await seed_demo(svc)
        await svc.engine.dispose()
        return r

    r = asyncio.run(run())
    typer.echo(f"demo shop {'created' if r['created'] else 'already there'}: {r['shop'].shop_id}")
    _print_demo(r, "127.0.0.1", 8000)


@app.command("close-period")
def close_period(shop_id: str, day_from: str = typer.Option(..., "--from", help="first local day, YYYY-MM-DD"),
                 day_to: str = typer.Option(..., "--to", help="day after the last, YYYY-MM-DD (half-open)"),
                 actor: str = typer.Option("cli")) -> None:
    """LG-3: close [from, to) in the shop's time zone into a settlement batch; prints its id."""
    from datetime import date

    async def run():
        from service.settlements import close_period as close

        svc = _services()
        b = await close(svc, shop_id=shop_id, day_from=date.fromisoformat(day_from),
                        day_to=date.fromisoformat(day_to), actor=actor)
        await svc.engine.dispose()
        return b

    b = _run_refusable(run)
    typer.echo(f"{b.settlement_id} closing={b.closing} ({b.distributors} distributors)")


@app.command()
def export(shop_id: str, settlement_id: str, fmt: str = typer.Option("csv", "--format", help="csv or xlsx"),
           out: str = typer.Option(..., "--out", help="file to write")) -> None:
    """LG-3: export a settlement batch (same batch, same bytes), with a progress bar on stderr (drawn when
    stderr is a terminal; stdout keeps only the result line, for scripts)."""
    import shutil
    import sys

    if fmt not in ("csv", "xlsx"):
        raise typer.BadParameter("format is csv or xlsx")

    async def run():
        from service import exports
        from service.settlements import get_settlement

        svc = _services()
        batch = await get_settlement(svc, shop_id=shop_id, settlement_id=settlement_id)
        if batch is None:
            raise typer.BadParameter(f"no settlement {settlement_id} in shop {shop_id}")
        with typer.progressbar(length=batch.distributors, label=f"exporting {fmt}", file=sys.stderr) as bar:
            if fmt == "csv":
                with open(out, "wb") as f:
                    async for chunk in exports.csv_chunks(svc, shop_id=shop_id, settlement_id=settlement_id,
                                                          progress=bar.update):
                        f.write(chunk)
            else:
                path = await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=settlement_id,
                                               progress=bar.update)
                shutil.move(path, out)
        await svc.engine.dispose()

    asyncio.run(run())
    typer.echo(f"wrote {out}")


@app.command("export-schema")
def export_schema(out: str = typer.Option("schema.graphql", help="where to write the SDL")) -> None:
    """Write the GraphQL SDL of the code (tests/api/test_schema_file.py compares the committed file)."""
    from api.schema import schema

    with open(out, "w", encoding="utf-8") as f:
        f.write(str(schema) + "\n")
    typer.echo(f"wrote {out}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    demo: bool = typer.Option(True, help="seed the demo shop on first start and print its tokens"),
    worker: bool = typer.Option(True, help="run the expiry worker (GB-11) in this process"),
    test_clock: bool = typer.Option(False, "--test-clock", help="add the admin mutation advanceClock, which moves "
                                    "this process's service clock forward (OR-5); for demos and tests, never "
                                    "in production (same as SHARECART_TEST_CLOCK=1)"),
    dev: bool = typer.Option(None, "--dev/--no-dev", help="development mode: introspection for every caller "
                             "and /graphiql (SHARECART_DEV=1); on by default with --demo, off without "
                             "(docs/security.md)"),
) -> None:
    """Start the API with the expiry worker; migrations applied first."""
    if test_clock:
        from api.mutations import TEST_CLOCK_ENV

        os.environ[TEST_CLOCK_ENV] = "1"
    if dev if dev is not None else demo:
        from api.limits import DEV_ENV

        os.environ[DEV_ENV] = "1"
    asyncio.run(_serve(host, port, demo, worker))


async def _serve(host: str, port: int, demo: bool, run_worker: bool) -> None:
    import uvicorn

    from api.app import create_app
    from api.server import server_config
    from service.worker import worker_loop

    if not os.environ.get("DATABASE_URL"):
        from store.database import data_dir

        typer.echo(f"embedded PostgreSQL in {data_dir()} (set DATABASE_URL to use a server)")
    svc = _services()
    await _migrate(svc)
    if demo:
        from service.demo import seed_demo

        r = await seed_demo(svc)
        _print_demo(r, host, port)
    server = uvicorn.Server(server_config(create_app(svc), host=host, port=port, log_level="info"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.serve())]
    if run_worker:
        tasks.append(asyncio.create_task(worker_loop(svc, stop)))
    try:
        await tasks[0]
    finally:
        stop.set()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await svc.engine.dispose()
        from store.database import stop_embedded

        stop_embedded()


def _token(shop, user: str, roles, ttl: int) -> str:
    from api.auth import mint_token as mint

    return mint(shop, user, list(roles), ttl)


def _print_demo(r: dict, host: str, port: int) -> None:
    """What docs/walkthrough.md needs, under the names it uses (tests/api/test_walkthrough.py reads this)."""
    from api.mutations import test_clock_enabled
    from api.types import global_id
    from service.demo import DEMO_CALLERS

    shop = r["shop"]
    base = f"http://{host}:{port}"
    gid = lambda kind, raw: global_id(kind, raw) if raw else "(none open: open one with openGroup)"  # noqa: E731
    echo = typer.echo
    echo("")
    echo(f"GraphiQL:   {base}/graphiql      (API: {base}/graphql)")
    echo("Walkthrough from here to a formed group and a paid-out commission: docs/walkthrough.md")
    echo(f"Demo shop:  {shop.shop_id} ({shop.currency})   advanceClock: "
         f"{'on' if test_clock_enabled() else 'off (serve --test-clock)'}")
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
    from engine.errors import RuleViolation

    try:
        return asyncio.run(fn())
    except RuleViolation as e:
        typer.echo(f"error {e.code.value}: {e.message}", err=True)
        raise typer.Exit(2)


def main() -> None:  # console entry point
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    app()


if __name__ == "__main__":
    main()
