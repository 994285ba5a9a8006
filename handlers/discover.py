"""GET /discover: a page of people who fit both ways."""

from __future__ import annotations

import orjson
from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.features.discover import parse_params


async def discover(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    params = parse_params(request.query)
    body = await request.app[keys.DISCOVER].page(user.user_id, params)
    return web.Response(body=orjson.dumps(body), content_type="application/json")
