"""Liveness and readiness (probes in proximity_server/features/health.py)."""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.http import json_reply
from proximity_server.features.health import OK, probe_services

_LIVE: Final = orjson.dumps({"status": "ok"})


async def livez(request: web.Request) -> web.Response:
    """No I/O: the process is up and its loop turns."""
    return web.Response(body=_LIVE, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """Probe each dependency; 503 naming what is down."""
    app = request.app
    checks = await probe_services(app[keys.REDIS], app[keys.PG_POOL], app[keys.BROKER])
    ok = all(state == OK for state in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return json_reply(200 if ok else 503, body)
