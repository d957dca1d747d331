"""SH-0 / SH-1 / DS-2 through real HTTP: every Query and Mutation root field × every kind of caller.

The table has one row per root field of the served schema (derived from the schema, so an operation
added without a row fails `test_the_table_covers_every_operation`). Each row names the roles allowed
and a request that uses real objects of shop A. Each caller gets exactly one of:
- allowed: no top-level error at all (refusals of the rules are payload errors);
- a role of shop A it does not hold: FORBIDDEN; no token (or only the public key, for a non-public
  field): UNAUTHENTICATED — and, for mutations, shop A is byte-for-byte unchanged;
- a token of shop B holding every role: not refused, but nothing of shop A in the answer (its ids,
  codes, names are absent; ids of A are null / NOT_FOUND), and shop A unchanged.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import text

from api.auth import ROLES, mint_token
from api.schema import make_schema
from api.relay import global_id
from engine.distribution import DistributorStatus
from engine.levels import Level
from store.models import Base
from tests.api.conftest import Client, codes

PUBLIC = frozenset(ROLES | {"public"})  # DS-2: the shop key, or any token of the shop
CALLERS = ("customer", "distributor", "admin", "finance", "backend", "public", "none", "other")
LEVELS_INPUT = (
    '[{grade: 0, name: "Member", level1Bp: 1000, level2Bp: 500}, '
    '{grade: 1, name: "Silver", level1Bp: 1200, level2Bp: 600, upgradeBonus: 5000}]'
)

Q = {  # root query field → (who may call it, request)
    "node": (PUBLIC, '{ node(id: "{order}") { id } }'),
    "viewer": (PUBLIC, "{ viewer { userId roles shop { shopId name currency timezone } } }"),
    "campaign": (PUBLIC, '{ campaign(id: "{campaign}") { id title } }'),
    "campaigns": (PUBLIC, "{ campaigns { totalCount edges { node { id title } } } }"),
    "group": (PUBLIC, '{ group(id: "{group}") { id state leaderUserId } }'),
    "resolveInvite": (PUBLIC, '{ resolveInvite(code: "{invite}") { valid } }'),
    "myOrders": ({"customer"}, "{ myOrders { totalCount edges { node { id externalId } } } }"),
    "myGroups": ({"customer"}, "{ myGroups { totalCount edges { node { id } } } }"),
    "mySegment": ({"customer"}, "{ mySegment }"),
    "myReferral": ({"customer"}, "{ myReferral { source referrerCode } }"),
    "myDownline": (
        {"distributor"},
        '{ myDownline(periodFrom: "2026-01-01T00:00:00Z", periodTo: '
        '"2026-02-01T00:00:00Z") { totalCount edges { node { alias } } } }',
    ),
    "myFunnel": (
        {"distributor"},
        '{ myFunnel(periodFrom: "2026-01-01T00:00:00Z", periodTo: "2026-02-01T00:00:00Z") { visits } }',
    ),
    "leaderboard": (
        {"admin"},
        '{ leaderboard(periodFrom: "2026-01-01T00:00:00Z", periodTo: "2026-02-01T00:00:00Z") { rank userId } }',
    ),
    "funnel": (
        {"admin"},
        '{ funnel(periodFrom: "2026-01-01T00:00:00Z", periodTo: "2026-02-01T00:00:00Z", '
        'distributorId: "acc-d") { visits } }',
    ),
    "referralBinding": ({"admin"}, '{ referralBinding(userId: "buyer") { referrerId source } }'),
    "commissionPreview": (
        {"customer", "distributor"},
        '{ commissionPreview(input: {lines: [{productRef: "p", unitPrice: 100}]}) { baseMost shares { level } } }',
    ),
    "me": ({"distributor"}, "{ me { inviteCode balances { available } commissionLines { totalCount } } }"),
    "owedRefunds": ({"backend", "finance"}, "{ owedRefunds { totalCount edges { node { id amount } } } }"),
    "product": ({"backend", "admin"}, '{ product(productRef: "{product}") { id productRef } }'),
    "products": ({"backend", "admin"}, "{ products { totalCount edges { node { id productRef } } } }"),
    "pendingPayouts": ({"finance"}, "{ pendingPayouts { totalCount edges { node { id distributorId } } } }"),
    "settlements": ({"admin", "finance"}, "{ settlements { totalCount edges { node { id } } } }"),
    "shopEarningsSeries": (
        {"admin", "finance"},
        '{ shopEarningsSeries(granularity: DAY, periodFrom: "2026-01-01", '
        'periodTo: "2026-01-03") { periodFrom earned } }',
    ),
    "campaignStats": ({"admin"}, '{ campaignStats(campaignId: "{campaign}") { total { opened units } } }'),
    "distributionSettings": ({"admin"}, "{ distributionSettings { mode level1Bp } }"),
    "levels": ({"admin"}, "{ levels { totalCount edges { node { id name } } } }"),
    "distributors": ({"admin"}, "{ distributors { totalCount edges { node { id userId inviteCode } } } }"),
    "events": ({"admin", "finance"}, "{ events { totalCount edges { node { id aggregateId } } } }"),
    "webhookEndpoints": ({"admin"}, "{ webhookEndpoints { totalCount edges { node { id url } } } }"),
    "segmentCounts": ({"admin"}, "{ segmentCounts { segment count } }"),
    "userSegment": ({"admin"}, '{ userSegment(userId: "buyer") }'),
    "retention": ({"admin"}, '{ retention(periodFrom: "2026-01-01", periodTo: "2026-02-01") { source buyers } }'),
    "groupBuySettings": ({"admin"}, "{ groupBuySettings { overflowReseat } }"),
    "fraudReviewQueue": ({"admin"}, "{ fraudReviewQueue { totalCount edges { node { id state } } } }"),
    "fraudRules": ({"admin"}, "{ fraudRules { selfDealing } }"),
}

M = {  # root mutation field → (who may call it, input)
    "openGroup": ({"customer"}, '{campaignId: "{campaign}"}'),
    "joinGroup": ({"customer"}, '{groupId: "{group}"}'),
    "quickJoin": ({"customer"}, '{campaignId: "{campaign}", openIfNone: true}'),
    "updateGroupBuySettings": ({"admin"}, "{overflowReseat: false}"),
    "leaveGroup": ({"customer"}, '{groupId: "{group}"}'),
    "bindReferrer": ({"customer"}, '{inviteCode: "{invite}"}'),
    "recordVisit": (PUBLIC, '{inviteCode: "{invite}", visitorId: "visitor-acc-1"}'),
    "rebindReferrer": ({"admin"}, '{userId: "acc-rebound", referrerId: "acc-nobody", reason: "r"}'),
    "applyAsDistributor": ({"customer"}, "{}"),
    "confirmPayment": ({"backend"}, '{orderId: "{order}", amount: 1, providerRef: "acc-pay"}'),
    "confirmRefund": ({"backend"}, '{refundId: "{refund}", providerRef: "acc-rf"}'),
    "reportOrder": (
        {"backend"},
        '{externalId: "acc-new", buyerId: "x", lines: [{productRef: "p", quantity: 1, unitPrice: 100}]}',
    ),
    "refundOrder": ({"backend"}, '{orderId: "{order}", amount: 1, providerRef: "acc-ref"}'),
    "completeOrder": ({"backend"}, '{orderId: "{order}"}'),
    "upsertProduct": ({"backend", "admin"}, '{productRef: "acc-prod", category: "x"}'),
    "requestPayout": ({"distributor"}, "{amount: 100}"),
    "createCampaign": (
        {"admin"},
        '{productRef: "acc", title: "acc", listPrice: 1000, tiers: [{members: 2, '
        "unitPrice: 900}], durationSeconds: 3600, paymentWindowSeconds: 600, "
        'startsAt: "2026-01-01T00:00:00+00:00", endsAt: "2036-01-01T00:00:00+00:00"}',
    ),
    "endCampaign": ({"admin"}, '{campaignId: "{campaign}"}'),
    "updateDistributionSettings": ({"admin"}, "{}"),
    "setLevels": ({"admin"}, "{levels: " + LEVELS_INPUT + "}"),
    "approveDistributor": ({"admin"}, '{userId: "dist"}'),
    "suspendDistributor": ({"admin"}, '{userId: "dist", reason: "acc"}'),
    "reinstateDistributor": ({"admin"}, '{userId: "dist", reason: "acc"}'),
    "setDistributorLevel": ({"admin"}, '{userId: "dist", grade: 1, reason: "acc"}'),
    "registerWebhook": ({"admin"}, '{url: "http://127.0.0.1:9/acc"}'),
    "rotateWebhookSecret": ({"admin"}, '{endpointId: "{endpoint}"}'),
    "enableWebhook": ({"admin"}, '{endpointId: "{endpoint}"}'),
    "disableWebhook": ({"admin"}, '{endpointId: "{endpoint}"}'),
    "redeliverEvents": ({"admin"}, '{endpointId: "{endpoint}", fromSeq: 1, toSeq: 2}'),
    "updateWebhook": ({"admin"}, '{endpointId: "{endpoint}", eventTypes: []}'),
    "deleteWebhook": ({"admin"}, '{endpointId: "wh_none"}'),
    "issueToken": ({"backend"}, '{userId: "acc", roles: [CUSTOMER]}'),
    "rotateJwtSecret": ({"admin"}, "{overlapSeconds: 3600}"),
    "revokeTokens": ({"admin"}, "{}"),
    "approvePayout": ({"finance"}, '{payoutId: "{payout}", externalRef: "acc"}'),
    "rejectPayout": ({"finance"}, '{payoutId: "{payout}", reason: "acc"}'),
    "closePeriod": ({"finance"}, '{fromDate: "2020-01-01", toDate: "2020-01-02"}'),
    "advanceClock": ({"admin"}, "{seconds: 0}"),
    "setFraudRules": ({"admin"}, "{}"),
    "clearFraudFlag": ({"admin"}, '{flagId: "ff_none"}'),
    "voidFraudFlag": ({"admin"}, '{flagId: "ff_none", reason: "acc"}'),
    "dissolveFlaggedGroup": ({"admin"}, '{flagId: "ff_none", reason: "acc"}'),
    "failPayout": ({"backend", "finance"}, '{payoutId: "{payout}", transferRef: "acc", reason: "acc"}'),
}
OTHER_SHOP_CODE = {"bindReferrer": "INVALID_INVITE_CODE", "recordVisit": "INVALID_INVITE_CODE"}  # an unknown code


def _request(op: str, site: dict) -> str:
    if op in Q:
        template = Q[op][1]
    else:
        template = f"mutation {{ {op}(input: {M[op][1]}) {{ errors {{ code }} }} }}"
    for key, value in site["ids"].items():
        template = template.replace("{" + key + "}", value)
    return template


IDS = ("campaign", "group", "order", "refund", "payout", "endpoint", "invite", "product")


def _uses_an_id_of_shop_a(op: str) -> bool:
    return any(f"{{{k}}}" in (Q.get(op) or M[op])[1] for k in IDS)


# ---------------------------------------------------------------- shop A with one of everything
async def snapshot(engine, shop_id: str) -> str:
    """A digest of every row of the shop, in every table (SH-1: all of them carry shop_id)."""
    parts = [
        f"SELECT '{t.name}:' || x::text AS r FROM {t.name} x WHERE shop_id = :s"
        for t in Base.metadata.sorted_tables
        if "shop_id" in t.c
    ]
    sql = text(f"SELECT md5(string_agg(r, '|' ORDER BY r)) FROM ({' UNION ALL '.join(parts)}) u")
    async with engine.connect() as c:
        return (await c.execute(sql, {"s": shop_id})).scalar_one()


@pytest.fixture(scope="module")
async def site(server, db_engine):
    from service.usecases import campaigns, distribution, groups, orders, payouts, settlements, shops, webhooks
    from service.context import Services

    svc = Services(engine=db_engine)
    svc.clock.set(server["svc"].now())
    now = svc.now()
    tag = secrets.token_hex(4)
    a = await shops.create_shop(svc, shop_id=f"acc-a-{tag}", name="A", currency="CNY")
    b = await shops.create_shop(svc, shop_id=f"acc-b-{tag}", name="B", currency="CNY")
    sid = a.shop_id
    await shops.set_levels(
        svc,
        shop_id=sid,
        levels=[
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="Silver", level1_bp=1200, level2_bp=600, upgrade_bonus=5000),
        ],
    )
    product = f"sku-a-{tag}"
    await shops.upsert_product(svc, shop_id=sid, product_ref=product, category="tea")
    c = await campaigns.create_campaign(
        svc,
        shop_id=sid,
        product_ref=product,
        title=f"Campaign-A-{tag}",
        list_price=10000,
        tiers=[(2, 8000), (3, 7000)],
        duration=timedelta(days=2),
        payment_window=timedelta(hours=1),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=30),
    )
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await orders.confirm_payment(svc, shop_id=sid, order_id=lead.order_id, amount=lead.amount, provider_ref="a-1")
    member = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="member")
    await orders.confirm_payment(svc, shop_id=sid, order_id=member.order_id, amount=member.amount, provider_ref="a-2")
    await groups.leave_group(svc, shop_id=sid, group_id=lead.group_id, user_id="member")  # GB-8: a refund owed
    await distribution.set_status(
        svc, shop_id=sid, user_id="dist", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="dist")
    o = await orders.report_order(
        svc, shop_id=sid, external_id=f"ext-a-{tag}", buyer_id="buyer", lines=[orders.LineInput(product, 1, 5000)]
    )
    await orders.confirm_payment(svc, shop_id=sid, order_id=o.order_id, amount=5000, provider_ref="a-3")
    await distribution.set_level(svc, shop_id=sid, user_id="dist", grade=1, actor="t", reason="t")  # LV-4 bonus
    p = await payouts.request_payout(svc, shop_id=sid, user_id="dist", amount=1000)
    day = (now - timedelta(days=3)).date()
    st = await settlements.close_period(svc, shop_id=sid, day_from=day, day_to=day + timedelta(days=1), actor="t")
    ep = await webhooks.register_endpoint(svc, shop_id=sid, url=f"http://127.0.0.1:9/a-{tag}")
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="dist")
    from service.reads.queries import page_refunds

    refunds, _ = await page_refunds(svc, shop_id=sid, state="OWED", rule=None, limit=10, after=None)
    ids = {
        "campaign": global_id("Campaign", c.campaign_id),
        "group": global_id("Group", lead.group_id),
        "order": global_id("Order", o.order_id),
        "refund": global_id("Refund", refunds[0].refund_id),
        "payout": global_id("Payout", p.payout_id),
        "endpoint": global_id("WebhookEndpoint", ep.endpoint_id),
        "invite": d.invite_code,
        "product": product,
    }
    # what must never show to shop B: A's ids (global and raw), names, codes, references, its key
    secrets_of_a = [
        *ids.values(),
        c.campaign_id,
        lead.group_id,
        o.order_id,
        p.payout_id,
        st.settlement_id,
        ep.endpoint_id,
        refunds[0].refund_id,
        f"ext-a-{tag}",
        f"Campaign-A-{tag}",
        a.shop_id,
        a.public_key,
        global_id("Settlement", st.settlement_id),
        ep.url,
    ]
    base = server["base"]
    clients = {
        role: Client(base, mint_token(a, {"customer": "cust", "distributor": "dist"}.get(role, role), [role], 3600))
        for role in ROLES
    }
    clients["public"] = Client(base, shop_key=a.public_key)
    clients["none"] = Client(base)
    clients["other"] = Client(base, mint_token(b, "dist", sorted(ROLES), 3600))  # same user id, other shop
    return {
        "shop": a,
        "other": b,
        "ids": ids,
        "secrets": secrets_of_a,
        "clients": clients,
        "engine": db_engine,
        "base": base,
    }


# ---------------------------------------------------------------- the table
def test_the_table_covers_every_operation():
    schema = make_schema(test_clock=True)._schema
    assert set(Q) == set(schema.query_type.fields), "add a row to Q for every query (and remove stale ones)"
    assert set(M) == set(schema.mutation_type.fields), "add a row to M for every mutation"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", [*Q, *M])
async def test_role_x_operation_x_shop_SH0_SH1(site, op, caller):
    allowed = (Q.get(op) or M[op])[0]
    is_mutation = op in M
    before = await snapshot(site["engine"], site["shop"].shop_id) if is_mutation and caller not in allowed else None
    body = site["clients"][caller].gql(_request(op, site))
    text_ = json.dumps(body)

    if caller == "other":
        assert not {"UNAUTHENTICATED", "FORBIDDEN"} & set(codes(body)), body
        for s in site["secrets"]:
            assert s not in text_, f"shop B's token saw {s!r} of shop A: {text_[:400]}"
        if _uses_an_id_of_shop_a(op):
            if is_mutation:
                assert [e["code"] for e in body["data"][op]["errors"]] == [OTHER_SHOP_CODE.get(op, "NOT_FOUND")]
            elif op == "resolveInvite":
                assert body["data"][op] == {"valid": False}
            elif op != "campaignStats":
                assert body["data"][op] is None, body
    elif caller in allowed:
        assert "errors" not in body, body
        assert body["data"][op] is not None or op in ("node", "me", "product")
    elif caller in ("none", "public"):
        assert codes(body) == ["UNAUTHENTICATED"], body
    else:
        assert codes(body) == ["FORBIDDEN"], body
        assert body["data"] is None or body["data"].get(op) is None
    if before is not None:
        assert await snapshot(site["engine"], site["shop"].shop_id) == before, f"{caller} changed shop A via {op}"
    if op == "revokeTokens" and (caller in allowed or caller == "other"):
        await _remint(site)  # the call revoked every token of its shop issued until now


async def _remint(site) -> None:
    """New tokens for every caller (iat is whole seconds: wait for the next one)."""
    import asyncio

    await asyncio.sleep(1.1)
    a, b, base = site["shop"], site["other"], site["base"]
    for role in ROLES:
        site["clients"][role] = Client(
            base, mint_token(a, {"customer": "cust", "distributor": "dist"}.get(role, role), [role], 3600)
        )
    site["clients"]["other"] = Client(base, mint_token(b, "dist", sorted(ROLES), 3600))


async def test_the_refused_mutations_really_would_change_something(site):
    """The snapshot is not blind: an allowed mutation changes it."""
    before = await snapshot(site["engine"], site["shop"].shop_id)
    r = site["clients"]["backend"].mutate("upsertProduct", {"productRef": "snap-check"}, "product { id }")
    assert r["errors"] == []
    assert await snapshot(site["engine"], site["shop"].shop_id) != before


# ---------------------------------------------------------------- bad credentials
def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _bad_tokens(shop, other) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    claims = {"shop": shop.shop_id, "sub": "boss", "roles": ["admin"], "iat": now, "exp": now + 600}
    return {  # name → (token, what the message must say)
        "expired": (mint_token(shop, "boss", ["admin"], -10), "expired"),
        "forged": (jwt.encode(claims, "not-the-shop-secret-" * 3, algorithm="HS256"), "signature"),
        "other-shops-secret": (jwt.encode(claims, other.jwt_secret, algorithm="HS256"), "signature"),
        "malformed": ("garbage", "malformed"),
        "three-dots": ("a.b.c", "malformed"),
        "alg-none": (f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.", "algorithm"),
        "alg-hs512": (jwt.encode(claims, shop.jwt_secret, algorithm="HS512"), "algorithm"),
        "unknown-shop": (jwt.encode({**claims, "shop": "no-such-shop"}, "x" * 40, algorithm="HS256"), "unknown shop"),
        "no-expiry": (
            jwt.encode({k: v for k, v in claims.items() if k != "exp"}, shop.jwt_secret, algorithm="HS256"),
            "exp",
        ),
        "empty": ("", "empty"),
    }


@pytest.mark.filterwarnings("ignore:The HMAC key")  # alg-hs512 signs with a short key on purpose
@pytest.mark.parametrize(
    "name",
    [
        "expired",
        "forged",
        "other-shops-secret",
        "malformed",
        "three-dots",
        "alg-none",
        "alg-hs512",
        "unknown-shop",
        "no-expiry",
        "empty",
    ],
)
def test_bad_tokens_are_unauthenticated_with_a_clear_message_SH0(site, name):
    token, says = _bad_tokens(site["shop"], site["other"])[name]
    headers = {"Authorization": f"Bearer {token}".strip()}
    for query in ("{ distributionSettings { mode } }", '{ campaign(id: "%s") { id } }' % site["ids"]["campaign"]):
        # a bad token is never downgraded to anonymous access, even where the shop key would do
        r = httpx.post(
            f"{site['base']}/graphql", json={"query": query}, headers={**headers, "X-Shop-Key": site["shop"].public_key}
        )
        body = r.json()
        assert codes(body) == ["UNAUTHENTICATED"], body
        assert says in body["errors"][0]["message"].lower(), body
        assert site["ids"]["campaign"] not in r.text


def test_a_wrong_shop_key_or_scheme_is_unauthenticated(site):
    q = '{ campaign(id: "%s") { id } }' % site["ids"]["campaign"]
    body = httpx.post(f"{site['base']}/graphql", json={"query": q}, headers={"X-Shop-Key": "pk_nope"}).json()
    assert codes(body) == ["UNAUTHENTICATED"] and "shop key" in body["errors"][0]["message"]
    token = mint_token(site["shop"], "boss", ["admin"], 600)
    body = httpx.post(f"{site['base']}/graphql", json={"query": q}, headers={"Authorization": f"Basic {token}"}).json()
    assert codes(body) == ["UNAUTHENTICATED"] and "Bearer" in body["errors"][0]["message"]
    body = httpx.post(
        f"{site['base']}/graphql",
        json={"query": q},  # SH-1: one shop's token, another's key
        headers={"Authorization": f"Bearer {token}", "X-Shop-Key": site["other"].public_key},
    ).json()
    assert codes(body) == ["UNAUTHENTICATED"] and "different shops" in body["errors"][0]["message"]
    body = httpx.post(
        f"{site['base']}/graphql",
        json={"query": q},  # the matching key is fine
        headers={"Authorization": f"Bearer {token}", "X-Shop-Key": site["shop"].public_key},
    ).json()
    assert "errors" not in body and body["data"]["campaign"]["id"] == site["ids"]["campaign"]
