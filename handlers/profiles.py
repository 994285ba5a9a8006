"""GET /me, PUT and PATCH /me/profile, GET /profiles/{user_id}."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply, path_uuid, read_json_object
from proximity_server.features.profiles import ALL_FIELDS, REQUIRED_FIELDS


async def me(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return json_reply(200, await request.app[keys.PROFILES].me(user.user_id))


async def put_profile(request: web.Request) -> web.Response:
    """Full replace: every required field, optional ones reset when absent."""
    user = await authenticated_user(request)
    optional = [f for f in ALL_FIELDS if f not in REQUIRED_FIELDS]
    data = await read_json_object(request, required=REQUIRED_FIELDS, optional=optional)
    return json_reply(200, await request.app[keys.PROFILES].replace(user.user_id, data))


async def patch_profile(request: web.Request) -> web.Response:
    """Partial update of an existing profile (or a complete new one)."""
    user = await authenticated_user(request)
    data = await read_json_object(request, required=(), optional=ALL_FIELDS)
    return json_reply(200, await request.app[keys.PROFILES].update(user.user_id, data))


async def public_profile(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    user_id = path_uuid(request, "user_id", "profile")
    return json_reply(200, await request.app[keys.PROFILES].public(user.user_id, user_id))
