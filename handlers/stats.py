"""GET /stats: anonymised aggregates for admins."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token, json_reply
from proximity_server.features.admin import admin_actor
from proximity_server.features.stats import today_stats


async def stats(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    await admin_actor(request.app[keys.ACCOUNTS], settings.admin_token, bearer_token(request))
    body = await today_stats(request.app[keys.STATS_STORE], settings.stats_min_count)
    return json_reply(200, body)
