"""GET /discover: a page of people who fit both ways."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply
from proximity_server.features.discover import parse_params


async def discover(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    params = parse_params(request.query)
    body = await request.app[keys.DISCOVER].page(user.user_id, params)
    return json_reply(200, body)
