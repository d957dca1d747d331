"""Issue 13 point 2: `sharecart listen --forward-to` streams the shop's events from the event pull API, signed as
Standard Webhooks, to a local receiver (here one that verifies with the official `standardwebhooks` package), and
resumes after the last event it forwarded; `sharecart trigger` writes a sample event into the feed."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading


from api import cli_listen
from api.auth import mint_token
from service.usecases import webhooks
from tests.api.conftest import REPO
from tests.http_receiver import LocalReceiver, verify_standard


def _cli(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


class VerifyingReceiver(LocalReceiver):
    def __init__(self, secret: str):
        self.secret, self.verified, self.bad = secret, [], 0
        self.lock = threading.Lock()
        super().__init__(self._answer, f"/webhooks/{secrets.token_hex(4)}")

    def _answer(self, path, headers, body):
        event = verify_standard(self.secret, headers, body)
        with self.lock:
            if event is None:
                self.bad += 1
                return 401
            self.verified.append((headers["webhook-id"], event, body))
        return 200


async def test_listen_13_2_forwards_the_feed_signed_to_a_verifying_receiver_and_resumes(
    world, svc, runtime_url, tmp_path, monkeypatch
):
    shop = world["shop"]
    admin = mint_token(shop, "boss", ["admin"], 3600)
    backend = world["as"]("shop-backend", "backend")
    secret = webhooks.new_secret()
    state = tmp_path / "listen.json"
    state.write_text(json.dumps({"cursor": None, "secret": secret}))  # the receiver is configured with it first
    r = VerifyingReceiver(secret)
    listen = [
        "listen",
        "--forward-to",
        r.url,
        "--api",
        f"{world['base']}/graphql",
        "--token",
        admin,
        "--state",
        str(state),
        "--once",
    ]
    try:
        # a real event (the backend reports and pays an order) and two samples from `trigger`
        o = backend.mutate(
            "reportOrder",
            {"externalId": "lst-1", "buyerId": "b1", "lines": [{"productRef": "p", "quantity": 1, "unitPrice": 500}]},
            "order { id }",
        )
        assert o["errors"] == [], o
        paid = backend.mutate(
            "confirmPayment", {"orderId": o["order"]["id"], "amount": 500, "providerRef": "lst-p1"}, "accepted"
        )
        assert paid["errors"] == [] and paid["accepted"], paid
        t = _cli("trigger", "refund.owed", "--shop", shop.shop_id, database_url=runtime_url)
        assert t.returncode == 0, t.stderr
        first = _cli(*listen)
        assert first.returncode == 0, first.stdout + first.stderr
        assert secret in first.stdout  # the secret it signs with is shown (and kept in the state file)

        feed = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, limit=1000)  # feed (commit) order
        assert r.bad == 0 and len(r.verified) == len(feed) >= 2
        assert [eid for eid, _, _ in r.verified] == [e.event_id for e in feed]  # every event, in feed order
        assert [body for _, _, body in r.verified] == [webhooks.event_body(e) for e in feed]  # a webhook's body
        samples = [ev for _, ev, _ in r.verified if ev["aggregate_type"] == "sample"]
        assert [ev["type"] for ev in samples] == ["refund.owed"]
        assert all(ev["data"]["sample"] is True and ev["data"]["currency"] == "CNY" for ev in samples)

        # the same loop in this process (the command above runs it), resuming from the same state file
        async def listen_again() -> int:
            return await cli_listen.listen_loop(
                api=f"{world['base']}/graphql",
                token=admin,
                forward_to=r.url,
                state=cli_listen.State(state),
                shop_id=shop.shop_id,
                types=None,
                once=True,
                interval=0,
                echo=lambda _: None,
            )

        assert await listen_again() == 0 and len(r.verified) == len(feed)  # resumed after the last: nothing twice
        monkeypatch.setenv("DATABASE_URL", runtime_url)
        assert await cli_listen._trigger(shop.shop_id, "payout.requested")
        assert await listen_again() == 1
        assert len(r.verified) == len(feed) + 1 and r.verified[-1][1]["type"] == "payout.requested"
        assert r.bad == 0
    finally:
        r.close()


def test_trigger_13_2_refuses_an_unknown_type_or_shop_with_a_code(runtime_url, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("DATABASE_URL", runtime_url)
    bad = CliRunner().invoke(app, ["trigger", "order.teleported", "--shop", "nope"])
    assert bad.exit_code == 2 and "error INVALID_INPUT:" in bad.output
    missing = CliRunner().invoke(app, ["trigger", "order.paid", "--shop", f"nope-{secrets.token_hex(3)}"])
    assert missing.exit_code == 2 and "error NOT_FOUND:" in missing.output, missing.output
