"""Rate-limit counters: the pipelined hits and the one-script hit on the multiplexed connection."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from config.settings import Settings
from store.mux import MuxCluster, MuxRedis
from store.rate_limit import RateLimitStore

WINDOW_MS = 60_000


async def test_hit_one_counts_and_sets_the_window_once(settings: Settings, redis: aioredis.Redis) -> None:
    assert settings.redis_url
    mux = MuxCluster(settings.redis_url) if settings.redis_cluster else MuxRedis(settings.redis_url)
    store = RateLimitStore(redis, mux)
    bucket = f"{settings.redis_prefix}rl:messages:u1:1"
    try:
        counts = await asyncio.gather(*(store.hit_one(bucket, WINDOW_MS) for _ in range(20)))
        assert sorted(counts) == list(range(1, 21))
        ttl = await redis.pttl(bucket)
        assert 0 < ttl <= WINDOW_MS
        await redis.pexpire(bucket, 5_000)
        assert await store.hit_one(bucket, WINDOW_MS) == 21
        assert 0 < await redis.pttl(bucket) <= 5_000  # only the first hit of a window sets its lifetime
    finally:
        await mux.aclose()


async def test_hit_one_without_a_multiplexed_connection(settings: Settings, redis: aioredis.Redis) -> None:
    store = RateLimitStore(redis)
    bucket = f"{settings.redis_prefix}rl:messages:u2:1"
    assert [await store.hit_one(bucket, WINDOW_MS) for _ in range(3)] == [1, 2, 3]
    assert 0 < await redis.pttl(bucket) <= WINDOW_MS
    assert await store.hit([bucket], WINDOW_MS) == [4]
