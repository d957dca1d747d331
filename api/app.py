"""The HTTP application: /graphql (POST, GET, and graphql-transport-ws), a local GraphiQL at /graphiql,
settlement exports, and the operations endpoints /health, /ready, /metrics (api.ops, docs/operations.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

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

from api.auth import authenticate
from api.console import routes as console_routes
from api.context import Context
from api.live import GroupListener
from api.metrics import metrics_endpoint
from api.ops import Operations, health, ready
from api.mutations import test_clock_enabled
from api.schema import make_schema
from engine.errors import ErrorCode, RuleViolation, refuse
from service.context import Services
from service.shops import get_shop, shop_by_public_key, shop_of_public_key

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024
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

    def __init__(self, svc: Services, *, test_clock: bool = False):
        super().__init__(make_schema(test_clock=test_clock), graphql_ide=None,
                         subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])
        self.svc = svc
        self.listener = GroupListener(svc.engine.url.render_as_string(hide_password=False))

    async def _identify(self, ctx: Context, authorization: str | None, shop_key: str | None) -> None:
        """SH-0/SH-1: a bearer token of a shop; else DS-2: the shop's public key. A bad token is an
        error (UNAUTHENTICATED when a field is resolved), never silently downgraded to public access."""
        token = _bearer(authorization)
        shops: dict = {}

        async def load_shop(shop_id: str):
            shops[shop_id] = await get_shop(self.svc, shop_id)
            return shops[shop_id]

        if token == "" and authorization.strip().partition(" ")[0].lower() != "bearer":
            ctx.auth_error = refuse(ErrorCode.UNAUTHENTICATED,
                                    "the Authorization header must be 'Bearer <token>'", rule="SH-0")
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
                ctx.principal, ctx.auth_error = None, refuse(
                    ErrorCode.UNAUTHENTICATED, "the bearer token and X-Shop-Key name different shops", rule="SH-1")
            return
        if shop_key:
            shop = await shop_by_public_key(self.svc, shop_key.strip())
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
            response = JSONResponse({"errors": [{"message": e.reason, "extensions": {"code": "INVALID_INPUT"}}]},
                                    status_code=e.status_code)
        await response(scope, receive, send)

    async def get_context(self, request, response) -> Context:
        ctx = Context(svc=self.svc, request=request, response=response, listener=self.listener)
        await self._identify(ctx, request.headers.get("authorization"), request.headers.get("x-shop-key"))
        return ctx

    async def on_ws_connect(self, context: Context):
        """Browsers cannot set websocket headers: accept the same credentials in connection_init's
        payload (`{"Authorization": "Bearer …"}` or `{"shopKey": "pk_…"}`)."""
        params = context.connection_params or {}
        if context.principal is None and context.public_shop_id is None and context.auth_error is None:
            auth = params.get("Authorization") or params.get("authorization")
            key = params.get("shopKey") or params.get("X-Shop-Key") or params.get("x-shop-key")
            await self._identify(context, auth if isinstance(auth, str) else None, key if isinstance(key, str) else None)
        return await super().on_ws_connect(context)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 — by Content-Length up front, and by counting
    what actually arrives (a chunked body has no Content-Length)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"errors": [{"message": f"request body over {self.limit} bytes",
                                              "extensions": {"code": "INVALID_INPUT"}}]}, status_code=413)
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
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def export_settlement(request: Request):
    """LG-3 exports over authenticated HTTP (finance role), streamed: same batch, same bytes."""
    from api.types import raw_id
    from service import exports
    from service.settlements import get_settlement

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
        return StreamingResponse(exports.csv_chunks(svc, shop_id=p.shop_id, settlement_id=sid),
                                 media_type="text/csv; charset=utf-8", headers=headers)
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

    return StreamingResponse(chunks(), headers={**headers, "Content-Length": str(size)},
                             media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def create_app(svc: Services, *, test_clock: bool | None = None) -> Starlette:
    """The app over `svc`. `advanceClock` is in the schema only with SHARECART_TEST_CLOCK=1 (or test_clock=True)."""
    gql = SharecartGraphQL(svc, test_clock=test_clock_enabled() if test_clock is None else test_clock)

    async def graphiql(_):
        return HTMLResponse(GRAPHIQL_HTML)

    async def root(_):
        return RedirectResponse("/graphiql")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await gql.listener.close()

    app = Starlette(routes=[
        Route("/", root), Route("/health", health), Route("/ready", ready), Route("/metrics", metrics_endpoint),
        Route("/graphiql", graphiql),
        Route("/graphql", gql, methods=["GET", "POST"]), WebSocketRoute("/graphql", gql),
        Route("/exports/settlements/{settlement_id}.{fmt:str}", export_settlement),
        Mount("/static", StaticFiles(directory=STATIC), name="static"), *console_routes(),
    ], lifespan=lifespan)
    app.add_middleware(BodyLimit)
    app.add_middleware(Operations)  # outermost: request id, access log, metrics, JSON for what escapes
    app.state.svc = svc
    app.state.graphql = gql
    return app

