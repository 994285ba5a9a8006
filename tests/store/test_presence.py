"""Presence claims in a real Redis: online across processes, crash expiry, last seen."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from config.settings import Settings
from store.presence import PresenceStore
from store.redis_keys import Keys


async def test_online_while_any_process_holds_a_socket(redis: aioredis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    one = PresenceStore(redis, keys, "proc-1", claim_ttl_seconds=30)
    two = PresenceStore(redis, keys, "proc-2", claim_ttl_seconds=30)
    assert (await one.lookup(["u1"]))["u1"].online is False
    assert await one.claim("u1") == 1
    assert await two.claim("u1") == 2
    assert await one.release("u1") == 1
    assert (await two.lookup(["u1"]))["u1"].online is True
    assert await two.release("u1") == 0
    state = (await one.lookup(["u1"]))["u1"]
    assert state.online is False and state.last_seen_ms is not None


async def test_a_crashed_process_goes_offline_within_its_claim_ttl(redis: aioredis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    crashed = PresenceStore(redis, keys, "proc-crashed", claim_ttl_seconds=1.0)
    await crashed.claim("u2")
    assert (await crashed.lookup(["u2"]))["u2"].online is True
    await asyncio.sleep(1.1)  # no refresh: the process is gone
    state = (await crashed.lookup(["u2"]))["u2"]
    assert state.online is False and state.last_seen_ms is not None


async def test_refresh_keeps_a_claim_alive(redis: aioredis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    alive = PresenceStore(redis, keys, "proc-alive", claim_ttl_seconds=1.0)
    await alive.claim("u3")
    for _ in range(3):  # 1.5 s in all, longer than the claim's TTL
        await asyncio.sleep(0.5)
        await alive.refresh(["u3"])
    assert (await alive.lookup(["u3"]))["u3"].online is True


async def test_a_crashed_processs_users_are_reaped_once(redis: aioredis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    crashed = PresenceStore(redis, keys, "proc-dead", claim_ttl_seconds=1.0)
    survivor = PresenceStore(redis, keys, "proc-alive", claim_ttl_seconds=30)
    await crashed.claim("u4")
    await survivor.claim("u5")
    assert await survivor.reap() == []  # nothing has run out yet
    await asyncio.sleep(1.1)
    (gone,) = await survivor.reap()
    assert gone.user_id == "u4" and gone.online is False and gone.last_seen_ms
    assert await survivor.reap() == []  # announced once, by whoever looked first
    await survivor.release("u5")
    await asyncio.sleep(0.05)
    assert await survivor.reap() == []  # a clean release is announced by its own process
