"""POST /auth/register, /auth/login, /auth/refresh, /auth/logout, /auth/logout-all."""

from __future__ import annotations

import time

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user, client_ip
from proximity_server.app.http import json_reply, read_json_object, require_str
from proximity_server.features.accounts import TokenPair, normalise_email


def _pair(status: int, pair: TokenPair) -> web.Response:
    body = {
        "user_id": pair.user_id,
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
    }
    return json_reply(status, body)


async def _check_auth_rate(request: web.Request) -> None:
    await request.app[keys.RATE_LIMITER].check_auth_ip(client_ip(request), int(time.time() * 1000))


async def _credentials(request: web.Request) -> tuple[str, str]:
    await _check_auth_rate(request)
    data = await read_json_object(request, required=("email", "password"))
    email, password = normalise_email(require_str(data, "email")), require_str(data, "password")
    await request.app[keys.RATE_LIMITER].check_auth_email(email, int(time.time() * 1000))
    return email, password


async def register(request: web.Request) -> web.Response:
    email, password = await _credentials(request)
    return _pair(201, await request.app[keys.ACCOUNTS].register(email, password))


async def login(request: web.Request) -> web.Response:
    email, password = await _credentials(request)
    return _pair(200, await request.app[keys.ACCOUNTS].login(email, password))


async def refresh(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    data = await read_json_object(request, required=("refresh_token",))
    return _pair(200, await request.app[keys.ACCOUNTS].refresh(require_str(data, "refresh_token")))


async def logout(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    data = await read_json_object(request, required=("refresh_token",))
    await request.app[keys.ACCOUNTS].logout(require_str(data, "refresh_token"))
    return web.Response(status=204)


async def logout_all(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    user = await authenticated_user(request)
    await request.app[keys.ACCOUNTS].logout_all(user.user_id)
    return web.Response(status=204)
