"""Readiness: probe each backing service, each within a deadline.

    checks = await probe_services(redis, pool, broker)  # name -> "ok" | "down"
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Final, Protocol

import asyncpg

from store import db, redis_client
from store.redis_client import RedisClient

PROBE_TIMEOUT_SECONDS: Final = 1.0
OK: Final = "ok"
DOWN: Final = "down"


class Connected(Protocol):
    @property
    def connected(self) -> bool: ...


async def _probe(check: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await check
    except Exception:
        return DOWN
    return OK


async def probe_services(redis: RedisClient, pool: asyncpg.Pool, broker: Connected) -> dict[str, str]:
    """Each dependency by name, ``ok`` or ``down``: Redis and PostgreSQL are
    pinged concurrently; the pub/sub broker then reports its own connection."""
    redis_state, pg_state = await asyncio.gather(_probe(redis_client.ping(redis)), _probe(db.ping(pool)))
    return {"redis": redis_state, "postgres": pg_state, "pubsub": OK if broker.connected else DOWN}
