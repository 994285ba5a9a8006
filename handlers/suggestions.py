"""GET /suggestions: today's suggested people with their compatibility."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply


async def suggestions(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return json_reply(200, await request.app[keys.SUGGESTIONS].today(user.user_id))
