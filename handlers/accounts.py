"""POST /auth/register, /auth/login, /auth/refresh, /auth/logout, /auth/logout-all.

Two modes: the mobile app sends and receives the refresh token in JSON
bodies; the web app sends ``X-Refresh-Cookie: 1`` and the refresh token
lives in the HttpOnly ``px_refresh`` cookie instead (never in a body).
"""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user, client_ip
from proximity_server.app.http import json_reply, read_json_object, read_json_value, require_str
from proximity_server.app.middlewares import error_response
from proximity_server.features.accounts import (
    CSRF_CODE,
    REFRESH_COOKIE,
    REFRESH_COOKIE_HEADER,
    REFRESH_COOKIE_HEADER_VALUE,
    REFRESH_COOKIE_PATH,
    TokenPair,
    normalise_email,
    refresh_cookie_secure,
)
from proximity_server.features.errors import Forbidden, Unauthorized
from proximity_server.features.tokens import REFRESH_TOKEN_TTL_SECONDS

FORWARDED_PROTO_HEADER: Final = "X-Forwarded-Proto"
REFRESH_TOKEN_FIELD: Final = "refresh_token"  # noqa: S105 (a field name)


def cookie_mode(request: web.Request) -> bool:
    return request.headers.get(REFRESH_COOKIE_HEADER) == REFRESH_COOKIE_HEADER_VALUE


def _set_refresh_cookie(request: web.Request, response: web.Response, token: str, max_age: int) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        token,
        max_age=max_age,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=refresh_cookie_secure(request.scheme, request.url.host, request.headers.get(FORWARDED_PROTO_HEADER)),
    )


def _clear_refresh_cookie(request: web.Request, response: web.Response) -> None:
    _set_refresh_cookie(request, response, "", 0)


def _pair(request: web.Request, status: int, pair: TokenPair) -> web.Response:
    body = {"user_id": pair.user_id, "access_token": pair.access_token, "expires_in": pair.expires_in}
    if not cookie_mode(request):
        body[REFRESH_TOKEN_FIELD] = pair.refresh_token
    response = json_reply(status, body)
    if cookie_mode(request):
        _set_refresh_cookie(request, response, pair.refresh_token, REFRESH_TOKEN_TTL_SECONDS)
    return response


def _refused(request: web.Request, exc: Unauthorized) -> web.Response:
    """A refused refresh token: in cookie mode the dead cookie is cleared too,
    so the browser stops sending it."""
    if not cookie_mode(request):
        raise exc
    response = error_response(exc.status, exc.code, exc.message, exc.headers)
    _clear_refresh_cookie(request, response)
    return response


async def _presented_refresh_token(request: web.Request) -> str:
    """The refresh token from the cookie (cookie mode: the body is empty or
    ``{}``) or from the JSON body. A cookie without the header is refused:
    that is what a forged cross-site request would look like."""
    if cookie_mode(request):
        if request.body_exists:
            await read_json_object(request, required=())
        token = request.cookies.get(REFRESH_COOKIE)
        if not token:
            raise Unauthorized("no refresh cookie; sign in again")
        return token
    if REFRESH_COOKIE in request.cookies:
        data = await read_json_value(request) if request.body_exists else None
        if not isinstance(data, dict) or REFRESH_TOKEN_FIELD not in data:
            raise Forbidden(f"send '{REFRESH_COOKIE_HEADER}: 1' to use the refresh cookie", code=CSRF_CODE)
    data = await read_json_object(request, required=(REFRESH_TOKEN_FIELD,))
    return require_str(data, REFRESH_TOKEN_FIELD)


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
    return _pair(request, 201, await request.app[keys.ACCOUNTS].register(email, password))


async def login(request: web.Request) -> web.Response:
    email, password = await _credentials(request)
    return _pair(request, 200, await request.app[keys.ACCOUNTS].login(email, password))


async def refresh(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    token = await _presented_refresh_token(request)
    try:
        pair = await request.app[keys.ACCOUNTS].refresh(token)
    except Unauthorized as exc:
        return _refused(request, exc)
    return _pair(request, 200, pair)


async def logout(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    token = await _presented_refresh_token(request)
    try:
        await request.app[keys.ACCOUNTS].logout(token)
    except Unauthorized as exc:
        return _refused(request, exc)
    response = web.Response(status=204)
    if cookie_mode(request):
        _clear_refresh_cookie(request, response)
    return response


async def logout_all(request: web.Request) -> web.Response:
    await _check_auth_rate(request)
    user = await authenticated_user(request)
    await request.app[keys.ACCOUNTS].logout_all(user.user_id)
    return web.Response(status=204)
