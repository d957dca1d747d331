"""The HTTP application: /graphql, a local GraphiQL at /graphiql, /health."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL

from api.auth import authenticate
from api.context import Context
from api.live import GroupListener
from api.schema import schema
from engine.errors import RuleViolation
from service.context import Services
from service.shops import get_shop, shop_by_public_key

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024

GRAPHIQL_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sharecart GraphiQL</title>
<link rel="stylesheet" href="/static/graphiql.min.css">
<style>body{margin:0;height:100vh}#graphiql{height:100vh}</style></head>
<body><div id="graphiql">Loading…</div>
<script src="/static/react.production.min.js"></script>
<script src="/static/react-dom.production.min.js"></script>
<script src="/static/graphiql.min.js"></script>
<script>
const fetcher = GraphiQL.createFetcher({url: '/graphql'});
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {fetcher, defaultEditorToolsVisibility: 'headers',
    defaultHeaders: '{\\n  "Authorization": "Bearer PASTE-A-TOKEN"\\n}',
    defaultQuery: '# Paste a token printed by `python3 tasks.py serve` into the headers below.\\n{\\n  me { inviteCode balances { available currency } }\\n}\\n'}));
// ?smoke=<query>: run one query through GraphiQL's own fetcher and show the result (browser tests)
const smoke = new URLSearchParams(location.search).get('smoke');
const first = async (r) => (r && r[Symbol.asyncIterator]) ? (await r[Symbol.asyncIterator]().next()).value : r;
if (smoke) Promise.resolve(fetcher({query: smoke})).then(first).then(r => {
  const pre = document.createElement('pre'); pre.id = 'smoke-result'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script></body></html>"""


class SharecartGraphQL(GraphQL):
    def __init__(self, svc: Services):
        super().__init__(schema, graphql_ide=None)
        self.svc = svc
        self.listener = GroupListener(svc.engine.url.render_as_string(hide_password=False))

    async def get_context(self, request, response) -> Context:
        ctx = Context(svc=self.svc, request=request, response=response)
        ctx.extra["listener"] = self.listener
        auth = request.headers.get("authorization", "")
        if auth:
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            try:
                ctx.principal = await authenticate(token, lambda sid: get_shop(self.svc, sid))
            except RuleViolation as e:
                ctx.auth_error = e.message
        key = request.headers.get("x-shop-key")
        if key and ctx.principal is None:
            shop = await shop_by_public_key(self.svc, key)
            ctx.public_shop_id = shop.shop_id if shop else None
        shop_id = ctx.principal.shop_id if ctx.principal else ctx.public_shop_id
        if shop_id:
            shop = await get_shop(self.svc, shop_id)
            ctx.currency = shop.currency
        return ctx


class BodyLimit(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"errors": [{"message": "request too large",
                                             "extensions": {"code": "INVALID_INPUT"}}]}, status_code=413)
        return await call_next(request)


async def export_settlement(request: Request):
    """LG-3 exports over authenticated HTTP (finance role), streamed: same batch, same bytes."""
    from starlette.responses import StreamingResponse

    from service import exports

    svc: Services = request.app.state.svc
    auth = request.headers.get("authorization", "")
    try:
        p = await authenticate(auth[7:].strip() if auth.lower().startswith("bearer ") else "",
                               lambda sid: get_shop(svc, sid))
    except RuleViolation as e:
        return JSONResponse({"error": {"code": e.code.value, "message": e.message}}, status_code=401)
    if "finance" not in p.roles:
        return JSONResponse({"error": {"code": "FORBIDDEN", "message": "needs the finance role"}}, status_code=403)
    sid, fmt = request.path_params["settlement_id"], request.path_params["fmt"]
    if fmt not in ("csv", "xlsx"):
        return JSONResponse({"error": {"code": "NOT_FOUND", "message": "formats: csv, xlsx"}}, status_code=404)
    from service.settlements import get_settlement

    if await get_settlement(svc, shop_id=p.shop_id, settlement_id=sid) is None:
        return JSONResponse({"error": {"code": "NOT_FOUND", "message": "no such settlement"}}, status_code=404)
    name = f"settlement-{sid}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return StreamingResponse(exports.csv_chunks(svc, shop_id=p.shop_id, settlement_id=sid),
                                 media_type="text/csv; charset=utf-8", headers=headers)
    path = await exports.xlsx_file(svc, shop_id=p.shop_id, settlement_id=sid)
    from starlette.background import BackgroundTask
    import os

    return FileResponse(path, headers=headers, background=BackgroundTask(os.remove, path),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def create_app(svc: Services) -> Starlette:
    gql = SharecartGraphQL(svc)

    async def graphiql(_):
        return HTMLResponse(GRAPHIQL_HTML)

    async def health(_):
        return JSONResponse({"ok": True})

    async def root(_):
        return RedirectResponse("/graphiql")

    app = Starlette(routes=[
        Route("/", root), Route("/health", health), Route("/graphiql", graphiql),
        Route("/graphql", gql, methods=["GET", "POST"]), WebSocketRoute("/graphql", gql),
        Route("/exports/settlements/{settlement_id}.{fmt:str}", export_settlement),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    app.add_middleware(BodyLimit)
    app.state.svc = svc
    return app
