"""POST /likes, GET /matches, DELETE /matches/{match_id}, POST /blocks,
DELETE /blocks/{user_id}, POST /reports."""

from __future__ import annotations

import orjson
from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import path_uuid, read_json_object
from proximity_server.features.pagination import page_limit


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def like(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    data = await read_json_object(request, required=("user_id", "action"))
    return _json(200, await request.app[keys.LIKES].like(user.user_id, data))


async def list_matches(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    limit = page_limit(request.query)
    page = await request.app[keys.LIKES].matches(user.user_id, limit, request.query.get("cursor"))
    return _json(200, page)


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
    return _json(201, await request.app[keys.LIKES].report(user.user_id, data))
