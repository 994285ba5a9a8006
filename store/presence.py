"""Presence in Redis: is a user online on any process, and when were they last seen.

Each user has a sorted set ``presence:{user_id}``: one member per server
process holding a socket of theirs, scored by when that claim expires (ms).
A process refreshes its claims every heartbeat; a clean disconnect sets the
score to "now"; a crashed process's claims simply run out. So a user is
online while some score lies in the future, and their last-seen time is the
highest score once none does.

Users are spread over ``PRESENCE_SHARDS`` deadline sets (see ``store/redis_keys.py``),
each in the cluster slot of its users' presence sets, so the claim and reap
scripts touch one slot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from store.redis_client import RedisClient
from store.redis_keys import PRESENCE_SHARDS, Keys, presence_shard

PRESENCE_RETENTION_SECONDS: Final = 30 * 24 * 3600

# KEYS[1] presence zset, KEYS[2] deadlines zset. ARGV: process id, score (ms),
# now (ms), retention (s), user id. Returns the number of live claims after the
# change. The deadlines set holds, per online user, when their last claim runs
# out, so that whichever process looks first can announce a crashed process's
# users as offline (see ``reap``); a user with no live claim left leaves it.
_CLAIM = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local live = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[3], '+inf')
if live > 0 then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return live
"""

# KEYS[1] deadlines zset. ARGV: now (ms), presence key prefix, batch size.
# Pops users whose every claim has run out; returns them with their last-seen time.
_REAP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local gone = {}
for i = 1, #due, 2 do
  local user = due[i]
  redis.call('ZREM', KEYS[1], user)
  if redis.call('ZCOUNT', ARGV[2] .. user, '(' .. ARGV[1], '+inf') == 0 then
    gone[#gone + 1] = user
    gone[#gone + 1] = due[i + 1]
  end
end
return gone
"""
REAP_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    online: bool
    last_seen_ms: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceStore:
    def __init__(self, client: RedisClient, keys: Keys, process_id: str, claim_ttl_seconds: float) -> None:
        self._client = client
        self._keys = keys
        self._process = process_id
        self._ttl_ms = int(claim_ttl_seconds * 1000)
        self._claim = client.register_script(_CLAIM)
        self._reap = client.register_script(_REAP)

    async def claim(self, user_id: str) -> int:
        """This process holds a socket of the user; returns the live claim count."""
        t = now_ms()
        return await self._write_claim(user_id, t + self._ttl_ms, t)

    async def release(self, user_id: str) -> int:
        """This process's last socket of the user closed; returns the live claim count left."""
        t = now_ms()
        return await self._write_claim(user_id, t, t)

    async def _write_claim(self, user_id: str, score_ms: int, now: int) -> int:
        keys = [self._keys.presence(user_id), self._keys.presence_deadlines(presence_shard(user_id))]
        args: list[str | int] = [self._process, score_ms, now, PRESENCE_RETENTION_SECONDS, user_id]
        return int(await self._claim(keys=keys, args=args))

    async def reap(self) -> list[Presence]:
        """Users whose claims all ran out without a release (their process died)."""
        t = now_ms()
        k = self._keys
        replies = await asyncio.gather(
            *(
                self._reap(keys=[k.presence_deadlines(shard)], args=[t, k.presence_prefix(shard), REAP_BATCH])
                for shard in range(PRESENCE_SHARDS)
            )
        )
        return [
            Presence(str(u), False, int(float(s)))
            for flat in replies
            for u, s in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def refresh(self, user_ids: list[str]) -> None:
        """Extend this process's claims (called every heartbeat)."""
        if not user_ids:
            return
        t = now_ms()
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zadd(self._keys.presence(user_id), {self._process: t + self._ttl_ms})
                pipe.zadd(self._keys.presence_deadlines(presence_shard(user_id)), {user_id: t + self._ttl_ms}, gt=True)
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
