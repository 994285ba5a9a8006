"""POST /session, POST /match, POST /session/rotate and WS /ws/{ble_token}: the proximity contract."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from protocol.codes import CloseCode
from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import bearer_token, json_reply, read_json_object
from proximity_server.features.proximity import iso_utc, looks_like_access_token
from proximity_server.realtime.commands import Commands
from proximity_server.realtime.hub import Connection

log = logging.getLogger(__name__)

MAX_FRAME_BYTES: Final = 16 * 1024
SESSION_ID_QUERY: Final = "session_id"
# Only ``ping``: the socket carries nudges; bad frames count toward 1008 (realtime/commands.py).
PROXIMITY_COMMANDS: Final[Commands[Connection]] = Commands({})


async def create_session(request: web.Request) -> web.Response:
    """The bearer credential, if any, is either the session's own secret (a
    refresh) or a signed-in user's access token (the session then remembers
    the user, whose own sockets get its nudges too)."""
    data = await read_json_object(request, required=("ble_token", "interests"))
    credential = bearer_token(request)
    user_id = None
    if credential is not None and looks_like_access_token(credential):
        user_id = (await authenticated_user(request)).user_id
        credential = None
    created = await request.app[keys.PROXIMITY].create_session(
        data["ble_token"], data["interests"], presented_secret=credential, user_id=user_id
    )
    body = {"session_id": created.session_id, "expires_at": iso_utc(created.expires_at_ms)}
    return json_reply(200 if created.refreshed else 201, body)


async def match(request: web.Request) -> web.Response:
    data = await read_json_object(request, required=("own_token", "detected_token"))
    decision = await request.app[keys.PROXIMITY].attempt_match(
        data["own_token"], data["detected_token"], bearer_token(request)
    )
    body = {
        "match": decision.match,
        "shared_interests": list(decision.shared_categories),
        "nudge_sent": decision.nudged,
    }
    return json_reply(200, body)


async def rotate(request: web.Request) -> web.Response:
    """Move the session to a new BLE token; the secret and the expiry stay."""
    data = await read_json_object(request, required=("own_token", "new_token"))
    expires_at_ms = await request.app[keys.PROXIMITY].rotate_token(
        data["own_token"], data["new_token"], bearer_token(request)
    )
    return json_reply(200, {"expires_at": iso_utc(expires_at_ms)})


async def proximity_socket(request: web.Request) -> web.StreamResponse:
    """The phone's nudge channel. The secret is checked before the upgrade.

    After the handshake the connection is handed to a slim
    ``wsconn.WebSocketConnection`` (an idle socket then holds no request, task
    or timer). The token's channel is subscribed before the upgrade reply.
    """
    app = request.app
    token = request.match_info["ble_token"]
    auth = await app[keys.PROXIMITY].authenticate_socket(token, bearer_token(request, query_param=SESSION_ID_QUERY))
    hub = app[keys.HUB]
    # A rotated session publishes on its first token's channel.
    home = auth.home_token or token
    channel = app[keys.REDIS_KEYS].token_channel(home)
    # Subscribed before the upgrade reply: a nudge published once the phone
    # has its socket is never missed (and Redis being down is a plain 503).
    await hub.hold(channel)
    try:
        ws, conn = await hub.sockets.accept(
            request,
            auth.secret_hash,
            _on_command,
            max_frame_bytes=MAX_FRAME_BYTES,
            heartbeat_seconds=app[keys.SETTINGS].ws_heartbeat_seconds,
        )
        if conn is None:
            return ws  # the client left during the handshake
        try:
            await hub.join(channel, conn)
        except Exception:
            log.warning("could not subscribe a socket; closing it", exc_info=True)
            await conn.close(CloseCode.INTERNAL_ERROR)
            return ws
        except BaseException:
            conn.abort()  # cancelled (shutdown): don't leave a socket nobody listens for
            raise
    finally:
        hub.release(channel)
    if not conn.closed:
        app[keys.SESSION_SOCKETS].watch(home, auth)
    return ws


def _on_command(conn: Connection, data: str | bytes) -> None:
    PROXIMITY_COMMANDS.read(conn, data)
