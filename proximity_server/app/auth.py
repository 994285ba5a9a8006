"""Authenticating a request with an access token (for every handler).

    user = await authenticated_user(request)   # AuthenticatedUser or 401/429

The token comes from ``Authorization: Bearer <access_token>``. It must be a
well-formed HS256 JWT from this server (issuer, audience, signature), not
expired, and issued after the user's last "log out everywhere". The same
call counts the request against the user's API rate limit
(``RATE_LIMIT_API_PER_MINUTE``); revocation and rate limit are checked in
one Redis round trip.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token
from proximity_server.features.rate_limit import FORWARDED_FOR_HEADER

MISSING_BEARER_TOKEN: Final = "send an access token as 'Authorization: Bearer <token>'"  # noqa: S105 (a message)


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    user_id: str  # uuid
    jti: str
    issued_at: dt.datetime  # UTC


async def authenticated_user(request: web.Request, *, count_request: bool = True) -> AuthenticatedUser:
    """The user behind the request's access token; raises Unauthorized (401)
    or RateLimited (429). ``count_request=False`` for reads that a page makes
    by the dozen (photo bytes), which must not eat the user's API budget."""
    claims = await request.app[keys.ACCOUNTS].verify_access(
        bearer_token(request), count=count_request, missing=MISSING_BEARER_TOKEN
    )
    return AuthenticatedUser(claims.user_id, claims.jti, dt.datetime.fromtimestamp(claims.issued_at, dt.UTC))


def client_ip(request: web.Request) -> str:
    """The peer address, or the client named by X-Forwarded-For when the peer is a trusted proxy."""
    return request.app[keys.TRUSTED_PROXIES].client_ip(request.remote, request.headers.get(FORWARDED_FOR_HEADER))
