"""The hot path's multiplexed Redis connection against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from config.settings import Settings
from store.mux import MuxRedis, encode_command


def test_encode_command_known_bytes() -> None:
    assert encode_command(("SET", b"k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


async def test_concurrent_commands_get_their_own_replies(settings: Settings, redis: aioredis.Redis) -> None:
    assert settings.redis_url
    mux = MuxRedis(settings.redis_url)
    key = f"{settings.redis_prefix}mux"
    try:
        replies = await asyncio.gather(*(mux.execute("INCRBY", key, n) for n in range(1, 201)))
        assert sorted(replies) == sorted(set(replies))  # every caller got a distinct running total
        assert await redis.get(key) == str(sum(range(1, 201)))
        assert await mux.execute("ECHO", "héllo") == "héllo"
        with pytest.raises(ResponseError):
            await mux.execute("NOT-A-COMMAND")
        assert await mux.execute("PING") == "PONG"  # an error reply does not desynchronise replies
    finally:
        await mux.aclose()


async def test_scripts_reload_after_a_flush(settings: Settings, redis: aioredis.Redis) -> None:
    assert settings.redis_url
    mux = MuxRedis(settings.redis_url)
    sha = mux.register_script("return ARGV[1] .. KEYS[1]")
    try:
        assert await mux.evalsha(sha, ["k"], ["v"]) == "vk"
        await redis.script_flush()
        assert await mux.evalsha(sha, ["k2"], [7]) == "7k2"
    finally:
        await mux.aclose()


async def test_a_killed_connection_fails_fast_then_recovers(settings: Settings, redis: aioredis.Redis) -> None:
    assert settings.redis_url
    mux = MuxRedis(settings.redis_url)
    try:
        client_id = await mux.execute("CLIENT", "ID")
        blocked = asyncio.ensure_future(mux.execute("BLPOP", f"{settings.redis_prefix}never", 10))
        await asyncio.sleep(0.05)
        await redis.client_kill_filter(_id=client_id)
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, 2.0)
        assert await mux.execute("PING") == "PONG"  # reconnected on next use
    finally:
        await mux.aclose()
