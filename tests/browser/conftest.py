"""Browser tests of the console, the storefront demo and GraphiQL: Debian's `chromium`, driven by
Playwright for Python through `executable_path` (no browser download). They skip, saying why, only
where chromium or Playwright cannot be had.

SHARECART_SCREENSHOTS=<folder> makes them save a PNG of every screen they pass through (that is how
docs/console.md's pictures are made: `python3 tools/console_screenshots.py`)."""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.api.conftest import server  # noqa: F401  (the uvicorn server on the run's database)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("SHARECART_SCREENSHOTS")


@pytest.fixture(scope="session")
async def browser():
    """Playwright's async API, on the suite's one event loop (its sync API would start a second loop in
    this thread, which pytest-asyncio's fixtures cannot share)."""
    if CHROMIUM is None:
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium; tasks.py installs it as root)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - it is a test dependency
        pytest.skip("browser tests need Playwright for Python (pip install playwright)")
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield b
        await b.close()


class Watched:
    """A page whose JavaScript errors fail the test, with a screenshot helper."""

    def __init__(self, context, page):
        self.context, self.page = context, page
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a failed load is reported with its URL below (the console message has none); /favicon.ico is
        # GraphiQL's page asking for an icon nobody serves
        self.page.on(
            "console",
            lambda m: (
                m.type == "error" and not m.text.startswith("Failed to load resource") and self.errors.append(m.text)
            ),
        )
        self.page.on(
            "response",
            lambda r: (
                r.status >= 400
                and not r.url.endswith("/favicon.ico")
                and self.errors.append(f"HTTP {r.status} {r.url}")
            ),
        )

    async def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            await self.page.wait_for_timeout(300)  # transitions settle
            await self.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
async def open_page(browser):
    """await open_page() → a fresh browser context (its own sessionStorage: another person) with one page."""
    made: list = []

    async def make(**kw) -> Watched:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True, **kw)
        made.append(Watched(ctx, await ctx.new_page()))
        return made[-1]

    yield make
    for w in made:
        await w.context.close()
    for w in made:
        assert w.errors == [], f"JavaScript errors on the page: {w.errors}"


@pytest.fixture
async def demo(server, db_engine):  # noqa: F811
    """A fresh demo shop (service/usecases/demo.py: Asia/Shanghai, CNY, a distributor tree, open groups, bob's
    available commission) plus an A/B campaign with formed and failed groups, on the server's clock."""
    from api.auth import mint_token
    from service.usecases import campaigns, groups, orders
    from service.context import Services
    from service.usecases.demo import DEMO_CALLERS, back_in_time, seed_demo
    from service.jobs.worker import run_due_groups

    svc = Services(engine=db_engine)
    svc.clock.set(server["svc"].now())
    shop_id = f"demo-{secrets.token_hex(3)}"
    r = await seed_demo(svc, shop_id=shop_id)
    shop = r["shop"]
    with back_in_time(svc, timedelta(hours=3)):  # an A/B test whose groups have all been decided by now
        now = svc.now()
        ab = await campaigns.create_campaign(
            svc,
            shop_id=shop_id,
            product_ref="tea-oolong-250g",
            title="Oolong A/B price test",
            list_price=9900,
            tiers=[(2, 7900)],
            duration=timedelta(hours=1),
            payment_window=timedelta(minutes=30),
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(days=10),
            variants=[("A", [(2, 7900)], 50), ("B", [(2, 6900)], 50)],
        )
        for i in range(12):
            seat = await groups.open_group(svc, shop_id=shop_id, campaign_id=ab.campaign_id, user_id=f"ab-lead-{i}")
            await orders.confirm_payment(
                svc, shop_id=shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref=f"ab-pay-{i}"
            )
            if i % 3 != 2:  # two of three groups fill
                s2 = await groups.join_group(svc, shop_id=shop_id, group_id=seat.group_id, user_id=f"ab-join-{i}")
                await orders.confirm_payment(
                    svc, shop_id=shop_id, order_id=s2.order_id, amount=s2.amount, provider_ref=f"ab-pay-j{i}"
                )
    await run_due_groups(svc, shop_id=shop_id)  # the rest failed at expiry (GB-11)
    tokens = {name: mint_token(shop, user, list(roles), 3600) for name, (user, roles) in DEMO_CALLERS.items()}
    return {
        "base": server["base"],
        "shop": shop,
        "tokens": tokens,
        "key": shop.public_key,
        "ab_campaign": ab.campaign_id,
        **{k: r[k] for k in ("campaign_id", "pair_campaign_id", "pair_group_id")},
    }
