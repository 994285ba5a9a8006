"""The admin console's routes: statistics over time, the live figures, the
moderation queue, bans and the audit trail. Every route answers 401 without
an admin credential and 403 for anybody who is not an admin."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Final

import orjson
from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token, json_reply, path_uuid, read_json_object
from proximity_server.features.admin import admin_actor
from proximity_server.features.errors import ApiError

LIVE_INTERVAL_SECONDS: Final = 2.0
EVENT_STREAM: Final = "text/event-stream"


async def _actor(request: web.Request) -> str:
    return await admin_actor(request.app[keys.ACCOUNTS], request.app[keys.SETTINGS].admin_token, bearer_token(request))


async def history(request: web.Request) -> web.Response:
    await _actor(request)
    body = await request.app[keys.ADMIN].history(request.query, dt.datetime.now(dt.UTC))
    return json_reply(200, body)


async def audit(request: web.Request) -> web.Response:
    await _actor(request)
    return json_reply(200, await request.app[keys.ADMIN].audit(request.query))


async def reports(request: web.Request) -> web.Response:
    await _actor(request)
    return json_reply(200, await request.app[keys.MODERATION].reports(request.query))


async def resolve_report(request: web.Request) -> web.Response:
    actor = await _actor(request)
    data = await read_json_object(request, required=("action", "note"))
    body = await request.app[keys.MODERATION].resolve(actor, request.match_info["report_id"], data)
    return json_reply(200, body)


async def ban(request: web.Request) -> web.Response:
    actor = await _actor(request)
    data = await read_json_object(request, required=("reason",))
    user_id = path_uuid(request, "user_id", "user")
    return json_reply(200, await request.app[keys.MODERATION].ban(actor, user_id, data))


async def unban(request: web.Request) -> web.Response:
    actor = await _actor(request)
    data = await read_json_object(request, required=(), optional=("reason",)) if request.can_read_body else {}
    user_id = path_uuid(request, "user_id", "user")
    return json_reply(200, await request.app[keys.MODERATION].unban(actor, user_id, data))


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: active proximity sessions and this process's open
    sockets, every two seconds, while the admin credential stays valid."""
    await _actor(request)
    response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-store"})
    await response.prepare(request)
    stats = request.app[keys.STATS_STORE]
    hub = request.app[keys.HUB]
    while True:
        try:
            await _actor(request)
        except ApiError:
            break
        figures = {
            "at": int(time.time() * 1000),
            "active_sessions": await stats.active_sessions(int(time.time() * 1000)),
            "open_sockets": hub.connection_count,
        }
        await response.write(b"data: " + orjson.dumps(figures) + b"\n\n")
        await asyncio.sleep(LIVE_INTERVAL_SECONDS)
    return response
