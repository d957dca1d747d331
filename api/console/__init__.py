"""The web console (/console) and the storefront demo (/demo/storefront): static pages that talk only to
the public GraphQL API with the caller's own token (or the shop's public key). No build step and no CDN:
plain ES modules and hand-written CSS under `static/`, plus graphql-ws's UMD build from npm (vendored,
MIT) for the storefront's subscriptions. docs/console.md walks through them."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def _page(name: str):
    async def page(_request):
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return page


def routes() -> list:
    """The routes api/app.py registers: the two pages and their assets."""
    return [
        Route("/console", _page("console.html")),
        Route("/demo/storefront", _page("storefront.html")),
        Mount("/console/assets", StaticFiles(directory=STATIC), name="console-assets"),
    ]
