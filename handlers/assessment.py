"""GET and PUT /me/assessment, GET /me/assessment/result: the owner's own."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply, read_json_object


async def questions(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return json_reply(200, await request.app[keys.ASSESSMENT].questions(user.user_id))


async def submit(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    data = await read_json_object(request, required=("answers",), optional=())
    return json_reply(200, await request.app[keys.ASSESSMENT].submit(user.user_id, data))


async def result(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return json_reply(200, await request.app[keys.ASSESSMENT].result(user.user_id))
