"""Issue 14 in a real browser (Debian chromium via Playwright): the console as admin and as finance,
the storefront demo watching a group fill live, and GraphiQL running the `groupProgress` subscription.
Each test acts as a person would: paste a token, fill forms, click."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from datetime import date, timedelta

import httpx

from api.relay import global_id


async def wait_until(page, expression: str, arg=None, timeout: float = 30000) -> None:
    """Poll `expression` (a JS expression or function of `arg`) with page.evaluate until it is truthy.
    Not Playwright's wait_for_function: its polling predicate is built with eval inside the page, which the
    pages' Content-Security-Policy (no 'unsafe-eval', docs/security.md) rightly refuses."""
    deadline = time.monotonic() + timeout / 1000
    while not await page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout:.0f} ms: {expression}")
        await asyncio.sleep(0.05)


def _gql(base: str, token: str | None, query: str, key: str | None = None, **variables) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {"X-Shop-Key": key}
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=30)
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


async def sign_in(w, demo, who: str) -> None:
    page = w.page
    await page.goto(f"{demo['base']}/console")
    await page.wait_for_selector("#token")
    await w.shot("login")
    await page.fill("#token", demo["tokens"][who])
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("nav .who")


async def test_admin_logs_in_creates_a_campaign_and_sees_it(open_page, demo):
    w = await open_page()
    page = w.page
    await sign_in(w, demo, "admin")
    await page.wait_for_selector("#campaign-list table")
    assert (await page.locator("nav .shop").inner_text()).startswith("Demo Tea House")
    assert await page.locator("nav a", has_text="Payout queue").count() == 0  # admin only: no finance screens
    await w.shot("campaigns")

    form = page.locator("#create-campaign")
    await form.locator("[name=title]").fill("Jasmine pearls, 3-person group")
    await form.locator("[name=productRef]").fill("tea-jasmine-100g")
    await form.locator("[name=listPrice]").fill("68.00")
    await form.locator("[name=tiers]").fill("3 49.00")
    await form.locator("[name=endsAt]").fill("2020-01-01T00:00")  # before it starts: the API refuses, by code
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#create-campaign .errors li")
    assert await page.locator("#create-campaign .errors li").first.get_attribute("data-code") == "INVALID_INPUT"

    end = (date.today() + timedelta(days=20)).isoformat()
    await form.locator("[name=endsAt]").fill(f"{end}T20:00")
    await form.locator("[name=lotteryWinners]").fill("0")
    await form.locator("[name=fillAtExpiry]").fill("2")
    await form.locator("[name=variants]").fill("A 50 3 49.00\nB 50 3 45.00")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector(".screen[data-screen=campaign] h1")
    assert "Jasmine pearls, 3-person group" in await page.locator("h1").inner_text()
    facts = await page.locator("dl.facts").inner_text()
    assert "CN¥68.00" in facts and "3 for CN¥49.00" in facts and "fills at expiry from 2" in facts
    assert "B (50): 3 for CN¥45.00" in facts
    await page.wait_for_selector("#campaign-stats svg")

    await page.click("nav a:has-text('Campaigns')")
    await page.wait_for_selector("#campaign-list table")
    assert await page.locator("#campaign-list tr", has_text="Jasmine pearls, 3-person group").count() == 1
    # what the console created is what the API has, with the money in minor units
    made = _gql(
        demo["base"],
        demo["tokens"]["admin"],
        "{ campaigns(first: 50) { edges { node { title listPrice "
        "fillAtExpiry variants { name tiers { unitPrice } } } } } }",
    )["campaigns"]["edges"]
    [c] = [e["node"] for e in made if e["node"]["title"].startswith("Jasmine")]
    assert c == {
        "title": "Jasmine pearls, 3-person group",
        "listPrice": 6800,
        "fillAtExpiry": 2,
        "variants": [{"name": "A", "tiers": [{"unitPrice": 4900}]}, {"name": "B", "tiers": [{"unitPrice": 4500}]}],
    }


async def test_finance_approves_a_payout_and_downloads_the_xlsx(open_page, demo):
    base, tokens = demo["base"], demo["tokens"]
    p = _gql(base, tokens["bob"], "mutation { requestPayout(input: {amount: 500}) { payout { id } errors { code } } }")
    assert p["requestPayout"]["errors"] == []
    w = await open_page()
    page = w.page
    await sign_in(w, demo, "finance")
    assert await page.locator("nav a", has_text="Campaigns").count() == 0  # finance only
    await page.click("nav a:has-text('Payout queue')")
    row = page.locator("#payout-list tr", has_text="bob")
    await row.wait_for()
    assert "CN¥5.00" in await row.inner_text()
    await w.shot("payouts")
    await row.locator("form.approve button").click()  # no reference: the API refuses, and the code is shown
    await row.locator(".errors li").wait_for()
    assert await row.locator(".errors li").first.get_attribute("data-code") == "INVALID_INPUT"
    await row.locator("[name=externalRef]").fill("BANK-2026-0042")
    await row.locator("form.approve button").click()
    await page.wait_for_selector("#payout-list tr:has-text('bob')", state="detached")
    state = _gql(
        base,
        tokens["finance"],
        "query($id: ID!) { node(id: $id) { ... on Payout { state externalRef } } }",
        id=p["requestPayout"]["payout"]["id"],
    )["node"]
    assert state == {"state": "APPROVED", "externalRef": "BANK-2026-0042"}

    await page.click("nav a:has-text('Settlements')")
    form = page.locator("#close-period")
    await form.wait_for()
    today = date.fromisoformat(
        await page.evaluate("new Intl.DateTimeFormat('en-CA', {timeZone: 'Asia/Shanghai'}).format(new Date())")
    )
    await form.locator("[name=fromDate]").fill((today - timedelta(days=12)).isoformat())
    await form.locator("[name=toDate]").fill((today - timedelta(days=1)).isoformat())
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#settlement-list tbody tr")
    await w.shot("settlements")
    async with page.expect_download() as dl:
        await page.locator("#settlement-list tbody tr").first.locator("button.download-xlsx").click()
    download = await dl.value
    data = open(await download.path(), "rb").read()
    assert download.suggested_filename.endswith(".xlsx")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "xl/worksheets/sheet1.xml" in names  # a real workbook, fetched with the finance token

    await page.click("nav a:has-text('Owed refunds')")
    await page.wait_for_selector("#refund-list .pager")
    await w.shot("refunds")
    await page.click("nav a:has-text('Earnings')")
    await page.wait_for_selector("#earnings svg")
    assert (await page.locator("#earnings .kpi").first.inner_text()).startswith("Earned")
    await w.shot("earnings")


async def test_storefront_seat_count_changes_within_2s_when_another_customer_joins(open_page, demo):
    base = demo["base"]
    url = f"{base}/demo/storefront?key={demo['key']}&campaign={global_id('Campaign', demo['campaign_id'])}"
    watcher = await open_page()
    await watcher.page.goto(url)
    card = watcher.page.locator(".group-card").first
    await card.wait_for()
    await watcher.page.wait_for_selector("#live.on", timeout=10000)  # the subscription pushed the group: it is live
    before = await card.locator(".seats-text").get_attribute("data-held")
    assert (await card.locator(".countdown").inner_text()).count(":") == 2  # a ticking countdown to expiry
    await watcher.shot("storefront")

    joiner = await open_page()  # a second person in another browser context
    await joiner.page.goto(url)
    await joiner.page.fill("#customer-token", demo["tokens"]["erin"])
    await joiner.page.click("#sign-in button")
    await joiner.page.wait_for_selector("#customer-name")
    t0 = time.monotonic()
    await joiner.page.locator(".group-card .join").first.click()
    await wait_until(
        watcher.page,
        "(b) => document.querySelector('.group-card .seats-text').dataset.held !== b",
        arg=before,
        timeout=2000,
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    assert int(await card.locator(".seats-text").get_attribute("data-held")) == int(before) + 1
    await joiner.page.wait_for_selector("#seat")
    assert "Seat reserved: pay CN¥" in await joiner.page.locator("#seat").inner_text()
    await joiner.shot("storefront-joined")

    # a distributor's share link carries their invite code; opened by someone else, it says so
    sharer = await open_page()
    await sharer.page.goto(url)
    await sharer.page.fill("#customer-token", demo["tokens"]["bob"])
    await sharer.page.click("#sign-in button")
    await sharer.page.wait_for_selector("#customer-name")
    link = await sharer.page.locator(".group-card .share input").first.input_value()
    code = _gql(base, demo["tokens"]["bob"], "{ me { inviteCode } }")["me"]["inviteCode"]
    assert f"invite={code}" in link and "group=" in link
    invited = await open_page()
    await invited.page.goto(link)
    await invited.page.wait_for_selector("#invite.ok")


async def test_graphiql_runs_the_group_progress_subscription(open_page, demo):
    """GraphiQL's fetcher has a subscription URL: a subscription typed into the editor streams pushes."""
    base = demo["base"]
    w = await open_page()
    page = w.page
    await page.goto(f"{base}/graphiql")
    await page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    gid = global_id("Group", demo["pair_group_id"])
    await page.evaluate(
        """([q, h]) => {
        document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
        const headers = [...document.querySelectorAll('.CodeMirror')].find((e) => e.CodeMirror.getValue().includes('PASTE-A-TOKEN'));
        headers.CodeMirror.setValue(h);
    }""",
        [
            f'subscription {{ groupProgress(groupId: "{gid}") {{ seatsHeld state }} }}',
            f'{{"X-Shop-Key": "{demo["key"]}"}}',
        ],
    )
    await page.wait_for_timeout(500)  # GraphiQL takes the editors' text into its state after a short debounce
    await page.click(".graphiql-execute-button")
    result = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
    try:
        await wait_until(page, f"{result}.includes('seatsHeld')", timeout=15000)
    except Exception:
        raise AssertionError("GraphiQL showed: " + await page.evaluate(result))
    first = await page.evaluate(result)
    assert '"seatsHeld": 1' in first, first
    r = _gql(
        base, demo["tokens"]["gina"], "mutation($g: ID!) { joinGroup(input: {groupId: $g}) { errors { code } } }", g=gid
    )
    assert r["joinGroup"]["errors"] == []
    await wait_until(page, f"{result}.includes('\"seatsHeld\": 2')", timeout=5000)
    await w.shot("graphiql-subscription")


async def test_admin_screens_each_render_and_their_mutations_report_by_code(open_page, demo):
    """Every admin screen renders from the API alone (no JavaScript error, no failed request), and the
    mutations on them act: the A/B chart of the seeded test, a suspension with its reason, a product
    override, a webhook registered, rotated, disabled and looked into, the event log paged."""
    w = await open_page()
    page = w.page
    await sign_in(w, demo, "admin")
    await page.goto(f"{demo['base']}/console#/campaign/{global_id('Campaign', demo['ab_campaign'])}")
    await page.wait_for_selector("#campaign-stats svg.forest")
    await page.wait_for_selector("#recent-groups tbody tr")
    assert await page.locator("#recent-groups tbody tr").count() == 10  # a page of 10 of the 12 groups
    await w.shot("campaign")
    await page.locator("#recent-groups button.next-page").click()
    await wait_until(page, "document.querySelectorAll('#recent-groups tbody tr').length === 2")
    stats = await page.locator("#campaign-stats table").inner_text()
    assert "\ntotal\t12\t8\t4\t66.66 %" in stats  # 8 of 12 formed; RP-2 floors the bp

    await page.click("nav a:has-text('Distribution settings')")
    await page.wait_for_selector("#settings")
    await page.locator("#settings [name=level1Bp]").fill("20000")  # over 100 %: refused, by code
    await page.locator("#settings button[type=submit]").click()
    await page.wait_for_selector("#settings .errors li")
    await w.shot("settings")

    await page.click("nav a:has-text('Levels')")
    await page.wait_for_selector("#levels tbody tr")
    assert await page.locator("#levels tbody tr").count() == 3
    await w.shot("levels")

    await page.click("nav a:has-text('Distributors')")
    await page.wait_for_selector("#distributor-list tbody tr")
    row = page.locator("#distributor-list tr", has_text="dave")
    for n in range(2, 7):  # the A/B test's buyers come first by user id: page forward to dave
        if await row.count():
            break
        await page.locator("#distributor-list button.next-page").click()
        await page.wait_for_selector(f"#distributor-list .pager:has-text('page {n}')")
    await row.locator("button:has-text('Suspend')").click()
    await page.locator("#distributor-form [name=reason]").fill("chargebacks under review")
    await page.locator("#distributor-form button[type=submit]").click()
    await page.wait_for_selector("#distributor-list tr:has-text('chargebacks under review')")
    assert "SUSPENDED" in await page.locator("#distributor-list tr", has_text="dave").inner_text()
    await w.shot("distributors")

    await page.click("nav a:has-text('Products')")
    form = page.locator("#product-form")
    await form.locator("[name=productRef]").fill("cup-celadon")
    await form.locator("[name=title]").fill("Celadon cup")
    await form.locator("[name=level1Amount]").fill("3.50")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#product-list tr:has-text('CN¥3.50 / unit')")
    await w.shot("products")

    await page.click("nav a:has-text('Webhooks')")
    form = page.locator("#register-webhook")
    await form.locator("[name=url]").fill("http://127.0.0.1:9/hooks")
    await form.locator("[name=eventTypes]").fill("group.formed, order.paid")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#webhook-secret code.secret")
    first_secret = await page.locator("#webhook-secret code.secret").inner_text()
    row = page.locator("#endpoint-list tbody tr").first
    await row.locator("button:has-text('Rotate secret')").click()
    await wait_until(
        page,
        "(s) => (document.querySelector('#webhook-secret code.secret, #webhook-secret .errors') || {}).textContent !== s",
        arg=first_secret,
    )
    assert await page.locator("#webhook-secret .errors").count() == 0, await page.locator(
        "#webhook-secret"
    ).inner_text()
    await row.locator("button:has-text('Disable')").click()
    await page.wait_for_selector("#endpoint-list tbody tr .badge.disabled")
    await w.shot("webhooks")
    await row.locator("a").click()
    await page.wait_for_selector("#deliveries .pager")
    seqs = [
        e["node"]["seq"]
        for e in _gql(demo["base"], demo["tokens"]["admin"], "{ events(first: 100) { edges { node { seq } } } }")[
            "events"
        ]["edges"]
    ]
    await page.locator("#redeliver [name=fromSeq]").fill(str(min(seqs)))  # seq numbers all shops' events
    await page.locator("#redeliver [name=toSeq]").fill(str(max(seqs)))
    await page.locator("#redeliver button[type=submit]").click()
    await page.wait_for_selector("#redeliver .ok")
    owed = int((await page.locator("#redeliver .ok").inner_text()).split()[0])
    assert owed >= 2  # the demo's paid orders and formed groups, by the endpoint's filter
    await page.wait_for_selector("#deliveries tbody tr")  # owed again, listed (sent once it is enabled)
    assert await page.locator("#deliveries tbody tr").count() == min(owed, 10)
    await w.shot("webhook")

    await page.click("nav a:has-text('Event log')")
    await page.wait_for_selector("#event-list tbody tr")
    first_page = await page.locator("#event-list tbody tr td:first-child").all_inner_texts()
    await page.locator("#event-list button.next-page").click()
    await wait_until(
        page,
        "(f) => (document.querySelector('#event-list tbody tr td') || {textContent: f}).textContent !== f",
        arg=first_page[0],
    )
    second = await page.locator("#event-list tbody tr td:first-child").all_inner_texts()
    assert int(second[0]) > int(first_page[-1])  # the keyset cursor moves forward
    await w.shot("events")
