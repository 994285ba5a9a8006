"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Final

import orjson
from aiohttp import web

from proximity_server.app import state as keys
from store import db, redis_client

PROBE_TIMEOUT_SECONDS: Final = 1.0
_LIVE: Final = orjson.dumps({"status": "ok"})


async def livez(request: web.Request) -> web.Response:
    """No I/O: the process is up and its loop turns."""
    return web.Response(body=_LIVE, content_type="application/json")


async def _probe(check: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await check
    except Exception:
        return "down"
    return "ok"


async def health(request: web.Request) -> web.Response:
    """Probe each dependency; 503 naming what is down."""
    app = request.app
    redis_state, pg_state = await asyncio.gather(
        _probe(redis_client.ping(app[keys.REDIS])),
        _probe(db.ping(app[keys.PG_POOL])),
    )
    checks = {"redis": redis_state, "postgres": pg_state}
    broker = app[keys.BROKER]
    checks["pubsub"] = "ok" if broker.connected else "down"
    ok = all(state == "ok" for state in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return web.Response(status=200 if ok else 503, body=orjson.dumps(body), content_type="application/json")
