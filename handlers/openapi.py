"""GET /openapi.json: the API description (no credential needed)."""

from __future__ import annotations

from functools import cache

import orjson
from aiohttp import web

from proximity_server.app.openapi import document


@cache
def _body() -> bytes:
    return orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_body(), content_type="application/json")
