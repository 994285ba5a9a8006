"""The Redis client and the server-side scripts it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
# How redis-py names the state of a pooled connection in ``get_connection_count``.
_POOL_STATE_ATTRIBUTE: Final = "db.client.connection.state"
_POOL_STATE_IN_USE: Final = "used"


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connections of a client's pool: lent out to a command, and waiting in the pool."""

    in_use: int
    idle: int


# Every connection of a server process is named after it (CLIENT LIST shows
# which process holds which connection; tests kill one process's listener).
CLIENT_NAME_PREFIX: Final = "proximity_server-"


def process_client_name(pid: int | None = None) -> str:
    return f"{CLIENT_NAME_PREFIX}{os.getpid() if pid is None else pid}"


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
        client_name=process_client_name(),
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


def pool_stats(client: RedisClient) -> PoolStats:
    """The client's pool connections; a cluster's are summed over its nodes.

    The one place that knows how redis-py keeps them: a cluster node offers
    no public count, so its connection lists are read here.
    """
    if isinstance(client, aioredis.RedisCluster):
        nodes = client.get_nodes()
        idle = sum(len(node._free) for node in nodes)
        total = sum(len(node._connections) for node in nodes)
        return PoolStats(in_use=total - idle, idle=idle)
    in_use = idle = 0
    for count, attributes in client.connection_pool.get_connection_count():
        if attributes.get(_POOL_STATE_ATTRIBUTE) == _POOL_STATE_IN_USE:
            in_use += int(count)
        else:
            idle += int(count)
    return PoolStats(in_use=in_use, idle=idle)
