"""GET /metrics: Prometheus text exposition, for admins."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from proximity_server.app import state as keys
from proximity_server.app.http import bearer_token
from proximity_server.features.stats import check_admin


async def metrics(request: web.Request) -> web.Response:
    check_admin(bearer_token(request), request.app[keys.SETTINGS].admin_token)
    body = await request.app[keys.METRICS].render_async()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
