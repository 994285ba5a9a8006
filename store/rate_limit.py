"""Fixed-window rate-limit counters in Redis, shared by every process.

Each counter is one key per window (the window's index is in the name), so a
hit is INCR + PEXPIRE, pipelined: one round trip for any number of counters.
A single counter on a hot path (``hit_one``: a chat send) is one script
(``lua/rate_hit.lua``) on the multiplexed connection when there is one: no
pooled connection checked out, and it shares its write with whatever else
the process sends to Redis in the same turn of the loop. One key, so it runs
on a Redis Cluster too (on the node that owns the key).
"""

from __future__ import annotations

from store.mux import MuxCluster, MuxRedis
from store.redis_client import RedisClient, lua_source


class RateLimitStore:
    def __init__(self, client: RedisClient, mux: MuxRedis | MuxCluster | None = None) -> None:
        self._client = client
        self._mux = mux
        self._hit_script = mux.register_script(lua_source("rate_hit")) if mux is not None else ""

    async def hit(self, buckets: list[str], window_ms: int) -> list[int]:
        """Count one hit in each bucket; returns the counts after it."""
        async with self._client.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.incr(bucket)
                pipe.pexpire(bucket, window_ms)
            results = await pipe.execute()
        return [int(n) for n in results[::2]]

    async def hit_one(self, bucket: str, window_ms: int) -> int:
        """Count one hit in one bucket; returns the count after it. One round trip."""
        if self._mux is None:
            (hits,) = await self.hit([bucket], window_ms)
            return hits
        return int(await self._mux.evalsha(self._hit_script, [bucket], [window_ms]))
