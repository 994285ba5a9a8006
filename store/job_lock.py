"""A Redis lock for a background job that one process at a time runs.

``acquire`` takes the lock with an expiry and hands out a fencing token (an
ever-increasing counter) in one script; ``extend`` and ``release`` act only
while the lock still holds that token. A holder that dies stops extending,
the lock expires, and another process takes over with a higher token; the
dead holder's late writes are refused by the token check in the store.
Both keys share a hash tag, so the scripts run on a Redis Cluster too.
"""

from __future__ import annotations

from store.redis_client import RedisClient

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class JobLock:
    def __init__(self, client: RedisClient, prefix: str, name: str, ttl_ms: int) -> None:
        self._client = client
        self._keys = [f"{prefix}job:{{{name}}}:lock", f"{prefix}job:{{{name}}}:fence"]
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    async def acquire(self) -> int | None:
        """The fencing token, or None while another holder has the lock."""
        token = await self._acquire(keys=self._keys, args=[self.ttl_ms])
        return int(token) if token else None

    async def extend(self, token: int) -> bool:
        return bool(await self._extend(keys=self._keys[:1], args=[str(token), self.ttl_ms]))

    async def release(self, token: int) -> bool:
        return bool(await self._release(keys=self._keys[:1], args=[str(token)]))
