"""POST /likes, GET /matches, DELETE /matches/{match_id}, POST /blocks,
DELETE /blocks/{user_id}, POST /reports."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply, path_uuid, read_json_object
from proximity_server.features.pagination import page_limit


async def like(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    data = await read_json_object(request, required=("user_id", "action"))
    return json_reply(200, await request.app[keys.LIKES].like(user.user_id, data))


async def list_matches(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    limit = page_limit(request.query)
    page = await request.app[keys.LIKES].matches(user.user_id, limit, request.query.get("cursor"))
    return json_reply(200, page)


async def unmatch(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    await request.app[keys.LIKES].unmatch(user.user_id, path_uuid(request, "match_id", "match"))
    return web.Response(status=204)


async def block(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    data = await read_json_object(request, required=("user_id",))
    await request.app[keys.LIKES].block(user.user_id, data)
    return web.Response(status=204)


async def unblock(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    await request.app[keys.LIKES].unblock(user.user_id, path_uuid(request, "user_id", "block"))
    return web.Response(status=204)


async def report(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    data = await read_json_object(request, required=("user_id", "reason"), optional=("details",))
    return json_reply(201, await request.app[keys.LIKES].report(user.user_id, data))
