"""DELETE /me (erasure) and the data export: /me/export, /me/export/{export_id}[/download]."""

from __future__ import annotations

import time

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import AuthenticatedUser, authenticated_user, client_ip
from proximity_server.app.http import read_json_object, require_str


async def _reauthenticated(request: web.Request) -> tuple[AuthenticatedUser, str]:
    """The signed-in user and the password they sent again; counted like a login."""
    limiter = request.app[keys.RATE_LIMITER]
    await limiter.check_auth_ip(client_ip(request), int(time.time() * 1000))
    user = await authenticated_user(request)
    await limiter.check_reauth_user(user.user_id, int(time.time() * 1000))
    data = await read_json_object(request, required=("password",))
    return user, require_str(data, "password")


async def erase_me(request: web.Request) -> web.Response:
    user, password = await _reauthenticated(request)
    await request.app[keys.ERASURE].erase(user.user_id, password)
    return web.Response(status=204)
