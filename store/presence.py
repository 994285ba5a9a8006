"""Presence in Redis: is a user online on any process, and when were they last seen.

Each user has a sorted set ``presence:{user_id}``: one member per server
process holding a socket of theirs, scored by when that claim expires (ms).
A process refreshes its claims every heartbeat; a clean disconnect sets the
score to "now"; a crashed process's claims simply run out. So a user is
online while some score lies in the future, and their last-seen time is the
highest score once none does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from store.keys import Keys

PRESENCE_RETENTION_SECONDS: Final = 30 * 24 * 3600

# KEYS[1] presence zset. ARGV: process id, score (ms), now (ms), retention (s).
# Returns the number of live claims after the change.
_CLAIM = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[3], '+inf')
"""


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    online: bool
    last_seen_ms: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, process_id: str, claim_ttl_seconds: float) -> None:
        self._client = client
        self._keys = keys
        self._process = process_id
        self._ttl_ms = int(claim_ttl_seconds * 1000)
        self._claim = client.register_script(_CLAIM)

    async def claim(self, user_id: str) -> int:
        """This process holds a socket of the user; returns the live claim count."""
        t = now_ms()
        count = await self._claim(
            keys=[self._keys.presence(user_id)], args=[self._process, t + self._ttl_ms, t, PRESENCE_RETENTION_SECONDS]
        )
        return int(count)

    async def release(self, user_id: str) -> int:
        """This process's last socket of the user closed; returns the live claim count left."""
        t = now_ms()
        count = await self._claim(
            keys=[self._keys.presence(user_id)], args=[self._process, t, t, PRESENCE_RETENTION_SECONDS]
        )
        return int(count)

    async def refresh(self, user_ids: list[str]) -> None:
        """Extend this process's claims (called every heartbeat)."""
        if not user_ids:
            return
        t = now_ms()
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zadd(self._keys.presence(user_id), {self._process: t + self._ttl_ms})
            await pipe.execute()

    async def lookup(self, user_ids: list[str]) -> dict[str, Presence]:
        if not user_ids:
            return {}
        t = now_ms()
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zrevrange(self._keys.presence(user_id), 0, 0, withscores=True)
            replies = await pipe.execute()
        result = {}
        for user_id, top in zip(user_ids, replies, strict=True):
            best = int(top[0][1]) if top else None
            online = best is not None and best > t
            result[user_id] = Presence(user_id, online, None if online else best)
        return result
