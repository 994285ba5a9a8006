"""WS /ws: the signed-in user's socket (logic in proximity_server/realtime/user_socket.py)."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from protocol.codes import CloseCode
from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token

log = logging.getLogger(__name__)

MAX_FRAME_BYTES: Final = 64 * 1024  # a 4,000-character message fits with room to spare
ACCESS_TOKEN_QUERY: Final = "access_token"  # noqa: S105 (a parameter name)


async def user_socket(request: web.Request) -> web.StreamResponse:
    """A credential in the header or query is checked before the upgrade (401);
    without one, the socket must send an ``auth`` frame within 10 seconds."""
    app = request.app
    realtime = app[keys.REALTIME]
    token = bearer_token(request, query_param=ACCESS_TOKEN_QUERY)
    claims = await realtime.auth.verify(token) if token else None
    ws, conn = await app[keys.HUB].sockets.accept(
        request,
        "",
        realtime.on_frame,
        max_frame_bytes=MAX_FRAME_BYTES,
        heartbeat_seconds=app[keys.SETTINGS].ws_heartbeat_seconds,
    )
    if conn is None:
        return ws  # the client left during the handshake
    if claims is None:
        realtime.auth.wait(conn)
        return ws
    try:
        await realtime.open(conn, claims)
    except Exception:
        log.warning("could not open a user socket; closing it", exc_info=True)
        await conn.close(CloseCode.INTERNAL_ERROR)
    except BaseException:
        conn.abort()  # type: ignore[attr-defined]
        raise
    return ws
