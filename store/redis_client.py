"""The Redis client and the server-side scripts it runs."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis

LUA_DIR: Final = Path(__file__).with_name("lua")
SOCKET_TIMEOUT_SECONDS: Final = 5.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
MAX_CONNECTIONS: Final = 64
POOL_WAIT_SECONDS: Final = 2.0
HEALTH_CHECK_INTERVAL_SECONDS: Final = 15


RedisClient = aioredis.Redis | aioredis.RedisCluster


def create_client(url: str, *, cluster: bool = False) -> RedisClient:
    """A client whose pool waits (briefly) for a free connection instead of failing.

    With ``cluster``, ``url`` names any node of a Redis Cluster; the client
    learns the others and routes each command by its key's slot.
    """
    if cluster:
        return aioredis.RedisCluster.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            max_connections=MAX_CONNECTIONS,
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


@cache
def lua_source(name: str, *fragments: str) -> str:
    """A script from ``lua/``, with the shared prelude and ``fragments`` (other files there) in front of it."""
    parts = ["_utc_day", *fragments, name]
    return "".join((LUA_DIR / f"{part}.lua").read_text(encoding="utf-8") for part in parts)


async def ping(client: RedisClient) -> None:
    """One Redis answers, or every primary of a cluster does."""
    if isinstance(client, aioredis.RedisCluster):
        await client.ping(target_nodes=aioredis.RedisCluster.PRIMARIES)
    else:
        await client.ping()
