"""Fixed-window rate-limit counters in Redis, shared by every process.

Each counter is one key per window (the window's index is in the name), so a
hit is INCR + PEXPIRE, pipelined: one round trip for any number of counters.
"""

from __future__ import annotations

from store.redis_client import RedisClient


class RateLimitStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def hit(self, buckets: list[str], window_ms: int) -> list[int]:
        """Count one hit in each bucket; returns the counts after it."""
        async with self._client.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.incr(bucket)
                pipe.pexpire(bucket, window_ms)
            results = await pipe.execute()
        return [int(n) for n in results[::2]]
