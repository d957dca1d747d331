"""The HTTP application: /graphql (POST, GET, and graphql-transport-ws), a local GraphiQL at /graphiql,
settlement exports, and the operations endpoints /health, /ready, /metrics (api.ops, docs/operations.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path

import asyncpg
import orjson
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

try:  # what strawberry raises for a request it cannot read; it moved to cross_web in newer releases
    from cross_web import HTTPException as UnreadableRequest
except ImportError:  # pragma: no cover - older strawberry
    from strawberry.http.exceptions import HTTPException as UnreadableRequest

from api.auth import ShopCache, authenticate
from api.console import routes as console_routes
from api.context import Context
from api.httpsec import GraphQLResponse, SecurityHeaders, strip_query_strings
from api.limits import dev_mode
from api.live import GroupListener
from api.metrics import metrics_endpoint
from api.ops import Operations, health, ready
from api.shops import test_clock_enabled
from api.schema import make_schema
from engine.errors import ErrorCode, RuleViolation, refuse
from service.context import Services
from service.usecases.shops import get_shop, shop_of_public_key

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024
MAX_JSON_NESTING = 64  # a request body nested deeper is refused before json.loads recurses into it
DEADLINE_S = 10.0  # one GraphQL operation over HTTP runs at most this long (issue 11 point 1)
XLSX_CHUNK = 64 * 1024

GRAPHIQL_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sharecart GraphiQL</title>
<link rel="stylesheet" href="/static/graphiql.min.css">
<style>body{margin:0;height:100vh}#graphiql{height:100vh}</style></head>
<body><div id="graphiql">Loading…</div>
<script src="/static/react.production.min.js"></script>
<script src="/static/react-dom.production.min.js"></script>
<script src="/static/graphiql.min.js"></script>
<script>
const fetcher = GraphiQL.createFetcher({url: '/graphql',  // subscriptions (groupProgress) over graphql-transport-ws:
  subscriptionUrl: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql'});
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {fetcher, defaultEditorToolsVisibility: 'headers',
    defaultHeaders: '{\\n  "Authorization": "Bearer PASTE-A-TOKEN"\\n}',
    defaultQuery: '# Paste a token printed by `sharecart serve` into the headers below;\\n# docs/walkthrough.md goes from here to a formed group and a paid-out commission.\\n{\\n  me { inviteCode balances { available currency } }\\n}\\n'}));
// ?smoke=<query>: run one query through GraphiQL's own fetcher and show the result (browser tests)
const smoke = new URLSearchParams(location.search).get('smoke');
const first = async (r) => (r && r[Symbol.asyncIterator]) ? (await r[Symbol.asyncIterator]().next()).value : r;
if (smoke) Promise.resolve(fetcher({query: smoke})).then(first).then(r => {
  const pre = document.createElement('pre'); pre.id = 'smoke-result'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script></body></html>"""


def _bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; "" for another scheme; None if absent."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class SharecartGraphQL(GraphQL):
    """strawberry's ASGI view with our per-request context (caller, shop, loaders)."""

    def __init__(self, svc: Services, *, test_clock: bool = False, dev: bool = False, deadline_s: float = DEADLINE_S):
        super().__init__(
            make_schema(test_clock=test_clock), graphql_ide=None, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]
        )
        self.svc, self.dev, self.deadline_s = svc, dev, deadline_s
        self.listener = GroupListener(svc.engine.url.render_as_string(hide_password=False), fetch=self._group)
        self.shops = ShopCache(lambda shop_id: get_shop(svc, shop_id))
        self.listener.on_shop_change = self.shops.drop

    async def _group(self, shop_id: str, group_id: str):
        """The one read of a group per change that api.live fans out to every subscriber of this process."""
        from service.reads import queries

        return (await queries.groups_by_ids_caught_up(self.svc, shop_id=shop_id, ids=[group_id])).get(group_id)

    async def shop(self, shop_id: str):
        """The shop from this process's cache; the cache is valid only while LISTEN runs (api.auth)."""
        if self.listener.conn is None or self.listener.conn.is_closed():
            try:
                await self.listener.ensure()
            except (OSError, asyncpg.PostgresError):
                self.shops.drop()
                return await get_shop(self.svc, shop_id)
        return await self.shops.get(shop_id)

    def encode_json(self, data: object) -> str:
        """Responses through orjson (several times faster than json.dumps on our payloads; bench/http.py).
        As text: the websocket transport sends what this returns, and graphql-transport-ws is text frames."""
        return orjson.dumps(data).decode()

    async def _identify(self, ctx: Context, authorization: str | None, shop_key: str | None) -> None:
        """SH-0/SH-1: a bearer token of a shop; else DS-2: the shop's public key. A bad token is an
        error (UNAUTHENTICATED when a field is resolved), never silently downgraded to public access."""
        token = _bearer(authorization)
        shops: dict = {}

        async def load_shop(shop_id: str):
            shops[shop_id] = await self.shop(shop_id)
            return shops[shop_id]

        if token == "" and authorization.strip().partition(" ")[0].lower() != "bearer":
            ctx.auth_error = refuse(
                ErrorCode.UNAUTHENTICATED, "the Authorization header must be 'Bearer <token>'", rule="SH-0"
            )
            return
        if token is not None:
            try:
                ctx.principal = await authenticate(token, load_shop)
                ctx.currency = shops[ctx.principal.shop_id].currency
            except RuleViolation as e:
                ctx.auth_error = e
                return
            if shop_key and shop_of_public_key(shop_key.strip()) != ctx.principal.shop_id:
                # A storefront mixing one shop's token with another shop's key is a misconfiguration: say so
                # rather than silently acting in the token's shop (SH-1).
                ctx.principal, ctx.auth_error = (
                    None,
                    refuse(
                        ErrorCode.UNAUTHENTICATED, "the bearer token and X-Shop-Key name different shops", rule="SH-1"
                    ),
                )
            return
        if shop_key:
            shop_id = shop_of_public_key(shop_key.strip())
            shop = await self.shop(shop_id) if shop_id else None
            if shop is not None and not secrets.compare_digest(shop.public_key, shop_key.strip()):
                shop = None
            if shop is None:
                ctx.auth_error = refuse(ErrorCode.UNAUTHENTICATED, "unknown shop key", rule="DS-2")
            else:
                ctx.public_shop_id, ctx.currency = shop.shop_id, shop.currency

    async def __call__(self, scope, receive, send):
        """strawberry answers a request it cannot read (not JSON, no query, wrong content type, a mutation
        by GET) in plain text; answer in GraphQL's JSON error shape with a stable code instead (ER-1)."""
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except UnreadableRequest as e:
            status, headers = e.status_code, None
            if scope.get("method") == "GET" and "when using GET" in (e.reason or ""):
                status, headers = 405, {"Allow": "POST"}  # GraphQL over HTTP: a mutation is POST only
            response = JSONResponse(
                {"errors": [{"message": e.reason, "extensions": {"code": "INVALID_INPUT"}}]},
                status_code=status,
                headers=headers,
            )
        await response(scope, receive, send)

    async def execute_single(self, *args, **kwargs):
        """One deadline per operation: past it the operation is cancelled (its unit of work rolls back unless it
        already committed; retries with the same idempotency key replay it) and the answer is a coded error."""
        from strawberry.types import ExecutionResult

        try:
            return await asyncio.wait_for(super().execute_single(*args, **kwargs), self.deadline_s)
        except asyncio.TimeoutError:
            import logging

            logging.getLogger("sharecart.api").info(
                "refused QUERY_TOO_COMPLEX: over the %.1f s deadline", self.deadline_s
            )
            return ExecutionResult(
                data=None,
                errors=[
                    GraphQLError(
                        f"the operation ran longer than {self.deadline_s:g} s and was stopped: ask for less",
                        extensions={"code": "QUERY_TOO_COMPLEX", "limit": "time", "seconds": self.deadline_s},
                    )
                ],
            )

    async def get_context(self, request, response) -> Context:
        ctx = Context(
            svc=self.svc,
            request=request,
            response=response,
            listener=self.listener,
            dev=self.dev,
            shop_cache=self.shops,
        )
        await self._identify(ctx, request.headers.get("authorization"), request.headers.get("x-shop-key"))
        return ctx

    async def on_ws_connect(self, context: Context):
        """Browsers cannot set websocket headers: accept the same credentials in connection_init's
        payload (`{"Authorization": "Bearer …"}` or `{"shopKey": "pk_…"}`)."""
        params = context.connection_params or {}
        if context.principal is None and context.public_shop_id is None and context.auth_error is None:
            auth = params.get("Authorization") or params.get("authorization")
            key = params.get("shopKey") or params.get("X-Shop-Key") or params.get("x-shop-key")
            await self._identify(
                context, auth if isinstance(auth, str) else None, key if isinstance(key, str) else None
            )
        return await super().on_ws_connect(context)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 — by Content-Length up front, and by counting
    what actually arrives (a chunked body has no Content-Length)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse(
            {"errors": [{"message": f"request body over {self.limit} bytes", "extensions": {"code": "INVALID_INPUT"}}]},
            status_code=413,
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_large(scope, receive, send)
        body, more = b"", True
        while more:  # buffer the (bounded) body, then replay it to the app
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_large(scope, receive, send)
        if _nesting(body) > MAX_JSON_NESTING:
            return await JSONResponse(
                {
                    "errors": [
                        {
                            "message": f"request body nested deeper than {MAX_JSON_NESTING}",
                            "extensions": {"code": "INVALID_INPUT"},
                        }
                    ]
                },
                status_code=400,
            )(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _nesting(body: bytes) -> int:
    """How deep `[` and `{` nest in a JSON body (brackets inside strings are not counted). Cheap when a body has
    few brackets, linear otherwise; bodies are at most MAX_BODY bytes."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_NESTING:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def export_settlement(request: Request):
    """LG-3 exports over authenticated HTTP (finance role), streamed: same batch, same bytes."""
    from api.relay import raw_id
    from service.reads import exports
    from service.usecases.settlements import get_settlement

    svc: Services = request.app.state.svc
    try:
        p = await authenticate(_bearer(request.headers.get("authorization")) or "", lambda sid: get_shop(svc, sid))
    except RuleViolation as e:
        return _error(e.code.value, e.message, 401)
    if "finance" not in p.roles:
        return _error("FORBIDDEN", "needs the finance role", 403)
    sid, fmt = request.path_params["settlement_id"], request.path_params["fmt"]
    if fmt not in ("csv", "xlsx"):
        return _error("NOT_FOUND", "formats: csv, xlsx", 404)
    try:
        sid = raw_id(sid, "Settlement", "settlementId")  # the GraphQL id, or the raw st_… id
    except RuleViolation:
        return _error("NOT_FOUND", "no such settlement", 404)
    if await get_settlement(svc, shop_id=p.shop_id, settlement_id=sid) is None:
        return _error("NOT_FOUND", "no such settlement", 404)
    headers = {"Content-Disposition": f'attachment; filename="settlement-{sid}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(
            exports.csv_chunks(svc, shop_id=p.shop_id, settlement_id=sid),
            media_type="text/csv; charset=utf-8",
            headers=headers,
        )
    # An XLSX is a ZIP that is complete only when written (docs/api.md, "Exports"): it is built in a
    # temporary file off the event loop, then streamed in chunks with its Content-Length.
    path = await exports.xlsx_file(svc, shop_id=p.shop_id, settlement_id=sid)
    f = open(path, "rb")
    size = os.fstat(f.fileno()).st_size
    os.remove(path)  # the open handle keeps the data readable; nothing is left behind if the client goes away

    async def chunks():
        try:
            while chunk := await asyncio.to_thread(f.read, XLSX_CHUNK):
                yield chunk
        finally:
            f.close()

    return StreamingResponse(
        chunks(),
        headers={**headers, "Content-Length": str(size)},
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def create_app(
    svc: Services,
    *,
    test_clock: bool | None = None,
    dev: bool | None = None,
    deadline_s: float = DEADLINE_S,
    max_response: int | None = None,
) -> Starlette:
    """The app over `svc`. `advanceClock` is in the schema only with SHARECART_TEST_CLOCK=1 (or test_clock=True);
    introspection for everyone and the GraphiQL page only with SHARECART_DEV=1 (or dev=True): docs/security.md."""
    dev = dev_mode() if dev is None else dev
    gql = SharecartGraphQL(
        svc, test_clock=test_clock_enabled() if test_clock is None else test_clock, dev=dev, deadline_s=deadline_s
    )
    strip_query_strings()

    async def graphiql(_):
        if not dev:
            return _error("NOT_FOUND", "GraphiQL is served in development only (SHARECART_DEV=1)", 404)
        return HTMLResponse(GRAPHIQL_HTML)

    async def root(_):
        return RedirectResponse("/graphiql")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await gql.listener.close()

    app = Starlette(
        routes=[
            Route("/", root),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics_endpoint),
            Route("/graphiql", graphiql),
            Route("/graphql", gql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", gql),
            Route("/exports/settlements/{settlement_id}.{fmt:str}", export_settlement),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *console_routes(),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    app.add_middleware(GraphQLResponse, **({"limit": max_response} if max_response else {}))
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Operations)  # outermost: request id, access log, metrics, JSON for what escapes
    app.state.svc = svc
    app.state.graphql = gql
    return app
