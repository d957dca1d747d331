"""`sharecart listen` and `sharecart trigger`: a webhook loop on a laptop (issue 13, point 2).

    sharecart listen --forward-to http://localhost:3000/webhooks --token $ADMIN_TOKEN
    sharecart trigger order.paid --shop demo

`listen` pulls the shop's events from the GraphQL event feed (`events(after:)`, the same pull any backend can use,
docs/webhooks.md), signs each exactly as a webhook delivery is signed (Standard Webhooks, with a `whsec_` secret of
its own that it prints and keeps), and POSTs it to the local URL. Its cursor and secret live in a small state file,
so a restarted `listen` resumes after the last event it forwarded and the receiver keeps its secret. No public URL,
no registered endpoint: the forward target is the developer's own machine, so loopback is the point here (the SSRF
rules of registered endpoints do not apply).

`trigger` writes a sample event of the given type into the shop's event feed (the outbox, as the use cases do), so
`listen` and the shop's registered webhooks receive it. Sample events are marked: `aggregate_type` is `sample`,
every id in `data` starts with `sample_`, and `data.sample` is true — a receiver must ignore them in production.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Optional

import typer

EVENTS_QUERY = """query($after: String, $types: [String!], $first: Int) {
  events(after: $after, types: $types, first: $first) {
    edges { cursor node { id seq type aggregateType aggregateId rule occurredAt payloadJson } }
    pageInfo { hasNextPage endCursor } } }"""

# What `trigger` can produce: every event type of docs/webhooks.md, with a sample of the data it carries.
SAMPLES: dict[str, dict] = {
    "group.opened": {
        "group_id": "sample_grp",
        "campaign_id": "sample_cmp",
        "leader_id": "sample_user",
        "order_id": "sample_ord",
    },
    "group.formed": {
        "group_id": "sample_grp",
        "campaign_id": "sample_cmp",
        "tier_members": 2,
        "member_unit_price": 8000,
        "leader_unit_price": 7500,
        "order_ids": ["sample_ord"],
        "leader_order_id": "sample_ord",
        "winners": [],
    },
    "group.failed": {"group_id": "sample_grp", "campaign_id": "sample_cmp"},
    "group.cancelled": {"group_id": "sample_grp", "campaign_id": "sample_cmp"},
    "group.leader_changed": {"group_id": "sample_grp", "leader_id": "sample_user", "leader_order_id": "sample_ord"},
    "seat.released": {"group_id": "sample_grp", "order_id": "sample_ord"},
    "order.paid": {"order_id": "sample_ord", "amount": 8000, "role": "MEMBER"},
    "order.completed": {"order_id": "sample_ord"},
    "refund.owed": {
        "refund_id": "sample_rf",
        "order_id": "sample_ord",
        "amount": 1000,
        "full": False,
        "reason": "GB-5",
    },
    "refund.recorded": {"refund_id": "sample_rf", "order_id": "sample_ord", "amount": 1000},
    "refund.confirmed": {
        "refund_id": "sample_rf",
        "order_id": "sample_ord",
        "amount": 1000,
        "provider_ref": "sample_bank",
    },
    "commission.posted": {
        "line_id": "sample_cl",
        "order_id": "sample_ord",
        "beneficiary_id": "sample_user",
        "amount": 800,
    },
    "commission.reversed": {"line_id": "sample_cl", "order_id": "sample_ord", "amount": 800},
    "commission.voided": {"line_id": "sample_cl", "order_id": "sample_ord", "amount": 800},
    "commission.available": {"line_id": "sample_cl", "beneficiary_id": "sample_user", "amount": 800},
    "distributor.level_changed": {"user_id": "sample_user", "from_grade": 0, "to_grade": 1},
    "distributor.status_changed": {"user_id": "sample_user", "status": "ACTIVE"},
    "referral.bound": {"user_id": "sample_user", "referrer_id": "sample_referrer"},
    "payout.requested": {"payout_id": "sample_po", "user_id": "sample_user", "amount": 600},
    "payout.approved": {"payout_id": "sample_po", "user_id": "sample_user", "amount": 600, "fee": 0},
    "payout.rejected": {"payout_id": "sample_po", "user_id": "sample_user", "amount": 600},
    "settlement.closed": {"settlement_id": "sample_st", "from": "2026-01-01", "to": "2026-02-01", "closing": 0},
    "webhook.endpoint_disabled": {"endpoint_id": "sample_wh", "url": "https://example.com/hook", "failures": 10},
}


def _raw_id(global_id: str) -> str:
    """A Relay global id's raw part (`ShopEvent:evt_…` base64) — the id webhooks carry."""
    try:
        return base64.b64decode(global_id).decode().partition(":")[2] or global_id
    except ValueError:
        return global_id


def _token_shop(token: str) -> str:
    """The shop a bearer token acts in (its `shop` claim; the server verifies the token, not this tool)."""
    import jwt

    return jwt.decode(token, options={"verify_signature": False}).get("shop", "")


def webhook_body(node: dict, shop_id: str) -> bytes:
    """The same body a webhook delivery of this event carries (service.usecases.webhooks.event_body)."""
    return json.dumps(
        {
            "id": _raw_id(node["id"]),
            "seq": node["seq"],
            "type": node["type"],
            "shop_id": shop_id,
            "aggregate_type": node["aggregateType"],
            "aggregate_id": node["aggregateId"],
            "rule": node["rule"],
            "occurred_at": node["occurredAt"],
            "data": json.loads(node["payloadJson"]),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


class State:
    """The resumable part of `listen`: the last cursor forwarded and the signing secret, in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        from service.usecases.webhooks import new_secret

        self.cursor: Optional[str] = data.get("cursor")
        self.secret: str = data.get("secret") or new_secret()
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cursor": self.cursor, "secret": self.secret}))
        tmp.replace(self.path)  # atomic: a killed listen never leaves half a file


def default_state(shop_id: str) -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("sharecart")) / f"listen-{shop_id}.json"


async def listen_loop(
    *,
    api: str,
    token: str,
    forward_to: str,
    state: State,
    shop_id: str,
    types: list[str] | None,
    once: bool,
    interval: float,
    echo=typer.echo,
) -> int:
    """Pull, sign, forward, remember; returns how many events were forwarded. With `once`, stops when the feed
    has nothing more."""
    import httpx

    from service.usecases.webhooks import signed_headers

    forwarded = 0
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as gql, httpx.AsyncClient(timeout=10, follow_redirects=False) as out:
        while True:
            r = await gql.post(
                api,
                json={"query": EVENTS_QUERY, "variables": {"after": state.cursor, "types": types, "first": 100}},
                headers=headers,
            )
            body = r.json()
            if body.get("errors") or r.status_code != 200:
                raise ListenError(f"the event feed answered {r.status_code}: {body.get('errors') or r.text[:200]}")
            page = body["data"]["events"]
            for edge in page["edges"]:
                node = edge["node"]
                payload = webhook_body(node, shop_id)
                eid = _raw_id(node["id"])
                try:
                    answer = await out.post(
                        forward_to, content=payload, headers=signed_headers([state.secret], eid, payload)
                    )
                    outcome = str(answer.status_code)
                except httpx.HTTPError as e:
                    outcome = f"failed ({type(e).__name__})"
                echo(f"{time.strftime('%H:%M:%S')}  {node['type']:<28} {eid}  -> {outcome}")
                state.cursor = edge["cursor"]  # forwarded (or tried): the next start resumes after it
                state.save()
                forwarded += 1
            if page["pageInfo"]["hasNextPage"]:
                continue
            if once:
                return forwarded
            await asyncio.sleep(interval)


class ListenError(Exception):
    pass


def register(app: typer.Typer) -> None:
    """Adds `listen` and `trigger` to the `sharecart` command (api/cli.py calls this once)."""

    @app.command()
    def listen(
        forward_to: str = typer.Option(..., "--forward-to", help="the local URL to POST each event to"),
        api: str = typer.Option("http://127.0.0.1:8000/graphql", help="the Sharecart GraphQL endpoint"),
        token: str = typer.Option(
            ..., envvar="SHARECART_TOKEN", help="an admin token of the shop (env SHARECART_TOKEN)"
        ),
        types: Optional[list[str]] = typer.Option(None, "--type", help="only these event types (repeatable)"),
        state_file: Optional[Path] = typer.Option(
            None,
            "--state",
            help="where the cursor and the signing secret are kept (default: the user's state folder, one per shop)",
        ),
        from_start: bool = typer.Option(False, "--from-start", help="forget the saved cursor: replay every event"),
        once: bool = typer.Option(False, "--once", help="forward what is there, then exit"),
        interval: float = typer.Option(1.0, help="seconds between pulls when the feed is drained"),
    ) -> None:
        """Forward the shop's events, signed like webhooks, to a local URL (resumes where it stopped)."""
        if not forward_to.startswith(("http://", "https://")):
            _refuse("INVALID_INPUT", "--forward-to must be an http(s) URL")
        try:
            shop_id = _token_shop(token)
        except Exception:
            _refuse("UNAUTHENTICATED", "--token is not a Sharecart token")
        state = State(state_file or default_state(shop_id))
        if from_start:
            state.cursor = None
            state.save()
        typer.echo(f"Ready: forwarding events of shop {shop_id} to {forward_to}")
        typer.echo(f"Webhook signing secret (Standard Webhooks): {state.secret}")
        try:
            n = asyncio.run(
                listen_loop(
                    api=api,
                    token=token,
                    forward_to=forward_to,
                    state=state,
                    shop_id=shop_id,
                    types=types or None,
                    once=once,
                    interval=interval,
                )
            )
        except ListenError as e:
            _refuse("UNAVAILABLE", str(e))
        except KeyboardInterrupt:
            return
        typer.echo(f"forwarded {n} event(s); resume with the same command")

    @app.command()
    def trigger(
        event_type: str = typer.Argument(..., help=f"one of: {', '.join(SAMPLES)}"),
        shop: str = typer.Option(..., "--shop", help="the shop whose event feed gets the sample"),
    ) -> None:
        """Write a sample event (marked `sample`) into the shop's event feed, for `listen` and webhooks."""
        if event_type not in SAMPLES:
            _refuse("INVALID_INPUT", f"unknown event type {event_type!r}; one of: {', '.join(SAMPLES)}")
        if not asyncio.run(_trigger(shop, event_type)):
            _refuse("NOT_FOUND", f"no shop {shop}")
        typer.echo(f"sample {event_type} written to shop {shop}'s event feed")


async def _trigger(shop_id: str, event_type: str) -> bool:
    from service.tx import events
    from service.context import Services
    from service.tx.ids import new_id
    from service.uow import unit_of_work
    from store.database import create_engine
    from store.models import Shop

    svc = Services(engine=create_engine(pool_size=1))
    try:
        async with unit_of_work(svc) as s:
            row = await s.get(Shop, shop_id)
            if row is None:
                return False
            events.emit(
                s,
                shop_id=shop_id,
                type=event_type,
                aggregate_type="sample",
                aggregate_id=new_id("sample_"),
                now=svc.now(),
                payload={**SAMPLES[event_type], "currency": row.currency, "sample": True},
            )
        return True
    finally:
        await svc.engine.dispose()


def _refuse(code: str, message: str):
    typer.echo(f"error {code}: {message}", err=True)
    raise typer.Exit(2)
