"""Pool statistics of the Redis client: connections in use and idle, on one Redis and on a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from store.redis_client import PoolStats, RedisClient, create_client, pool_stats


@pytest.fixture(params=["single", "cluster"])
async def any_client(request: pytest.FixtureRequest, service_urls: tuple[str, str]) -> AsyncIterator[RedisClient]:
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url") if cluster else service_urls[1]
    client = create_client(url, cluster=cluster)
    yield client
    await client.aclose()


async def test_pool_stats_count_idle_and_lent_connections(any_client: RedisClient) -> None:
    assert pool_stats(any_client) == PoolStats(in_use=0, idle=0)
    await any_client.ping()
    idle = pool_stats(any_client)
    assert idle.in_use == 0
    assert idle.idle >= 1

    # Hold one connection out of the pool, as a command in flight does.
    if isinstance(any_client, aioredis.RedisCluster):
        node = any_client.get_default_node()
        held = node.acquire_connection()
        assert pool_stats(any_client) == PoolStats(in_use=1, idle=idle.idle - 1)
        node.release(held)
    else:
        pool = any_client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        assert pool_stats(any_client) == PoolStats(in_use=1, idle=idle.idle - 1)
        await pool.release(connection)
    assert pool_stats(any_client) == idle
