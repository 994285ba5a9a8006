"""GET / (the web app), GET /docs (the API reference page) and
GET /static/{path}: files from WEB_ROOT with strong ETags, 304s and gzip."""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web

from proximity_server.app import state as keys
from proximity_server.app.web_headers import mark_web_response
from proximity_server.app.webapp import DOCS_FILE, INDEX_FILE, Asset, accepts_gzip, etag_matches
from proximity_server.features.errors import NotFound

# Pages are revalidated every time, so a new release is picked up at once.
PAGE_CACHE_CONTROL: Final = "no-cache"
# No build step means no content-hashed file names: files may be kept, but
# are revalidated (a cheap 304) before use, so a page never mixes releases.
STATIC_CACHE_CONTROL: Final = "public, max-age=0, must-revalidate"


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    mark_web_response(request, cache_control)
    compressed = asset.gzip_body is not None and accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
    headers = {hdrs.ETAG: asset.gzip_etag if compressed else asset.etag}
    if asset.gzip_body is not None:
        headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), asset.etags()):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = asset.content_type
    if compressed and asset.gzip_body is not None:
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=asset.gzip_body, headers=headers)
    return web.Response(body=asset.body, headers=headers)


async def _page(request: web.Request, name: str) -> web.Response:
    asset = await request.app[keys.WEB_FILES].page(name)
    if asset is None:
        raise NotFound(f"{name} is not installed")
    return _respond(request, asset, PAGE_CACHE_CONTROL)


async def index(request: web.Request) -> web.Response:
    return await _page(request, INDEX_FILE)


async def docs(request: web.Request) -> web.Response:
    return await _page(request, DOCS_FILE)


async def static(request: web.Request) -> web.Response:
    asset = await request.app[keys.WEB_FILES].static(request.match_info["path"])
    if asset is None:
        raise NotFound("no such file")
    return _respond(request, asset, STATIC_CACHE_CONTROL)


ADMIN_CONSOLE_FILE: Final = "admin/index.html"


async def admin_console(request: web.Request) -> web.Response:
    """GET /admin/: the admin console (its scripts are under /static/admin/)."""
    return await _page(request, ADMIN_CONSOLE_FILE)
