"""Issue 11 point 9 (tokens and secrets), issue 10 point 4 (the per-process shop cache) and issue 13 point 3
(issueToken), through real HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
from sqlalchemy import text

from api.auth import MAX_TTL_S, mint_token
from tests.api.conftest import Client, ServiceProcess, codes

ME = "{ mySegment }"


def _raw(shop, claims: dict, secret: str | None = None) -> str:
    return jwt.encode(claims, secret or shop.jwt_secret, algorithm="HS256")


def test_h11_9_token_lifetime_is_capped_and_iat_required(world):
    shop, now = world["shop"], int(time.time())
    with pytest.raises(ValueError):
        mint_token(shop, "ann", ["customer"], MAX_TTL_S + 1)
    base = {"shop": shop.shop_id, "sub": "ann", "roles": ["customer"]}
    cases = {
        "no iat": {**base, "exp": now + 60},
        "a year": {**base, "iat": now, "exp": now + 365 * 86400},
        "iat in the future": {**base, "iat": now + 3600, "exp": now + 7200},
    }
    for name, claims in cases.items():
        body = Client(world["base"], _raw(shop, claims)).gql(ME)
        assert codes(body) == ["UNAUTHENTICATED"], name
    ok = Client(world["base"], _raw(shop, {**base, "iat": now, "exp": now + 600})).gql(ME)
    assert "errors" not in ok


def test_h11_9_cli_mint_token_ttl_is_capped():
    import subprocess
    import sys

    from tests.api.conftest import REPO

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "mint-token",
            "any",
            "--user",
            "u",
            "--role",
            "customer",
            "--ttl",
            str(MAX_TTL_S + 1),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
    )
    assert r.returncode == 2 and "--ttl" in r.stderr


async def test_h11_9_revocation_and_secret_rotation_with_overlap(world, svc):
    admin, customer = world["as"]("boss", "admin"), world["as"]("ann", "customer")
    old_secret = world["shop"].jwt_secret
    rotated = admin.mutate("rotateJwtSecret", {"overlapSeconds": 3600}, "previousSecretValidUntil")
    assert rotated["errors"] == [] and rotated["previousSecretValidUntil"]
    assert "errors" not in customer.gql(ME)  # signed with the old secret: still valid during the overlap
    # a rotation with no overlap: the tokens of the old secrets are refused at once
    admin2 = Client(world["base"], mint_token(await _shop(world, svc), "boss", ["admin"], 600))
    assert admin2.mutate("rotateJwtSecret", {"overlapSeconds": 0}, "previousSecretValidUntil")["errors"] == []
    body = customer.gql(ME)
    assert codes(body) == ["UNAUTHENTICATED"] and "signature" in body["errors"][0]["message"]
    fresh = await _shop(world, svc)
    assert fresh.jwt_secret != old_secret
    # revocation: every token issued before it is refused; a new one works (iat is whole seconds)
    ann = Client(world["base"], mint_token(fresh, "ann", ["customer"], 600))
    boss = Client(world["base"], mint_token(fresh, "boss", ["admin"], 600))
    assert "errors" not in ann.gql(ME)
    assert boss.mutate("revokeTokens", {}, "tokensNotBefore")["errors"] == []
    assert codes(ann.gql(ME)) == ["UNAUTHENTICATED"] and "revoked" in ann.gql(ME)["errors"][0]["message"]
    await asyncio.sleep(1.1)
    assert "errors" not in Client(world["base"], mint_token(fresh, "ann", ["customer"], 600)).gql(ME)


async def _shop(world, svc):
    from service.usecases.shops import get_shop

    return await get_shop(svc, world["shop"].shop_id)


async def test_h11_9_secrets_are_encrypted_at_rest(world, db_engine):
    """A dump of the database holds neither the shop's JWT secret nor a webhook secret."""
    admin = world["as"]("boss", "admin")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/x"}, "endpoint { id secret }")
    assert ep["errors"] == [], ep
    ep = ep["endpoint"]
    async with db_engine.connect() as c:
        shop_row = (
            await c.execute(text("SELECT jwt_secret FROM shops WHERE shop_id = :s"), {"s": world["shop"].shop_id})
        ).scalar_one()
        hook_row = (
            await c.execute(
                text("SELECT secret FROM webhook_endpoints WHERE shop_id = :s"), {"s": world["shop"].shop_id}
            )
        ).scalar_one()
    assert shop_row.startswith("fernet:") and world["shop"].jwt_secret not in shop_row
    assert hook_row.startswith("fernet:") and ep["secret"] not in hook_row


def test_h11_9_admin_disables_repoints_and_deletes_a_webhook(world):
    admin = world["as"]("boss", "admin")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/a"}, "endpoint { id url enabled }")["endpoint"]
    off = admin.mutate("disableWebhook", {"endpointId": ep["id"]}, "endpoint { enabled disabledAt }")
    assert off["errors"] == [] and off["endpoint"]["enabled"] is False and off["endpoint"]["disabledAt"]
    moved = admin.mutate(
        "updateWebhook",
        {"endpointId": ep["id"], "url": "http://127.0.0.1:9/b", "eventTypes": ["order.paid"]},
        "endpoint { url eventTypes }",
    )
    assert moved["errors"] == [] and moved["endpoint"] == {"url": "http://127.0.0.1:9/b", "eventTypes": ["order.paid"]}
    bad = admin.mutate("updateWebhook", {"endpointId": ep["id"], "url": "ftp://x"}, "endpoint { url }")
    assert [e["code"] for e in bad["errors"]] == ["INVALID_INPUT"]
    gone = admin.mutate("deleteWebhook", {"endpointId": ep["id"]}, "deleted")
    assert gone == {"deleted": True, "errors": []}
    again = admin.mutate("deleteWebhook", {"endpointId": ep["id"]}, "deleted")
    assert [e["code"] for e in again["errors"]] == ["NOT_FOUND"]
    listed = admin.data("{ webhookEndpoints { edges { node { id } } } }")["webhookEndpoints"]["edges"]
    assert ep["id"] not in [e["node"]["id"] for e in listed]


def test_h11_9_serve_prints_short_lived_tokens_of_the_demo_shop_only(database_url):
    proc = ServiceProcess(database_url)
    try:
        tokens = [
            line.split()[-1]
            for line in proc.output.splitlines()
            if line.count(".") == 2 and line.strip().split()[-1].startswith("eyJ")
        ]
    finally:
        proc.stop()
    assert tokens, proc.output
    for t in tokens:
        claims = jwt.decode(t, options={"verify_signature": False})
        assert claims["shop"] == "demo" and claims["exp"] - claims["iat"] <= 12 * 3600


# ---------------------------------------------------------------- issue 10 point 4: shop cache
async def test_h10_4_shop_credentials_cached_per_process_and_dropped_on_change(world, server):
    """Requests of a shop read it once per process; a revocation made by another process (NOTIFY
    sharecart_shops) is honoured by this one within moments."""
    from service.context import Services
    from service.usecases.shops import revoke_tokens

    from store.database import create_engine

    gql = _graphql_view(server)
    ann = world["as"]("ann", "customer")
    assert "errors" not in ann.gql(ME)
    before = gql.shops.loads
    for _ in range(20):
        assert "errors" not in ann.gql(ME)
        assert "errors" not in world["public"].gql("{ __typename campaigns { totalCount } }")
    assert gql.shops.loads == before, "the shop was read again although nothing changed"
    other = Services(engine=create_engine(str(world["svc"].engine.url.render_as_string(hide_password=False))))
    try:
        await revoke_tokens(other, shop_id=world["shop"].shop_id)  # another process's change
    finally:
        await other.engine.dispose()
    for _ in range(50):
        if codes(ann.gql(ME)) == ["UNAUTHENTICATED"]:
            break
        await asyncio.sleep(0.1)
    assert codes(ann.gql(ME)) == ["UNAUTHENTICATED"]


def _graphql_view(server):
    """The SharecartGraphQL view of the session's test server."""
    return server["app"].state.graphql


# ---------------------------------------------------------------- issue 13 point 3: issueToken
def test_h13_3_backend_issues_customer_tokens_with_capped_lifetime(world):
    be = world["as"]("shop-backend", "backend")
    r = be.mutate("issueToken", {"userId": "zoe", "roles": ["CUSTOMER"], "ttlSeconds": 900}, "token expiresAt")
    assert r["errors"] == []
    claims = jwt.decode(r["token"], options={"verify_signature": False})
    assert claims["sub"] == "zoe" and claims["roles"] == ["customer"] and claims["exp"] - claims["iat"] == 900
    assert "errors" not in Client(world["base"], r["token"]).gql(ME)
    too_long = be.mutate("issueToken", {"userId": "zoe", "roles": ["CUSTOMER"], "ttlSeconds": 86401}, "token")
    assert [e["code"] for e in too_long["errors"]] == ["INVALID_INPUT"] and too_long["token"] is None
    body = Client(world["base"], r["token"]).gql(
        'mutation { issueToken(input: {userId: "x", roles: [CUSTOMER]}) { token } }'
    )
    assert codes(body) == ["FORBIDDEN"]
    r = httpx.post(
        f"{world['base']}/graphql",
        json={"query": 'mutation { issueToken(input: {userId: "x", roles: [ADMIN]}) { token } }'},
        headers=be.headers,
    )
    assert r.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"  # staff roles are not issuable
