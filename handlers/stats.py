"""GET /stats: anonymised aggregates for admins."""

from __future__ import annotations

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token, json_reply
from proximity_server.features.stats import check_admin, today_stats


async def stats(request: web.Request) -> web.Response:
    check_admin(bearer_token(request), request.app[keys.SETTINGS].admin_token)
    body = await today_stats(request.app[keys.STATS_STORE])
    return json_reply(200, body)
