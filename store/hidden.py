"""Who is hidden from whom, mirrored into Redis for the proximity hot path.

Blocks live in PostgreSQL; the match script must not touch PostgreSQL, so a
block also adds each user to the other's ``hidden:{user_id}`` set, and the
script checks it when both sessions belong to signed-in users. The sets have
no TTL: a block lasts until it is lifted.
"""

from __future__ import annotations

from store.redis_client import RedisClient
from store.redis_keys import Keys


class HiddenPairs:
    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    # Not a MULTI: on a Redis Cluster the two sets live in different slots.
    # Both writes are idempotent, and a failure is reported to the caller,
    # whose retry completes the pair.

    async def hide(self, a: str, b: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sadd(self._keys.hidden(a), b)
            pipe.sadd(self._keys.hidden(b), a)
            await pipe.execute()

    async def unhide(self, a: str, b: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.srem(self._keys.hidden(a), b)
            pipe.srem(self._keys.hidden(b), a)
            await pipe.execute()
